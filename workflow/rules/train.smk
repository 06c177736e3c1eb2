rule train:
    input:
        model=lambda w: local_inputs(PLAN.run_base(PLAN.run_of(w.run))),
        data=packed("corpus"),
        scores=run_scores,
        reference=lambda w: ([] if run_method(w) == "clm" else local_inputs(PLAN.reference_model())),
    output:
        final=directory("results/models/{run}/final"),
        checkpoints=[directory(f"results/models/{{run}}/checkpoints/tokens-{n}") for n in PLAN.checkpoints],
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    wildcard_constraints:
        run=one_of(PLAN.replicate_index),
    conda:
        "../../envs/slm.yaml"
    threads: rule_threads("train")
    resources:
        **rule_resources("train"),
    params:
        launch=launch_command(stage_resources(config, "train")),
        options=lambda w: train_options(config["training"], **PLAN.train_fields(w.run)),
        paths=lambda w, input, output: spec(
            {
                "data": list(input.data),
                "scores": list(input.scores) or None,
                "reference_model": (None if run_method(w) == "clm" else PLAN.reference_model()),
                "out_dir": output.final,
                "checkpoint_dir": f"results/models/{w.run}/checkpoints",
                "state_dir": f"results/train_state/{w.run}",
                "name": w.run,
                "role": "run",
            }
        ),
    shell:
        "{params.launch} -m slm train --options {params.options:q} --paths {params.paths:q} --threads {threads}"
        " > {log} 2>&1"
