if "init" in config["base_model"]:

    rule init_base:
        input:
            tokenizer=tokenizer_dir(),
        output:
            directory("results/models/base-init"),
        params:
            spec=spec(
                {
                    **config["base_model"]["init"],
                    "max_position_embeddings": config["sequence_length"] * 2,
                }
            ),
            seed=config["seed"],
        log:
            "logs/init_base.log",
        conda:
            "../../envs/slm.yaml"
        shell:
            "{SLM} init-model --tokenizer {input.tokenizer} --spec {params.spec:q} --seed {params.seed}"
            " --out {output} > {log} 2>&1"


if "pretrain" in config["base_model"]:

    rule pretrain_base:
        input:
            model="results/models/base-init",
            data=packed("pretrain"),
        output:
            directory("results/models/base"),
        params:
            spec=lambda w, input, output, threads: train_spec(
                config["base_model"]["pretrain"],
                threads,
                init_model=input.model,
                data=list(input.data),
                out_dir=output[0],
                state_dir="results/train_state/base",
            ),
        threads: workflow.cores
        resources:
            mem_mb=4000,
        log:
            "logs/train/base.log",
        benchmark:
            "benchmarks/train/base.tsv"
        conda:
            "../../envs/slm.yaml"
        shell:
            "{SLM} train --spec {params.spec:q} > {log} 2>&1"


rule train_reference:
    input:
        model=local_inputs(base_model()),
        data=packed("high_quality"),
    output:
        directory("results/models/reference/final"),
    params:
        spec=lambda w, input, output, threads: train_spec(
            config["reference"],
            threads,
            init_model=base_model(),
            data=list(input.data),
            out_dir=output[0],
            state_dir="results/train_state/reference",
        ),
    threads: workflow.cores
    resources:
        mem_mb=4000,
    log:
        "logs/train/reference.log",
    benchmark:
        "benchmarks/train/reference.tsv"
    conda:
        "../../envs/slm.yaml"
    shell:
        "{SLM} train --spec {params.spec:q} > {log} 2>&1"
