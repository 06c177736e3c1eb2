"""Figures from small synthetic inputs: valid non-blank PNGs, captions naming inputs, plotted data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from slm.figures import (
    FigureResult,
    figure1_accuracy_vs_tokens,
    figure5_gains,
    figure6_heldout_losses,
    figure7_accuracy_vs_loss,
    figure9_ratio_ablation,
    fit_log_linear,
    log_linear,
    make_figures,
)
from slm.reported import reported_table
from slm.tables import GAIN_COLUMNS, accuracy_curve, ratio_ablation, read_checkpoints

REPO = Path(__file__).resolve().parents[1]


def assert_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert float(np.var(img[..., :3])) > 0
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporaries left


# --------------------------------------------------------------------------- Figure 1
# run -> [(tokens_seen, tokens_selected, {task: value})]
CHECKPOINTS = {
    "clm": [
        (1000, 1000, {"t1": 0.10, "t2": 0.20, "t3": 0.9}),
        (2000, 2000, {"t1": 0.15, "t2": 0.25, "t3": 0.9}),
        (3000, 3000, {"t1": 0.20, "t2": 0.30, "t3": 0.9}),
    ],
    "slm": [
        (1000, 600, {"t1": 0.20, "t2": 0.30, "t3": 0.1}),
        (2000, 1200, {"t1": 0.30, "t2": 0.40, "t3": 0.1}),
        (3000, 1800, {"t1": 0.35, "t2": 0.50, "t3": 0.1}),
    ],
}


def write_checkpoints(
    path: Path, *, duplicate_final: bool = True, drop: tuple | None = None, metric: str = "exact_match,flexible-extract"
) -> Path:
    rows = []
    for run, points in CHECKPOINTS.items():
        for seen, selected, values in points:
            for task, value in values.items():
                if drop == (run, seen, task):
                    continue
                rows.append(
                    {
                        "run": run,
                        "tokens_seen": seen,
                        "tokens_selected": selected,
                        "task": task,
                        "metric": metric,
                        "value": value,
                    }
                )
        if duplicate_final:  # the final model, evaluated at the last checkpoint's token count
            seen, selected, values = points[-1]
            rows += [
                {"run": run, "tokens_seen": seen, "tokens_selected": selected, "task": t, "metric": metric, "value": v}
                for t, v in values.items()
            ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_figure1_averages_the_given_tasks(tmp_path):
    csv = write_checkpoints(tmp_path / "checkpoints.csv")
    curve = accuracy_curve(read_checkpoints(csv), ["t1", "t2"])
    res = figure1_accuracy_vs_tokens(curve, tmp_path / "fig" / "figure1.png")
    assert isinstance(res, FigureResult)
    assert res.png == tmp_path / "fig" / "figure1.png"
    assert_png(res.png)
    data = res.data
    assert list(data.columns) == ["run", "x", "accuracy", "n_tasks"]
    assert len(data) == 6
    for run, points in CHECKPOINTS.items():
        sub = data[data["run"] == run]
        assert sub["x"].tolist() == [p[0] for p in points]
        expected = [100 * (p[2]["t1"] + p[2]["t2"]) / 2 for p in points]
        assert sub["accuracy"].tolist() == pytest.approx(expected)
    assert str(csv) in res.caption and "t1 and t2" in res.caption
    assert "clm and slm" in res.caption and "tokens seen" in res.caption
    assert "4 repeated" in res.caption  # the final rows of the 2 plotted tasks x 2 runs
    assert str(res) == res.caption


def test_figure1_selected_tokens_axis(tmp_path):
    csv = write_checkpoints(tmp_path / "checkpoints.csv", duplicate_final=False)
    res = figure1_accuracy_vs_tokens(
        accuracy_curve(read_checkpoints(csv), ["t3"], x="tokens_selected"), tmp_path / "f1.png"
    )
    assert_png(res.png)
    slm = res.data[res.data["run"] == "slm"]
    assert slm["x"].tolist() == [600, 1200, 1800]
    assert slm["accuracy"].tolist() == pytest.approx([10.0, 10.0, 10.0])
    assert "tokens trained on (selected)" in res.caption and "repeated" not in res.caption


def test_figure1_data_errors(tmp_path):
    table = read_checkpoints(write_checkpoints(tmp_path / "c.csv", drop=("slm", 2000, "t2")))
    with pytest.raises(ValueError, match=r"run 'slm' at tokens_seen=2000 lacks tasks \['t2'\]"):
        accuracy_curve(table, ["t1", "t2"])
    with pytest.raises(ValueError, match=r"tasks \['t9'\] not in checkpoints table .*c.csv"):
        accuracy_curve(table, ["t1", "t9"])
    with pytest.raises(ValueError, match="x must be one of"):
        accuracy_curve(table, ["t1"], x="steps")
    ppl = read_checkpoints(write_checkpoints(tmp_path / "p.csv", metric="bits_per_byte,none"))
    with pytest.raises(ValueError, match="perplexity-like"):
        accuracy_curve(ppl, ["t1"])
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_checkpoints(tmp_path / "nowhere.csv")
    (tmp_path / "short.csv").write_text("run,task\nslm,t1\n")
    with pytest.raises(ValueError, match=r"missing columns \['tokens_seen'"):
        read_checkpoints(tmp_path / "short.csv")


# --------------------------------------------------------------------------- Figure 6
def write_dynamics(path: Path, losses: np.ndarray, reference: np.ndarray, tokens_seen: list[int]) -> Path:
    """A token-dynamics file in slm.dynamics' format: one sequence, position 0 not loss-bearing."""
    n = losses.shape[1]
    valid = np.ones(n, dtype=bool)
    valid[0] = False
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        losses=losses.astype(np.float32),
        reference=reference.astype(np.float32),
        tokens=np.arange(n),
        kinds=np.zeros(n, np.uint8),
        sequence_index=np.array([0]),
        valid=valid,
        model_dirs=np.array(["m"] * len(tokens_seen)),
        tokens_seen=np.array(tokens_seen),
        kind_names=np.array(["other"]),
        seq_len=np.int64(n),
        seed=np.int64(0),
        shard_dir=np.array("s"),
    )
    return path


def test_figure6_compares_runs_on_the_tokens_slm_selects(tmp_path):
    reference = np.array([np.nan, 1.0, 1.0, 1.0, 1.0])
    # At both points SLM's excess loss is highest on tokens 1 and 2: those are the top 50%.
    slm = np.array([[np.nan, 3.0, 2.5, 1.0, 1.2], [np.nan, 2.0, 1.5, 1.5, 1.4]])
    clm = np.array([[np.nan, 3.0, 2.5, 1.0, 1.2], [np.nan, 2.6, 2.2, 1.2, 1.0]])
    files = {
        "slm": write_dynamics(tmp_path / "slm.npz", slm, reference, [0, 100]),
        "clm": write_dynamics(tmp_path / "clm.npz", clm, reference, [0, 100]),
    }
    checkpoints = write_checkpoints(tmp_path / "checkpoints.csv")
    captions = make_figures(
        checkpoints,
        tmp_path / "figures",
        accuracy_tasks=["t1", "t2"],
        loss_task="t3",
        ratio_runs={"slm": 0.6, "clm": 1.0},
        dynamics_by_run=files,
        selector="slm",
        ratio=0.5,
    )
    assert_png(tmp_path / "figures" / "figure6.png")
    assert "top 50%" in captions["figure6.png"] and "downstream: t3" in captions["figure6.png"]
    data = pd.read_csv(tmp_path / "figures" / "figure6.csv")
    selected = data[data["panel"] == "tokens SLM selects"].set_index(["run", "tokens_seen"])["loss"]
    unselected = data[data["panel"] == "tokens SLM does not select"].set_index(["run", "tokens_seen"])["loss"]
    assert selected[("slm", 100)] == pytest.approx(1.75) and selected[("clm", 100)] == pytest.approx(2.4)
    assert unselected[("slm", 100)] == pytest.approx(1.45) and unselected[("clm", 100)] == pytest.approx(1.1)
    downstream = data[data["panel"] == "downstream: t3"]
    assert sorted(downstream["tokens_seen"].unique()) == [1000, 2000, 3000]
    assert set(downstream["loss"]) == {0.9, 0.1}  # t3 of write_checkpoints: clm 0.9, slm 0.1


def test_figure6_errors(tmp_path):
    nan = pd.DataFrame({"run": ["slm"], "tokens_seen": [0], "selected_loss": [np.nan], "unselected_loss": [np.nan]})
    with pytest.raises(ValueError, match="no finite losses"):
        figure6_heldout_losses(nan, tmp_path / "f.png", selector="slm", ratio=0.6)
    assert not (tmp_path / "f.png").exists()


# --------------------------------------------------------------------------- Figure 7
@pytest.mark.parametrize("a, c", [(-2.0, 10.0), (0.5, 0.2), (-1.5, 7.0)])
def test_fit_recovers_noiseless_parameters(a, c):
    loss = np.linspace(1.0, 4.0, 9)
    fit = fit_log_linear(loss, np.log(a * loss + c))
    assert fit["a"] == pytest.approx(a, abs=1e-3)
    assert fit["c"] == pytest.approx(c, abs=1e-3)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-9)
    assert fit["n"] == 9


def test_fit_in_percent_units():
    # accuracies around 20-30 %, where exp(accuracy) is ~1e13: the fit must stay well conditioned
    loss = np.linspace(1.5, 2.5, 10)
    a, c = -1.0e12, 3.0e12
    fit = fit_log_linear(loss, np.log(a * loss + c))
    assert fit["a"] / a == pytest.approx(1.0, abs=1e-6)
    assert fit["c"] / c == pytest.approx(1.0, abs=1e-6)


def test_fit_with_noise_is_the_least_squares_optimum():
    rng = np.random.default_rng(0)
    loss = np.linspace(1.0, 4.0, 30)
    acc = np.log(-2.0 * loss + 10.0) + rng.normal(0, 0.03, loss.size)
    fit = fit_log_linear(loss, acc)
    assert fit["a"] == pytest.approx(-2.0, abs=0.3)
    assert fit["c"] == pytest.approx(10.0, abs=1.0)
    assert 0.95 < fit["r2"] < 1.0

    def sse(a, c):
        g = a * loss + c
        return np.sum((acc - np.log(g)) ** 2) if np.all(g > 0) else np.inf

    best = sse(fit["a"], fit["c"])
    assert best == pytest.approx(fit["rmse"] ** 2 * loss.size)
    for da in (-1e-3, 1e-3):
        for dc in (-1e-3, 0.0, 1e-3):
            assert sse(fit["a"] + da, fit["c"] + dc) >= best
    scipy_opt = pytest.importorskip("scipy.optimize")
    (sa, sc), _ = scipy_opt.curve_fit(lambda x, a, c: np.log(a * x + c), loss, acc, p0=(-1.0, 8.0))
    assert fit["a"] == pytest.approx(sa, rel=1e-5) and fit["c"] == pytest.approx(sc, rel=1e-5)


def test_fit_guards():
    with pytest.raises(ValueError, match="at least 3"):
        fit_log_linear([1.0, 2.0, float("nan")], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="all losses are equal"):
        fit_log_linear([2.0, 2.0, 2.0], [0.1, 0.2, 0.3])
    # a*L + c <= 0: NaN, not an error, where the curve is drawn outside its domain
    assert np.isnan(log_linear([6.0], -2.0, 10.0)[0])
    assert log_linear([1.0], -2.0, 10.0)[0] == pytest.approx(math.log(8.0))
    # the fitted curve keeps a*L + c > 0 at every data point, also from a poor start
    loss = np.array([1.0, 1.1, 1.2, 3.9, 4.0])
    acc = np.array([2.0, 2.0, 1.9, -2.5, -3.0])
    fit = fit_log_linear(loss, acc)
    assert np.all(fit["a"] * loss + fit["c"] > 0)


def test_figure7(tmp_path):
    rng = np.random.default_rng(1)
    loss = np.linspace(1.6, 2.4, 12)
    points = pd.DataFrame(
        {
            "run": ["slm"] * 6 + ["clm"] * 6,
            "loss": loss,
            "accuracy": np.log(-30.0 * loss + 90.0) + rng.normal(0, 0.01, 12),
        }
    )
    res = figure7_accuracy_vs_loss(
        points, tmp_path / "figure7.png", source="results/tables/points.csv", loss_label="loss on selected tokens"
    )
    assert_png(res.png)
    assert set(res.fit) == {"a", "c", "r2", "rmse", "n"}
    assert res.fit["r2"] > 0.95 and res.fit["n"] == 12
    assert "results/tables/points.csv" in res.caption and "log(a*L + c)" in res.caption
    assert "loss on selected tokens" in res.caption and f"{res.fit['a']:.6g}" in res.caption
    assert len(res.data) == 12
    with pytest.raises(ValueError, match=r"lack columns \['accuracy'\]"):
        figure7_accuracy_vs_loss(points.drop(columns="accuracy"), tmp_path / "x.png")


# --------------------------------------------------------------------------- Figure 9
def test_figure9(tmp_path):
    rows = [
        {"run": run, "tokens_seen": 100, "tokens_selected": 60, "task": t, "metric": "acc,none", "value": v}
        for run, vals in {"a": (0.10, 0.50), "b": (0.14, 0.55), "c": (0.12, 0.52), "clm": (0.08, 0.50)}.items()
        for t, v in zip(("arith_gen", "arith_mc"), vals)
    ]
    rows.append({**rows[2], "run": "b2", "value": 0.16})  # a second run at ratio 0.6: averaged
    rows.append({**rows[0], "tokens_seen": 50, "value": 0.9})  # a checkpoint: only the last point counts
    ratio_runs = {"a": 0.4, "b": 0.6, "b2": 0.6, "c": 0.8, "clm": 1.0}
    measured = ratio_ablation(pd.DataFrame(rows), ratio_runs, ["arith_gen", "arith_mc"])
    gen = measured[measured["task"] == "arith_gen"].set_index("ratio")["value"]
    assert gen.to_dict() == pytest.approx({0.4: 10.0, 0.6: 15.0, 0.8: 12.0, 1.0: 8.0})
    res = figure9_ratio_ablation(measured, tmp_path / "figure9.png", source="results/tables/checkpoints.csv")
    assert_png(res.png)
    assert res.data[res.data["source"] == "measured"]["value"].tolist() == measured["value"].tolist()
    paper = res.data[res.data["source"] == "paper"]
    expected = reported_table("figure9_selection_ratio")
    assert len(paper) == 2 * len(expected)
    gsm = paper[paper["task"] == "GSM8K"].set_index("ratio")["value"]
    assert gsm.to_dict() == pytest.approx(dict(zip(expected["ratio"], expected["GSM8K"])))
    assert "results/tables/checkpoints.csv" in res.caption and "arith_gen and arith_mc" in res.caption
    assert "1B model after 5B tokens" in res.caption and "figure9_selection_ratio" in res.caption
    assert "approximate" in res.caption


def test_figure9_errors(tmp_path):
    table = pd.DataFrame({"run": ["x"], "tokens_seen": [1], "task": ["a"], "value": [1.0]})
    with pytest.raises(ValueError, match=r"ratios must be in \(0, 1\], got \[1.5\]"):
        ratio_ablation(table, {"x": 1.5}, ["a"])
    with pytest.raises(ValueError, match=r"lack columns \['task'\]"):
        figure9_ratio_ablation(pd.DataFrame({"ratio": [0.5], "value": [1.0]}), tmp_path / "f.png")


# --------------------------------------------------------------------------- Figure 5
def gains(mapped: bool) -> pd.DataFrame:
    """A gains table as slm.tables.gains_table writes it (the average row last)."""
    rows = [
        (
            "t_gen",
            "exact_match,strict-match",
            False,
            20.0,
            26.5,
            6.4,
            "GSM8K" if mapped else None,
            28.2 if mapped else None,
        ),
        ("t_mc", "acc,none", False, 40.0, 38.2, -1.8, None, None),
        ("t_ppl", "bits_per_byte,none", True, 1.3, 1.25, 0.05, None, None),
        ("average", "mean of 2 accuracy tasks", False, 30.0, 32.4, 2.3, None, None),
    ]
    return pd.DataFrame(rows, columns=GAIN_COLUMNS)


def test_figure5_gains_without_paper_columns(tmp_path):
    res = figure5_gains(gains(False), tmp_path / "fig" / "figure5.png", slm="slm", clm="clm", source="g.csv")
    assert_png(res.png)
    assert res.data["gain"].tolist() == [6.4, -1.8, 0.05, 2.3]
    assert "slm over clm from g.csv" in res.caption and "t_ppl (lower is better)" in res.caption
    assert "mean over the 2 accuracy tasks" in res.caption
    assert "general-1b.yaml" in res.caption and "no paper bars" in res.caption


def test_figure5_gains_beside_the_paper(tmp_path):
    res = figure5_gains(gains(True), tmp_path / "figure5.png", slm="slm", clm="clm")
    assert_png(res.png)
    assert "Second bar" in res.caption and "figure5_general_gain_over_ct" in res.caption


def test_make_figures_draws_figure5_with_a_delta(tmp_path):
    checkpoints = write_checkpoints(tmp_path / "checkpoints.csv")
    common = {"accuracy_tasks": ["t1", "t2"], "loss_task": None, "ratio_runs": {"slm": 0.6, "clm": 1.0}}
    captions = make_figures(checkpoints, tmp_path / "figures", **common)
    assert "figure5.png" not in captions  # no gains table, no delta
    gains(False).to_csv(tmp_path / "figure5.csv", index=False)
    captions = make_figures(
        checkpoints, tmp_path / "figures", **common, delta=["slm", "clm"], figure5_csv=tmp_path / "figure5.csv"
    )
    assert set(captions) == {"figure1.png", "figure9.png", "figure5.png"}
    assert_png(tmp_path / "figures" / "figure5.png")
    assert str(tmp_path / "figure5.csv") in captions["figure5.png"]


def test_general_config_maps_its_tasks_to_figure5():
    import yaml

    config = yaml.safe_load((REPO / "config" / "paper" / "general-1b.yaml").read_text())
    mapping = config["tables"]["figure5_columns"]
    assert list(mapping) == config["evaluation"]["tasks"]
    benchmarks = reported_table("figure5_general_gain_over_ct").attrs["score_columns"]
    assert set(mapping.values()) <= set(benchmarks) and len(set(mapping.values())) == len(mapping)
    suite = yaml.safe_load((REPO / "workflow" / "tasks" / "suites.yaml").read_text())["general"]
    assert all(suite[bench]["task"] == task for task, bench in mapping.items())
