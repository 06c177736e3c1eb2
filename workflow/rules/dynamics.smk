rule dynamics:
    input:
        models=lambda w: local_inputs(*PLAN.trajectory(w.run)),
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
        run=one_of(PLAN.runs),
    conda:
        "../../envs/slm.yaml"
    threads: workflow.cores
    resources:
        **rule_resources("dynamics"),
    params:
        models=lambda w: PLAN.trajectory(w.run),
        tokenizer=lambda w, input: input.tokenizer or tokenizer_dir(),
        max_sequences=config["dynamics"]["max_sequences"],
        threshold=config["dynamics"]["threshold"],
        batch_size=config["scoring"]["batch_size"],
        selection=lambda w: (
            "--ratio {} --ratio-of {}".format(*PLAN.dynamics_ratio(w.run)) if PLAN.dynamics_ratio(w.run) else ""
        ),
        seed=config["seed"],
        device=config["device"],
        precision=config["precision"],
    shell:
        "OMP_NUM_THREADS={threads} python -m slm dynamics --run {wildcards.run} --models {params.models}"
        " --shard {input.shard} --reference-scores {input.scores} --tokenizer {params.tokenizer}"
        " --max-sequences {params.max_sequences} --threshold {params.threshold} --batch-size {params.batch_size}"
        " {params.selection} --seed {params.seed} --device {params.device} --precision {params.precision}"
        " --out {output} > {log} 2>&1"
