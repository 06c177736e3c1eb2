"""Tables from hand-made evaluation / stats JSONs, checked against values computed here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from slm.intervals import bootstrap_interval
from slm.reported import reported_table
from slm.tables import (
    GAIN_COLUMNS,
    Measured,
    Replicate,
    checkpoints_table,
    gains_table,
    measure,
    results_table,
    selection_table,
    speedup_table,
)

TASK_METRICS = {
    "arith_gen": "exact_match,flexible-extract",
    "arith_mc": "acc,none",
    "math_ppl": "bits_per_byte,none",
}
KIND_NAMES = ["other", "math", "noise", "boilerplate", "wrong_math"]

# model -> (arith_gen, arith_mc, math_ppl); raw lm-eval fractions / bits
SCORES = {
    "base": (0.1234, 0.40, 2.5),
    "reference": (0.3456, 0.55, 1.9),
    "clm": (0.2000, 0.4817, 2.1),
    "slm": (0.2655, 0.5125, 2.05),
}


def write_eval(path: Path, model: str, scores) -> Path:
    gen, mc, bpb = scores
    data = {
        "model": model,
        "tasks": {
            "arith_gen": {
                "exact_match,strict-match": gen / 2,
                "exact_match_stderr,strict-match": 0.01,
                "exact_match,flexible-extract": gen,
                "exact_match_stderr,flexible-extract": 0.01,
            },
            "arith_mc": {"acc,none": mc, "acc_stderr,none": 0.02, "acc_norm,none": mc / 2},
            "math_ppl": {"word_perplexity,none": 30.0, "bits_per_byte,none": bpb},
        },
        "n_samples": {"arith_gen": 100, "arith_mc": 100, "math_ppl": 50},
        "lm_eval_version": "0.4.13",
        "limit": None,
        "seed": 1234,
    }
    path.write_text(json.dumps(data))
    return path


def write_stats(path: Path, run: str, ratio: float, seen: int, kinds: dict[str, tuple[int, int]]) -> Path:
    loss_bearing = sum(s for s, _ in kinds.values())
    selected = sum(k for _, k in kinds.values())
    data = {
        "run": run,
        "ratio": ratio,
        "unit": "batch",
        "steps": 400,
        "tokens_seen": seen,
        "tokens_loss_bearing": loss_bearing,
        "tokens_selected": selected,
        "kind_names": KIND_NAMES,
        "kinds": {k: {"seen": s, "selected": sel} for k, (s, sel) in kinds.items()},
        "tokens_per_second": 9500.0,
    }
    path.write_text(json.dumps(data))
    return path


CLM_KINDS = {
    "other": (400, 400),
    "math": (800, 800),
    "noise": (200, 200),
    "boilerplate": (100, 100),
    "wrong_math": (100, 100),
}
SLM_KINDS = {
    "other": (400, 180),
    "math": (800, 700),
    "noise": (200, 10),
    "boilerplate": (100, 0),
    "wrong_math": (100, 30),
}


def rows(models: list[dict]) -> list[dict]:
    """Table rows of single models (a base, the reference, a run trained once)."""
    return [
        {
            "key": m["key"],
            "name": m["name"],
            "role": m["role"],
            "replicates": [{"seed": m.get("seed"), "eval_json": m["eval_json"], "train_stats": m["train_stats"]}],
        }
        for m in models
    ]


@pytest.fixture
def inputs(tmp_path):
    evals = {name: write_eval(tmp_path / f"{name}.json", name, s) for name, s in SCORES.items()}
    stats = {
        "clm": write_stats(tmp_path / "clm_stats.json", "clm", 1.0, 1650, CLM_KINDS),
        "slm": write_stats(tmp_path / "slm_stats.json", "slm", 0.6, 1650, SLM_KINDS),
    }
    models = [
        {"key": "base", "name": "Base", "role": "base", "eval_json": evals["base"], "train_stats": None},
        {
            "key": "reference",
            "name": "Reference",
            "role": "reference",
            "eval_json": evals["reference"],
            "train_stats": None,
        },
        {"key": "clm", "name": "CLM", "role": "clm", "eval_json": evals["clm"], "train_stats": stats["clm"]},
        {
            "key": "slm",
            "name": "SLM (ratio 0.6)",
            "role": "slm",
            "eval_json": evals["slm"],
            "train_stats": stats["slm"],
        },
    ]
    return tmp_path, evals, stats, models


def test_results_table_values(inputs):
    tmp, evals, stats, models = inputs
    measured = measure(rows(models), TASK_METRICS, lower_is_better={"math_ppl"})
    df = results_table(measured, tmp / "t.md", tmp / "t.csv", delta=("slm", "clm"))
    names = ["Base", "Reference", "CLM", "SLM (ratio 0.6)", "Δ (SLM − CLM)"]
    assert list(df.index) == names
    assert list(df.columns) == ["arith_gen", "arith_mc", "math_ppl", "AVG", "Train tokens", "Seen tokens"]

    for name, key in zip(names[:4], SCORES):
        gen, mc, bpb = SCORES[key]
        assert df.at[name, "arith_gen"] == pytest.approx(round(100 * gen, 1))
        assert df.at[name, "arith_mc"] == pytest.approx(round(100 * mc, 1))
        assert df.at[name, "math_ppl"] == pytest.approx(bpb)  # raw, not a percentage
        # AVG: mean of the two accuracy columns only, in percent
        assert df.at[name, "AVG"] == pytest.approx(round((100 * gen + 100 * mc) / 2, 1))
    assert df.at["Base", "arith_gen"] == 12.3
    assert df.at["SLM (ratio 0.6)", "AVG"] == 38.9  # (26.55 + 51.25) / 2 = 38.9

    # token columns
    assert pd.isna(df.at["Base", "Train tokens"]) and pd.isna(df.at["Base", "Seen tokens"])
    assert df.at["CLM", "Train tokens"] == 1600 and df.at["CLM", "Seen tokens"] == 1650
    assert df.at["SLM (ratio 0.6)", "Train tokens"] == 920 and df.at["SLM (ratio 0.6)", "Seen tokens"] == 1650

    # Δ row: differences of unrounded display values
    d = df.loc["Δ (SLM − CLM)"]
    assert d["arith_gen"] == pytest.approx(round(100 * (0.2655 - 0.2000), 1))
    assert d["arith_mc"] == pytest.approx(round(100 * (0.5125 - 0.4817), 1))
    assert d["math_ppl"] == pytest.approx(2.05 - 2.1)
    assert d["AVG"] == pytest.approx(round((26.55 + 51.25) / 2 - (20.0 + 48.17) / 2, 1))
    assert d["Train tokens"] == f"{(920 - 1600) / 1600:+.0%}" == "-42%"
    assert d["Seen tokens"] == "+0%"

    md = (tmp / "t.md").read_text()
    assert "| Model" in md and "Δ (SLM − CLM)" in md
    assert "`exact_match,flexible-extract`" in md and "`bits_per_byte,none`" in md
    assert "accuracy, %" in md and "lower is better" in md
    assert " 12.3 " in md and " 2.5000 " in md and "-42%" in md and "1.6K" in md
    csv = pd.read_csv(tmp / "t.csv", index_col=0)
    assert list(csv.columns)[:3] == [
        "arith_gen [exact_match,flexible-extract]",
        "arith_mc [acc,none]",
        "math_ppl [bits_per_byte,none]",
    ]
    assert csv.loc["Reference", "arith_mc [acc,none]"] == 55.0
    assert not list(tmp.glob(".*tmp*"))


def test_results_table_without_delta_and_bare_metric(inputs):
    tmp, evals, stats, models = inputs
    ref_stats = write_stats(tmp / "ref_stats.json", "reference", 1.0, 500, {"math": (500, 500)})
    models[1]["train_stats"] = ref_stats
    models[0]["train_stats"] = ref_stats  # a base model never shows train tokens
    df = results_table(measure(rows(models), {"arith_mc": "acc"}), tmp / "t.md", tmp / "t.csv")
    assert list(df.index) == ["Base", "Reference", "CLM", "SLM (ratio 0.6)"]
    assert df["AVG"].tolist() == df["arith_mc"].tolist() == [40.0, 55.0, 48.2, 51.2]
    assert pd.isna(df.at["Base", "Train tokens"]) and df.at["Base", "Seen tokens"] == 500
    assert df.at["Reference", "Train tokens"] == 500
    # a perplexity metric is treated as lower-is-better even if not declared
    measured = measure(rows(models), {"arith_mc": "acc,none", "math_ppl": "bits_per_byte,none"})
    df = results_table(measured, tmp / "t.md", tmp / "t.csv")
    assert df.at["CLM", "AVG"] == 48.2


def test_results_table_errors(inputs):
    tmp, evals, stats, models = inputs
    missing = dict(models[2], eval_json=tmp / "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        measure(rows([missing]), TASK_METRICS)
    bad = tmp / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        measure(rows([dict(models[2], eval_json=bad)]), TASK_METRICS)
    shapeless = tmp / "shapeless.json"
    shapeless.write_text(json.dumps({"model": "x"}))
    with pytest.raises(ValueError, match="shapeless.json"):
        measure(rows([dict(models[2], eval_json=shapeless)]), TASK_METRICS)
    with pytest.raises(ValueError, match=r"'gsm8k'.*base\.json"):
        measure(rows(models), {"gsm8k": "exact_match,strict-match"})
    with pytest.raises(ValueError, match="ambiguous"):
        measure(rows(models), {"arith_gen": "exact_match"})
    with pytest.raises(ValueError, match="f1"):
        measure(rows(models), {"arith_mc": "f1,none"})
    with pytest.raises(ValueError, match="keys must be present and unique"):
        measure(rows([models[2], dict(models[3], key="clm")]), TASK_METRICS)
    with pytest.raises(ValueError, match=r"\['SLM \(ratio 0.6\)'\] are not among"):  # pairs by key, not label
        results_table(
            measure(rows(models), TASK_METRICS), tmp / "t.md", tmp / "t.csv", delta=("SLM (ratio 0.6)", "clm")
        )
    bad_stats = tmp / "bad_stats.json"
    bad_stats.write_text(json.dumps({"run": "slm"}))
    with pytest.raises(ValueError, match="bad_stats.json"):
        measure(rows([dict(models[3], train_stats=bad_stats)]), TASK_METRICS)
    assert not (tmp / "t.md").exists() and not (tmp / "t.csv").exists()


def test_checkpoints_table(inputs, tmp_path):
    tmp, evals, stats, models = inputs
    ck_stats = write_stats(tmp / "slm_ck1.json", "slm", 0.6, 800, {"math": (800, 480)})
    runs = [
        {
            "run": "slm",
            "seed": 3,
            "checkpoints": [
                {"tokens": 1650, "eval_json": evals["slm"], "train_stats": stats["slm"]},
                {"tokens": 800, "eval_json": evals["base"], "train_stats": ck_stats},
            ],
        },
        {
            "run": "clm",
            "seed": 3,
            "checkpoints": [
                {"tokens": 1650, "eval_json": evals["clm"], "train_stats": None},
            ],
        },
    ]
    df = checkpoints_table(runs, TASK_METRICS, tmp / "ck.csv")
    assert list(df.columns) == ["run", "seed", "tokens_seen", "tokens_selected", "task", "metric", "value"]
    assert df["seed"].tolist() == [3] * 9
    assert len(df) == 3 * 3
    assert df["run"].tolist() == ["clm"] * 3 + ["slm"] * 6
    assert df["tokens_seen"].tolist() == [1650] * 3 + [800] * 3 + [1650] * 3
    assert df["task"].tolist() == list(TASK_METRICS) * 3
    assert df["metric"].tolist()[:3] == list(TASK_METRICS.values())
    assert pd.isna(df["tokens_selected"].iloc[0])
    assert df["tokens_selected"].tolist()[3:] == [480] * 3 + [920] * 3
    assert df["value"].tolist()[3:6] == list(SCORES["base"])
    back = pd.read_csv(tmp / "ck.csv")
    assert back["value"].tolist() == pytest.approx(df["value"].tolist())


def test_selection_table(inputs):
    tmp, evals, stats, models = inputs
    slm3 = write_stats(
        tmp / "slm03.json",
        "slm",
        0.3,
        1650,
        {**{k: (s, 0) for k, (s, _) in SLM_KINDS.items()}, "math": (800, 480), "wrong_math": (0, 0)},
    )
    df = selection_table(
        {"clm": [stats["clm"]], "slm (0.6)": [stats["slm"]], "slm (0.3)": [slm3]}, tmp / "s.md", tmp / "s.csv"
    )
    assert list(df.columns) == ["clm", "slm (0.6)", "slm (0.3)", "share of tokens (%)"]
    assert list(df.index) == KIND_NAMES + ["all"]
    assert df["clm"].tolist() == [100.0] * 6
    for kind, (seen, sel) in SLM_KINDS.items():
        assert df.at[kind, "slm (0.6)"] == round(100 * sel / seen, 1)
        assert df.at[kind, "share of tokens (%)"] == round(100 * seen / 1600, 1)
    assert df.at["noise", "slm (0.6)"] == 5.0 and df.at["boilerplate", "slm (0.6)"] == 0.0
    assert df.at["all", "slm (0.6)"] == round(100 * 920 / 1600, 1) == 57.5
    assert df.at["all", "share of tokens (%)"] == 100.0
    assert math.isnan(df.at["wrong_math", "slm (0.3)"])  # that run saw none
    assert df.at["all", "slm (0.3)"] == round(100 * 480 / 1500, 1)
    # a kind nobody saw is dropped
    only = write_stats(tmp / "only.json", "x", 1.0, 10, {"math": (10, 10), "noise": (0, 0)})
    df2 = selection_table({"x": [only]}, tmp / "s2.md", tmp / "s2.csv")
    assert list(df2.index) == ["math", "all"]
    # a run's seeds are summed: the two replicates' counts together
    summed = selection_table({"slm": [stats["slm"], slm3]}, tmp / "s3.md", tmp / "s3.csv")
    assert summed.at["math", "slm"] == round(100 * (700 + 480) / 1600, 1)
    md = (tmp / "s.md").read_text()
    assert "| kind" in md and "57.5" in md and "share of tokens" in md
    with pytest.raises(FileNotFoundError, match="missing_stats.json"):
        selection_table({"x": [tmp / "missing_stats.json"]}, tmp / "s.md", tmp / "s.csv")
    assert "effective (soft)" not in df.index  # no run weights softly


def test_selection_table_gives_a_soft_runs_effective_sample_size(tmp_path, inputs):
    _, _, stats, _ = inputs
    # two seeds of a soft run: 1600 loss-bearing tokens over 400 steps, 4 a step; logged sizes per step
    logged = {"seed-1": [2.0, 3.0, 4.0], "seed-2": [1.0, 1.0]}
    soft = []
    for seed, sizes in logged.items():
        (tmp_path / seed).mkdir()
        soft.append(write_stats(tmp_path / seed / "train_stats.json", "soft", 1.0, 1650, SLM_KINDS))
        entries = [{"step": 10 * (i + 1), "loss": 1.0} | {"effective_sample_size": s} for i, s in enumerate(sizes)]
        entries.insert(1, {"step": 15, "loss": 1.0})  # a line without the size (hard runs log none)
        (tmp_path / seed / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    df = selection_table({"slm": [stats["slm"]], "soft": soft}, tmp_path / "s.md", tmp_path / "s.csv")
    per_step = 1600 / 400
    expected = np.mean([100 * np.mean(sizes) / per_step for sizes in logged.values()])
    assert df.at["effective (soft)", "soft"] == round(expected, 1) == 50.0
    assert math.isnan(df.at["effective (soft)", "slm"])
    assert list(df.index)[-2:] == ["all", "effective (soft)"]
    assert "(Σw)²/Σw²" in (tmp_path / "s.md").read_text()


# --------------------------------------------------------------------------- Figure 5's table
GAIN_TASKS = {
    "t_gen": "exact_match,strict-match",
    "t_mc": "acc,none",
    "t_err": "acc,none",  # lower-is-better by config
    "t_ppl": "bits_per_byte,none",  # lower-is-better by its metric
}
# task -> (CLM, SLM) in display units, unrounded
GAIN_VALUES = {"t_gen": (20.04, 26.46), "t_mc": (40.0, 38.2), "t_err": (30.0, 21.0), "t_ppl": (1.3, 1.25)}


def gain_inputs() -> Measured:
    replicates = {}
    for i, run in enumerate(("clm", "slm")):
        values = {t: v[i] for t, v in GAIN_VALUES.items()}
        values["AVG"] = (values["t_gen"] + values["t_mc"]) / 2
        replicates[run] = [Replicate(1, values, {}, None, None)]
    names = {"clm": "clm: CLM", "slm": "slm: SLM (ratio 0.6)"}
    return Measured(GAIN_TASKS, dict(GAIN_TASKS), {"t_err", "t_ppl"}, names, replicates)


def test_gains_table_without_paper_columns(tmp_path):
    data = gains_table(gain_inputs(), ("slm", "clm"), tmp_path / "tables" / "figure5")
    assert tuple(data.columns) == GAIN_COLUMNS
    assert data["task"].tolist() == ["t_gen", "t_mc", "t_err", "t_ppl", "average"]
    gains = data.set_index("task")["gain"]
    # independently: SLM − CLM of the unrounded values, CLM − SLM for the lower-is-better tasks, rounded
    assert gains["t_gen"] == 6.4  # not 26.5 − 20.0 of the rounded scores
    assert gains["t_mc"] == -1.8 and gains["t_err"] == 9.0 and gains["t_ppl"] == 0.05
    assert data.set_index("task")["lower_is_better"].to_dict() == {
        "t_gen": False,
        "t_mc": False,
        "t_err": True,
        "t_ppl": True,
        "average": False,
    }
    average = data.iloc[-1]
    assert average["clm"] == round((20.04 + 40.0) / 2, 1) and average["slm"] == round((26.46 + 38.2) / 2, 1)
    assert average["gain"] == round((26.46 + 38.2) / 2 - (20.04 + 40.0) / 2, 1)
    assert data["paper_gain"].isna().all()
    back = pd.read_csv(tmp_path / "tables" / "figure5.csv")
    assert back["task"].tolist() == data["task"].tolist()
    assert back["gain"].tolist() == pytest.approx(data["gain"].tolist())
    md = (tmp_path / "tables" / "figure5.md").read_text()
    header = md.splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")] == ["Task", "Metric", "CLM", "SLM", "Gain"]
    assert "|    +6.4 |" in md and "t_err, t_ppl (lower is better)" in md and "clm: CLM" in md
    tex = (tmp_path / "tables" / "figure5.tex").read_text()
    assert "\\begin{tabular}{llrrr}" in tex and "t\\_ppl" in tex


def test_gains_table_beside_the_paper(tmp_path):
    mapping = {"t_gen": "GSM8K", "t_mc": "MMLU"}
    data = gains_table(gain_inputs(), ("slm", "clm"), tmp_path / "figure5", mapping=mapping).set_index("task")
    paper = reported_table("figure5_general_gain_over_ct").iloc[0]
    assert data.loc["t_gen", "paper_gain"] == paper["GSM8K"] and data.loc["t_mc", "paper_gain"] == paper["MMLU"]
    assert data.loc["t_gen", "paper_benchmark"] == "GSM8K"
    assert data.loc[["t_err", "t_ppl"], "paper_gain"].isna().all()
    # every averaged task (t_gen, t_mc) is mapped: the average has the paper's mean over the same tasks
    assert data.loc["average", "paper_gain"] == round((paper["GSM8K"] + paper["MMLU"]) / 2, 1)
    unmapped = gains_table(gain_inputs(), ("slm", "clm"), tmp_path / "figure5", mapping={"t_gen": "GSM8K"})
    assert math.isnan(unmapped.iloc[-1]["paper_gain"])
    md = (tmp_path / "figure5.md").read_text()
    assert "Paper gain" in md.splitlines()[0] and "+28.2" in md


def test_gains_table_errors(tmp_path):
    out = tmp_path / "f"
    with pytest.raises(ValueError, match=r"\['slm: SLM'\] are not among"):
        gains_table(gain_inputs(), ("slm: SLM", "clm"), out)
    with pytest.raises(ValueError, match=r"mapped tasks \['mmlu'\] are not evaluated tasks"):
        gains_table(gain_inputs(), ("slm", "clm"), out, mapping={"mmlu": "MMLU"})
    with pytest.raises(ValueError, match=r"\['GSM-8K'\] are not benchmarks"):
        gains_table(gain_inputs(), ("slm", "clm"), out, mapping={"t_gen": "GSM-8K"})
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- seeds and sampling intervals
SEED_TASKS = {"gen": "exact_match,strict-match", "mc": "acc,none", "ppl": "bits_per_byte,none"}


def write_sampled_eval(path: Path, gen: np.ndarray, mc: np.ndarray, bpb: float) -> Path:
    """An evaluation JSON with per-document values (``samples``), as slm.evaluate writes them."""
    data = {
        "tasks": {
            "gen": {"exact_match,strict-match": gen.mean()},
            "mc": {"acc,none": mc.mean()},
            "ppl": {"bits_per_byte,none": bpb},
        },
        "n_samples": {"gen": len(gen), "mc": len(mc), "ppl": 10},
        "samples": {"gen": gen.tolist(), "mc": mc.tolist(), "ppl": [bpb] * 10},
    }
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def seeded(tmp_path):
    """slm and clm trained with seeds 1, 2, 3 (slm better on gen), a base evaluated once."""
    rng = np.random.default_rng(0)
    docs = {}
    models = []
    for key, p_gen in (("base", 0.1), ("clm", 0.3), ("slm", 0.45)):
        replicates = []
        for seed in [None] if key == "base" else [1, 2, 3]:
            gen = (rng.random(80) < p_gen).astype(float)
            mc = (rng.random(60) < 0.5).astype(float)
            docs[key, seed] = (gen, mc)
            path = write_sampled_eval(tmp_path / f"{key}-{seed}.json", gen, mc, 1.0 + 0.01 * (seed or 0))
            stats = write_stats(tmp_path / f"{key}-{seed}-stats.json", key, 1.0, 1000, CLM_KINDS) if seed else None
            replicates.append({"seed": seed, "eval_json": path, "train_stats": stats})
        models.append({"key": key, "name": key.upper(), "role": key, "replicates": replicates})
    return tmp_path, models, docs


def test_seeds_are_averaged_with_their_intervals(seeded):
    tmp, models, docs = seeded
    measured = measure(models, SEED_TASKS)
    df = results_table(measured, tmp / "r.md", tmp / "r.csv", delta=("slm", "clm"), out_intervals=tmp / "iv.csv")
    per_seed = {s: 100 * docs["slm", s][0].mean() for s in (1, 2, 3)}
    assert df.at["SLM", "gen"] == round(np.mean(list(per_seed.values())), 1)
    assert df.at["SLM", "ppl"] == round(1.02, 4) and df.at["SLM", "Seen tokens"] == 1000
    intervals = pd.read_csv(tmp / "iv.csv").set_index(["key", "column"])
    row = intervals.loc[("slm", "gen")]
    assert row["n_seeds"] == 3
    expected = stats.t.interval(
        0.95, df=2, loc=np.mean(list(per_seed.values())), scale=stats.sem(list(per_seed.values()))
    )
    assert (row["seed_low"], row["seed_high"]) == pytest.approx(expected)
    # over documents: the bootstrap of each document's mean over the three seeds
    documents = 100 * np.mean([docs["slm", s][0] for s in (1, 2, 3)], axis=0)
    assert (row["sample_low"], row["sample_high"]) == pytest.approx(bootstrap_interval([documents]))
    assert row["sample_low"] < row["value"] < row["sample_high"]
    # perplexity-like: an interval over seeds, none over documents; the base model: one seed, no seed interval
    assert np.isnan(intervals.loc[("slm", "ppl"), "sample_low"]) and intervals.loc[("slm", "ppl"), "seed_low"] < 1.02
    assert np.isnan(intervals.loc[("base", "gen"), "seed_low"]) and intervals.loc[("base", "gen"), "sample_low"] >= 0
    # the SLM − CLM row: per-seed differences, paired per document
    diffs = [per_seed[s] - 100 * docs["clm", s][0].mean() for s in (1, 2, 3)]
    delta = intervals.loc[("Δ", "gen")]
    assert delta["value"] == pytest.approx(np.mean(diffs))
    assert (delta["seed_low"], delta["seed_high"]) == pytest.approx(
        stats.t.interval(0.95, 2, np.mean(diffs), stats.sem(diffs))
    )
    paired = 100 * (
        np.mean([docs["slm", s][0] for s in (1, 2, 3)], axis=0)
        - np.mean([docs["clm", s][0] for s in (1, 2, 3)], axis=0)
    )
    assert (delta["sample_low"], delta["sample_high"]) == pytest.approx(bootstrap_interval([paired]))
    # AVG: its intervals too; the Markdown shows (seeds) and [documents]
    assert intervals.loc[("slm", "AVG"), "sample_low"] < intervals.loc[("slm", "AVG"), "value"]
    md = (tmp / "r.md").read_text()
    slm_line = next(line for line in md.splitlines() if line.startswith("| SLM"))
    assert (
        f"{df.at['SLM', 'gen']:.1f} ({row['seed_low']:.1f}, {row['seed_high']:.1f}) [{row['sample_low']:.1f}"
        in slm_line
    )
    assert slm_line.rstrip(" |").endswith("3")  # the Seeds column
    assert "t interval over the seeds" in md and "bootstrap interval" in md


def test_samples_must_belong_to_their_metric(seeded, tmp_path):
    _, models, _ = seeded
    path = Path(models[1]["replicates"][0]["eval_json"])
    data = json.loads(path.read_text())
    data["samples"]["gen"] = data["samples"]["gen"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"79 samples of 'gen' for 80 documents"):
        measure(models, SEED_TASKS)
    data["samples"]["gen"] = [1.0] * 80
    data["n_samples"]["gen"] = 80
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="samples of 'gen' average 1, not its metric"):
        measure(models, SEED_TASKS)
    # values lm-eval does not simply average (e.g. [log-likelihood, bytes] pairs) give no bootstrap here
    data["sample_aggregation"] = {"gen": "bits_per_byte"}
    path.write_text(json.dumps(data))
    assert "gen" not in measure(models, SEED_TASKS).replicates["clm"][0].samples


def test_speedup_table(tmp_path):
    rows = []
    # CLM ends at 30% (seed 1) and 32% (seed 2) after 300 tokens; SLM starts at the base's 10%
    curves = {
        ("clm", 1): [(100, 0.15), (200, 0.25), (300, 0.30)],
        ("clm", 2): [(100, 0.16), (200, 0.26), (300, 0.32)],
        ("slm", 1): [(100, 0.20), (200, 0.40), (300, 0.45)],
        ("slm", 2): [(100, 0.34), (200, 0.40), (300, 0.45)],
    }
    for (run, seed), points in curves.items():
        for tokens, value in points:
            rows.append(
                {"run": run, "seed": seed, "tokens_seen": tokens, "task": "gen", "metric": "acc,none", "value": value}
            )
    data = speedup_table(
        pd.DataFrame(rows), {"gen": 10.0, "AVG": 10.0}, ("slm", "clm"), ["gen"], tmp_path / "s.md", tmp_path / "s.csv"
    )
    avg = data[data["column"] == "AVG"].set_index("seed")
    # seed 1: 30% between (100, 20%) and (200, 40%): 150 tokens; seed 2: 32% between (0, 10%) and (100, 34%)
    assert avg.loc[1, "slm_tokens"] == pytest.approx(150.0) and avg.loc[1, "ratio"] == pytest.approx(0.5)
    assert avg.loc[2, "slm_tokens"] == pytest.approx(100 * 22 / 24)
    md = (tmp_path / "s.md").read_text()
    ratios = [0.5, 100 * 22 / 24 / 300]
    low, high = stats.t.interval(0.95, 1, np.mean(ratios), stats.sem(ratios))
    assert f"{np.mean(ratios):.2f} ({low:.2f}, {high:.2f})" in md and "2 of 2" in md
    assert f"{1 / np.mean(ratios):.2f}×" in md
    never = speedup_table(
        pd.DataFrame(rows), {"gen": 10.0, "AVG": 10.0}, ("clm", "slm"), ["gen"], tmp_path / "n.md", tmp_path / "n.csv"
    )
    assert never["ratio"].isna().all() and "not reached" in (tmp_path / "n.md").read_text()
