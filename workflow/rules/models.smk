if "init" in config["base_model"]:

    rule init_base:
        input:
            tokenizer=tokenizer_dir(),
        output:
            directory("results/models/base-init"),
        log:
            "logs/init_base.log",
        conda:
            "../../envs/slm.yaml"
        params:
            spec=spec(
                {
                    **config["base_model"]["init"],
                    "max_position_embeddings": config["sequence_length"] * 2,
                }
            ),
            seed=config["seed"],
        shell:
            "python -m slm init-model --tokenizer {input.tokenizer} --spec {params.spec:q} --seed {params.seed}"
            " --out {output} > {log} 2>&1"


if "pretrain" in config["base_model"]:

    rule pretrain_base:
        input:
            model="results/models/base-init",
            data=packed("pretrain"),
        output:
            directory("results/models/base"),
        log:
            "logs/train/base.log",
        benchmark:
            "benchmarks/train/base.tsv"
        conda:
            "../../envs/slm.yaml"
        threads: workflow.cores
        resources:
            mem_mb=4000,
            gpu=GPUS,
        params:
            options=train_options(config["base_model"]["pretrain"]),
            paths=lambda w, input, output: spec(
                {
                    "init_model": input.model,
                    "data": list(input.data),
                    "out_dir": output[0],
                    "state_dir": "results/train_state/base",
                }
            ),
        shell:
            "python -m slm train --options {params.options:q} --paths {params.paths:q} --threads {threads} > {log} 2>&1"


if not REFERENCE_GIVEN:

    rule train_reference:
        input:
            model=local_inputs(reference_init()),
            data=packed("high_quality"),
        output:
            directory("results/models/reference/final"),
        log:
            "logs/train/reference.log",
        benchmark:
            "benchmarks/train/reference.tsv"
        conda:
            "../../envs/slm.yaml"
        threads: workflow.cores
        resources:
            mem_mb=4000,
            gpu=GPUS,
        params:
            options=train_options(
                {k: v for k, v in config["reference"].items() if k != "init_model"},
                init_model=reference_init(),
            ),
            paths=lambda w, input, output: spec(
                {
                    "data": list(input.data),
                    "out_dir": output[0],
                    "state_dir": "results/train_state/reference",
                }
            ),
        shell:
            "python -m slm train --options {params.options:q} --paths {params.paths:q} --threads {threads} > {log} 2>&1"


# Extra base models (base_models): results/models/base-{name}-init, pretrained into
# results/models/base-{name}; a run starts from one with runs.<run>.base_model.
INIT_BASES = [name for name, base in BASE_MODELS.items() if "init" in base]
PRETRAIN_BASES = [name for name in INIT_BASES if "pretrain" in BASE_MODELS[name]]

if INIT_BASES:

    rule init_extra_base:
        input:
            tokenizer=tokenizer_dir(),
        output:
            directory("results/models/base-{name}-init"),
        log:
            "logs/init_base-{name}.log",
        wildcard_constraints:
            name=one_of(INIT_BASES),
        conda:
            "../../envs/slm.yaml"
        params:
            spec=lambda w: spec(
                {
                    **BASE_MODELS[w.name]["init"],
                    "max_position_embeddings": config["sequence_length"] * 2,
                }
            ),
            seed=config["seed"],
        shell:
            "python -m slm init-model --tokenizer {input.tokenizer} --spec {params.spec:q} --seed {params.seed}"
            " --out {output} > {log} 2>&1"


if PRETRAIN_BASES:

    rule pretrain_extra_base:
        input:
            model="results/models/base-{name}-init",
            data=packed("pretrain"),
        output:
            directory("results/models/base-{name}"),
        log:
            "logs/train/base-{name}.log",
        benchmark:
            "benchmarks/train/base-{name}.tsv"
        wildcard_constraints:
            name=one_of(PRETRAIN_BASES),
        conda:
            "../../envs/slm.yaml"
        threads: workflow.cores
        resources:
            mem_mb=4000,
            gpu=GPUS,
        params:
            options=lambda w: train_options(BASE_MODELS[w.name]["pretrain"]),
            paths=lambda w, input, output: spec(
                {
                    "init_model": input.model,
                    "data": list(input.data),
                    "out_dir": output[0],
                    "state_dir": f"results/train_state/base-{w.name}",
                }
            ),
        shell:
            "python -m slm train --options {params.options:q} --paths {params.paths:q} --threads {threads} > {log} 2>&1"
