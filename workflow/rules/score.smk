rule score:
    input:
        model=local_inputs(PLAN.reference_model()),
        shard="results/data/packed/{dataset}/shard-{shard}",
    output:
        directory("results/scores/{dataset}/shard-{shard}"),
    log:
        "logs/score/{dataset}-{shard}.log",
    benchmark:
        "benchmarks/score/{dataset}-{shard}.tsv"
    wildcard_constraints:
        dataset="corpus|validation",
        shard=r"\d+",
    conda:
        "../../envs/slm.yaml"
    threads: workflow.cores
    resources:
        **rule_resources("score"),
    params:
        model=lambda w, input: input.model[0] if input.model else PLAN.reference_model(),
        batch_size=config["scoring"]["batch_size"],
        device=config["device"],
        precision=config["precision"],
    shell:
        "OMP_NUM_THREADS={threads} python -m slm score --model {params.model} --shard {input.shard} --out {output}"
        " --batch-size {params.batch_size} --device {params.device} --precision {params.precision}"
        " > {log} 2>&1"
