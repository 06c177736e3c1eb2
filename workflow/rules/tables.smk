rule tables:
    input:
        evals=sorted(
            {m["eval_json"] for m in table_models()}
            | {c["eval_json"] for r in table_runs() for c in r["checkpoints"]}
        ),
        models=local_inputs(reference_model())
        + [f"results/models/{run}/final" for run in RUNS],
    output:
        results_md=report(
            "results/tables/results.md",
            caption="../report/results.rst",
            category="Tables",
        ),
        results_csv="results/tables/results.csv",
        selection_md=report(
            "results/tables/selection.md",
            caption="../report/selection.rst",
            category="Tables",
        ),
        selection_csv="results/tables/selection.csv",
        checkpoints_csv=report(
            "results/tables/checkpoints.csv",
            caption="../report/checkpoints.rst",
            category="Tables",
        ),
    log:
        "logs/tables.log",
    conda:
        "../../envs/slm.yaml"
    params:
        out=lambda w, output: Path(output.results_md).parent,
        spec=spec(
            {
                "models": table_models(),
                "task_metrics": {
                    t: config["evaluation"]["metrics"][t]
                    for t in config["evaluation"]["tasks"]
                },
                "delta": table_delta(),
                "lower_is_better": config["evaluation"].get("lower_is_better", []),
                "runs": table_runs(),
                "train_stats": [
                    f"results/models/{run}/final/train_stats.json" for run in RUNS
                ],
            }
        ),
    shell:
        "python -m slm tables --spec {params.spec:q} --out {params.out} > {log} 2>&1"
