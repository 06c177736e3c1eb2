"""Which parts of a worked arithmetic step SLM selects: selection rates by token role.

Span kinds (``math``, ``noise``, ...) say which documents SLM keeps; inside a math span they hide
what it keeps. Every computation in the generated corpus is written ``a op b = c``
(:data:`slm.data.generate.STEP_RE`), whatever the surrounding format, so each token of a labelled
span gets a role (:data:`ROLES`, first match wins):

``operand``     digits of ``a`` or ``b``          ``operator``  the ``+``, ``-`` or ``*``
``equals``      the ``=``                         ``result``    digits of ``c``
``answer``      digits of ``answer is N``         ``number``    any other digits (the question's numbers)
``text``        every other token of the span (the question's words, lead-ins, punctuation)

A token that covers characters of several roles (e.g. ``" ="`` or ``" +"``) takes the first of them.
:func:`selection_by_role` takes the token dynamics of the SLM run (:mod:`slm.dynamics`: per-token
losses of a held-out slice under the run's base, checkpoints and final model, and the reference
losses) and, at every point, selects the top ``ratio`` of the slice by excess loss exactly as
:func:`slm.dynamics.selection_losses` does (ranked over the slice as over one training batch); it
reports, per span kind and role, the share selected and the mean losses. This estimates what the
trainer selected from the same mixture: the trainer ranked its own batches with the model of each step.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

from slm.data.generate import ANSWER_RE, STEP_RE

ROLES = ("operand", "operator", "equals", "result", "answer", "number", "text")
_DIGITS = re.compile(r"\d+")


def character_roles(text: str) -> list[str | None]:
    """The role of every character of ``text`` (None for whitespace outside any step or number)."""
    roles: list[str | None] = [None if ch.isspace() else "text" for ch in text]

    def mark(start: int, end: int, role: str) -> None:
        for i in range(start, end):
            if roles[i] in (None, "text", "number"):
                roles[i] = role

    for m in STEP_RE.finditer(text):
        mark(*m.span(1), "operand")
        mark(*m.span(2), "operator")
        mark(*m.span(3), "operand")
        mark(m.end(3), m.start(4), "equals")
        mark(*m.span(4), "result")
        for i in range(m.end(3), m.start(4)):  # the spaces around "=" are not part of it
            if text[i].isspace():
                roles[i] = None
    for m in re.finditer(ANSWER_RE, text):
        mark(*m.span(1), "answer")
    for m in _DIGITS.finditer(text):
        mark(*m.span(), "number")
    return roles


def token_roles(pieces: list[str]) -> list[str]:
    """The role of each token of a sequence, given each token's text: the first role (in
    :data:`ROLES` order) among its characters, ``text`` for whitespace-only tokens."""
    chars = character_roles("".join(pieces))
    out, pos = [], 0
    for piece in pieces:
        found = {r for r in chars[pos : pos + len(piece)] if r is not None}
        out.append(next((r for r in ROLES if r in found), "text"))
        pos += len(piece)
    return out


def selection_by_role(dynamics: dict, pieces: list[str], ratio: float) -> pd.DataFrame:
    """Per span kind and role: tokens, share selected at each trajectory point, mean losses.

    ``dynamics`` is a loaded token-dynamics file (:func:`slm.dynamics.load_dynamics`, with reference
    losses); ``pieces`` the text of each of its tokens (same order). Rows: every (kind, role) with
    loss-bearing tokens, kinds in the file's order; columns ``kind``, ``role``, ``tokens``,
    ``reference loss``, then per point ``selected @ N`` (share, 0-1) and ``loss @ N`` (N = tokens seen).
    """
    from slm.selection import select_tokens

    if "reference" not in dynamics:
        raise ValueError("the token dynamics hold no reference losses: cannot rank by excess loss")
    seq_len, valid = int(dynamics["seq_len"]), dynamics["valid"]
    if len(pieces) != len(valid) or len(valid) % seq_len:
        raise ValueError(f"{len(pieces)} token texts for {len(valid)} tokens of sequences of {seq_len}")
    roles = np.array(
        [role for start in range(0, len(pieces), seq_len) for role in token_roles(pieces[start : start + seq_len])]
    )
    kinds = np.asarray(dynamics["kind_names"])[dynamics["kinds"]]
    columns: dict[str, np.ndarray] = {}
    for m, seen in enumerate(dynamics["tokens_seen"]):
        excess = np.nan_to_num(dynamics["losses"][m] - dynamics["reference"], nan=-np.inf)
        selected = select_tokens(torch.from_numpy(excess)[None, :], torch.from_numpy(valid)[None, :], ratio, "batch")
        columns[f"selected @ {int(seen)}"] = selected[0].numpy()
        columns[f"loss @ {int(seen)}"] = dynamics["losses"][m]
    rows = []
    for kind in dict.fromkeys(kinds[valid]):
        for role in ROLES:
            where = valid & (kinds == kind) & (roles == role)
            if not where.any():
                continue
            row = {"kind": kind, "role": role, "tokens": int(where.sum())}
            row["reference loss"] = float(np.mean(dynamics["reference"][where]))
            row.update({name: float(np.mean(values[where])) for name, values in columns.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def role_table(dynamics_npz, tokenizer_dir, ratio: float, out_stem) -> pd.DataFrame:
    """:func:`selection_by_role` of a token-dynamics file, written as ``<out_stem>.csv`` and ``.md``
    (shares and losses as printed there: percentages and nats)."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from slm.dynamics import load_dynamics
    from slm.io import atomic_write_text

    dynamics = load_dynamics(dynamics_npz)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = {int(t): tokenizer.decode([int(t)]) for t in np.unique(dynamics["tokens"])}
    table = selection_by_role(dynamics, [text[int(t)] for t in dynamics["tokens"]], ratio)
    out_stem = Path(out_stem)
    atomic_write_text(out_stem.with_suffix(".csv"), table.to_csv(index=False))
    shown = table.copy()
    for column in shown.columns:
        if column.startswith("selected @"):
            shown[column] = (100 * shown[column]).round(1)
    note = (
        f"\nSelected: % of the role's loss-bearing tokens in the top {100 * ratio:g}% by excess loss (the model's "
        "loss at that point minus the reference loss), ranked over the held-out dynamics slice as over one "
        "batch; losses in nats. Roles (slm.roles): operand, operator, equals and result of every `a op b = c`, "
        "the number after `answer is`, other numbers, other text.\n"
    )
    atomic_write_text(out_stem.with_suffix(".md"), shown.to_markdown(index=False, floatfmt=".3g") + "\n" + note)
    return table
