# Figure 5's table (SLM minus CLM per task), written with the figures when there is an SLM/CLM pair
FIGURE5_TABLE = expand("results/tables/figure5.{ext}", ext=["md", "csv", "tex"]) if "figure5.png" in FIGURES else []


rule figures:
    input:
        checkpoints=rules.tables.output.checkpoints_csv,
        results=rules.tables.output.results_csv,
        dynamics=expand("results/dynamics/{run}", run=figure6_runs()),
    output:
        figures=[
            report(
                f"results/figures/{name}",
                caption="../report/figures.rst",
                category="Figures",
            )
            for name in FIGURES
        ],
        figure5_table=[
            (report(path, caption="../report/figure5.rst", category="Tables") if path.endswith(".md") else path)
            for path in FIGURE5_TABLE
        ],
        figure6_data=(["results/figures/figure6.csv"] if "figure6.png" in FIGURES else []),
        captions="results/figures/captions.json",
    log:
        "logs/figures.log",
    conda:
        "../../envs/slm.yaml"
    params:
        out=lambda w, output: Path(output.captions).parent,
        spec=lambda w, input, output: spec(
            {
                "checkpoints_csv": input.checkpoints,
                "accuracy_tasks": ACCURACY_TASKS,
                "loss_task": LOSS_TASKS[0] if LOSS_TASKS else None,
                "dynamics_by_run": {run: f"{path}/losses.npz" for run, path in zip(figure6_runs(), input.dynamics)},
                "selector": figure6_runs()[0] if figure6_runs() else None,
                "ratio": (config["runs"][figure6_runs()[0]]["ratio"] if figure6_runs() else None),
                "ratio_runs": ratio_runs(),
                "results_csv": input.results,
                "delta": table_delta(),
                "table_stem": (str(Path(output.figure5_table[0]).with_suffix("")) if output.figure5_table else None),
                "mapping": config.get("tables", {}).get("figure5_columns", {}),
                "lower_is_better": LOSS_TASKS,
            }
        ),
    shell:
        "python -m slm figures --spec {params.spec:q} --out {params.out} > {log} 2>&1"


rule paper_table:
    input:
        results=rules.tables.output.results_csv,
    output:
        md=report("results/tables/paper.md", caption="../report/paper.rst", category="Tables"),
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
                "table": config.get("tables", {}).get("paper_table", "table1_math_fewshot_cot"),
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
        TABLE3,
        TABLE2,
