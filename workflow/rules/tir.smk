# Table 2 (tool-integrated reasoning): fine-tune the final model of each tool_integrated run on
# ToRA-style solutions, evaluate it with a Python tool in the loop, tabulate beside the paper.


if PLAN.tir_runs:

    rule sft_tir:
        input:
            model="results/models/{run}/final",
            data=packed("tir"),
        output:
            directory("results/models/tir/{run}/final"),
        log:
            "logs/train/tir-{run}.log",
        benchmark:
            "benchmarks/train/tir-{run}.tsv"
        wildcard_constraints:
            run=one_of(PLAN.tir_runs),
        conda:
            "../../envs/slm.yaml"
        threads: workflow.cores
        resources:
            **rule_resources("sft_tir"),
        params:
            options=train_options(config["tool_integrated"]["training"]),
            paths=lambda w, input, output: spec(
                {
                    "init_model": input.model,
                    "data": list(input.data),
                    "out_dir": output[0],
                    "state_dir": f"results/train_state/tir-{w.run}",
                }
            ),
        shell:
            "python -m slm train --options {params.options:q} --paths {params.paths:q} --threads {threads} > {log} 2>&1"

    rule evaluate_tir:
        input:
            model=rules.sft_tir.output,
            problems=f"{RAW}/eval/arith_gen.jsonl",
            fewshot=f"{RAW}/eval/arith_fewshot.jsonl",
        output:
            "results/eval/tir/{run}.json",
        log:
            "logs/evaluate/tir-{run}.log",
        benchmark:
            "benchmarks/evaluate/tir-{run}.tsv"
        wildcard_constraints:
            run=one_of(PLAN.tir_runs),
        conda:
            "../../envs/slm.yaml"
        threads: 1
        resources:
            **rule_resources("evaluate_tir"),
        params:
            spec=spec({**config["tool_integrated"].get("evaluation", {}), "device": config["device"]}),
        shell:
            "OMP_NUM_THREADS={threads} python -m slm evaluate-tir --model {input.model} --problems {input.problems}"
            " --fewshot {input.fewshot} --spec {params.spec:q} --out {output} > {log} 2>&1"

    rule table2:
        input:
            evals=expand("results/eval/tir/{run}.json", run=PLAN.tir_runs),
        output:
            md=report(PLAN.table2[0], caption="../report/table2.rst", category="Tables"),
            csv=PLAN.table2[1],
            tex=PLAN.table2[2],
        log:
            "logs/table2.log",
        conda:
            "../../envs/slm.yaml"
        params:
            out=lambda w, output: Path(output.md).with_suffix(""),
            spec=lambda w, input: spec(
                {
                    "evals": dict(zip(PLAN.tir_runs, input.evals)),
                    "delta": PLAN.tir_delta,
                    "provenance": {
                        "config": ", ".join(map(str, workflow.configfiles)),
                        "fine-tuned runs": PLAN.tir_runs,
                        "fine-tuning": config["tool_integrated"]["training"],
                        "evaluation": config["tool_integrated"].get("evaluation", {}),
                    },
                }
            ),
        shell:
            "python -m slm tir-table --spec {params.spec:q} --out {params.out} > {log} 2>&1"
