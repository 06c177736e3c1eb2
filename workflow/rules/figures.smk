rule figures:
    input:
        checkpoints=rules.tables.output.checkpoints_csv,
        models=[f"results/models/{run}/final" for run in figure6_runs()],
    output:
        figures=[
            report(
                f"results/figures/{name}",
                caption="../report/figures.rst",
                category="Figures",
            )
            for name in FIGURES
        ],
        captions="results/figures/captions.json",
    log:
        "logs/figures.log",
    conda:
        "../../envs/slm.yaml"
    params:
        out=lambda w, output: Path(output.captions).parent,
        spec=lambda w, input: spec(
            {
                "checkpoints_csv": input.checkpoints,
                "accuracy_tasks": ACCURACY_TASKS,
                "loss_task": LOSS_TASKS[0] if LOSS_TASKS else None,
                "metrics_by_run": {
                    run: f"{path}/metrics.jsonl"
                    for run, path in zip(figure6_runs(), input.models)
                },
                "ratio_runs": ratio_runs(),
            }
        ),
    shell:
        "python -m slm figures --spec {params.spec:q} --out {params.out} > {log} 2>&1"


rule paper_table:
    input:
        results=rules.tables.output.results_csv,
    output:
        md=report(
            "results/tables/paper.md", caption="../report/paper.rst", category="Tables"
        ),
        csv="results/tables/paper.csv",
        tex="results/tables/paper.tex",
    log:
        "logs/paper_table.log",
    conda:
        "../../envs/slm.yaml"
    params:
        out=lambda w, output: Path(output.md).with_suffix(""),
        spec=lambda w, input: spec(
            {
                "results_csv": input.results,
                "table": config.get("tables", {}).get(
                    "paper_table", "table1_math_fewshot_cot"
                ),
                "mapping": config.get("tables", {}).get("paper_columns", {}),
                "provenance": {
                    "config": ", ".join(map(str, workflow.configfiles)),
                    "tokens per run": config["training"].get("max_tokens"),
                    "checkpoints (tokens)": CHECKPOINTS,
                    "runs": RUNS,
                },
            }
        ),
    shell:
        "python -m slm paper-table --spec {params.spec:q} --out {params.out} > {log} 2>&1"


rule paper_miniature:
    input:
        rules.tables.output,
        rules.paper_table.output,
        expand("results/figures/{name}", name=FIGURES),
        expand("results/dynamics/{run}", run=DYNAMICS_RUNS),
