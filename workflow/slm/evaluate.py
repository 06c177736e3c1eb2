"""Run the real lm-evaluation-harness on one model and write a compact, stable results JSON.

Compact JSON format (one file per evaluated model)::

    {
      "model": "<model dir or hub id, as given>",
      "tasks": {"<task>": {"<metric>,<filter>": value, "<metric>_stderr,<filter>": value|null, ...}},
      "higher_is_better": {"<task>": {"<metric>": true|false, ...}},
      "n_samples": {"<task>": n_documents_evaluated},
      "n_shot": {"<task>": shots_lm_eval_used},
      "task_options": {"<task>": {"num_fewshot": int, "max_gen_toks": int}},
      "samples": {"<task>": [value per evaluated document, in document order]},
      "sample_aggregation": {"<task>": "mean" | "bits_per_byte" | "perplexity" | ...},
      "context_length": 256,
      "lm_eval_version": "0.4.13",
      "limit": null|int|float,
      "seed": 1234,
      "dtype": "float32",
      "batch_size": 16,
      "wall_seconds": 12.3
    }

Metric keys are exactly lm-eval's ``"<metric>,<filter>"`` keys (e.g. ``"acc,none"``,
``"exact_match,strict-match"``, ``"bits_per_byte,none"``); nothing is renamed, so a key
in this file is the key shown in lm-eval's own output.  Standard errors are kept under
lm-eval's ``"<metric>_stderr,<filter>"`` keys; lm-eval's ``"N/A"`` (and any non-finite
number) is stored as ``null``.  Non-metric entries (``alias``, ``name``, ``sample_len``)
are dropped.  :func:`headline_metric` resolves a metric by full key or, when exactly one
filter carries it, by bare metric name (``"acc"`` -> ``"acc,none"``).

``task_options`` holds the per-task settings asked for (tasks without any are absent); ``n_shot`` is
lm-eval's own record of the shots each task and group was run with (a task YAML that sets
``num_fewshot: 0`` keeps 0 whatever was asked).

``samples`` holds, for every task given a metric (``metrics``, e.g. ``{"arith_gen":
"exact_match,strict-match"}``), that metric's per-document value under that filter, in lm-eval's
document order: a number for a metric averaged over documents (``acc``, ``exact_match``), a pair
``[log-likelihood, weight]`` (weight = bytes, words or tokens) for the corpus-level metrics that
lm-eval aggregates from pairs (``bits_per_byte``, ``byte_perplexity``, ``word_perplexity``).
``sample_aggregation`` names lm-eval's aggregation of those values; :func:`aggregate_samples`
applies it (to any resample of them, e.g. for a bootstrap interval) and, on all of them, gives the
value in ``tasks``.

``context_length`` is the sequence length the model was trained on. Every evaluated sequence stays
inside it, or the evaluation refuses to start (:func:`check_context`): lm-eval reads at most
``context_length - 1`` positions (a sequence of L training tokens gives L - 1 predictions), so a
generative prompt plus its generation budget, or a scored context plus its continuation, must fit.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slm.io import atomic_write_json
from slm.progress import lm_eval_log_lines

log = logging.getLogger(__name__)

STDERR_MARK = "_stderr,"


class ContextLengthError(ValueError):
    """An evaluation that would read past the sequence length the model was trained on."""


# --------------------------------------------------------------------------- helpers
def _looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).is_dir()


def check_model(model: str | os.PathLike) -> str:
    """Validate a model argument; return it as a string (local paths expanded and absolute).

    A local-looking path (starting with ``/``, ``./``, ``../``, ``~`` or an existing
    directory) must be a directory holding ``config.json``.  Anything else is taken to be
    a Hugging Face hub id and is passed through untouched.
    """
    model = os.fspath(model)
    if not model:
        raise ValueError("model is empty: give a local model directory or a hub id")
    if _looks_local(model):
        path = Path(model).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"model directory does not exist: {model}")
        if not path.is_dir():
            raise ValueError(f"model path is not a directory: {model}")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model directory {model} has no config.json (not a transformers checkpoint?)")
        return str(path.resolve())
    return model


def make_task_manager(include_path: Path | str | None = None, tasks: Iterable[str] | None = None):
    """A :class:`lm_eval.tasks.TaskManager` with the built-in tasks plus ``include_path``; only
    ``include_path``'s tasks when it holds every one of ``tasks``. (Indexing lm-eval's thousands of
    built-in task files takes 3-16 s, most of a small model's evaluation.)"""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        include_path = Path(include_path)
        if not include_path.exists():
            raise FileNotFoundError(f"lm-eval include_path does not exist: {include_path}")
        include_path = str(include_path.resolve())
        if tasks is not None:
            local = TaskManager(include_path=include_path, include_defaults=False)
            if set(tasks) <= set(local.all_tasks):
                return local
    return TaskManager(include_path=include_path)


def check_tasks(task_manager, tasks: Iterable[str], include_path: Path | str | None = None) -> list[str]:
    """Raise ``ValueError`` naming every task that ``task_manager`` does not know."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("no lm-eval tasks given")
    known = set(task_manager.all_tasks)
    unknown = [t for t in tasks if t not in known and not Path(t).is_file()]
    if not unknown:
        return tasks
    local: list[str] = []
    if include_path is not None:
        root = Path(include_path).resolve()
        for name, entry in task_manager.task_index.items():
            yaml_path = getattr(entry, "yaml_path", None)
            if yaml_path is not None and Path(yaml_path).resolve().is_relative_to(root):
                local.append(name)
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, task_manager.all_tasks, n=5, cutoff=0.6)
        if close:
            hints.append(f"{name!r}: did you mean {', '.join(close)}?")
    message = f"unknown lm-eval task(s): {', '.join(map(repr, unknown))}."
    if include_path is not None:
        message += f" Tasks defined under {include_path}: {sorted(local)[:30] or 'none'}."
    else:
        message += " No include_path given (custom task YAMLs need one)."
    examples = sorted(task_manager.all_subtasks)[:8]
    message += f" Some built-in tasks: {examples} ({len(known)} names known)."
    if hints:
        message += " " + " ".join(hints)
    raise ValueError(message)


def _clean_value(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    try:  # numpy scalars
        value = float(value)
    except (TypeError, ValueError):
        return None  # "N/A" and friends
    return value if math.isfinite(value) else None


TASK_OPTIONS = ("num_fewshot", "max_gen_toks")


def option_groups(tasks: list[str], task_options: dict | None) -> dict[tuple, list[str]]:
    """Tasks keyed by their ``(num_fewshot, max_gen_toks)``, in order of first appearance.

    A task without options gets ``(None, None)``: lm-eval's task defaults.  Options for a task
    that is not in ``tasks``, or an option lm-eval cannot be given here, raise ``ValueError``.
    """
    task_options = task_options or {}
    stray = [t for t in task_options if t not in tasks]
    if stray:
        raise ValueError(f"task_options given for task(s) not evaluated: {stray} (tasks: {tasks})")
    groups: dict[tuple, list[str]] = {}
    for task in tasks:
        options = task_options.get(task) or {}
        unknown = sorted(set(options) - set(TASK_OPTIONS))
        if unknown:
            raise ValueError(f"task_options.{task}: unknown option(s) {unknown}; known: {list(TASK_OPTIONS)}")
        groups.setdefault(tuple(options.get(k) for k in TASK_OPTIONS), []).append(task)
    return groups


def merge_raw(raws: list[dict]) -> dict:
    """One lm-eval result dict from the results of several ``simple_evaluate`` calls."""
    merged: dict[str, dict] = {}
    for raw in raws:
        for key in ("results", "groups", "n-samples", "higher_is_better", "n-shot", "configs", "samples"):
            part = raw.get(key, {})
            twice = sorted(set(part) & set(merged.get(key, {}))) if key == "results" else []
            if twice:  # e.g. mmlu and mmlu_stem in different option groups: the later run is kept
                log.warning("tasks %s were evaluated in two option groups; keeping the later", twice)
            merged.setdefault(key, {}).update(part)
    return merged


def configured_tasks(task_manager, names: list[str], *, num_fewshot, max_gen_toks, seed: int) -> dict:
    """lm-eval's task dict (``TaskManager.load``) of ``names``, every leaf task configured as
    ``lm_eval.simple_evaluate`` configures it for the same ``num_fewshot``,
    ``gen_kwargs="max_gen_toks=..."`` and ``fewshot_random_seed``."""
    loaded = task_manager.load(names)
    for task in loaded["tasks"].values():
        if max_gen_toks is not None and task.get_config("output_type") == "generate_until":
            task.set_config(key="generation_kwargs", value={"max_gen_toks": max_gen_toks}, update=True)
        shots = task.get_config("num_fewshot")
        if num_fewshot is not None and shots != 0:  # lm-eval never overrides a YAML num_fewshot: 0
            task.set_config(key="num_fewshot", value=num_fewshot)
        elif shots is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)
    return loaded


def sequence_length_needed(lm, instance) -> int:
    """Tokens in the longest sequence one lm-eval request makes the model read or write, as lm-eval's
    HFLM encodes it: a generative prompt plus its generation budget, or a scored context plus its
    continuation (the loglikelihood prefix token standing in for an empty context). 0 for rolling
    loglikelihood, which lm-eval cuts into windows of its ``max_length``."""
    if instance.request_type == "generate_until":
        context, gen_kwargs = instance.args
        return len(lm.tok_encode(context)) + int(gen_kwargs.get("max_gen_toks", lm.max_gen_toks))
    if instance.request_type == "loglikelihood":
        context, continuation = instance.args
        if not context:
            return 1 + len(lm.tok_encode(continuation))
        context_tokens, continuation_tokens = lm._encode_pair(context, continuation)
        return len(context_tokens) + len(continuation_tokens)
    return 0


def check_context(lm, tasks: dict, context_length: int, *, limit=None) -> dict[str, int]:
    """Refuse an evaluation that would run past the sequence length the model was trained on.

    ``lm`` reads ``lm.max_length == context_length - 1`` positions (a training sequence of L tokens
    gives L - 1 predictions). A generative request needs its prompt plus its generation budget to fit
    in ``context_length - 1`` tokens (lm-eval would cut the prompt from the left otherwise), a scored
    one its context plus continuation in ``context_length`` tokens. Builds every request of ``tasks``
    (configured as by :func:`configured_tasks`; ``limit`` documents as lm-eval counts them) and raises
    :class:`ContextLengthError` naming each task that does not fit, with its numbers. Returns the
    longest sequence of each task (0 for rolling loglikelihood).
    """
    from lm_eval.evaluator_utils import get_sample_size

    longest, problems = {}, []
    for name, task in tasks.items():
        task.build_all_requests(limit=get_sample_size(task, limit), rank=0, world_size=1)
        kinds = {i.request_type for i in task.instances}
        lengths = [sequence_length_needed(lm, i) for i in task.instances]
        longest[name] = max(lengths, default=0)
        allowed = context_length - 1 if "generate_until" in kinds else context_length
        over = sum(n > allowed for n in lengths)
        if over:
            if "generate_until" in kinds:
                budgets = {int(i.args[1].get("max_gen_toks", lm.max_gen_toks)) for i in task.instances}
                what = f"prompt + max_gen_toks {max(budgets)}"
                fits = f"; max_gen_toks up to {max(budgets) - (longest[name] - allowed)} would fit"
            else:
                what, fits = "context + continuation", ""
            problems.append(
                f"{name}: {over} of {len(lengths)} requests need more than {allowed} tokens "
                f"(longest {what} = {longest[name]} tokens{fits})"
            )
        log.info(
            "%s: longest sequence %d tokens, %d of %d requests over %d",
            name,
            longest[name],
            over,
            len(lengths),
            allowed,
        )
    if problems:
        raise ContextLengthError(
            f"evaluation would run past the {context_length} tokens the model was trained on "
            f"(sequence_length): " + "; ".join(problems) + ". Use fewer shots (evaluation.task_options or "
            "evaluation.local_tasks: num_fewshot), a smaller max_gen_toks, or train on longer sequences."
        )
    return longest


def task_samples(raw_samples: dict, configs: dict, metrics: dict[str, str]) -> tuple[dict, dict]:
    """Per-document values of each task's metric (``metrics``: task -> ``"<metric>,<filter>"``) from
    lm-eval's logged samples, in document order, and the aggregation lm-eval applies to them."""
    from lm_eval.api.registry import AGGREGATION_REGISTRY, get_metric_aggregation

    values, aggregations = {}, {}
    for task, key in metrics.items():
        if task not in raw_samples:
            continue
        metric, _, filter_name = key.partition(",")
        entries = sorted(
            (s for s in raw_samples[task] if s["filter"] == (filter_name or "none")), key=lambda s: s["doc_id"]
        )
        if not entries or metric not in entries[0]:
            log.warning("task %s: no per-document %r in lm-eval's samples", task, key)
            continue
        values[task] = [_sample_value(s[metric]) for s in entries]
        named = [m.get("aggregation") for m in configs.get(task, {}).get("metric_list", []) if m["metric"] == metric]
        if named and isinstance(named[0], str):
            aggregations[task] = named[0]
        else:
            function = get_metric_aggregation(metric)
            aggregations[task] = next(n for n, f in AGGREGATION_REGISTRY.items() if f is function)
    return values, aggregations


def _sample_value(value):
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return float(value)


def aggregate_samples(aggregation: str, values: list) -> float:
    """lm-eval's ``aggregation`` (a name from ``sample_aggregation``) of per-document ``values``."""
    from lm_eval.api.registry import get_aggregation

    return get_aggregation(aggregation)([tuple(v) if isinstance(v, list) else v for v in values])


def compact_results(raw: dict, *, model: str, limit, seed: int) -> dict:
    """Reduce lm-eval's result dict to the compact format documented in the module docstring."""
    tasks: dict[str, dict[str, Any]] = {}
    entries = dict(raw.get("results", {}))
    for group, metrics in raw.get("groups", {}).items():  # group aggregates, if any
        entries.setdefault(group, metrics)
    for task, metrics in entries.items():
        clean: dict[str, Any] = {}
        for key, value in metrics.items():
            if "," not in key:  # alias, name, sample_len, ...
                continue
            cleaned = _clean_value(value)
            if cleaned is None and STDERR_MARK not in key:
                log.warning("task %s: metric %s is not a finite number (%r)", task, key, value)
            clean[key] = cleaned
        tasks[task] = clean
    n_samples = {}
    for task, counts in raw.get("n-samples", {}).items():
        n_samples[task] = counts.get("effective", counts.get("original")) if isinstance(counts, dict) else counts
    higher = {
        task: {metric: bool(flag) for metric, flag in (flags or {}).items()}
        for task, flags in raw.get("higher_is_better", {}).items()
    }
    return {
        "model": model,
        "tasks": tasks,
        "higher_is_better": higher,
        "n_samples": n_samples,
        "n_shot": dict(raw.get("n-shot", {})),
        "lm_eval_version": _lm_eval_version(),
        "limit": limit,
        "seed": seed,
    }


def _lm_eval_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:  # pragma: no cover
        import lm_eval

        return getattr(lm_eval, "__version__", "unknown")


def headline_metric(task_results: dict, preferred: list[str]) -> tuple[str, float | None]:
    """Pick the first metric of ``preferred`` present in one task's compact results.

    Each entry of ``preferred`` is either a full lm-eval key (``"exact_match,flexible-extract"``)
    or a bare metric name (``"acc"``).  A bare name matches when exactly one non-stderr key
    ``"<name>,<filter>"`` exists; if several filters carry it the name is ambiguous and a
    ``ValueError`` lists the candidates.  Returns ``(full_key, value)``; raises ``KeyError``
    listing the available metrics when nothing matches.
    """
    if isinstance(preferred, str):
        preferred = [preferred]
    for want in preferred:
        if want in task_results:
            return want, task_results[want]
        if "," in want:
            continue
        matches = [key for key in task_results if STDERR_MARK not in key and key.split(",", 1)[0] == want]
        if len(matches) == 1:
            return matches[0], task_results[matches[0]]
        if len(matches) > 1:
            raise ValueError(f"metric {want!r} is ambiguous: filters {sorted(matches)}; give the full key")
    available = sorted(k for k in task_results if STDERR_MARK not in k)
    raise KeyError(f"none of the metrics {list(preferred)} found; available: {available}")


# --------------------------------------------------------------------------- main entry
def evaluate_model(
    model: str,
    tasks: list[str],
    out_json: Path,
    *,
    context_length: int,
    include_path: Path | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    device: str = "cpu",
    seed: int = 1234,
    dtype: str = "float32",
    bootstrap_iters: int = 1000,
    task_options: dict | None = None,
    metrics: dict[str, str] | None = None,
) -> dict:
    """Evaluate ``model`` on lm-eval ``tasks`` and write the compact JSON to ``out_json``.

    ``context_length`` is the sequence length the model was trained on (the config's
    ``sequence_length``): lm-eval reads at most ``context_length - 1`` positions, and the run refuses
    to start when a request would not fit (:func:`check_context`). ``task_options`` maps a task to
    ``{"num_fewshot": n, "max_gen_toks": m}`` (both optional). Tasks sharing the same options run in
    one lm-eval ``evaluate`` call, configured by :func:`configured_tasks` as ``simple_evaluate``
    would with ``num_fewshot=n`` and ``max_gen_toks=m`` (tasks without options: lm-eval's
    defaults); the model is loaded once and every call starts from the same seeds. ``metrics``
    (task -> ``"<metric>,<filter>"``) selects the per-document values kept under ``samples``.
    Inputs are validated before the model is loaded: a missing/invalid local model directory, a
    missing ``include_path``, an unknown task or options for a task not in ``tasks`` raise
    immediately; a request past ``context_length`` raises before any is run. All four lm-eval
    seeds are set to ``seed``. ``bootstrap_iters`` only affects bootstrapped standard errors (0
    skips all stderr computation). Returns the compact dict that
    was written.
    """
    import lm_eval.evaluator
    import numpy as np
    import torch

    model_name = os.fspath(model)
    pretrained = check_model(model_name)
    tasks = list(tasks)
    if not tasks:
        raise ValueError("no lm-eval tasks given")
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2, got {context_length}")
    groups = option_groups(tasks, task_options)
    t0 = time.perf_counter()
    task_manager = make_task_manager(include_path, tasks)
    check_tasks(task_manager, tasks, include_path)

    from slm.hflm import RowStopHFLM

    log.info(
        "lm-eval %s: model %s, tasks %s, limit %s, batch %s, device %s, dtype %s, seed %s, context %s",
        _lm_eval_version(),
        model_name,
        tasks,
        limit,
        batch_size,
        device,
        dtype,
        seed,
        context_length,
    )
    # Loaded once for all option groups.
    lm = RowStopHFLM(
        pretrained=pretrained, dtype=dtype, device=device, batch_size=batch_size, max_length=context_length - 1
    )
    lm_eval_log_lines()  # lm-eval's request progress bars as log lines when not on a terminal
    loaded = {
        options: configured_tasks(task_manager, group, num_fewshot=options[0], max_gen_toks=options[1], seed=seed)
        for options, group in groups.items()
    }
    for task_dict in loaded.values():
        check_context(lm, task_dict["tasks"], context_length, limit=limit)
    raws = []
    for (num_fewshot, max_gen_toks), task_dict in loaded.items():
        log.info(
            "tasks %s: num_fewshot %s, max_gen_toks %s", groups[num_fewshot, max_gen_toks], num_fewshot, max_gen_toks
        )
        # lm-eval's evaluate, as simple_evaluate calls it (which also collects environment details
        # by running pip and other programs, seconds per call)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        for task in task_dict["tasks"].values():
            task.set_fewshot_seed(seed=seed)  # the check drew few-shot examples already
        raw = lm_eval.evaluator.evaluate(
            lm=lm, task_dict=task_dict, limit=limit, bootstrap_iters=bootstrap_iters, log_samples=bool(metrics)
        )
        if raw is None:  # only non-zero ranks get None
            raise RuntimeError("lm_eval's evaluate returned no results (non-zero rank?)")
        raws.append(raw)
    merged = merge_raw(raws)
    result = compact_results(merged, model=model_name, limit=limit, seed=seed)
    missing = [t for t in tasks if t not in result["tasks"]]
    if missing:  # a tag expands to its member tasks and has no entry of its own
        log.warning("no result entry named %s (tags?); got %s", missing, sorted(result["tasks"]))
    used = {t: dict(o) for t, o in (task_options or {}).items() if o}
    for task, options in used.items():
        shots = result["n_shot"].get(task)
        if "num_fewshot" in options and shots is not None and shots != options["num_fewshot"]:
            # lm-eval never overrides a task YAML's explicit num_fewshot: 0
            log.warning("%s ran %s-shot, not the %s asked for", task, shots, options["num_fewshot"])
    samples, aggregations = task_samples(merged.get("samples", {}), merged.get("configs", {}), metrics or {})
    wall = time.perf_counter() - t0
    result.update(
        {
            "task_options": used,
            "samples": samples,
            "sample_aggregation": aggregations,
            "context_length": context_length,
            "dtype": dtype,
            "batch_size": batch_size,
            "wall_seconds": round(wall, 3),
        }
    )
    out_json = Path(out_json)
    atomic_write_json(out_json, result)
    for task in tasks:
        shown = {k: v for k, v in result["tasks"].get(task, {}).items() if STDERR_MARK not in k}
        log.info("%s | %s: %s (n=%s)", model_name, task, shown, result["n_samples"].get(task))
    log.info("evaluated %s on %d task(s) in %.1f s -> %s", model_name, len(tasks), wall, out_json)
    return result
