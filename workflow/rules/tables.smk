def table_models():
    models = [
        {"name": "Base", "role": "base", "eval_json": eval_json("base"), "train_stats": None},
        {
            "name": "Reference",
            "role": "reference",
            "eval_json": eval_json("reference"),
            "train_stats": "results/models/reference/final/train_stats.json",
        },
    ]
    for run, run_spec in config["runs"].items():
        label = run_spec["method"].upper()
        if run_spec["method"] == "slm":
            label += f" (ratio {run_spec['ratio']})"
        models.append(
            {
                "name": f"{run}: {label}",
                "role": run_spec["method"],
                "eval_json": eval_json(run),
                "train_stats": f"results/models/{run}/final/train_stats.json",
            }
        )
    return models


def table_delta():
    """SLM minus CLM, when the config has one run of each."""
    models = table_models()
    slm = [m["name"] for m in models if m["role"] == "slm"]
    clm = [m["name"] for m in models if m["role"] == "clm"]
    return [slm[0], clm[0]] if slm and clm else None


def table_runs():
    return [
        {
            "run": run,
            "checkpoints": [
                {
                    "tokens": int(point.removeprefix("tokens-")) if point != "final" else None,
                    "eval_json": eval_json(run, point),
                    "train_stats": f"{model_dir(run, point)}/train_stats.json",
                }
                for point in eval_points(run)
            ],
        }
        for run in RUNS
    ]


rule tables:
    input:
        evals=[m["eval_json"] for m in table_models()]
        + [c["eval_json"] for r in table_runs() for c in r["checkpoints"]],
        models=["results/models/reference/final"]
        + [f"results/models/{run}/final" for run in RUNS],
    output:
        results_md="results/tables/results.md",
        results_csv="results/tables/results.csv",
        selection_md="results/tables/selection.md",
        selection_csv="results/tables/selection.csv",
        checkpoints_csv="results/tables/checkpoints.csv",
    params:
        spec=spec(
            {
                "models": table_models(),
                "task_metrics": {t: config["evaluation"]["metrics"][t] for t in config["evaluation"]["tasks"]},
                "delta": table_delta(),
                "lower_is_better": config["evaluation"].get("lower_is_better", []),
                "runs": table_runs(),
                "train_stats": [f"results/models/{run}/final/train_stats.json" for run in RUNS],
            }
        ),
    log:
        "logs/tables.log",
    conda:
        "../../envs/slm.yaml"
    shell:
        "{SLM} tables --spec {params.spec:q} --out results/tables > {log} 2>&1"
