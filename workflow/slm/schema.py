"""The config schema (``workflow/schemas/config.schema.yaml``): the one place of every type and range
rule of the configuration.

Snakemake validates the whole config against it before any job; the entry points that take a part of
the config directly (``python -m slm train``'s options, the tokenizer's vocabulary size) check that
part against the same schema here, so that a rule is written once and the two never disagree.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
# The config schema's address for references from the partial schemas below (``CONFIG#/...``).
CONFIG = "urn:slm:config"
# The selection settings of a run (runs.<run>), which the trainer takes among its options.
SELECTION_KEYS = ("ratio", "unit", "weighting", "temperature", "score_fn")


@functools.cache
def config_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _part(path: str) -> dict:
    """The schema of one config key, e.g. ``properties.runs``."""
    node = config_schema()
    for name in path.split("."):
        node = node[name]
    return node


def check_part(value: dict, schema: dict, what: str) -> None:
    """Validate ``value`` against ``schema`` (which may refer to the config schema as ``CONFIG#/...``);
    raise ``ValueError`` naming the first offending key as ``<what> '<key>'``."""
    config = Resource.from_contents(config_schema(), default_specification=DRAFT202012)
    registry = Registry().with_resource(CONFIG, config)
    validator = Draft202012Validator(schema, registry=registry)
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        error = errors[0]
        key = ".".join(str(p) for p in error.absolute_path) or "(all)"
        raise ValueError(f"{what} {key!r}: {error.message}")


@functools.cache
def training_options_schema() -> dict:
    """The trainer's options: the optimisation keys of a training section, checkpoints, a run's
    selection settings, and the config's seed, device and precision (paths are not checked here)."""
    run = _part("properties.runs.additionalProperties.properties")
    top = {k: _part(f"properties.{k}") for k in ("seed", "device", "precision")}
    return {
        "type": "object",
        "allOf": [{"$ref": f"{CONFIG}#/definitions/optim"}],
        "properties": {
            "checkpoints": {"$ref": f"{CONFIG}#/definitions/checkpoints"},
            **top,
            **{k: run[k] for k in SELECTION_KEYS},
        },
    }


def minimum(path: str) -> int:
    """The ``minimum`` of a numeric key, e.g. ``properties.tokenizer.properties.train.properties.vocab_size``."""
    return _part(path)["minimum"]
