"""How the command line changes the workflow config, applied before the config is validated.

- **A complete config file replaces the default.** ``snakemake --configfile config/paper/math-1b.yaml``:
  Snakemake merges every ``--configfile`` into ``config/config.yaml`` key by key, so a paper config
  would inherit the default's generated data, trained tokenizer and token dynamics. When the files given
  with ``--configfile`` hold every required top-level key of the schema between them, they are the
  config and the default is left out (as with ``--replace-workflow-config``); files without them (the
  miniature suite) still extend the default.
- **Nested keys from --config.** Snakemake accepts only letters, digits, ``_`` and ``-`` in a
  ``--config`` key, so a nested key is written with ``__`` between its parts:
  ``--config training__lr=1e-4 runs__slm__ratio=0.5``. A path the schema does not allow stops the run
  with one line naming it.
- **Values are typed.** Snakemake types a top-level ``--config`` value (integer, float, ``True`` /
  ``False``) but leaves everything inside a list or mapping a string (``--config 'training={lr: 1e-4}'``
  gives ``lr: "1e-4"``). Every string given on the command line is read here as a number, ``true`` /
  ``false`` or ``null`` when it is one, else kept as text.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

SEPARATOR = "__"
WORDS = {"true": True, "false": False, "null": None}


class OverrideError(ValueError):
    pass


def typed(value):
    """A command-line value with its strings read as numbers, booleans or null where they are one."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if not isinstance(value, str):
        return value
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            pass
    return WORDS.get(value.lower(), value)


def merge(base: dict, update: dict) -> dict:
    """``update`` merged into ``base`` key by key (Snakemake's rule: mappings merge, anything else replaces)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def is_complete(config: dict, schema: dict) -> bool:
    return set(schema.get("required", ())) <= set(config)


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        node = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _branches(schema: dict, root: dict) -> list[dict]:
    """A schema and every subschema that applies to the same value (allOf, oneOf, anyOf, if/then/else)."""
    schema = _resolve(schema, root)
    out = [schema]
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(key, ()):
            out += _branches(sub, root)
    for key in ("then", "else"):
        if key in schema:
            out += _branches(schema[key], root)
    return out


def child_schemas(schema: dict, key: str, root: dict) -> tuple[list[dict], list[str]]:
    """The subschemas a mapping's ``key`` may follow, and the key names the schema lists there."""
    found, names = [], []
    for branch in _branches(schema, root):
        properties = branch.get("properties", {})
        names += properties
        if key in properties:
            found.append(properties[key])
        found += [sub for pattern, sub in branch.get("patternProperties", {}).items() if re.search(pattern, key)]
        if isinstance(branch.get("additionalProperties"), dict) and key not in properties:
            found.append(branch["additionalProperties"])
    return found, sorted(set(names))


def set_nested(config: dict, flag: str, value, schema: dict) -> None:
    """Set the value of a ``--config a__b__c=value`` entry at ``config[a][b][c]``, checking the path
    against the schema first."""
    parts = flag.split(SEPARATOR)
    node, schemas = config, [schema]
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "the config"
        found, names = [], []
        for sub in schemas:
            more, listed = child_schemas(sub, part, schema)
            found += more
            names += listed
        if not found:
            known = ", ".join(sorted(set(names))) or "none"
            raise OverrideError(f"--config {flag}: {where} has no key '{part}' (keys: {known})")
        if depth == len(parts) - 1:
            node[part] = value
            return
        if not isinstance(node.setdefault(part, {}), dict):
            raise OverrideError(f"--config {flag}: '{'.'.join(parts[: depth + 1])}' is not a mapping")
        node, schemas = node[part], found


def apply_command_line(
    config: dict, schema: dict, *, configfiles: list, cli_config: dict, replaced: bool = False
) -> list[Path]:
    """Apply the command line to the Snakemake ``config`` in place (see the module docstring).

    ``configfiles`` are the ``--configfile`` paths, ``cli_config`` Snakemake's parsed ``--config``,
    ``replaced`` whether ``--replace-workflow-config`` was given. Returns the config files that
    replaced the default (empty when the default was kept)."""
    files = [yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {} for path in configfiles]
    given = {}
    for content in files:
        merge(given, content)
    replacing = [Path(p) for p in configfiles] if files and not replaced and is_complete(given, schema) else []
    cli = typed(dict(cli_config))
    for flag in cli:
        if SEPARATOR in flag:  # Snakemake put it at the top level
            config.pop(flag, None)
    if replacing:
        config.clear()
        config.update(given)
    merge(config, {flag: value for flag, value in cli.items() if SEPARATOR not in flag})
    for flag, value in cli.items():
        if SEPARATOR in flag:
            set_nested(config, flag, value, schema)
    return replacing
