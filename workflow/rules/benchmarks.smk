# Measurements, run on request and not part of the default target: `snakemake benchmarks`. The
# throughput of scoring and training at each world size of benchmarks.throughput (slm.benchmark), the
# memory of the per-token loss, and the bf16 numeric paths (slm.numerics), each with the options of
# its block of the config's benchmarks section. Each job takes every core of a local run (threads of
# the benchmarks stage), so no two measurements share the machine.
BENCHMARKS = config["benchmarks"]
WORLD_SIZES = [str(n) for n in BENCHMARKS["throughput"]["world_sizes"]]


rule benchmark_throughput:
    input:
        tokenizer=local_inputs(tokenizer_dir()),
        files=lambda w: corpus_files(),
    output:
        "results/benchmarks/throughput/world-{n}.json",
    log:
        "logs/benchmarks/throughput/world-{n}.log",
    wildcard_constraints:
        n=one_of(WORLD_SIZES),
    conda:
        "../../envs/slm.yaml"
    threads: rule_threads("benchmarks")
    resources:
        **rule_resources("benchmarks", ranks=lambda w: int(w.n)),
    params:
        launch=lambda w: local_launcher(int(w.n)),
        threads_per_rank=lambda w, threads: max(1, threads // int(w.n)),
        tokenizer=lambda w, input: input.tokenizer or tokenizer_dir(),
        spec=spec({k: v for k, v in BENCHMARKS["throughput"].items() if k != "world_sizes"}),
    shell:
        "OMP_NUM_THREADS={params.threads_per_rank} {params.launch} -m slm benchmark --tokenizer {params.tokenizer}"
        " --files {input.files} --spec {params.spec:q} --out {output} > {log} 2>&1"


rule benchmark_table:
    input:
        expand("results/benchmarks/throughput/world-{n}.json", n=WORLD_SIZES),
    output:
        md="results/benchmarks/throughput.md",
        csv="results/benchmarks/throughput.csv",
    log:
        "logs/benchmarks/throughput_table.log",
    conda:
        "../../envs/slm.yaml"
    shell:
        "python -m slm benchmark-table --results {input} --out-md {output.md} --out-csv {output.csv} > {log} 2>&1"


rule loss_memory:
    output:
        json="results/benchmarks/loss_memory.json",
        md="results/benchmarks/loss_memory.md",
    log:
        "logs/benchmarks/loss_memory.log",
    conda:
        "../../envs/slm.yaml"
    threads: rule_threads("benchmarks")
    resources:
        **rule_resources("benchmarks"),
    params:
        spec=spec(BENCHMARKS["loss_memory"]),
    shell:
        "OMP_NUM_THREADS={threads} python -m slm loss-memory --spec {params.spec:q} --out {output.json}"
        " --out-md {output.md} > {log} 2>&1"


rule numerics:
    input:
        current=local_inputs(PLAN.base_model()),
        reference=local_inputs(PLAN.reference_model()),
        shard=packed("corpus")[0],
    output:
        json="results/benchmarks/numerics.json",
        md="results/benchmarks/numerics.md",
    log:
        "logs/benchmarks/numerics.log",
    conda:
        "../../envs/slm.yaml"
    threads: rule_threads("benchmarks")
    resources:
        **rule_resources("benchmarks"),
    params:
        current=lambda w, input: input.current or PLAN.base_model(),
        reference=lambda w, input: input.reference or PLAN.reference_model(),
        spec=spec(BENCHMARKS["numerics"]),
    shell:
        "OMP_NUM_THREADS={threads} python -m slm numerics --current {params.current} --reference {params.reference}"
        " --shard {input.shard} --spec {params.spec:q} --out {output.json} --out-md {output.md} > {log} 2>&1"


rule benchmarks:
    input:
        rules.benchmark_table.output,
        rules.loss_memory.output,
        rules.numerics.output,
