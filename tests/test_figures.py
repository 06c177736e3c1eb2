"""Figures from small synthetic inputs: valid non-blank PNGs, captions naming inputs, plotted data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from slm.figures import (
    FigureResult,
    figure1_accuracy_vs_tokens,
    figure6_losses,
    figure7_accuracy_vs_loss,
    figure9_ratio_ablation,
    fit_log_linear,
    log_linear,
    read_metrics,
)
from slm.reported import reported_table


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
    "clm": [(1000, 1000, {"t1": 0.10, "t2": 0.20, "t3": 0.9}),
            (2000, 2000, {"t1": 0.15, "t2": 0.25, "t3": 0.9}),
            (3000, 3000, {"t1": 0.20, "t2": 0.30, "t3": 0.9})],
    "slm": [(1000, 600, {"t1": 0.20, "t2": 0.30, "t3": 0.1}),
            (2000, 1200, {"t1": 0.30, "t2": 0.40, "t3": 0.1}),
            (3000, 1800, {"t1": 0.35, "t2": 0.50, "t3": 0.1})],
}


def write_checkpoints(path: Path, *, duplicate_final: bool = True, drop: tuple | None = None,
                      metric: str = "exact_match,flexible-extract") -> Path:
    rows = []
    for run, points in CHECKPOINTS.items():
        for seen, selected, values in points:
            for task, value in values.items():
                if drop == (run, seen, task):
                    continue
                rows.append({"run": run, "tokens_seen": seen, "tokens_selected": selected,
                             "task": task, "metric": metric, "value": value})
        if duplicate_final:  # the final model, evaluated at the last checkpoint's token count
            seen, selected, values = points[-1]
            rows += [{"run": run, "tokens_seen": seen, "tokens_selected": selected, "task": t,
                      "metric": metric, "value": v} for t, v in values.items()]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_figure1_averages_the_given_tasks(tmp_path):
    csv = write_checkpoints(tmp_path / "checkpoints.csv")
    res = figure1_accuracy_vs_tokens(csv, ["t1", "t2"], tmp_path / "fig" / "figure1.png")
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
    res = figure1_accuracy_vs_tokens(csv, ["t3"], tmp_path / "f1.png", x="tokens_selected")
    assert_png(res.png)
    slm = res.data[res.data["run"] == "slm"]
    assert slm["x"].tolist() == [600, 1200, 1800]
    assert slm["accuracy"].tolist() == pytest.approx([10.0, 10.0, 10.0])
    assert "tokens trained on (selected)" in res.caption and "repeated" not in res.caption


def test_figure1_errors(tmp_path):
    csv = write_checkpoints(tmp_path / "c.csv", drop=("slm", 2000, "t2"))
    with pytest.raises(ValueError, match=r"run 'slm' at tokens_seen=2000 lacks tasks \['t2'\]"):
        figure1_accuracy_vs_tokens(csv, ["t1", "t2"], tmp_path / "f.png")
    with pytest.raises(ValueError, match=r"tasks \['t9'\] not in checkpoints table"):
        figure1_accuracy_vs_tokens(csv, ["t1", "t9"], tmp_path / "f.png")
    with pytest.raises(ValueError, match="x must be one of"):
        figure1_accuracy_vs_tokens(csv, ["t1"], tmp_path / "f.png", x="steps")
    ppl = write_checkpoints(tmp_path / "p.csv", metric="bits_per_byte,none")
    with pytest.raises(ValueError, match="perplexity-like"):
        figure1_accuracy_vs_tokens(ppl, ["t1"], tmp_path / "f.png")
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        figure1_accuracy_vs_tokens(tmp_path / "nowhere.csv", ["t1"], tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


# --------------------------------------------------------------------------- Figure 6
def write_metrics(path: Path, run: str, n: int = 8, *, drop_unselected_key: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(1, n + 1):
        tokens = 4096 * 10 * i
        base = 3.0 * math.exp(-i / 4) + 1.5
        if run == "clm":
            entry = {"step": 10 * i, "tokens_seen": tokens, "lr": 1e-3, "loss": base, "loss_all": base,
                     "loss_unselected": float("nan"), "selected_fraction": 1.0, "tokens_per_second": 1e4}
            if drop_unselected_key:
                del entry["loss_unselected"]
        else:
            entry = {"step": 10 * i, "tokens_seen": tokens, "lr": 1e-3, "loss": base - 0.4,
                     "loss_all": base - 0.1, "loss_unselected": base + 0.35, "selected_fraction": 0.6,
                     "tokens_per_second": 1e4}
        lines.append(json.dumps(entry))  # NaN written as the trainer writes it
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("drop_key", [False, True])
def test_figure6_losses(tmp_path, drop_key):
    paths = {
        "slm": write_metrics(tmp_path / "slm" / "metrics.jsonl", "slm"),
        "clm": write_metrics(tmp_path / "clm" / "metrics.jsonl", "clm", drop_unselected_key=drop_key),
    }
    res = figure6_losses(paths, tmp_path / "figure6.png")
    assert_png(res.png)
    kinds = res.data.groupby("run")["kind"].agg(lambda s: sorted(set(s))).to_dict()
    assert kinds == {"slm": ["loss", "loss_all", "loss_unselected"], "clm": ["loss_all"]}
    slm = res.data[(res.data["run"] == "slm") & (res.data["kind"] == "loss_unselected")]
    assert slm["tokens_seen"].tolist() == [40960 * i for i in range(1, 9)]
    assert slm["loss"].iloc[0] == pytest.approx(3.0 * math.exp(-0.25) + 1.85)
    for path in paths.values():
        assert str(path) in res.caption
    assert "Figure 6" in res.caption and "training log" in res.caption
    assert "clm selected every token" in res.caption


def test_read_metrics_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty.jsonl has no entries"):
        read_metrics(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "tokens_seen": 5, "loss": 1.0}\n{"step": 2}\n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2"):
        read_metrics(bad)
    nan = tmp_path / "nan.jsonl"
    nan.write_text('{"step": 1, "tokens_seen": 5, "loss": NaN}\n')
    with pytest.raises(ValueError, match="no finite losses in .*nan.jsonl"):
        figure6_losses({"x": nan}, tmp_path / "f.png")
    with pytest.raises(ValueError, match="no runs"):
        figure6_losses({}, tmp_path / "f.png")


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
    points = pd.DataFrame({
        "run": ["slm"] * 6 + ["clm"] * 6,
        "loss": loss,
        "accuracy": np.log(-30.0 * loss + 90.0) + rng.normal(0, 0.01, 12),
    })
    res = figure7_accuracy_vs_loss(points, tmp_path / "figure7.png", source="results/tables/points.csv",
                                   loss_label="loss on selected tokens")
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
    rows = [{"ratio": r, "task": t, "value": v}
            for r, vals in {0.4: (0.10, 0.50), 0.6: (0.14, 0.55), 0.8: (0.12, 0.52), 1.0: (0.08, 0.50)}.items()
            for t, v in zip(("arith_gen", "arith_mc"), vals)]
    rows.append({"ratio": 0.6, "task": "arith_gen", "value": 0.16})  # a second seed: averaged
    res = figure9_ratio_ablation(pd.DataFrame(rows), tmp_path / "figure9.png",
                                 source="results/eval/*/final.json", values_in="fraction")
    assert_png(res.png)
    measured = res.data[res.data["source"] == "measured"]
    gen = measured[measured["task"] == "arith_gen"].set_index("ratio")["value"]
    assert gen.to_dict() == pytest.approx({0.4: 10.0, 0.6: 15.0, 0.8: 12.0, 1.0: 8.0})
    paper = res.data[res.data["source"] == "paper"]
    expected = reported_table("figure9_selection_ratio")
    assert len(paper) == 2 * len(expected)
    gsm = paper[paper["task"] == "GSM8K"].set_index("ratio")["value"]
    assert gsm.to_dict() == pytest.approx(dict(zip(expected["ratio"], expected["GSM8K"])))
    assert "results/eval/*/final.json" in res.caption and "arith_gen and arith_mc" in res.caption
    assert "1B model after 5B tokens" in res.caption and "figure9_selection_ratio" in res.caption
    assert "approximate" in res.caption


def test_figure9_errors(tmp_path):
    with pytest.raises(ValueError, match=r"ratios must be in \(0, 1\], got \[1.5\]"):
        figure9_ratio_ablation(pd.DataFrame({"ratio": [1.5], "task": ["a"], "value": [1.0]}),
                               tmp_path / "f.png")
    with pytest.raises(ValueError, match="values_in"):
        figure9_ratio_ablation(pd.DataFrame({"ratio": [0.5], "task": ["a"], "value": [1.0]}),
                               tmp_path / "f.png", values_in="pct")
    with pytest.raises(ValueError, match=r"lack columns \['task'\]"):
        figure9_ratio_ablation(pd.DataFrame({"ratio": [0.5], "value": [1.0]}), tmp_path / "f.png")
