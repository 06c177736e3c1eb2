"""Model cards: the ``README.md`` of every model directory the workflow writes, in the Hugging Face format
(YAML front matter, then Markdown).

Two moments, because Snakemake never rewrites an output after its rule ends:

1. **Export.** The trainer (and ``init-model``) writes the card into the model directory: what the
   model is, its training data and tokens, the selection settings and the reference model. Its
   ``## Evaluation`` section says that results come later.
2. **Release** (target ``model_cards``). :func:`release` makes ``results/release/<model path>/``: the
   model directory's files, hard-linked (copied across file systems), with the card completed by the
   model's lm-eval results (``model-index`` in the front matter, a table in the text). That folder is
   the one to upload to a model hub.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from slm.io import atomic_path, read_json

if TYPE_CHECKING:
    from slm.train import TrainConfig

CARD = "README.md"
EVALUATION_HEADING = "## Evaluation"
PENDING = (
    "Not evaluated when this directory was written. `snakemake model_cards` writes this card with the "
    "model's evaluation results into `results/release/`, beside a copy of the model files."
)
PAPER = "Rho-1: Not All Tokens Are What You Need (Lin et al., 2024, arXiv:2404.07965)"
CITATION = """```bibtex
@article{lin2024rho1,
  title   = {Rho-1: Not All Tokens Are What You Need},
  author  = {Lin, Zhenghao and Gou, Zhibin and Gong, Yeyun and Liu, Xiao and Shen, Yelong and Xu, Ruochen
             and Lin, Chen and Yang, Yujiu and Jiao, Jian and Duan, Nan and Chen, Weizhu},
  journal = {arXiv preprint arXiv:2404.07965},
  year    = {2024}
}
```"""
SCORE_FUNCTION_TEXT = {
    "excess": "excess loss (the current model's loss minus the reference model's loss)",
    "current": "the current model's loss alone",
    "reference": "the reference model's loss alone (lowest first)",
    "random": "random scores",
}
UNIT_TEXT = {
    "batch": "of all loss-bearing tokens of each optimizer batch",
    "sequence": "of each sequence",
    "document": "of each batch's tokens, as whole document fragments ranked by mean score",
}


# -- the parts of a card ---------------------------------------------------------------------------
def render(front: dict, body: str) -> str:
    return f"---\n{yaml.safe_dump(front, sort_keys=False, allow_unicode=True)}---\n\n{body.strip()}\n"


def parse(text: str) -> tuple[dict, str]:
    """The front matter and the Markdown body of a card."""
    if not text.startswith("---\n"):
        raise ValueError("model card has no YAML front matter")
    front, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(front) or {}, body


def _is_hub_id(name: str | None) -> bool:
    """A hub id (org/name), not a local directory."""
    return bool(name) and not Path(name).exists() and not str(name).startswith((".", "/", "results/"))


def _model_ref(name: str | None) -> str:
    if not name:
        return "—"
    return f"[{name}](https://huggingface.co/{name})" if _is_hub_id(name) else f"`{name}`"


def describe_sources(sources: list[dict]) -> tuple[str, list[str]]:
    """A sentence naming the data of packed shards (their index.json ``source``) and its hub dataset ids."""
    parts, hub_ids = [], []

    def add(source: dict) -> None:
        kind = source.get("source")
        if kind == "hf":
            name = source["path"] + (f" ({source['name']})" if source.get("name") else "")
            parts.append(
                f"[{name}](https://huggingface.co/datasets/{source['path']}), split {source.get('split', 'train')}"
            )
            hub_ids.append(source["path"])
        elif kind == "mixture":
            for component in source.get("components", []):
                add(component)
        elif kind == "generated":
            parts.append("synthetic arithmetic text generated offline by `slm.data.generate`")
        else:
            parts.append("local files " + ", ".join(f"`{Path(p).name}`" for p in source.get("paths") or []))

    for source in sources:
        add(source)
    unique = list(dict.fromkeys(parts))
    return ("; ".join(unique) or "unknown"), list(dict.fromkeys(hub_ids))


def _selection(cfg: TrainConfig) -> str:
    if cfg.weighting == "soft":
        return (
            f"every token weighted by a softmax of its {SCORE_FUNCTION_TEXT[cfg.score_fn]} "
            f"(temperature {cfg.temperature}), weights scaled to mean 1"
        )
    if not cfg.selective:
        return "none: every token is trained on (causal language modeling)"
    return (
        f"the top {cfg.ratio:.0%} {UNIT_TEXT[cfg.unit]}, ranked by {SCORE_FUNCTION_TEXT[cfg.score_fn]}, "
        "recomputed every step"
    )


def _title(cfg: TrainConfig, name: str) -> tuple[str, str, list[str]]:
    """Heading, one-line description and tags of a trained model by its role."""
    role, selective = cfg.role, cfg.selective
    method = "SLM" if selective else "CLM"
    if role == "base":
        return f"{name}: base model", "A base model pretrained here before any selective training.", ["base-model"]
    if role == "reference":
        return (
            f"{name}: reference model",
            "The reference model of Selective Language Modeling: the base model fine-tuned on a small "
            "high-quality set. It scored every token of the pretraining corpus once; SLM runs train on "
            "the tokens whose current loss most exceeds its loss.",
            ["reference-model"],
        )
    if role == "tir":
        return (
            f"{name}: tool-integrated fine-tuning",
            "A continually pretrained model fine-tuned on tool-integrated (ToRA-style) solutions: a Python "
            "program, the tool's output, the answer.",
            ["tool-integrated-reasoning"],
        )
    what = (
        "Continual pretraining with Selective Language Modeling: only the selected tokens contribute to the loss."
        if selective
        else "Continual pretraining on every token (causal language modeling), the baseline of the SLM runs."
    )
    return f"{name}: {method} run", what, [method.lower()]


def training_card(cfg: TrainConfig, stats: dict, sources: list[dict]) -> str:
    """The card of a model the trainer exports: ``cfg`` its options, ``stats`` its train_stats.json,
    ``sources`` the ``source`` of each packed training shard (index.json)."""
    name = cfg.name or stats.get("run") or "model"
    heading, what, tags = _title(cfg, name)
    data, hub_ids = describe_sources(sources)
    front = {"library_name": "transformers", "pipeline_tag": "text-generation"}
    front["tags"] = ["rho-1", "selective-language-modeling", *tags]
    if _is_hub_id(cfg.init_model):
        front["base_model"] = cfg.init_model
    if hub_ids:
        front["datasets"] = hub_ids
    tokens_per_step = stats["tokens_seen"] // max(1, stats["steps"])
    loss_bearing = max(1, stats["tokens_loss_bearing"])
    rows = [
        ("initialised from", _model_ref(cfg.init_model)),
        ("training data", data),
        ("steps", f"{stats['steps']:,} of {cfg.batch_size} sequences ({tokens_per_step:,} tokens)"),
        ("tokens seen", f"{stats['tokens_seen']:,}"),
        (
            "tokens trained on",
            f"{stats['tokens_selected']:,} ({stats['tokens_selected'] / loss_bearing:.1%} of the loss-bearing tokens)",
        ),
    ]
    if cfg.selective or cfg.role == "run":  # CLM runs: the baseline's "no selection"
        rows += [("token selection", _selection(cfg)), ("reference model", _model_ref(cfg.reference_model))]
    rows += [
        (
            "optimizer",
            f"AdamW, peak lr {cfg.lr:g} (warm-up {cfg.warmup_steps} steps, cosine decay to "
            f"{cfg.min_lr_ratio:g} of the peak), betas ({cfg.beta1}, {cfg.beta2}), weight "
            f"decay {cfg.weight_decay}, gradient clipping {cfg.grad_clip}",
        ),
        ("precision, seed", f"{cfg.precision}, {cfg.seed}"),
    ]
    body = [f"# {heading}", what, _table(("", ""), rows)]
    kinds = {k: v for k, v in (stats.get("kinds") or {}).items() if v["seen"]}
    if cfg.selective and len(kinds) > 1:
        body += [
            "Share of each labelled span kind that training kept:",
            _table(
                ("span kind", "tokens seen", "kept"),
                [(k, f"{v['seen']:,}", f"{v['selected'] / v['seen']:.1%}") for k, v in kinds.items()],
            ),
        ]
    body += _common_sections()
    return render(front, "\n\n".join(body))


def init_card(n_parameters: int, architecture: dict) -> str:
    """The card of a freshly initialised (untrained) Llama."""
    front = {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["rho-1", "selective-language-modeling", "untrained"],
    }
    rows = [(key, str(value)) for key, value in architecture.items()] + [("parameters", f"{n_parameters:,}")]
    body = [
        "# Randomly initialised Llama",
        "Untrained weights: the starting point of the base model's pretraining. Not useful on its own.",
        _table(("", ""), rows),
        *_common_sections(),
    ]
    return render(front, "\n\n".join(body))


def _common_sections() -> list[str]:
    return [
        f"{EVALUATION_HEADING}\n\n{PENDING}",
        "## Use\n\n```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'model = AutoModelForCausalLM.from_pretrained("<this directory or repository>")\n'
        'tokenizer = AutoTokenizer.from_pretrained("<this directory or repository>")\n```',
        f"## Method\n\nMade by an open implementation of {PAPER}: a reference model fine-tuned on "
        "high-quality data scores every token of the pretraining corpus once; continual pretraining "
        "keeps, in every batch, only the tokens with the highest excess loss.\n\n" + CITATION,
    ]


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- evaluation results ---------------------------------------------------------------------------
def evaluation_rows(result: dict) -> list[tuple[str, str, float, int | None]]:
    """(task, metric, value, documents) of an evaluation JSON: lm-eval's compact results
    (slm.evaluate) or a tool-integrated evaluation (slm.tir)."""
    if "tasks" in result:
        return [
            (task, metric, value, result.get("n_samples", {}).get(task))
            for task, metrics in result["tasks"].items()
            for metric, value in metrics.items()
            if "_stderr," not in metric and value is not None
        ]
    return [
        ("arith_tir", "accuracy", result["accuracy"], result["n"]),
        ("arith_tir", "tool_ran", result["tool_ran"], result["n"]),
    ]


def completed_card(card: str, result: dict) -> str:
    """An exported card with its evaluation section and ``model-index`` filled in from ``result``."""
    front, body = parse(card)
    rows = evaluation_rows(result)
    title = next((line[2:] for line in body.splitlines() if line.startswith("# ")), "model")
    tasks: dict[str, list] = {}
    for task, metric, value, _n in rows:
        tasks.setdefault(task, []).append({"type": metric.split(",")[0], "name": metric, "value": value})
    front["model-index"] = [
        {
            "name": title.split(":")[0],
            "results": [
                {"task": {"type": "text-generation"}, "dataset": {"name": task, "type": task}, "metrics": metrics}
                for task, metrics in tasks.items()
            ],
        }
    ]
    shots = result.get("n_shot") or {}
    table = _table(
        ("task", "metric", "value", "documents", "shots"),
        [(t, m, f"{v:.4g}", n if n is not None else "—", shots.get(t, "—")) for t, m, v, n in rows],
    )
    source = "lm-evaluation-harness " + result["lm_eval_version"] if "lm_eval_version" in result else "slm.tir"
    evaluation = f"{EVALUATION_HEADING}\n\nMeasured by {source} on held-out data:\n\n{table}"
    before, heading, after = body.partition(f"\n{EVALUATION_HEADING}\n")
    if not heading:
        raise ValueError(f"model card has no '{EVALUATION_HEADING}' section")
    rest = after[after.find("\n## ") :] if "\n## " in after else ""
    return render(front, f"{before}\n{evaluation}\n{rest}")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def release(model_dir: str | Path, evaluation_json: str | Path, out_dir: str | Path) -> Path:
    """A publishable copy of ``model_dir`` whose card carries the evaluation results. The other files are
    hard links to the model's (no second copy of the weights): replace them, never edit them in place."""
    model_dir = Path(model_dir)
    card_path = model_dir / CARD
    if not card_path.is_file():
        raise FileNotFoundError(f"{model_dir} has no {CARD}: export it again with this version of the workflow")
    card = completed_card(card_path.read_text(encoding="utf-8"), read_json(evaluation_json, "evaluation results"))
    with atomic_path(out_dir) as tmp:
        # Not the hidden files: Snakemake's .snakemake_timestamp of the model directory, hard-linked,
        # would take the release's timestamp and make the model look newer than what was made from it.
        shutil.copytree(model_dir, tmp, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(CARD, ".*"))
        (tmp / CARD).write_text(card, encoding="utf-8")
    return Path(out_dir)
