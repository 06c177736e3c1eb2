import html
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import SEQ_LEN
from slm.data.packed import PackedShard
from slm.dynamics import (
    CATEGORIES,
    checkpoint_losses,
    classify,
    dynamics_summary,
    fitted_delta,
    html_view,
    load_dynamics,
    plot_dynamics,
    read_tokens_seen,
    selection_losses,
    validation_slice,
)
from slm.model import init_model
from slm.score import score_shard
from slm.selection import n_selected

HH, LH, HL, LL = (CATEGORIES.index(c) for c in ("H->H", "L->H", "H->L", "L->L"))
THRESHOLD = 0.2  # the paper's
N_SEQ = 12
SEED = 3


# --------------------------------------------------------------------------- classify
def test_classify_known_trajectories():
    rows = {
        "decreasing": [5.0, 4.0, 3.0, 2.0, 1.0],
        "increasing": [1.0, 2.0, 3.0, 4.0, 5.0],
        "flat low": [0.5] * 5,
        "flat high": [6.0] * 5,
        "noisy flat low": [0.5 + e for e in (0.05, -0.05, 0.08, -0.02, 0.0)],
        "noisy flat high (no trend)": [7.0, 5.0, 7.0, 5.0, 7.0],
        "just under +threshold": [4.0 + 0.19 * i / 4 for i in range(5)],
        "just over +threshold": [3.0 + 0.21 * i / 4 for i in range(5)],
        "just over -threshold": [3.0 - 0.21 * i / 4 for i in range(5)],
    }
    expected = [HL, LH, LL, HH, LL, HH, HH, LH, HL]
    losses = np.array(list(rows.values())).T  # [n_points, n_tokens]
    # mean final loss = (1 + 5 + .5 + 6 + .5 + 7 + 4.19 + 3.21 + 2.79) / 9 ~ 3.35
    assert classify(losses, threshold=THRESHOLD).tolist() == expected
    # With a mean cut-off below the flat-low tokens they become H->H; trends are unaffected.
    forced = classify(losses, threshold=THRESHOLD, mean_loss=0.1)
    assert forced.tolist() == [HL, LH, HH, HH, HH, HH, HH, LH, HL]
    # A larger threshold turns the weak trends into flat tokens.
    assert classify(losses, threshold=0.5)[-3:].tolist() == [HH, LL, LL]


def test_classify_leaves_non_finite_tokens_unclassified_and_ignores_them_in_the_mean():
    losses = np.array([[1.0, 1.0, np.nan, 4.0], [1.0, 1.0, 2.0, np.inf], [1.0, 3.0, 2.0, 4.0]])
    out = classify(losses, threshold=THRESHOLD)
    assert out.tolist() == [LL, LH, -1, -1]


def test_fitted_delta_matches_polyfit_and_is_affine_invariant():
    rng = np.random.default_rng(0)
    losses = rng.normal(3.0, 1.0, size=(7, 50)).astype(np.float32)
    x = np.sort(rng.uniform(0, 1e9, size=7))
    delta = fitted_delta(losses, x)
    for j in (0, 13, 49):
        slope, _ = np.polyfit(x, losses[:, j].astype(np.float64), 1)
        assert delta[j] == pytest.approx(slope * (x[-1] - x[0]), rel=1e-9, abs=1e-9)
    # Default x = checkpoint index.
    idx_delta = fitted_delta(losses)
    slope, _ = np.polyfit(np.arange(7), losses[:, 5].astype(np.float64), 1)
    assert idx_delta[5] == pytest.approx(6 * slope, rel=1e-9)
    # Normalising tokens seen changes nothing; unevenly spaced x differs from the index.
    np.testing.assert_allclose(fitted_delta(losses, (x - x[0]) / (x[-1] - x[0])), delta, rtol=1e-9, atol=1e-12)
    assert not np.allclose(idx_delta, delta)
    np.testing.assert_array_equal(
        classify(losses, x, threshold=THRESHOLD), classify(losses, x / 1e9, threshold=THRESHOLD)
    )
    with pytest.raises(ValueError, match="n_points >= 2"):
        fitted_delta(losses[:1])


# --------------------------------------------------------------------------- losses over checkpoints
@pytest.fixture(scope="module")
def random_model(tmp_path_factory, tokenizer_dir, base_model):
    out = tmp_path_factory.mktemp("dyn") / "random"
    init_model(
        tokenizer_dir,
        out,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        seed=1,
    )
    (out / "train_stats.json").write_text(json.dumps({"tokens_seen": 1000, "init_model": str(base_model)}))
    return out


@pytest.fixture(scope="module")
def scores_dir(tmp_path_factory, base_model, shards):
    out = tmp_path_factory.mktemp("dyn") / "scores"
    score_shard(base_model, shards[0], out, batch_size=16, device="cpu")
    return out


@pytest.fixture(scope="module")
def npz(tmp_path_factory, base_model, random_model, shards, scores_dir):
    out = tmp_path_factory.mktemp("dyn") / "losses.npz"
    summary = checkpoint_losses(
        [str(base_model), str(base_model), str(random_model)],
        shards[0],
        out,
        max_sequences=N_SEQ,
        seed=SEED,
        batch_size=5,
        reference_scores=str(scores_dir),
    )
    assert summary["n_tokens"] == N_SEQ * SEQ_LEN and summary["reference"]
    return out


def _independent_losses(model_dir, ids: list[int]) -> np.ndarray:
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1)
    return np.array([-logp[t - 1, ids[t]].item() for t in range(1, len(ids))])


def test_checkpoint_losses_match_an_independent_forward_pass(npz, base_model, random_model, shards, scores_dir):
    data = load_dynamics(npz)
    shard = PackedShard.open(shards[0])
    n_tok = N_SEQ * SEQ_LEN
    assert data["losses"].shape == (3, n_tok) and data["losses"].dtype == np.float32
    assert data["model_dirs"] == [str(base_model), str(base_model), str(random_model)]
    assert data["tokens_seen"].tolist() == [0, 0, 1000]
    rows = data["sequence_index"]
    np.testing.assert_array_equal(rows, validation_slice(shard.n_sequences, N_SEQ, SEED))
    flat = np.concatenate(
        [np.arange(shard.sequence_slice(int(r)).start, shard.sequence_slice(int(r)).stop) for r in rows]
    )
    np.testing.assert_array_equal(data["tokens"], shard.tokens[flat])
    np.testing.assert_array_equal(data["kinds"], shard.kinds[flat])
    scores = np.load(scores_dir / "scores.npy")
    np.testing.assert_array_equal(data["reference"], scores[flat].astype(np.float32))
    # Same model twice: identical rows; another model: different losses.
    np.testing.assert_array_equal(data["losses"][0], data["losses"][1])
    assert not np.allclose(data["losses"][0], data["losses"][2], equal_nan=True)
    j = 4  # one sequence of the slice, against a plain forward pass of each model
    ids = shard.tokens[shard.sequence_slice(int(rows[j]))].tolist()
    for m, model_dir in ((0, base_model), (2, random_model)):
        stored = data["losses"][m][j * SEQ_LEN : (j + 1) * SEQ_LEN]
        assert np.isnan(stored[0])
        np.testing.assert_allclose(stored[1:], _independent_losses(model_dir, ids), rtol=1e-4, atol=1e-5)


def test_sequence_starts_are_invalid_and_everything_else_is_finite(npz):
    data = load_dynamics(npz)
    valid = data["valid"].reshape(N_SEQ, SEQ_LEN)
    assert not valid[:, 0].any() and valid[:, 1:].all()
    losses = data["losses"].reshape(3, N_SEQ, SEQ_LEN)
    assert np.isnan(losses[:, :, 0]).all()
    assert np.isfinite(losses[:, :, 1:]).all()


def test_validation_slice_is_deterministic_by_seed(npz, base_model, shards, tmp_path):
    a = validation_slice(100, 10, seed=7)
    assert np.array_equal(a, validation_slice(100, 10, seed=7))
    assert not np.array_equal(a, validation_slice(100, 10, seed=8))
    assert len(np.unique(a)) == 10 and np.all(np.diff(a) > 0)
    assert validation_slice(5, 10, seed=7).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="max_sequences"):
        validation_slice(5, 0, seed=7)
    again = tmp_path / "again.npz"
    checkpoint_losses([str(base_model)], shards[0], again, max_sequences=N_SEQ, seed=SEED, batch_size=7)
    first, second = load_dynamics(npz), load_dynamics(again)
    np.testing.assert_array_equal(first["sequence_index"], second["sequence_index"])
    np.testing.assert_allclose(second["losses"][0], first["losses"][0], rtol=1e-5, equal_nan=True)
    assert "reference" not in second


def test_a_failing_model_leaves_nothing_behind(base_model, shards, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "losses.npz"
    out.write_bytes(b"old")
    with pytest.raises(FileNotFoundError, match="missing-model"):
        checkpoint_losses(
            [str(base_model), str(tmp_path / "missing-model")], shards[0], out, max_sequences=4, seed=0, batch_size=4
        )
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in out_dir.iterdir()) == ["losses.npz"]


def test_tokens_seen_of_the_starting_model_is_zero_when_the_run_started_from_it(tmp_path):
    dirs = []
    for name, stats in (
        ("base", {"tokens_seen": 500, "init_model": "elsewhere"}),
        ("ckpt", {"tokens_seen": 100, "init_model": str(tmp_path / "base")}),
        ("final", {"tokens_seen": 200, "init_model": str(tmp_path / "base")}),
        ("plain", None),
    ):
        (tmp_path / name).mkdir()
        if stats:
            (tmp_path / name / "train_stats.json").write_text(json.dumps(stats))
        dirs.append(tmp_path / name)
    assert read_tokens_seen(dirs[:3]) == [0, 100, 200]
    assert read_tokens_seen([dirs[3], dirs[1]]) == [0, 100]
    assert read_tokens_seen([dirs[0], dirs[3]]) == [500, 0]  # not a start of a run: its own count


# --------------------------------------------------------------------------- summary, figure, HTML
@pytest.fixture(scope="module")
def summary(npz, tmp_path_factory):
    d = tmp_path_factory.mktemp("dyn-summary")
    shares = dynamics_summary(npz, d / "shares.csv", d / "curves.csv", threshold=THRESHOLD)
    return shares, d / "shares.csv", d / "curves.csv"


def test_summary_shares_sum_to_100_and_match_a_direct_count(npz, summary):
    shares, shares_csv, curves_csv = summary
    data = load_dynamics(npz)
    valid = data["valid"]
    cats = classify(data["losses"][:, valid], threshold=THRESHOLD)
    on_disk = pd.read_csv(shares_csv)
    pd.testing.assert_frame_equal(on_disk, shares, check_dtype=False)
    for _, block in on_disk.groupby("kind"):
        assert block["share"].sum() == pytest.approx(100.0)
        assert list(block["category"]) == list(CATEGORIES)
    overall = on_disk[on_disk["kind"] == "all"].set_index("category")
    for c, name in enumerate(CATEGORIES):
        assert overall.loc[name, "n_tokens"] == (cats == c).sum()
        assert overall.loc[name, "share"] == pytest.approx(100.0 * (cats == c).mean())
    # Cross-tab with span kinds: the corpus is labelled (math, noise, boilerplate, other = EOS).
    kinds = data["kinds"][valid]
    math = on_disk[on_disk["kind"] == "math"].set_index("category")
    for c, name in enumerate(CATEGORIES):
        assert math.loc[name, "n_tokens"] == ((cats == c) & (kinds == 1)).sum()
    assert {"math", "noise", "boilerplate"} <= set(on_disk["kind"])
    # Curves: the mean loss of each category's tokens under each model.
    curves = pd.read_csv(curves_csv)
    assert list(curves.columns[:4]) == ["category", "checkpoint", "tokens_seen", "mean_loss"]
    assert len(curves) == 4 * 3
    for c, name in enumerate(CATEGORIES):
        rows = curves[curves["category"] == name].sort_values("checkpoint")
        assert rows["tokens_seen"].tolist() == [0, 0, 1000]
        if (cats == c).any():
            direct = data["losses"][:, valid][:, cats == c].astype(np.float64).mean(axis=1)
            np.testing.assert_allclose(rows["mean_loss"], direct, rtol=1e-6)


def test_plot_is_a_non_blank_png(summary, tmp_path):
    import matplotlib.image

    out = tmp_path / "fig3.png"
    plot_dynamics(summary[2], out)
    image = matplotlib.image.imread(out)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image.var() > 0
    assert [p.name for p in tmp_path.iterdir()] == ["fig3.png"]


_SPAN = re.compile(r'<span class="tok ([^"]+)" title="[^"]*">(.*?)</span>', re.S)


def test_html_shows_tokens_in_order_with_categories_and_the_selection(npz, tokenizer, tokenizer_dir, tmp_path):
    out = tmp_path / "view.html"
    n_show, ratio = 3, 0.3
    html_view(
        npz,
        out,
        tokenizer_dir=tokenizer_dir,
        threshold=THRESHOLD,
        n_sequences=n_show,
        ratio=ratio,
        ratio_of="slm",
        run="clm",
        source="results/dynamics/clm/losses.npz",
    )
    page = out.read_text(encoding="utf-8")
    # the header names the file given as the source (the final path), the heading whose losses rank
    assert "results/dynamics/clm/losses.npz" in page and str(npz) not in page
    assert "under clm&#39;s final model (the selection ratio of slm)" in page
    assert "white-space: pre-wrap" in page and "<style>" in page
    data = load_dynamics(npz)
    shown = n_show * SEQ_LEN
    ids = data["tokens"][:shown]
    texts = [tokenizer.decode([int(i)], skip_special_tokens=False, clean_up_tokenization_spaces=False) for i in ids]
    assert any("<" in t for t in texts)  # the EOS token: escaping is exercised
    categories_part, selection_part = page.split('<section id="selection">')
    legend = categories_part.split('<div class="legend">')[1].split("</div>")[0]
    assert all(html.escape(c) in legend for c in CATEGORIES)
    spans = _SPAN.findall(categories_part)
    assert [html.unescape(s[1]) for s in spans] == texts
    assert not any("<" in s[1] for s in spans)  # escaped
    assert all(seq.startswith('<span class="tok') for seq in page.split('<div class="seq">')[1:])
    valid = data["valid"]
    cats = np.full(valid.shape, -1)
    cats[valid] = classify(data["losses"][:, valid], threshold=THRESHOLD)
    assert [s[0] for s in spans] == [f"c{c}" if c >= 0 else "noloss" for c in cats[:shown]]
    # Selection under the final checkpoint: the top `ratio` of the shown loss-bearing tokens by excess
    # loss, ties by position.
    sel_spans = _SPAN.findall(selection_part)
    assert [html.unescape(s[1]) for s in sel_spans] == texts
    ok = valid[:shown] & np.isfinite(data["reference"][:shown])
    k = n_selected(int(ok.sum()), ratio)
    marks = [s[0] for s in sel_spans]
    assert marks.count("sel") == k
    excess = data["losses"][-1][:shown] - data["reference"][:shown]
    candidates = np.flatnonzero(ok)
    top = candidates[np.argsort(-excess[candidates], kind="stable")[:k]]
    expected = np.where(ok, "unsel", "noloss").astype(object)
    expected[top] = "sel"
    assert marks == expected.tolist()


def test_html_without_reference_refuses_a_selection_view(base_model, shards, tokenizer_dir, tmp_path):
    npz = tmp_path / "noref.npz"
    checkpoint_losses([str(base_model), str(base_model)], shards[0], npz, max_sequences=2, seed=0, batch_size=2)
    with pytest.raises(ValueError, match="no reference losses"):
        html_view(npz, tmp_path / "v.html", tokenizer_dir=tokenizer_dir, threshold=THRESHOLD, ratio=0.5)
    html_view(npz, tmp_path / "v.html", tokenizer_dir=tokenizer_dir, threshold=THRESHOLD, n_sequences=1)
    page = (tmp_path / "v.html").read_text(encoding="utf-8")
    assert 'id="selection"' not in page and len(_SPAN.findall(page)) == SEQ_LEN


# --------------------------------------------------------------------------- Figure 6 (held out)
def _variant(npz, out, **changes):
    arrays = {**dict(np.load(npz)), **changes}
    np.savez(out, **arrays)
    return out


def test_selection_losses_match_a_direct_top_k(npz, tmp_path):
    data = dict(np.load(npz))
    other = _variant(npz, tmp_path / "other.npz", losses=data["losses"][::-1].copy())
    table = selection_losses({"slm": npz, "clm": other}, selector="slm", ratio=0.4)
    valid = data["valid"]
    for m, seen in enumerate(data["tokens_seen"]):
        excess = data["losses"][m] - data["reference"]
        idx = np.flatnonzero(valid)
        k = round(0.4 * len(idx))
        chosen = idx[np.argsort(-excess[idx], kind="stable")[:k]]
        selected = np.zeros_like(valid)
        selected[chosen] = True
        for run, losses in (("slm", data["losses"][m]), ("clm", data["losses"][::-1][m])):
            row = table[table["run"] == run].iloc[m]
            assert row["tokens_seen"] == seen and row["selected_tokens"] == k
            assert row["selected_loss"] == pytest.approx(losses[selected].mean(), rel=1e-5)
            assert row["unselected_loss"] == pytest.approx(losses[valid & ~selected].mean(), rel=1e-5)


def test_selection_losses_refuse_different_slices(npz, tmp_path):
    tokens = np.load(npz)["tokens"].copy()
    tokens[5] += 1
    other = _variant(npz, tmp_path / "other.npz", tokens=tokens)
    with pytest.raises(ValueError, match="do not hold the same slice"):
        selection_losses({"slm": npz, "clm": other}, selector="slm", ratio=0.5)
