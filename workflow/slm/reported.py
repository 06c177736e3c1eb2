"""The Rho-1 paper's reported numbers as tables, and this run's results beside them.

The numbers live in ``config/paper-reported.yaml`` (a copy of the project's machine-readable
transcription of arXiv 2404.07965 v1; accuracies in percent, ``null`` = not reported). Two shapes
of entry are understood:

* a *row table*: ``{columns: [...], rows: [{<meta>: ..., scores: [...]}, ...]}`` — Tables 1-3 and
  Figure 9 (whose values were read off the plot and are approximate);
* a *mapping*: ``{column: number, ...}`` — Figure 5 (gain of Rho-1 over CT per benchmark) and
  Figure 3 (token-category shares); shown as a single row.

:func:`reported_table` returns one entry as a DataFrame; :func:`side_by_side` writes a
Markdown / CSV / LaTeX table that puts this run's rows beside the paper's rows, aligning only the
columns the caller says correspond (a miniature ``arith_gen`` is not the paper's GSM8K).
:func:`measured_rows` picks some rows of ``results.csv`` (e.g. the weak-to-strong runs' for Table 3)
and adds per-row values and parameter counts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from slm.formatting import bare_column, format_cell, is_count_column, latex_table
from slm.io import atomic_write_text

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "paper-reported.yaml"

#: The entries of the YAML this module knows how to show, in paper order.
TABLES = (
    "table1_math_fewshot_cot",
    "table2_tool_integrated_reasoning",
    "table3_weak_to_strong",
    "figure9_selection_ratio",
    "figure5_general_gain_over_ct",
    "figure3_token_category_shares",
)
#: Row label of the mapping-shaped entries (shown as one row).
MAPPING_ROW_LABELS = {
    "figure5_general_gain_over_ct": "Rho-1 1B − Tinyllama-CT (80B tokens)",
    "figure3_token_category_shares": "Tinyllama-1.1B, 15B OWM tokens (% of tokens)",
}
#: Entries whose numbers were read off a plot.
APPROXIMATE = {"figure9_selection_ratio"}
PAPER = "Rho-1 (Lin et al., 2024), arXiv 2404.07965 v1"
SOURCE_COL = "Source"
LABEL_COL = "Model"


# --------------------------------------------------------------------------- loading
def load_reported(path: str | Path | None = None) -> dict:
    """The whole YAML as a dict; errors name the file."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"paper-reported numbers not found: {path} (pass the path of config/paper-reported.yaml)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"paper-reported numbers {path} are not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"paper-reported numbers {path} are malformed: not a mapping")
    return data


def _number(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}: {value!r} is not a number")
    return float(value)


def reported_table(name: str, *, path: str | Path | None = None) -> pd.DataFrame:
    """One entry of the paper-reported YAML as a DataFrame (RangeIndex, rows in YAML order).

    Row tables: the row's metadata keys first (``model``, ``size``, ``data``, ``uniq``,
    ``train``, ``reference`` or ``ratio``, as present), then the paper's score columns as floats
    (NaN where the paper reports nothing).  Mapping entries: one row, a ``model`` column holding
    :data:`MAPPING_ROW_LABELS` ``[name]``, then one float column per key.

    ``df.attrs`` carries ``table`` (the name), ``score_columns`` (the paper's number columns),
    ``label_column`` (the first column), ``approximate`` (True for values read off a plot) and
    ``source`` (the YAML path).
    """
    path = Path(path) if path is not None else DEFAULT_PATH
    data = load_reported(path)
    if name not in data:
        known = [t for t in TABLES if t in data] + [t for t in data if t not in TABLES]
        raise KeyError(f"unknown paper table {name!r} in {path}; known: {known}")
    entry = data[name]
    where = f"{path}: {name}"
    if isinstance(entry, dict) and "rows" in entry:
        columns = entry.get("columns")
        if not isinstance(columns, list) or not columns:
            raise ValueError(f"{where} has rows but no 'columns' list")
        rows = entry["rows"]
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"{where} has no rows")
        meta_cols: list[str] = []
        for row in rows:
            if not isinstance(row, dict):
                raise ValueError(f"{where}: row {row!r} is not a mapping")
            for key in row:
                if key != "scores" and key not in meta_cols:
                    meta_cols.append(key)
        records = []
        for i, row in enumerate(rows):
            scores = row.get("scores")
            if not isinstance(scores, list) or len(scores) != len(columns):
                raise ValueError(
                    f"{where}, row {i} ({row.get('model', row.get('ratio'))!r}): "
                    f"{len(scores) if isinstance(scores, list) else 'no'} scores for {len(columns)} columns"
                )
            record = {key: row.get(key) for key in meta_cols}
            record.update({col: _number(v, f"{where}, row {i}, {col}") for col, v in zip(columns, scores)})
            records.append(record)
        df = pd.DataFrame.from_records(records, columns=meta_cols + list(columns))
        score_cols = list(columns)
    elif isinstance(entry, dict) and entry:
        score_cols = [str(k) for k in entry]
        record = {"model": MAPPING_ROW_LABELS.get(name, name)}
        record.update({str(k): _number(v, f"{where}, {k}") for k, v in entry.items()})
        df = pd.DataFrame.from_records([record], columns=["model"] + score_cols)
    else:
        raise ValueError(f"{where} is neither a row table (columns/rows) nor a mapping of numbers")
    for col in score_cols:
        df[col] = df[col].astype(float)
    df.attrs.update(
        table=name,
        score_columns=score_cols,
        label_column=df.columns[0],
        approximate=name in APPROXIMATE,
        source=_display_path(path),
    )
    return df


# --------------------------------------------------------------------------- provenance
def _display_path(path: Path) -> str:
    """Repository-relative when the file lies in this repository, else as given."""
    try:
        return str(path.resolve().relative_to(DEFAULT_PATH.parents[1]))
    except ValueError:
        return str(path)


def _provenance_lines(provenance: Mapping[str, Any], paper: pd.DataFrame) -> list[tuple[str, str]]:
    lines = []
    for key, value in provenance.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        lines.append((str(key), str(value)))
    note = f"{PAPER}, `{paper.attrs['table']}` in {paper.attrs['source']}"
    if paper.attrs["approximate"]:
        note += " (values read off the paper's plot, approximate)"
    lines.append(("paper numbers", note))
    return lines


# --------------------------------------------------------------------------- measured rows
PARAMETERS_COL = "Parameters"


def select_rows(measured: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The rows of ``measured`` (``results.csv`` read with ``index_col=0``) that ``names`` name, in
    that order.

    A name matches the row labelled exactly so (``"Base (strong)"``), else the one row labelled
    ``"<name>: ..."`` (the results table labels a run's row ``"<run>: <METHOD> ..."``). A name that
    matches no row, or several, is an error naming it and the labels there are.
    """
    labels = [str(label) for label in measured.index]
    picked: list[int] = []
    for name in names:
        matches = [i for i, label in enumerate(labels) if label == name] or [
            i for i, label in enumerate(labels) if label.startswith(f"{name}: ")
        ]
        if len(matches) != 1:
            raise ValueError(
                f"select_rows: {name!r} names {'no' if not matches else len(matches)} rows (have: {labels})"
            )
        if matches[0] in picked:
            raise ValueError(f"select_rows: row {labels[matches[0]]!r} named twice")
        picked.append(matches[0])
    return measured.iloc[picked]


def count_parameters(model_dir: str | Path) -> int:
    """Parameters of a transformers model directory, read from its safetensors headers (no weights
    loaded). Tied weights are stored, and so counted, once."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"count_parameters: no *.safetensors file in {model_dir}")
    from safetensors import safe_open

    total = 0
    for path in files:
        with safe_open(path, framework="np") as f:  # reads the header only
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return total


def measured_rows(
    measured: pd.DataFrame,
    names: Sequence[str],
    *,
    values: Mapping[str, Mapping[str, Any]] | None = None,
    parameters: Mapping[str, str | Path] | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Some rows of ``measured`` (see :func:`select_rows`), with extra columns.

    ``values``: name -> {column: value}, added as columns after the measured ones (e.g. the
    ``reference`` model of each run; missing values empty). ``parameters``: name -> model
    directory; the names among ``names`` get the model's parameter count in a ``Parameters``
    column. Returns the rows and the parameter counts of the other named models (e.g. the
    reference model, which has no row), for the provenance.
    """
    rows = select_rows(measured, names).copy()
    values = values or {}
    columns: list[str] = []
    for per_row in values.values():
        columns += [c for c in per_row if c not in columns]
    for column in columns:
        if column in rows.columns:
            raise ValueError(f"measured_rows: column {column!r} is already measured")
        rows[column] = [values.get(name, {}).get(column) for name in names]
    counts = {name: count_parameters(path) for name, path in (parameters or {}).items()}
    if any(name in counts for name in names):
        rows[PARAMETERS_COL] = pd.array([counts.get(name) for name in names], dtype="Int64")
    return rows, {name: n for name, n in counts.items() if name not in names}


def usable_mapping(mapping: Mapping[str, str], table: str, *, reported_path: str | Path | None = None) -> dict:
    """The entries of ``mapping`` whose paper column ``table`` has (``tables.paper_columns`` is
    written for ``tables.paper_table``; another table may lack some of its columns)."""
    paper = reported_table(table, path=reported_path)
    return {k: v for k, v in mapping.items() if v in paper.columns and v != paper.attrs["label_column"]}


# --------------------------------------------------------------------------- side by side
def side_by_side(
    measured: pd.DataFrame,
    table: str,
    mapping: Mapping[str, str],
    out_md: str | Path,
    out_csv: str | Path,
    *,
    provenance: Mapping[str, Any],
    out_tex: str | Path | None = None,
    reported_path: str | Path | None = None,
    measured_label: str = "this run",
    paper_label: str = "paper",
) -> pd.DataFrame:
    """This run's rows above the paper's rows of ``table``, in one table.

    ``measured``: one row per model, labelled by the index (e.g. the DataFrame of
    :func:`slm.tables.results_table`, or ``results.csv`` read with ``index_col=0``).
    ``mapping``: measured column -> paper column, only where the two measure the same thing.  A
    measured column may be named exactly or by its bare task name (``"gsm8k_cot"`` matches the
    ``results.csv`` header ``"gsm8k_cot [exact_match,strict-match]"``); the paper column may be a
    score column or a metadata column (e.g. ``"Train tokens" -> "train"``).

    Columns of the result: ``Source`` (``measured_label`` / ``paper_label``), ``Model``, the
    paper's metadata columns, the paper's score columns (mapped ones filled for the measured rows
    too, unmapped ones for the paper rows only), then the measured columns without a paper
    counterpart (measured rows only; one named like a paper column, e.g. an unmapped ``AVG``, is
    shown as ``"AVG (this run)"``).  Values are kept as given (numbers in display units,
    strings such as ``"-40%"`` as is).

    Writes ``out_csv`` (the returned table), ``out_md`` (formatted table, a legend of the
    mapping and a provenance block: ``provenance`` items, e.g. config file, tokens trained,
    checkpoints used, then the paper source) and ``out_tex`` (a LaTeX ``tabular``, provenance as
    ``%`` comments; default: ``out_md`` with suffix ``.tex``), each atomically.
    """
    paper = reported_table(table, path=reported_path)
    label_col = paper.attrs["label_column"]
    score_cols = paper.attrs["score_columns"]
    meta_cols = [c for c in paper.columns if c not in score_cols and c != label_col]
    paper_cols = meta_cols + score_cols

    if not isinstance(measured, pd.DataFrame) or measured.empty:
        raise ValueError("side_by_side: no measured rows given")
    measured_cols = [str(c) for c in measured.columns]
    if len(set(measured_cols)) < len(measured_cols):
        raise ValueError(f"side_by_side: measured columns are not unique: {measured_cols}")

    resolved: dict[str, str] = {}  # measured column -> paper column
    for key, target in mapping.items():
        matches = [c for c in measured_cols if c == key] or [c for c in measured_cols if bare_column(c) == key]
        if len(matches) != 1:
            raise ValueError(
                f"side_by_side: mapping key {key!r} matches "
                f"{'no' if not matches else len(matches)} measured columns (have: {measured_cols})"
            )
        if target not in paper_cols:
            raise ValueError(
                f"side_by_side: mapping target {target!r} is not a column of paper table {table!r} (have: {paper_cols})"
            )
        if target in resolved.values():
            raise ValueError(f"side_by_side: two measured columns map to paper column {target!r}")
        resolved[matches[0]] = target
    # measured columns without a paper counterpart; one that shares a paper column's name (the
    # miniature's AVG is not the paper's AVG) is shown as "<name> (<measured_label>)"
    extra = {
        c: (f"{c} ({measured_label})" if c in paper_cols or c in (SOURCE_COL, LABEL_COL) else c)
        for c in measured_cols
        if c not in resolved
    }
    extra_cols = list(extra.values())

    columns = [SOURCE_COL, LABEL_COL] + paper_cols + extra_cols
    records = []
    for label, row in zip(measured.index, measured.itertuples(index=False, name=None)):
        values = dict(zip(measured_cols, row))
        record = {SOURCE_COL: measured_label, LABEL_COL: str(label)}
        record.update({resolved[c]: values[c] for c in resolved})
        record.update({shown_as: values[c] for c, shown_as in extra.items()})
        records.append(record)
    for row in paper.to_dict(orient="records"):
        record = {SOURCE_COL: paper_label, LABEL_COL: str(row[label_col])}
        record.update({c: row[c] for c in paper_cols})
        records.append(record)
    df = pd.DataFrame.from_records(records, columns=columns)
    df = df.astype(object).where(df.notna(), None)
    df.attrs.update(table=table, mapping=dict(resolved))

    atomic_write_text(out_csv, df.to_csv(index=False))

    # differences (a measured row labelled "Δ ...", as in slm.tables) are shown signed
    shown = pd.DataFrame(
        [
            [
                str(v) if c in (SOURCE_COL, LABEL_COL) else format_cell(v, c, signed=str(r[1]).startswith("Δ"))
                for c, v in zip(columns, r)
            ]
            for r in df.itertuples(index=False, name=None)
        ],
        columns=columns,
    )
    numeric = [c in score_cols or c in extra_cols or is_count_column(c) for c in columns]
    prov = _provenance_lines(provenance, paper)
    legend = ["", "Columns:"]
    for src, dst in resolved.items():
        legend.append(f"- **{dst}**: paper's {dst}; {measured_label} rows: `{src}`")
    unmapped_paper = [c for c in score_cols if c not in resolved.values()]
    if unmapped_paper:
        legend.append(
            f"- {', '.join(unmapped_paper)}: the paper's benchmarks, no counterpart in {measured_label} "
            "(paper rows only)"
        )
    if extra_cols:
        legend.append(f"- {', '.join(extra_cols)}: measured by {measured_label} only, not the paper's benchmarks")
    legend += ["", "Provenance:"] + [f"- {k}: {v}" for k, v in prov]
    md = (
        shown.to_markdown(index=False, disable_numparse=True, colalign=["right" if n else "left" for n in numeric])
        + "\n"
        + "\n".join(legend)
        + "\n"
    )
    atomic_write_text(out_md, md)

    tex_path = Path(out_tex) if out_tex is not None else Path(out_md).with_suffix(".tex")
    atomic_write_text(tex_path, latex_table(shown, prov, n_measured=len(measured), numeric=numeric))
    return df
