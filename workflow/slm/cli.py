"""Command-line entry points, one per pipeline stage: ``python -m slm <stage> ...``.

Each Snakemake rule calls exactly one of these. Structured options travel as one JSON ``--spec``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path

from slm.progress import quiet_library_bars


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from err


def cmd_generate(args) -> None:
    from slm.data.generate import generate_all

    generate_all(Path(args.out), **args.spec)


def cmd_generate_harder(args) -> None:
    from slm.data.generate import generate_harder_set

    spec = args.spec
    print(generate_harder_set(Path(args.out), spec["name"], spec["harder"], **spec["generator"]))


def cmd_tokenizer(args) -> None:
    from slm.data.tokenizer import train_tokenizer

    train_tokenizer([Path(f) for f in args.files], Path(args.out), vocab_size=args.vocab_size)


def cmd_prepare(args) -> None:
    from transformers import AutoTokenizer

    from slm.data.packed import labelled_documents, pack_documents
    from slm.data.sources import iter_documents

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    source = {**args.source, "files": args.files, "shard": args.shard}
    documents, kind_names = labelled_documents(
        iter_documents(args.source, files=args.files, shard=args.shard, num_shards=args.num_shards),
        args.source.get("spans", "source"),
        source,
    )
    index = pack_documents(
        documents, tokenizer, Path(args.out), seq_len=args.seq_len, source=source, kind_names=kind_names
    )
    logging.info(
        "packed %d documents into %d sequences of %d tokens (%d tail tokens dropped) in %s",
        index["n_documents"],
        index["n_sequences"],
        index["seq_len"],
        index["dropped_tail_tokens"],
        args.out,
    )


def cmd_init_model(args) -> None:
    from slm.model import init_model

    init_model(args.tokenizer, args.out, seed=args.seed, **args.spec)


def cmd_train(args) -> None:
    from slm.train import train

    stats = train({**args.options, **args.paths, "threads": args.threads, "tracking": args.tracking})
    logging.info("done: %s", json.dumps({k: stats[k] for k in ("steps", "tokens_seen", "tokens_selected")}))


def cmd_release(args) -> None:
    from slm.model_card import release

    release(args.model, args.evaluation, args.out)
    logging.info("released %s with its evaluation results (%s) in %s", args.model, args.evaluation, args.out)


def cmd_score(args) -> None:
    from slm.score import score_shard

    score_shard(
        args.model, args.shard, args.out, batch_size=args.batch_size, device=args.device, precision=args.precision
    )


def cmd_eval_tasks(args) -> None:
    from slm.data.eval_tasks import write_task_yamls

    write_task_yamls(Path(args.eval_dir), Path(args.out), **args.spec)


def cmd_evaluate(args) -> None:
    from slm.evaluate import evaluate_model
    from slm.model import resolve_device

    options = {**args.spec, "device": str(resolve_device(args.spec.get("device", "auto")))}
    include_path = Path(args.include_path) if args.include_path else None
    evaluate_model(args.model, args.tasks, Path(args.out), include_path=include_path, **options)


def cmd_tables(args) -> None:
    from slm.tables import checkpoints_table, gains_table, measure, results_table, selection_table, speedup_table

    spec = args.spec
    out = Path(args.out)
    measured = measure(spec["models"], spec["task_metrics"], lower_is_better=spec["lower_is_better"])
    delta = tuple(spec["delta"]) if spec.get("delta") else None
    results_table(measured, out / "results.md", out / "results.csv", delta=delta, out_intervals=out / "intervals.csv")
    checkpoints = checkpoints_table(spec["runs"], spec["task_metrics"], out / "checkpoints.csv")
    selection_table(spec["selection"], out / "selection.md", out / "selection.csv")
    if delta is not None:
        gains_table(measured, delta, out / "figure5", mapping=spec["figure5_mapping"])
        if measured.accuracy_tasks:
            start = measured.rows[spec["speedup_start"]]
            speedup_table(checkpoints, start, delta, measured.accuracy_tasks, out / "speedup.md", out / "speedup.csv")
    print((out / "results.md").read_text(encoding="utf-8"))  # the log shows the values with their intervals


def cmd_dynamics(args) -> None:
    from slm.dynamics import checkpoint_losses, dynamics_summary, html_view, plot_dynamics
    from slm.io import atomic_path

    with atomic_path(args.out) as out:
        out.mkdir()
        checkpoint_losses(
            args.models,
            args.shard,
            out / "losses.npz",
            max_sequences=args.max_sequences,
            seed=args.seed,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            reference_scores=args.reference_scores,
        )
        dynamics_summary(out / "losses.npz", out / "shares.csv", out / "curves.csv", threshold=args.threshold)
        plot_dynamics(out / "curves.csv", out / "figure3.png")
        html_view(
            out / "losses.npz",
            out / "tokens.html",
            tokenizer_dir=args.tokenizer,
            ratio=args.ratio,
            ratio_of=args.ratio_of,
            threshold=args.threshold,
            run=args.run,
            source=Path(args.out) / "losses.npz",  # the final path, not the temporary one
        )


def cmd_figures(args) -> None:
    from slm.figures import make_figures
    from slm.io import atomic_write_json

    spec = dict(args.spec)  # the other keys are make_figures' keyword arguments
    captions = make_figures(spec.pop("checkpoints_csv"), Path(args.out), **spec)
    atomic_write_json(Path(args.out) / "captions.json", captions)


def cmd_paper_table(args) -> None:
    import pandas as pd

    from slm.formatting import human_tokens
    from slm.reported import measured_rows, side_by_side, usable_mapping

    spec = args.spec
    measured = pd.read_csv(spec["results_csv"], index_col=0)
    mapping, provenance = spec.get("mapping", {}), dict(spec["provenance"])
    if spec.get("rows"):  # only these rows (e.g. Table 3: the weak-to-strong runs'), see measured_rows
        measured, counts = measured_rows(
            measured, spec["rows"], values=spec.get("values"), parameters=spec.get("parameters")
        )
        provenance.update({f"parameters of {name}": human_tokens(n) for name, n in counts.items()})
    if spec.get("usable_mapping"):  # drop the mapping entries whose paper column the table lacks
        mapping = usable_mapping(mapping, spec["table"])
    out = Path(args.out)
    side_by_side(
        measured,
        spec["table"],
        mapping,
        out.with_suffix(".md"),
        out.with_suffix(".csv"),
        provenance=provenance,
        out_tex=out.with_suffix(".tex"),
    )


def cmd_evaluate_tir(args) -> None:
    from slm.tir import evaluate_tir

    evaluate_tir(args.model, args.problems, args.fewshot, args.out, **args.spec)


def cmd_tir_table(args) -> None:
    from slm.tir import tir_table

    spec = args.spec
    for table in spec["tables"]:
        provenance = {**spec.get("provenance", {}), "problems": table["problems"]}
        shown = tir_table(
            table["evals"], table["out"], delta=spec.get("delta"), provenance=provenance, task=table["task"]
        )
        print(shown.to_string())


def cmd_tir_curve(args) -> None:
    from slm.tir import tir_curve

    print(tir_curve(args.spec["points"], args.out).to_string())


def cmd_selection_roles(args) -> None:
    from slm.roles import role_table

    print(role_table(args.dynamics, args.tokenizer, args.ratio, args.out).to_string())


def _report(args, result: dict, text: str) -> None:
    """A measurement's result: its Markdown in the log, as JSON at ``--out`` and as Markdown at ``--out-md``."""
    from slm.io import atomic_write_json, atomic_write_text

    print(text)
    if args.out:
        atomic_write_json(Path(args.out), result)
    if args.out_md:
        atomic_write_text(Path(args.out_md), text + "\n")


def cmd_benchmark(args) -> None:
    from slm.benchmark import benchmark, format_result

    result = benchmark(args.tokenizer, args.files, **args.spec)
    if result is not None:  # rank 0 (one process, or under torchrun)
        _report(args, result, format_result(result))


def cmd_benchmark_table(args) -> None:
    from slm.benchmark import throughput_table

    throughput_table(args.results, args.out_md, args.out_csv)
    print(Path(args.out_md).read_text(encoding="utf-8"))


def cmd_loss_memory(args) -> None:
    from slm.benchmark import format_loss_memory, loss_memory

    result = loss_memory(**args.spec)
    _report(args, result, format_loss_memory(result))


def cmd_numerics(args) -> None:
    from slm.numerics import format_numerics, numerics

    result = numerics(args.current, args.reference, args.shard, **args.spec)
    _report(args, result, format_numerics(result))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        return p

    p = add("generate", cmd_generate, "generate the synthetic offline data")
    p.add_argument("--spec", type=_json, required=True)
    p.add_argument("--out", required=True)

    p = add("generate-harder", cmd_generate_harder, "a harder held-out problem set (tool_integrated.harder_sets)")
    p.add_argument("--spec", type=_json, required=True, help="as Plan.harder_spec: name, harder (bounds), generator")
    p.add_argument("--out", required=True, help="the problems' jsonl")

    p = add("tokenizer", cmd_tokenizer, "train a byte-level BPE tokenizer")
    p.add_argument("--files", nargs="+", required=True)
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--out", required=True)

    p = add("prepare", cmd_prepare, "tokenize and pack one shard into memory-mapped arrays")
    p.add_argument("--source", type=_json, required=True)
    p.add_argument("--files", nargs="*", default=[])
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--out", required=True)

    p = add("init-model", cmd_init_model, "initialise a small Llama")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--spec", type=_json, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)

    p = add("train", cmd_train, "train (base pretraining, reference fine-tuning, SLM or CLM)")
    p.add_argument("--options", type=_json, required=True, help="hyperparameters and selection settings")
    p.add_argument("--paths", type=_json, required=True, help="model, data, score and output paths")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--tracking",
        type=_json,
        default=os.environ.get("SLM_TRACKING"),
        help="TensorBoard / W&B settings as JSON (slm.tracking; default: $SLM_TRACKING, which the workflow sets)",
    )

    p = add("release", cmd_release, "a publishable copy of a model directory, its card completed with results")
    p.add_argument("--model", required=True)
    p.add_argument("--evaluation", required=True, help="the model's evaluation JSON (lm-eval or tool-integrated)")
    p.add_argument("--out", required=True)

    p = add("score", cmd_score, "score a packed shard with the reference model")
    p.add_argument("--model", required=True)
    p.add_argument("--shard", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])

    p = add("eval-tasks", cmd_eval_tasks, "write lm-eval task YAMLs for the generated held-out sets")
    p.add_argument("--eval-dir", required=True)
    p.add_argument("--spec", type=_json, default={})
    p.add_argument("--out", required=True)

    p = add("evaluate", cmd_evaluate, "run lm-eval on one model")
    p.add_argument("--model", required=True)
    p.add_argument("--tasks", nargs="+", required=True)
    p.add_argument("--include-path")
    p.add_argument("--spec", type=_json, default={})
    p.add_argument("--out", required=True)

    p = add("dynamics", cmd_dynamics, "token dynamics across checkpoints (Figure 3, coloured text)")
    p.add_argument("--run", required=True, help="the run whose trajectory this is (named in the view)")
    p.add_argument("--models", nargs="+", required=True, help="model directories in training order")
    p.add_argument("--shard", required=True)
    p.add_argument("--reference-scores")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--max-sequences", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", required=True, choices=["fp32", "bf16"])
    p.add_argument("--threshold", type=float, required=True)
    p.add_argument("--ratio", type=float, help="mark the top ratio of tokens by excess loss at the final model")
    p.add_argument("--ratio-of", help="the SLM run the ratio comes from (named in the view)")
    p.add_argument("--out", required=True)

    p = add("figures", cmd_figures, "the paper's figures from this run's tables and training logs")
    p.add_argument("--spec", type=_json, required=True)
    p.add_argument("--out", required=True)

    p = add("paper-table", cmd_paper_table, "this run's results beside the paper's reported numbers")
    p.add_argument("--spec", type=_json, required=True)
    p.add_argument("--out", required=True, help="output path without suffix (.md, .csv, .tex)")

    p = add("tables", cmd_tables, "build the results tables")
    p.add_argument("--spec", type=_json, required=True)
    p.add_argument("--out", required=True)

    p = add("evaluate-tir", cmd_evaluate_tir, "tool-integrated evaluation: a Python tool runs each generated program")
    p.add_argument("--model", required=True)
    p.add_argument("--problems", required=True, help="held-out problems (jsonl: question, solution, answer)")
    p.add_argument("--fewshot", required=True, help="few-shot problems, same format")
    p.add_argument("--spec", type=_json, default={}, help="options of slm.tir.evaluate_tir as JSON")
    p.add_argument("--out", required=True)

    p = add("tir-table", cmd_tir_table, "Table 2 on each problem set: tool-integrated results beside the paper's")
    p.add_argument("--spec", type=_json, required=True, help="the tables, as Plan.table2_spec (outputs without suffix)")

    p = add("tir-curve", cmd_tir_curve, "Table 2's learning curve: accuracy with the tool at each checkpoint")
    p.add_argument("--spec", type=_json, required=True, help="the evaluated points, as Plan.table2_curve_spec")
    p.add_argument("--out", required=True, help="output path without suffix (.md, .csv)")

    p = add("selection-roles", cmd_selection_roles, "selection rates by token role (operand, operator, result, ...)")
    p.add_argument("--dynamics", required=True, help="losses.npz of the SLM run's token dynamics")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--ratio", type=float, required=True)
    p.add_argument("--out", required=True, help="output path without suffix (.md, .csv)")

    p = add("benchmark", cmd_benchmark, "tokens/s and peak memory of scoring, CLM and SLM training")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--files", nargs="+", required=True, help="text files to pack (jsonl, txt or parquet)")
    p.add_argument("--spec", type=_json, default={}, help="options of slm.benchmark.benchmark as JSON")
    p.add_argument("--out", help="also write the figures as JSON here")
    p.add_argument("--out-md", help="also write the table as Markdown here")

    p = add("benchmark-table", cmd_benchmark_table, "one throughput table of benchmark results at several world sizes")
    p.add_argument("--results", nargs="+", required=True, help="`slm benchmark --out` JSONs of one set-up")
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-csv", required=True)

    p = add("loss-memory", cmd_loss_memory, "peak memory of the per-token loss: full logits vs chunked")
    p.add_argument("--spec", type=_json, default={}, help="options of slm.benchmark.loss_memory as JSON")
    p.add_argument("--out", help="also write the figures as JSON here")
    p.add_argument("--out-md", help="also write the table as Markdown here")

    p = add("numerics", cmd_numerics, "bf16 per-token losses and selection: old autocast path vs bf16 weights")
    p.add_argument("--current", required=True, help="the model being trained (e.g. the SLM run's initial model)")
    p.add_argument("--reference", required=True, help="the reference model")
    p.add_argument("--shard", required=True, help="a packed shard to take sequences from")
    p.add_argument("--spec", type=_json, default={}, help="options of slm.numerics.numerics as JSON")
    p.add_argument("--out", help="also write the figures as JSON here")
    p.add_argument("--out-md", help="also write the tables as Markdown here")
    return parser


def main(argv: list[str] | None = None) -> int:
    # Under torchrun every rank runs this; rank 0 alone logs progress.
    level = logging.INFO if int(os.environ.get("RANK", 0)) == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    quiet_library_bars()
    args = build_parser().parse_args(argv)
    if "SLURM_JOB_ID" in os.environ:  # which cluster job ran this step (its log, `scontrol show job`)
        logging.info("slm %s in SLURM job %s on %s", args.command, os.environ["SLURM_JOB_ID"], socket.gethostname())
    args.func(args)
    return 0
