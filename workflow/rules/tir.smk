# Table 2 (tool-integrated reasoning): fine-tune the final model of each tool_integrated run on
# ToRA-style solutions, evaluate it with a Python tool in the loop, tabulate beside the paper.


if TIR:

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
            run=one_of(TIR_RUNS),
        conda:
            "../../envs/slm.yaml"
        threads: workflow.cores
        resources:
            **rule_resources("sft_tir"),
        params:
            options=train_options(TIR["training"]),
            paths=lambda w, input, output: spec(
                {
                    "init_model": input.model,
                    "data": list(input.data),
                    "out_dir": output[0],
                    "state_dir": f"results/train_state/tir-{w.run}",
                    "name": f"tir-{w.run}",
                    "role": "tir",
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
            run=one_of(TIR_RUNS),
        conda:
            "../../envs/slm.yaml"
        threads: 1
        resources:
            **rule_resources("evaluate_tir"),
        params:
            spec=spec({**TIR.get("evaluation", {}), "device": config["device"]}),
        shell:
            "OMP_NUM_THREADS={threads} python -m slm evaluate-tir --model {input.model} --problems {input.problems}"
            " --fewshot {input.fewshot} --spec {params.spec:q} --out {output} > {log} 2>&1"

    rule table2:
        input:
            evals=expand("results/eval/tir/{run}.json", run=TIR_RUNS),
        output:
            md=report(TABLE2[0], caption="../report/table2.rst", category="Tables"),
            csv=TABLE2[1],
            tex=TABLE2[2],
        log:
            "logs/table2.log",
        conda:
            "../../envs/slm.yaml"
        params:
            out=lambda w, output: Path(output.md).with_suffix(""),
            spec=lambda w, input: spec(
                {
                    "evals": dict(zip(TIR_RUNS, input.evals)),
                    "delta": tir_delta(),
                    "provenance": {
                        "config": ", ".join(map(str, workflow.configfiles)),
                        "fine-tuned runs": TIR_RUNS,
                        "fine-tuning": TIR["training"],
                        "evaluation": TIR.get("evaluation", {}),
                    },
                }
            ),
        shell:
            "python -m slm tir-table --spec {params.spec:q} --out {params.out} > {log} 2>&1"
