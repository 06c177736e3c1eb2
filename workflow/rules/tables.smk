rule tables:
    input:
        evals=sorted(
            {m["eval_json"] for m in table_models()} | {c["eval_json"] for r in table_runs() for c in r["checkpoints"]}
        ),
        models=local_inputs(reference_model()) + [f"results/models/{run}/final" for run in RUNS],
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
                "task_metrics": {t: config["evaluation"]["metrics"][t] for t in config["evaluation"]["tasks"]},
                "delta": table_delta(),
                "lower_is_better": config["evaluation"].get("lower_is_better", []),
                "runs": table_runs(),
                "train_stats": [f"results/models/{run}/final/train_stats.json" for run in RUNS],
            }
        ),
    shell:
        "python -m slm tables --spec {params.spec:q} --out {params.out} > {log} 2>&1"


# Table 3 (weak-to-strong): the runs that start from an entry of base_models, beside the paper's
# Llama-2-7B CT / SLM rows (TinyLlama reference). TABLE3 is empty when no run names a base_models entry.
W2S_BASES = base_runs()
W2S_RUNS = [run for runs in W2S_BASES.values() for run in runs]
TABLE3 = [f"results/tables/table3.{ext}" for ext in ("md", "csv", "tex")] if W2S_BASES else []

if W2S_BASES:

    rule table3:
        input:
            results=rules.tables.output.results_csv,
            models=local_inputs(
                base_model(),
                reference_model(),
                *(base_model(name) for name in W2S_BASES),
                *(f"results/models/{run}/final" for run in W2S_RUNS),
            ),
        output:
            md=report(TABLE3[0], caption="../report/table3.rst", category="Tables"),
            csv=TABLE3[1],
            tex=TABLE3[2],
        log:
            "logs/table3.log",
        conda:
            "../../envs/slm.yaml"
        params:
            out=lambda w, output: Path(output.md).with_suffix(""),
            spec=lambda w, input: spec(
                {
                    "results_csv": input.results,
                    "table": "table3_weak_to_strong",
                    # this run's columns -> the paper's, as for the paper table; plus each run's reference
                    "mapping": {
                        **config.get("tables", {}).get("paper_columns", {}),
                        "reference": "reference",
                    },
                    "usable_mapping": True,
                    "rows": [row for name, runs in W2S_BASES.items() for row in [f"Base ({name})", *runs]],
                    "values": {
                        run: {"reference": ("Reference" if config["runs"][run]["method"] == "slm" else None)}
                        for run in W2S_RUNS
                    },
                    # parameter counts of the rows' models (made here) and of the reference
                    "parameters": {
                        name: path
                        for name, path in [
                            ("Base", base_model()),
                            ("Reference", reference_model()),
                            *((f"Base ({b})", base_model(b)) for b in W2S_BASES),
                            *((run, f"results/models/{run}/final") for run in W2S_RUNS),
                        ]
                        if local_inputs(path)
                    },
                    "provenance": {
                        "config": ", ".join(map(str, workflow.configfiles)),
                        "tokens per run": config["training"].get("max_tokens"),
                        "runs": W2S_RUNS,
                        "reference model (scores the corpus for every run)": (
                            reference_model()
                            if REFERENCE_GIVEN
                            else f"{reference_model()}, fine-tuned from {reference_init()}"
                        ),
                        **{f"base of {run}": run_base(run) for run in W2S_RUNS},
                    },
                }
            ),
        shell:
            "python -m slm paper-table --spec {params.spec:q} --out {params.out} > {log} 2>&1"


rule weak_to_strong:
    input:
        TABLE3,
