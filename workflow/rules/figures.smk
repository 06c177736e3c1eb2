rule figures:
    input:
        checkpoints=rules.tables.output.checkpoints_csv,
        figure5=[path for path in PLAN.figure5_table if path.endswith(".csv")],
        dynamics=expand("results/dynamics/{run}", run=PLAN.figure6_runs),
    output:
        figures=[
            report(
                f"results/figures/{name}",
                caption="../report/figures.rst",
                category="Figures",
            )
            for name in PLAN.figures
        ],
        figure6_data=(["results/figures/figure6.csv"] if "figure6.png" in PLAN.figures else []),
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
                **PLAN.figures_spec(input.dynamics, input.figure5[0] if input.figure5 else None),
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
        spec=lambda w, input: spec(PLAN.paper_table_spec(input.results)),
    shell:
        "python -m slm paper-table --spec {params.spec:q} --out {params.out} > {log} 2>&1"


rule paper_miniature:
    input:
        rules.tables.output,
        rules.paper_table.output,
        expand("results/figures/{name}", name=PLAN.figures),
        expand("results/dynamics/{run}", run=PLAN.dynamics_runs),
        PLAN.table3,
        PLAN.table2,
