if GENERATED:

    rule generate_data:
        output:
            hq=f"{RAW}/hq.jsonl",
            pretrain=f"{RAW}/pretrain.jsonl",
            validation=f"{RAW}/validation.jsonl",
            tir=f"{RAW}/tir.jsonl",
            corpus=[f"{RAW}/corpus/shard-{i:03d}.jsonl" for i in range(config["data"]["generator"]["corpus_shards"])],
            eval=expand(
                f"{RAW}/eval/{{name}}.jsonl",
                name=["arith_gen", "arith_fewshot", "arith_mc", "math_ppl"],
            ),
            manifest=f"{RAW}/manifest.json",
        log:
            "logs/generate_data.log",
        benchmark:
            "benchmarks/generate_data.tsv"
        conda:
            "../../envs/slm.yaml"
        params:
            spec=spec({"seed": config["seed"], **config["data"]["generator"]}),
            out=lambda w, output: Path(output.manifest).parent,
        shell:
            "python -m slm generate --spec {params.spec:q} --out {params.out} > {log} 2>&1"

    rule eval_tasks:
        input:
            rules.generate_data.output.eval,
        output:
            directory("results/eval/tasks"),
        log:
            "logs/eval_tasks.log",
        conda:
            "../../envs/slm.yaml"
        params:
            spec=spec(config["evaluation"].get("local_tasks", {})),
            eval_dir=lambda w, input: Path(input[0]).parent,
        shell:
            "python -m slm eval-tasks --eval-dir {params.eval_dir} --spec {params.spec:q} --out {output} > {log} 2>&1"


if "train" in config["tokenizer"]:

    rule train_tokenizer:
        input:
            sorted(
                {
                    f
                    for name in ("high_quality", "corpus", "pretrain")
                    if name in config["data"]
                    for s in shard_ids(name)
                    for f in raw_files(name, s)
                }
            ),
        output:
            directory("results/data/tokenizer"),
        log:
            "logs/train_tokenizer.log",
        benchmark:
            "benchmarks/train_tokenizer.tsv"
        conda:
            "../../envs/slm.yaml"
        params:
            vocab_size=config["tokenizer"]["train"]["vocab_size"],
        shell:
            "python -m slm tokenizer --files {input} --vocab-size {params.vocab_size} --out {output} > {log} 2>&1"


rule prepare:
    input:
        files=lambda w: raw_files(w.dataset, w.shard),
        tokenizer=local_inputs(tokenizer_dir()),
    output:
        directory("results/data/packed/{dataset}/shard-{shard}"),
    log:
        "logs/prepare/{dataset}-{shard}.log",
    benchmark:
        "benchmarks/prepare/{dataset}-{shard}.tsv"
    wildcard_constraints:
        dataset="high_quality|corpus|pretrain|validation|tir",
        shard=r"\d+",
    conda:
        "../../envs/slm.yaml"
    params:
        source=lambda w: spec(prepare_source(w.dataset)),
        num_shards=lambda w: shard_arguments(config, w.dataset, w.shard)[1],
        shard=lambda w: shard_arguments(config, w.dataset, w.shard)[0],
        tokenizer=lambda w, input: input.tokenizer or tokenizer_dir(),
        seq_len=config["sequence_length"],
    shell:
        "python -m slm prepare --source {params.source:q} --files {input.files} --shard {params.shard}"
        " --num-shards {params.num_shards} --tokenizer {params.tokenizer} --seq-len {params.seq_len}"
        " --out {output} > {log} 2>&1"
