# Base models made here: results/models/base (base_model) and results/models/base-{name}
# (base_models entries), each initialised into {base}-init and, with a pretrain block, pretrained.
INIT_BASES = [stem for stem in PLAN.base_stems if "init" in PLAN.base_spec(stem)]
PRETRAIN_BASES = [stem for stem in INIT_BASES if "pretrain" in PLAN.base_spec(stem)]

if INIT_BASES:

    rule init_base:
        input:
            tokenizer=tokenizer_dir(),
        output:
            directory("results/models/{base}-init"),
        log:
            "logs/init_{base}.log",
        wildcard_constraints:
            base=one_of(INIT_BASES),
        conda:
            "../../envs/slm.yaml"
        params:
            spec=lambda w: spec(
                {
                    **PLAN.base_spec(w.base)["init"],
                    # the length it is trained on: nothing reads positions it never learned
                    "max_position_embeddings": config["sequence_length"],
                }
            ),
            seed=config["seed"],
        shell:
            "python -m slm init-model --tokenizer {input.tokenizer} --spec {params.spec:q} --seed {params.seed}"
            " --out {output} > {log} 2>&1"


if PRETRAIN_BASES:

    rule pretrain_base:
        input:
            model="results/models/{base}-init",
            data=packed("pretrain"),
        output:
            directory("results/models/{base}"),
        log:
            "logs/train/{base}.log",
        benchmark:
            "benchmarks/train/{base}.tsv"
        wildcard_constraints:
            base=one_of(PRETRAIN_BASES),
        conda:
            "../../envs/slm.yaml"
        threads: rule_threads("pretrain_base")
        resources:
            **rule_resources("pretrain_base"),
        params:
            launch=launch_command(stage_resources(config, "pretrain_base")),
            options=lambda w: train_options(PLAN.base_spec(w.base)["pretrain"]),
            paths=lambda w, input, output: spec(
                {
                    "init_model": input.model,
                    "data": list(input.data),
                    "out_dir": output[0],
                    "state_dir": f"results/train_state/{w.base}",
                    "name": w.base,
                    "role": "base",
                }
            ),
        shell:
            "{params.launch} -m slm train --options {params.options:q} --paths {params.paths:q} --threads {threads}"
            " > {log} 2>&1"


if not PLAN.reference_given:

    rule train_reference:
        input:
            model=local_inputs(PLAN.reference_init()),
            data=packed("high_quality"),
        output:
            directory("results/models/reference/final"),
        log:
            "logs/train/reference.log",
        benchmark:
            "benchmarks/train/reference.tsv"
        conda:
            "../../envs/slm.yaml"
        threads: rule_threads("train_reference")
        resources:
            **rule_resources("train_reference"),
        params:
            launch=launch_command(stage_resources(config, "train_reference")),
            options=train_options(
                {k: v for k, v in config["reference"].items() if k != "init_model"},
                init_model=PLAN.reference_init(),
            ),
            paths=lambda w, input, output: spec(
                {
                    "data": list(input.data),
                    "out_dir": output[0],
                    "state_dir": "results/train_state/reference",
                    "name": "reference",
                    "role": "reference",
                }
            ),
        shell:
            "{params.launch} -m slm train --options {params.options:q} --paths {params.paths:q} --threads {threads}"
            " > {log} 2>&1"
