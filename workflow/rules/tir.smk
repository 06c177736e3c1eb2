# Table 2 (tool-integrated reasoning): fine-tune the final model of each tool_integrated run (of each
# of its pretraining_seeds: key <run>/seed-<seed> when the run lists seeds), and the base and reference
# models, the controls, on ToRA-style solutions once per fine-tuning seed, evaluate
# each with a Python tool in the loop, tabulate beside the paper with where the solutions went wrong,
# and the SLM run's selection rates by token role; with tool_integrated.training.checkpoints, every
# checkpoint is evaluated the same way for the fine-tunings' learning curve (table2_curve).


if PLAN.tir_runs:

    rule sft_tir:
        input:
            model=lambda w: local_inputs(PLAN.model_dir(w.model)),
            data=packed("tir"),
        output:
            final=directory("results/models/tir/{model}/seed-{seed}/final"),
            checkpoints=[
                directory(f"results/models/tir/{{model}}/seed-{{seed}}/checkpoints/tokens-{n}")
                for n in PLAN.tir_checkpoints
            ],
        log:
            "logs/train/tir/{model}/seed-{seed}.log",
        benchmark:
            "benchmarks/train/tir/{model}/seed-{seed}.tsv"
        wildcard_constraints:
            model=one_of(PLAN.tir_keys),
            seed=r"\d+",
        conda:
            "../../envs/slm.yaml"
        threads: rule_threads("sft_tir")
        resources:
            **rule_resources("sft_tir"),
        params:
            launch=launch_command(stage_resources(config, "sft_tir")),
            options=lambda w: train_options(config["tool_integrated"]["training"], seed=int(w.seed)),
            paths=lambda w, input, output: spec(
                {
                    "init_model": PLAN.model_dir(w.model),
                    "data": list(input.data),
                    "out_dir": output.final,
                    "checkpoint_dir": f"results/models/tir/{w.model}/seed-{w.seed}/checkpoints",
                    "state_dir": f"results/train_state/tir/{w.model}/seed-{w.seed}",
                    "name": f"tir/{w.model}/seed-{w.seed}",
                    "role": "tir",
                }
            ),
        shell:
            "{params.launch} -m slm train --options {params.options:q} --paths {params.paths:q} --threads {threads}"
            " > {log} 2>&1"

    rule evaluate_tir:
        input:
            model=lambda w: PLAN.tir_model(w.model, w.seed, w.point),
            problems=f"{RAW}/eval/arith_gen.jsonl",
            fewshot=f"{RAW}/eval/arith_fewshot.jsonl",
        output:
            "results/eval/tir/{model}/seed-{seed}/{point}.json",
        log:
            "logs/evaluate/tir/{model}/seed-{seed}/{point}.log",
        benchmark:
            "benchmarks/evaluate/tir/{model}/seed-{seed}/{point}.tsv"
        wildcard_constraints:
            model=one_of(PLAN.tir_keys),
            seed=r"\d+",
            point=one_of(PLAN.tir_points),
        conda:
            "../../envs/slm.yaml"
        threads: rule_threads("evaluate_tir")
        resources:
            **rule_resources("evaluate_tir"),
        params:
            spec=spec(
                {
                    **config["tool_integrated"].get("evaluation", {}),
                    "device": config["device"],
                    "context_length": config["sequence_length"],
                }
            ),
        shell:
            "OMP_NUM_THREADS={threads} python -m slm evaluate-tir --model {input.model} --problems {input.problems}"
            " --fewshot {input.fewshot} --spec {params.spec:q} --out {output} > {log} 2>&1"

    # A harder held-out set (tool_integrated.harder_sets) is made by its own rule, so that adding one
    # changes nothing generate_data wrote, and evaluated on every final fine-tuning like arith_gen's problems.
    if PLAN.tir_harder:

        rule generate_tir_harder:
            output:
                PLAN.harder_problems("{harder}"),
            log:
                "logs/generate_tir_harder/{harder}.log",
            wildcard_constraints:
                harder=one_of(PLAN.tir_harder),
            conda:
                "../../envs/slm.yaml"
            params:
                spec=lambda w: spec(PLAN.harder_spec(w.harder)),
            shell:
                "python -m slm generate-harder --spec {params.spec:q} --out {output} > {log} 2>&1"

        use rule evaluate_tir as evaluate_tir_harder with:
            input:
                model=lambda w: PLAN.tir_model(w.model, w.seed),
                problems=PLAN.harder_problems("{harder}"),
                fewshot=f"{RAW}/eval/arith_fewshot.jsonl",
            output:
                PLAN.tir_eval("{model}", "{seed}", "final", "{harder}"),
            log:
                "logs/evaluate/tir/harder-{harder}/{model}/seed-{seed}.log",
            benchmark:
                "benchmarks/evaluate/tir/harder-{harder}/{model}/seed-{seed}.tsv"
            wildcard_constraints:
                model=one_of(PLAN.tir_keys),
                seed=r"\d+",
                harder=one_of(PLAN.tir_harder),

    rule table2:
        input:
            evals=[
                unit["eval_json"]
                for table in PLAN.table2_spec()["tables"]
                for _model, units in table["evals"]
                for unit in units
            ],
        output:
            md=report(PLAN.table2[0], caption="../report/table2.rst", category="Tables"),
            csv=PLAN.table2[1],
            tex=PLAN.table2[2],
            errors_md=report(PLAN.table2[3], caption="../report/table2_errors.rst", category="Tables"),
            errors_csv=PLAN.table2[4],
            harder=[f for stem, _task, harder in PLAN.tir_tables if harder for f in tir_table_files(stem)],
        log:
            "logs/table2.log",
        conda:
            "../../envs/slm.yaml"
        params:
            spec=spec(PLAN.table2_spec()),
        shell:
            "python -m slm tir-table --spec {params.spec:q} > {log} 2>&1"

    if PLAN.table2_curve:

        rule table2_curve:
            input:
                evals=[p["eval_json"] for p in PLAN.table2_curve_spec()["points"]],
                models=[p["model_dir"] for p in PLAN.table2_curve_spec()["points"]],
            output:
                md=report(PLAN.table2_curve[0], caption="../report/table2_curve.rst", category="Tables"),
                csv=PLAN.table2_curve[1],
                png=report(PLAN.table2_curve[2], caption="../report/table2_curve.rst", category="Figures"),
            log:
                "logs/table2_curve.log",
            conda:
                "../../envs/slm.yaml"
            params:
                out=lambda w, output: Path(output.md).with_suffix(""),
                spec=spec(PLAN.table2_curve_spec()),
            shell:
                "python -m slm tir-curve --spec {params.spec:q} --out {params.out} > {log} 2>&1"


if PLAN.roles_run:

    rule selection_roles:
        input:
            dynamics=f"results/dynamics/{PLAN.roles_run}",
            tokenizer=local_inputs(tokenizer_dir()),
        output:
            md=report(PLAN.selection_roles[0], caption="../report/selection_roles.rst", category="Tables"),
            csv=PLAN.selection_roles[1],
        log:
            "logs/selection_roles.log",
        conda:
            "../../envs/slm.yaml"
        params:
            tokenizer=lambda w, input: input.tokenizer or tokenizer_dir(),
            ratio=config["runs"][PLAN.roles_run]["ratio"],
            out=lambda w, output: Path(output.md).with_suffix(""),
        shell:
            "python -m slm selection-roles --dynamics {input.dynamics}/losses.npz --tokenizer {params.tokenizer}"
            " --ratio {params.ratio} --out {params.out} > {log} 2>&1"
