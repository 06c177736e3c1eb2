def run_scores(wildcards):
    if config["runs"][wildcards.run]["method"] == "clm":
        return []
    return [f"results/scores/shard-{s}" for s in shard_ids("corpus")]


def run_fields(run):
    """The selection settings of a run; CLM is SLM with ratio 1.0."""
    spec = config["runs"][run]
    if spec["method"] == "clm":
        return {"ratio": 1.0}
    return {k: spec[k] for k in ("ratio", "unit", "score_fn") if k in spec}


rule train:
    input:
        model=local_inputs(base_model()),
        data=packed("corpus"),
        scores=run_scores,
        reference=lambda w: (
            [] if config["runs"][w.run]["method"] == "clm" else rules.train_reference.output
        ),
    output:
        final=directory("results/models/{run}/final"),
        checkpoints=[
            directory(f"results/models/{{run}}/checkpoints/tokens-{n}")
            for n in CHECKPOINTS
        ],
    params:
        spec=lambda w, input, output, threads: train_spec(
            config["training"],
            threads,
            init_model=base_model(),
            data=list(input.data),
            scores=list(input.scores) or None,
            reference_model=input.reference[0] if input.reference else None,
            out_dir=output.final,
            checkpoint_dir=f"results/models/{w.run}/checkpoints",
            state_dir=f"results/train_state/{w.run}",
            **run_fields(w.run),
        ),
    wildcard_constraints:
        run="|".join(RUNS),
    threads: workflow.cores
    resources:
        mem_mb=4000,
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    conda:
        "../../envs/slm.yaml"
    shell:
        "{SLM} train --spec {params.spec:q} > {log} 2>&1"
