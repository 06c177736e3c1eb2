rule tables:
    input:
        evals=PLAN.table_evals(),
        models=local_inputs(PLAN.reference_model()) + [PLAN.model_dir(run) for run in PLAN.runs],
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
        # Figure 5's table (SLM minus CLM per task), when there is an SLM/CLM pair
        figure5=[
            (report(path, caption="../report/figure5.rst", category="Tables") if path.endswith(".md") else path)
            for path in PLAN.figure5_table
        ],
    log:
        "logs/tables.log",
    conda:
        "../../envs/slm.yaml"
    params:
        out=lambda w, output: Path(output.results_md).parent,
        spec=spec(PLAN.tables_spec()),
    shell:
        "python -m slm tables --spec {params.spec:q} --out {params.out} > {log} 2>&1"


if PLAN.table3:

    # Table 3 (weak-to-strong): the runs that start from an entry of base_models, beside the paper's
    # Llama-2-7B CT / SLM rows (TinyLlama reference).
    rule table3:
        input:
            results=rules.tables.output.results_csv,
            models=list(PLAN.table3_parameters().values()),
        output:
            md=report(PLAN.table3[0], caption="../report/table3.rst", category="Tables"),
            csv=PLAN.table3[1],
            tex=PLAN.table3[2],
        log:
            "logs/table3.log",
        conda:
            "../../envs/slm.yaml"
        params:
            out=lambda w, output: Path(output.md).with_suffix(""),
            spec=lambda w, input: spec(PLAN.table3_spec(input.results)),
        shell:
            "python -m slm paper-table --spec {params.spec:q} --out {params.out} > {log} 2>&1"


rule weak_to_strong:
    input:
        PLAN.table3,
