"""Token roles inside worked arithmetic, and the share of each role that SLM selects."""

from __future__ import annotations

import numpy as np
import pytest

from slm.roles import character_roles, selection_by_role, token_roles

TEXT = "Question: Ann has 12 pens. She buys 3 more.\nAnswer: 12 + 3 = 15. The answer is 15."


def test_every_character_of_a_worked_problem_gets_its_role():
    roles = character_roles(TEXT)

    def role_of(fragment: str, occurrence: int = 0) -> set:
        start = -1
        for _ in range(occurrence + 1):
            start = TEXT.index(fragment, start + 1)
        return set(roles[start : start + len(fragment)])

    assert role_of("12") == {"number"} and role_of("3") == {"number"}  # the question's numbers
    assert role_of("12", 1) == {"operand"} and role_of("+") == {"operator"} and role_of("3", 1) == {"operand"}
    assert role_of("=") == {"equals"} and role_of("15") == {"result"} and role_of("15", 1) == {"answer"}
    assert role_of("Question: Ann has") == {"text", None} and role_of(" = ") == {None, "equals"}


def test_a_token_takes_the_first_role_of_its_characters():
    pieces = ["Answer", ":", " 1", "2", " +", " 3", " =", " 1", "5", ".", " The", " answer", " is", " 1", "5", "."]
    assert token_roles(pieces) == [
        "text",
        "text",
        "operand",
        "operand",
        "operator",
        "operand",
        "equals",
        "result",
        "result",
        "text",
        "text",
        "text",
        "text",
        "answer",
        "answer",
        "text",
    ]
    assert token_roles(["5 +", " 2 = 7"]) == ["operand", "operand"]  # a token spanning roles: the first in ROLES
    assert set(token_roles(["\n", " "])) == {"text"}


def test_selection_by_role_ranks_the_slice_like_one_batch():
    pieces = ["Answer", ":", " 1", " +", " 2", " =", " 3", ".", " zz", " qq"]
    kinds = np.array([1, 1, 1, 1, 1, 1, 1, 1, 2, 2], dtype=np.uint8)
    reference = np.array([np.nan, 1.0, 2.0, 0.5, 2.0, 0.1, 3.0, 0.2, 5.0, 5.0], dtype=np.float32)
    base = np.array([np.nan, 1.5, 2.5, 0.6, 2.1, 0.2, 5.0, 0.3, 5.0, 6.0], dtype=np.float32)
    final = np.array([np.nan, 1.0, 2.0, 0.5, 2.0, 0.1, 3.0, 0.2, 9.0, 9.0], dtype=np.float32)
    dynamics = {
        "losses": np.stack([base, final]),
        "reference": reference,
        "tokens_seen": np.array([0, 1000]),
        "kinds": kinds,
        "kind_names": ["other", "math", "noise"],
        "valid": np.arange(10) > 0,
        "seq_len": 10,
    }
    table = selection_by_role(dynamics, pieces, ratio=0.5).set_index(["kind", "role"])
    # 9 loss-bearing tokens: ratio 0.5 keeps round(4.5) = 4, the highest excess losses, ties by position
    roles = ["text", "text", "operand", "operator", "operand", "equals", "result", "text", "text", "text"]
    for seen, losses in ((0, base), (1000, final)):
        excess = losses - reference
        chosen = sorted(range(1, 10), key=lambda i: (-excess[i], i))[:4]
        for (kind, role), row in table.iterrows():
            members = [i for i in range(1, 10) if roles[i] == role and ["other", "math", "noise"][kinds[i]] == kind]
            assert row["tokens"] == len(members)
            assert row[f"selected @ {seen}"] == pytest.approx(np.mean([i in chosen for i in members]))
            assert row[f"loss @ {seen}"] == pytest.approx(np.mean(losses[members]))
            assert row["reference loss"] == pytest.approx(np.mean(reference[members]))
    assert table.loc[("math", "result"), "selected @ 0"] == 1.0  # excess 2.0: the largest at the base
    assert table.loc[("noise", "text"), "selected @ 1000"] == 1.0  # excess 4.0 at the end
    assert list(table.index) == [("math", r) for r in ("operand", "operator", "equals", "result", "text")] + [
        ("noise", "text")
    ]
    with pytest.raises(ValueError, match="no reference losses"):
        selection_by_role({k: v for k, v in dynamics.items() if k != "reference"}, pieces, 0.5)
