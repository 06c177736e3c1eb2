"""Checks of the workflow configuration that a JSON schema cannot express.

The schema (workflow/schemas/config.schema.yaml) checks types and ranges; these check how keys fit
together and that named local files exist, so that bad input stops the run before any work.
"""

from __future__ import annotations

from pathlib import Path

from slm.data.sources import check_mixture, iter_files, mixture_files
from slm.launch import BatchSplitError, split_batch
from slm.resources import check_resources, stage_resources

# The datasets a trained tokenizer learns from; validation (only scored) and tir (fine-tuning data
# of Table 2) are one shard each and leave the tokenizer, and so every other result, unchanged.
TOKENIZER_DATASETS = ("high_quality", "corpus", "pretrain")
SINGLE_SHARD_DATASETS = ("validation", "tir")
DATASETS = TOKENIZER_DATASETS + SINGLE_SHARD_DATASETS
# The stage that trains each optimisation section (the base models' pretrain sections: pretrain_base).
TRAINING_STAGE = {"reference": "train_reference", "training": "train", "tool_integrated.training": "sft_tir"}
# Models Table 2 fine-tunes besides the runs: the controls, with the same recipe.
TIR_CONTROLS = ("base", "reference")
SELECTION_DEFAULTS = {"score_fn": "excess", "unit": "batch", "weighting": "hard", "temperature": 1.0}


class ConfigError(ValueError):
    pass


def check_int(name: str, value, minimum: int) -> None:
    """An integer option (not a bool) of at least ``minimum``, else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _fail(key: str, why: str):
    raise ConfigError(f"config key '{key}': {why}")


def optim_problems(section: dict, world_size: int = 1) -> list[tuple[str, str]]:
    """How the keys of one training section (``training``, ``reference``, ``base_model.pretrain``, ...)
    fit together on ``world_size`` ranks, as ``(key within the section, why)`` pairs; the trainer
    checks its options with it too. The batch splits as the trainer splits it (slm.launch.split_batch).
    ``section`` is validated, so the schema has filled in ``batch_size``."""
    problems = []
    if ("max_tokens" in section) == ("epochs" in section):
        problems.append(("", "give exactly one of max_tokens and epochs"))
    try:
        split_batch(section["batch_size"], section.get("micro_batch_size"), world_size)
    except BatchSplitError as err:
        problems.append((err.key, err.why))
    return problems


def check_loss_kinds(group: str, section: dict) -> None:
    """A section's loss_kinds are span kinds of the data it trains on: the parts of a tool-integrated
    solution for Table 2's fine-tuning, else the generated corpus's kinds."""
    from slm.data.packed import SPAN_LABELS  # slm.data.generate imports this module

    kinds = SPAN_LABELS["tool_solution" if group == "tool_integrated.training" else "source"]
    unknown = [kind for kind in section.get("loss_kinds", []) if kind not in kinds]
    if unknown:
        _fail(f"{group}.loss_kinds", f"{unknown} are not span kinds of its data (kinds: {list(kinds)})")


def check_local_file(key: str, spec: dict, path: str, base_dir: Path) -> None:
    """A local data file of a ``files`` source: it exists, is not empty, and (jsonl/json) its first
    record is UTF-8 JSON with the fields the source's text keys name. Reads one line, so a bad file
    stops the run before any job; the prepare step reads every record."""
    full = base_dir / path
    if not full.is_file():
        _fail(f"{key}.paths", f"file not found: {path}")
    if full.stat().st_size == 0:
        _fail(f"{key}.paths", f"file is empty: {path}")
    if (spec.get("format") or full.suffix.lstrip(".")) not in ("jsonl", "json"):
        return
    options = {k: spec[k] for k in ("text_field", "template", "messages_field") if k in spec}
    try:
        next(iter_files([full], fmt=spec.get("format"), **options), None)
    except ValueError as err:
        _fail(key, str(err))


def run_seeds(config: dict, run: str) -> list[int]:
    """The training seeds of a run: its ``seeds``, else the config's ``seed``."""
    return list(config["runs"][run].get("seeds", [config["seed"]]))


def harder_sets(config: dict) -> dict[str, dict]:
    """``tool_integrated.harder_sets``, each with its defaults filled in from ``data.generator``: as many
    problems as arith_gen (``eval_problems``), and the training problems' steps and operand bound for
    whichever of ``min_steps``, ``max_steps`` and ``max_operand`` it does not set."""
    sets = (config.get("tool_integrated") or {}).get("harder_sets") or {}
    generator = config["data"].get("generator") or {}
    defaults = {
        "problems": generator.get("eval_problems"),
        **{key: generator.get(key) for key in ("min_steps", "max_steps", "max_operand")},
    }
    return {name: {**defaults, **spec} for name, spec in sets.items()}


def check_harder_sets(config: dict) -> None:
    """Each harder set can draw problems beyond the training generator's bounds (slm.data.generate.beyond);
    called once data.generator is known to be there."""
    generator = config["data"]["generator"]
    for name, harder in harder_sets(config).items():
        key = f"tool_integrated.harder_sets.{name}"
        if harder["min_steps"] > harder["max_steps"]:
            _fail(f"{key}.min_steps", f"must not exceed max_steps ({harder['max_steps']})")
        if harder["max_steps"] <= generator["max_steps"] and harder["max_operand"] <= generator["max_operand"]:
            _fail(
                key,
                f"needs more steps than data.generator.max_steps ({generator['max_steps']}) or a larger "
                f"max_operand than data.generator's ({generator['max_operand']}): within the training bounds "
                "it would draw only problems the models trained on",
            )


def check_config(config: dict, base_dir: Path | str = ".") -> None:
    base_dir = Path(base_dir)
    data = config["data"]
    generator = data.get("generator")
    base = config["base_model"]
    for name in DATASETS:
        spec = data.get(name)
        if spec is None:
            continue
        if spec["source"] == "generated" and generator is None:
            _fail(f"data.{name}", "source 'generated' needs a data.generator block")
        if spec["source"] == "files":
            for path in spec["paths"]:
                check_local_file(f"data.{name}", spec, path, base_dir)
        parts = [(f"data.{name}", spec)] + [
            (f"data.{name}.components[{i}]", c)
            for i, c in enumerate(spec.get("components") or [])
            if isinstance(c, dict)
        ]
        for key, part in parts:
            if "template" in part and "messages_field" in part:
                _fail(f"{key}.template", "give one of template and messages_field")
        if spec["source"] == "mixture":
            try:
                components = check_mixture(spec, key=f"data.{name}")
            except ValueError as err:
                raise ConfigError(str(err)) from None
            for i, component in enumerate(components):
                for path in component.get("paths", []) if component["source"] == "files" else []:
                    check_local_file(f"data.{name}.components[{i}]", component, path, base_dir)
    if generator is not None:
        check_generator(generator)
    if "init" in base and "pretrain" in base and "pretrain" not in data:
        _fail("data.pretrain", "base_model.pretrain needs a data.pretrain source")
    tokenizer = config["tokenizer"]
    if "train" in tokenizer:
        if "path" in base:
            _fail(
                "tokenizer.train",
                "a hub/local base model (base_model.path) brings its own tokenizer: "
                "use tokenizer: {from_base_model: true}",
            )
        for name in TOKENIZER_DATASETS:
            if data.get(name, {}).get("source") == "hf":
                _fail("tokenizer.train", f"trains on local data only, but data.{name} is a hub dataset")
            if any(c.get("source") == "hf" for c in data.get(name, {}).get("components", [])):
                _fail("tokenizer.train", f"trains on local data only, but data.{name} mixes in a hub dataset")
    elif "init" in base:
        _fail("tokenizer", "a freshly initialised base model (base_model.init) needs tokenizer.train")
    if "path" in base and str(base["path"]).startswith((".", "/")) and not (base_dir / base["path"]).is_dir():
        _fail("base_model.path", f"local model directory not found: {base['path']}")
    reference = config["reference"]
    for key in ("path", "init_model"):
        model = reference.get(key)
        if model is not None and str(model).startswith((".", "/")) and not (base_dir / model).is_dir():
            _fail(f"reference.{key}", f"local model directory not found: {model}")
    extra_bases = config.get("base_models") or {}
    check_base_models(config, extra_bases, base_dir)

    training = config["training"]
    sections = {"reference": reference, "training": training, "base_model.pretrain": base.get("pretrain")}
    sections.update({f"base_models.{name}.pretrain": extra.get("pretrain") for name, extra in extra_bases.items()})
    sections["tool_integrated.training"] = (config.get("tool_integrated") or {}).get("training")
    for group, section in sections.items():
        if section is None or (group == "reference" and "path" in section):
            continue  # a given reference model (reference.path) is not trained
        # The batch splits over the stage's ranks as the trainer will split it (slm.launch.split_batch).
        stage = TRAINING_STAGE.get(group, "pretrain_base")
        ranks = stage_resources(config, stage).world_size
        for key, why in optim_problems(section, ranks):
            _fail(f"{group}.{key}" if key else group, why + (f" (resources.{stage})" if ranks > 1 else ""))
        check_loss_kinds(group, section)
    budget = training.get("max_tokens")
    for tokens in training.get("checkpoints", []):
        if budget is not None and tokens >= budget:
            _fail("training.checkpoints", f"{tokens} is not below training.max_tokens {budget}")

    evaluation = config["evaluation"]
    for task in evaluation["tasks"]:
        if task not in evaluation["metrics"]:
            _fail("evaluation.metrics", f"no metric named for task {task!r}")
    for task in evaluation.get("lower_is_better", []):
        if task not in evaluation["tasks"]:
            _fail("evaluation.lower_is_better", f"{task!r} is not in evaluation.tasks")
    for task in evaluation.get("task_options", {}):
        if task not in evaluation["tasks"]:
            _fail(f"evaluation.task_options.{task}", f"{task!r} is not in evaluation.tasks")
    which = evaluation.get("checkpoints", True)
    for run in which if isinstance(which, list) else []:
        if run not in config["runs"]:
            _fail("evaluation.checkpoints", f"{run!r} is not a run (runs: {sorted(config['runs'])})")
    for run in config.get("dynamics", {}).get("runs", []):
        if run not in config["runs"]:
            _fail("dynamics.runs", f"{run!r} is not a run (runs: {sorted(config['runs'])})")
    tir = config.get("tool_integrated")
    if tir is not None:
        for run in tir["runs"]:
            if run not in config["runs"] and run not in TIR_CONTROLS:
                _fail(
                    "tool_integrated.runs",
                    f"{run!r} is not a run (runs: {sorted(config['runs'])}) nor a control {list(TIR_CONTROLS)}",
                )
        for run in (run for run in tir["runs"] if run in config["runs"]):
            seeds = run_seeds(config, run)
            missing = [seed for seed in tir.get("pretraining_seeds", []) if seed not in seeds]
            if missing:
                _fail("tool_integrated.pretraining_seeds", f"{missing} are not seeds of run {run!r} ({seeds})")
        if "tir" not in data:
            _fail("data.tir", "tool_integrated needs its fine-tuning data")
        if generator is None:
            _fail(
                "tool_integrated",
                "the tool-executing evaluation runs on the generated held-out problems (data.generator)",
            )
        check_harder_sets(config)
    for key, why in check_resources(config):
        _fail(key, why)
    # The benchmark's batch splits over each world size as the trainer splits it (schema defaults filled).
    throughput = config.get("benchmarks", {}).get("throughput", {})
    for ranks in throughput.get("world_sizes", []):
        try:
            split_batch(throughput["batch_size"], throughput["micro_batch_size"], ranks)
        except BatchSplitError as err:
            _fail(f"benchmarks.throughput.{err.key}", f"{err.why} (benchmarks.throughput.world_sizes)")
    if "local_tasks" in evaluation and generator is None:
        _fail("evaluation.local_tasks", "the local held-out tasks come from data.generator")
    for run, spec in config["runs"].items():
        if spec.get("weighting") == "soft" and "ratio" in spec:
            _fail(
                f"runs.{run}.ratio",
                "a soft-weighted run weights every token by softmax(score / temperature) and keeps no top "
                "ratio: remove ratio (the temperature sets how peaked the weights are)",
            )
        if spec["method"] == "clm":
            # The schema fills in defaults, so only a changed value is a mistake.
            for key, default in SELECTION_DEFAULTS.items():
                if spec.get(key, default) != default:
                    _fail(f"runs.{run}.{key}", "a clm run trains on every token and takes no selection settings")


def check_generator(generator: dict) -> None:
    """How the keys of data.generator fit together (the schema checks each one alone)."""
    if generator["min_steps"] > generator["max_steps"]:
        _fail("data.generator.min_steps", "must not exceed data.generator.max_steps")
    if sum(generator["kind_weights"].values()) <= 0:
        _fail("data.generator.kind_weights", "needs a positive weight")


def check_base_models(config: dict, extra_bases: dict, base_dir: Path) -> None:
    """The extra base models (base_models) and the runs that start from them (runs.<run>.base_model)."""
    trained_tokenizer = "train" in config["tokenizer"]
    for name, extra in extra_bases.items():
        key = f"base_models.{name}"
        if "init" in extra and not trained_tokenizer:
            _fail(
                f"{key}.init",
                "a freshly initialised model needs tokenizer.train: every model (the reference, "
                "base_model, each base_models entry) shares the one tokenizer",
            )
        if "path" in extra:
            if trained_tokenizer:
                _fail(
                    f"{key}.path",
                    "a hub/local model brings its own tokenizer, but every model shares the one of "
                    "tokenizer.train: give init",
                )
            if str(extra["path"]).startswith((".", "/")) and not (base_dir / extra["path"]).is_dir():
                _fail(f"{key}.path", f"local model directory not found: {extra['path']}")
        if "init" in extra and "pretrain" in extra and "pretrain" not in config["data"]:
            _fail(f"{key}.pretrain", "needs a data.pretrain source")
    for run, spec in config["runs"].items():
        name = spec.get("base_model")
        if name is not None and name not in extra_bases:
            _fail(f"runs.{run}.base_model", f"{name!r} is not an entry of base_models (have: {sorted(extra_bases)})")
        if run.startswith("base-") and run.removeprefix("base-") in extra_bases:
            _fail(
                f"runs.{run}",
                f"a run may not be named like base_models.{run.removeprefix('base-')}'s model (results/models/{run})",
            )


def n_shards(config: dict, dataset: str) -> int:
    """How many packed shards a dataset is cut into."""
    spec = config["data"][dataset]
    if dataset in SINGLE_SHARD_DATASETS:
        return 1
    if spec["source"] == "files":
        return len(spec["paths"]) if dataset == "corpus" else 1
    if spec["source"] in ("hf", "mixture"):
        return spec.get("shards", 1)
    return config["data"]["generator"]["corpus_shards"] if dataset == "corpus" else 1


def shard_arguments(config: dict, dataset: str, shard: str | int) -> tuple[int, int]:
    """``(shard, num_shards)`` for ``slm prepare``: hub datasets and mixtures are cut by the reader;
    a files or generated dataset is already one file (or file set) per shard."""
    if config["data"][dataset]["source"] in ("hf", "mixture"):
        return int(shard), n_shards(config, dataset)
    return 0, 1


def source_files(config: dict, dataset: str) -> list[str]:
    """The local files named by a ``files`` source or by a mixture's ``files`` components
    (a mixture's files are inputs of every one of its shards)."""
    spec = config["data"][dataset]
    if spec["source"] == "files":
        return list(spec["paths"])
    if spec["source"] == "mixture":
        return mixture_files(spec)
    return []
