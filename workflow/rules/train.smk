rule train:
    input:
        model=lambda w: local_inputs(PLAN.run_base(w.run)),
        data=packed("corpus"),
        scores=run_scores,
        reference=lambda w: ([] if config["runs"][w.run]["method"] == "clm" else local_inputs(PLAN.reference_model())),
    output:
        final=directory("results/models/{run}/final"),
        checkpoints=[directory(f"results/models/{{run}}/checkpoints/tokens-{n}") for n in PLAN.checkpoints],
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    wildcard_constraints:
        run=one_of(PLAN.runs),
    conda:
        "../../envs/slm.yaml"
    threads: workflow.cores
    resources:
        **rule_resources("train"),
    params:
        options=lambda w: train_options(
            config["training"], init_model=PLAN.run_base(w.run), **PLAN.selection_fields(w.run)
        ),
        paths=lambda w, input, output: spec(
            {
                "data": list(input.data),
                "scores": list(input.scores) or None,
                "reference_model": (None if config["runs"][w.run]["method"] == "clm" else PLAN.reference_model()),
                "out_dir": output.final,
                "checkpoint_dir": f"results/models/{w.run}/checkpoints",
                "state_dir": f"results/train_state/{w.run}",
                "name": w.run,
                "role": "run",
            }
        ),
    shell:
        "python -m slm train --options {params.options:q} --paths {params.paths:q} --threads {threads} > {log} 2>&1"
