rule dynamics:
    input:
        models=lambda w: local_inputs(*trajectory(w.run)),
        shard=validation_shard(),
        scores=validation_scores(),
        tokenizer=local_inputs(tokenizer_dir()),
    output:
        report(
            directory("results/dynamics/{run}"),
            patterns=["{name}.png", "{name}.html"],
            caption="../report/dynamics.rst",
            category="Token dynamics",
            subcategory="{run}",
        ),
    log:
        "logs/dynamics/{run}.log",
    benchmark:
        "benchmarks/dynamics/{run}.tsv"
    wildcard_constraints:
        run="|".join(RUNS),
    conda:
        "../../envs/slm.yaml"
    threads: workflow.cores
    resources:
        **rule_resources("dynamics"),
    params:
        models=lambda w: trajectory(w.run),
        tokenizer=lambda w, input: input.tokenizer or tokenizer_dir(),
        max_sequences=config.get("dynamics", {}).get("max_sequences", 256),
        threshold=config.get("dynamics", {}).get("threshold", 0.2),
        ratio=f"--ratio {selection_ratio()}" if selection_ratio() else "",
        seed=config["seed"],
        device=config["device"],
        precision=config["precision"],
    shell:
        "OMP_NUM_THREADS={threads} python -m slm dynamics --models {params.models} --shard {input.shard}"
        " --reference-scores {input.scores} --tokenizer {params.tokenizer}"
        " --max-sequences {params.max_sequences} --threshold {params.threshold} {params.ratio}"
        " --seed {params.seed} --device {params.device} --precision {params.precision} --out {output} > {log} 2>&1"
