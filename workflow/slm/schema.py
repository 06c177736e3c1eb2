"""The workflow's config schema (``workflow/schemas/config.schema.yaml``) for code run outside Snakemake.

Snakemake validates the whole config against the schema and fills in its defaults. A stage called on its
own (``python -m slm generate --spec ...``) checks its part of the config against the same schema, so
every range and default is written once, there.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


@cache
def config_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _validator(pointer: str, closed: bool = False):
    from jsonschema import Draft202012Validator, validators
    from referencing import Registry, Resource

    def set_defaults(validator, properties, instance, schema):
        # as Snakemake's validate: a property's default is filled in before its value is checked
        for name, subschema in properties.items():
            if "default" in subschema and isinstance(instance, dict):
                instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)

    uri = SCHEMA_PATH.as_uri()
    registry = Registry().with_resource(uri, Resource.from_contents(config_schema()))
    filling = validators.extend(Draft202012Validator, {"properties": set_defaults})
    schema = {"$ref": f"{uri}#{pointer}"}
    if closed:  # keys the section does not list are refused (a definition open for use under allOf)
        schema["unevaluatedProperties"] = False
    return filling(schema, registry=registry)


def check_section(instance, pointer: str, key: str, *, closed: bool = False):
    """``instance`` checked against the schema at JSON ``pointer`` (e.g. ``/properties/data/properties/
    generator``), with the schema's defaults filled in (a copy); a ConfigError names ``key`` and the
    offending entry. ``closed``: refuse keys the section does not list (for a definition such as
    ``/definitions/benchmark_options``, a function's options, that leaves unknown keys to where it is used)."""
    from jsonschema.exceptions import best_match

    from slm.config import ConfigError

    instance = copy.deepcopy(instance)
    error = best_match(_validator(pointer, closed).iter_errors(instance))
    if error is not None:
        where = ".".join([key, *(str(p) for p in error.path)])
        raise ConfigError(f"config key '{where}': {error.message}")
    return instance


def check_training_options(options: dict) -> None:
    """The trainer's options (``python -m slm train``) against the schema's ``trainer_options``: the
    same rules as the config's training sections and runs; a ValueError names the option."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator("/definitions/trainer_options").iter_errors(copy.deepcopy(options)))
    if error is not None:
        option = ".".join(str(p) for p in error.path) or "(all)"
        raise ValueError(f"training option {option!r}: {error.message}")


def schema_minimum(pointer: str) -> int:
    """The ``minimum`` of the numeric key at JSON ``pointer``, e.g. the tokenizer's vocabulary size."""
    node = config_schema()
    for name in pointer.strip("/").split("/"):
        node = node[name]
    return node["minimum"]
