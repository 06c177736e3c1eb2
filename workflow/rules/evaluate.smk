rule evaluate:
    input:
        model=evaluated_model,
        tasks=rules.eval_tasks.output if GENERATED else [],
    output:
        "results/eval/{model}/{point}.json",
    log:
        "logs/evaluate/{model}/{point}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{point}.tsv"
    wildcard_constraints:
        # results/eval/tir/ holds Table 2's tool-integrated evaluations (rule evaluate_tir); no run is named tir
        model=r"(?!tir/).+",
        point=r"final|tokens-\d+",
    conda:
        "../../envs/slm.yaml"
    threads: rule_threads("evaluate")
    resources:
        **rule_resources("evaluate"),
    params:
        model=lambda w: PLAN.model_dir(w.model, w.point),
        tasks=config["evaluation"]["tasks"],
        include=lambda w, input: f"--include-path {input.tasks or Path(workflow.basedir) / 'workflow' / 'tasks'}",
        spec=spec(
            {
                "batch_size": config["evaluation"].get("batch_size", 16),
                "limit": config["evaluation"].get("limit"),
                "seed": config["seed"],
                "device": config["device"],
                "dtype": "bfloat16" if config["precision"] == "bf16" else "float32",
                "task_options": config["evaluation"].get("task_options", {}),
                "metrics": config["evaluation"]["metrics"],
                # every model here was trained (or is compared) on sequences of this length
                "context_length": config["sequence_length"],
            }
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m slm evaluate --model {params.model} --tasks {params.tasks}"
        " {params.include} --spec {params.spec:q} --out {output} > {log} 2>&1"
