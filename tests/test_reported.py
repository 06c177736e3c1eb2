"""The paper's reported numbers as tables, and measured rows placed beside them."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from slm.reported import (
    DEFAULT_PATH,
    MAPPING_ROW_LABELS,
    TABLES,
    load_reported,
    reported_table,
    side_by_side,
)

ROW_TABLES = [
    "table1_math_fewshot_cot",
    "table2_tool_integrated_reasoning",
    "table3_weak_to_strong",
    "figure9_selection_ratio",
]
MAPPING_TABLES = ["figure5_general_gain_over_ct", "figure3_token_category_shares"]


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))


def test_default_file_is_the_projects_copy():
    assert DEFAULT_PATH.is_file()
    assert DEFAULT_PATH.parent.name == "config"
    assert set(TABLES) <= set(load_reported())


@pytest.mark.parametrize("name", ROW_TABLES)
def test_row_tables_match_the_yaml(name, raw):
    entry = raw[name]
    df = reported_table(name)
    assert df.attrs["score_columns"] == entry["columns"]
    assert list(df.columns[-len(entry["columns"]) :]) == entry["columns"]
    assert len(df) == len(entry["rows"])
    for i, row in enumerate(entry["rows"]):
        for col, value in zip(entry["columns"], row["scores"]):
            got = df.at[i, col]
            if value is None:
                assert math.isnan(got)
            else:
                assert got == pytest.approx(value)
        for key, value in row.items():
            if key != "scores":
                assert df.at[i, key] == value or (value is None and pd.isna(df.at[i, key]))


@pytest.mark.parametrize("name", MAPPING_TABLES)
def test_mapping_tables_are_one_row(name, raw):
    df = reported_table(name)
    assert len(df) == 1
    assert df.attrs["score_columns"] == list(raw[name])
    assert df.at[0, "model"] == MAPPING_ROW_LABELS[name]
    for key, value in raw[name].items():
        assert df.at[0, key] == pytest.approx(value)


def test_headline_numbers():
    t1 = reported_table("table1_math_fewshot_cot")
    rho = t1[(t1["model"] == "Rho-1-Math") & (t1["size"] == "1.1B")]
    assert len(rho) == 1
    assert rho["AVG"].item() == pytest.approx(38.1)
    assert rho["train"].item() == "9B"
    ct = t1[t1["model"] == "Tinyllama-CT"]
    assert ct["AVG"].item() == pytest.approx(21.6)
    assert list(t1.columns[:5]) == ["model", "size", "data", "uniq", "train"]
    assert len(t1) == 18
    ds = t1[t1["model"] == "DeepSeekLLM"]
    assert math.isnan(ds["SVAMP"].item())  # null in the paper
    t3 = reported_table("table3_weak_to_strong")
    assert t3["AVG"].tolist() == pytest.approx([43.5, 44.4])
    f9 = reported_table("figure9_selection_ratio")
    assert f9.attrs["approximate"] is True
    assert f9["ratio"].tolist() == [0.4, 0.5, 0.6, 0.7, 0.8, 1.0]
    assert reported_table("figure5_general_gain_over_ct").at[0, "average"] == pytest.approx(6.8)


def test_bad_table_name_is_named():
    with pytest.raises(KeyError, match="table9_nope"):
        reported_table("table9_nope")


def test_malformed_yaml_is_named(tmp_path):
    bad = tmp_path / "reported.yaml"
    bad.write_text("t:\n  columns: [A, B]\n  rows:\n    - {model: x, scores: [1.0]}\n")
    with pytest.raises(ValueError, match=r"row 0 .*1 scores for 2 columns"):
        reported_table("t", path=bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        reported_table("t", path=tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- side by side
def miniature() -> pd.DataFrame:
    """Shaped like slm.tables.results_table's output for the miniature (not the paper's tasks)."""
    df = pd.DataFrame(
        {
            "arith_gen": [12.3, 20.0, 26.6, 6.6],
            "arith_mc": [40.0, 48.2, 51.2, 3.1],
            "AVG": [26.2, 34.1, 38.9, 4.8],
            "Train tokens": [None, 1638400, 979200, "-40%"],
            "Seen tokens": [1000000, 1638400, 1638400, "+0%"],
        },
        index=pd.Index(["base", "clm", "slm", "Δ (SLM − CLM)"], name="Model"),
    )
    return df


PROVENANCE = {
    "config": "config/config.yaml",
    "tokens trained": "1.64M seen, 979K selected (slm)",
    "checkpoints": ["tokens-600000", "final"],
}


def test_side_by_side_miniature(tmp_path):
    out_md, out_csv = tmp_path / "t1.md", tmp_path / "t1.csv"
    df = side_by_side(
        miniature(),
        "table1_math_fewshot_cot",
        {"Train tokens": "train"},
        out_md,
        out_csv,
        provenance=PROVENANCE,
    )
    paper = reported_table("table1_math_fewshot_cot")
    assert len(df) == 4 + len(paper)
    assert df["Source"].tolist() == ["this run"] * 4 + ["paper"] * len(paper)
    assert df["Model"].tolist()[:4] == ["base", "clm", "slm", "Δ (SLM − CLM)"]
    assert list(df.columns[:2]) == ["Source", "Model"]
    # paper columns first (in the paper's order), then the miniature's own columns
    paper_cols = ["size", "data", "uniq", "train"] + paper.attrs["score_columns"]
    assert list(df.columns[2 : 2 + len(paper_cols)]) == paper_cols
    assert list(df.columns[2 + len(paper_cols) :]) == ["arith_gen", "arith_mc", "AVG (this run)", "Seen tokens"]
    measured, reported = df.iloc[:4], df.iloc[4:]
    # unmapped paper columns: paper rows only
    assert measured["GSM8K"].isna().all() and measured["AVG"].isna().all()
    # measured-only columns: measured rows only
    assert reported["arith_gen"].isna().all() and reported["AVG (this run)"].isna().all()
    assert measured["arith_gen"].tolist() == [12.3, 20.0, 26.6, 6.6]
    assert measured["AVG (this run)"].tolist() == [26.2, 34.1, 38.9, 4.8]
    # the mapped column holds both
    assert measured["train"].tolist() == [None, 1638400, 979200, "-40%"]
    rho = reported[(reported["Model"] == "Rho-1-Math") & (reported["size"] == "1.1B")]
    assert rho["AVG"].item() == pytest.approx(38.1)
    assert rho["train"].item() == "9B"

    back = pd.read_csv(out_csv)
    assert back.shape == df.shape
    assert back["GSM8K"].iloc[4:].tolist() == pytest.approx(paper["GSM8K"].tolist(), nan_ok=True)

    md = out_md.read_text()
    assert "| this run" in md and "| paper" in md
    assert "Rho-1-Math" in md and "38.1" in md and "1.64M" in md and "979K" in md
    assert "Provenance:" in md
    assert "config/config.yaml" in md and "tokens-600000, final" in md and "979K selected" in md
    assert "table1_math_fewshot_cot" in md and "2404.07965" in md
    assert "arith_gen, arith_mc, AVG (this run), Seen tokens: measured by this run only" in md

    tex = (tmp_path / "t1.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\end{tabular}" in tex
    assert r"-40\%" in tex and r"arith\_gen" in tex
    assert tex.count(r"\midrule") == 2  # under the header, between this run and the paper
    assert "% config: config/config.yaml" in tex
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_side_by_side_paper_scale_mapping(tmp_path):
    measured = pd.DataFrame(
        {
            "gsm8k_cot [exact_match,strict-match]": [6.0, 25.1],
            "minerva_math500 [exact_match,none]": [2.5, 11.0],
            "AVG": [4.25, 18.05],
        },
        index=pd.Index(["clm", "slm"], name="Model"),
    )
    df = side_by_side(
        measured,
        "figure9_selection_ratio",
        {"gsm8k_cot": "GSM8K", "minerva_math500 [exact_match,none]": "MATH"},
        tmp_path / "f9.md",
        tmp_path / "f9.csv",
        provenance={"config": "ratio-ablation.yaml"},
        out_tex=tmp_path / "elsewhere" / "f9.tex",
        measured_label="ours",
    )
    assert df.attrs["mapping"] == {
        "gsm8k_cot [exact_match,strict-match]": "GSM8K",
        "minerva_math500 [exact_match,none]": "MATH",
    }
    assert list(df.columns) == ["Source", "Model", "GSM8K", "MATH", "AVG"]
    assert df["Model"].tolist() == ["clm", "slm", "0.4", "0.5", "0.6", "0.7", "0.8", "1.0"]
    assert df["GSM8K"].tolist()[:3] == [6.0, 25.1, 18.3]
    assert df["MATH"].tolist()[:3] == [2.5, 11.0, 7.4]
    assert df["AVG"].tolist()[:2] == [4.25, 18.05] and all(v is None for v in df["AVG"][2:])
    md = (tmp_path / "f9.md").read_text()
    assert "- **GSM8K**: paper's GSM8K; ours rows: `gsm8k_cot [exact_match,strict-match]`" in md
    assert "approximate" in md
    assert "4.25" in md
    assert r"\begin{tabular}" in (tmp_path / "elsewhere" / "f9.tex").read_text()


def test_side_by_side_general_gain(tmp_path):
    measured = pd.DataFrame({"arc_easy": [1.2], "piqa": [0.4]}, index=["Δ (SLM − CLM)"])
    df = side_by_side(
        measured,
        "figure5_general_gain_over_ct",
        {"arc_easy": "ARC-E", "piqa": "PIQA"},
        tmp_path / "f5.md",
        tmp_path / "f5.csv",
        provenance={},
    )
    assert len(df) == 2
    assert df.loc[0, "ARC-E"] == 1.2 and df.loc[1, "ARC-E"] == pytest.approx(8.6)
    assert df.loc[1, "Model"] == MAPPING_ROW_LABELS["figure5_general_gain_over_ct"]
    assert df.loc[0, "MMLU"] is None


@pytest.mark.parametrize(
    "mapping, match",
    [
        ({"nope": "GSM8K"}, "mapping key 'nope' matches no measured columns"),
        ({"arith_gen": "GSM9K"}, "mapping target 'GSM9K' is not a column of paper table"),
        ({"arith_gen": "GSM8K", "arith_mc": "GSM8K"}, "two measured columns map to paper column 'GSM8K'"),
    ],
)
def test_side_by_side_bad_mapping(tmp_path, mapping, match):
    with pytest.raises(ValueError, match=match):
        side_by_side(
            miniature(), "table1_math_fewshot_cot", mapping, tmp_path / "x.md", tmp_path / "x.csv", provenance={}
        )
    assert not (tmp_path / "x.md").exists()


def test_side_by_side_bad_table(tmp_path):
    with pytest.raises(KeyError, match="table4"):
        side_by_side(miniature(), "table4", {}, tmp_path / "x.md", tmp_path / "x.csv", provenance={})


# --------------------------------------------------------------------------- Table 3 rows
def results_csv(tmp_path):
    """Shaped like results/tables/results.csv of the miniature suite with a weak-to-strong pair."""
    df = pd.DataFrame(
        {
            "arith_gen [exact_match,strict-match]": [5.0, 9.0, 30.0, 20.0, 25.0, 12.0, 16.0, 4.0],
            "AVG": [5.0, 9.0, 30.0, 20.0, 25.0, 12.0, 16.0, 5.0],
            "Train tokens": [None, None, 400, 8192, 4915, 8192, 4915, None],
        },
        index=pd.Index(
            [
                "Base",
                "Base (strong)",
                "Reference",
                "clm: CLM",
                "slm: SLM (ratio 0.6)",
                "w2s-clm: CLM, from Base (strong)",
                "w2s-slm: SLM (ratio 0.6), from Base (strong)",
                "Δ (SLM − CLM)",
            ],
            name="Model",
        ),
    )
    path = tmp_path / "results.csv"
    df.to_csv(path)
    return path


def tiny_model(path, hidden):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=40,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def test_select_rows_by_label_or_run_name(tmp_path):
    from slm.reported import select_rows

    measured = pd.read_csv(results_csv(tmp_path), index_col=0)
    rows = select_rows(measured, ["Base (strong)", "w2s-clm", "w2s-slm"])
    assert list(rows.index) == [
        "Base (strong)",
        "w2s-clm: CLM, from Base (strong)",
        "w2s-slm: SLM (ratio 0.6), from Base (strong)",
    ]
    assert list(select_rows(measured, ["slm", "Base"]).index) == ["slm: SLM (ratio 0.6)", "Base"]
    with pytest.raises(ValueError, match="'w2s' names no rows"):
        select_rows(measured, ["w2s"])
    with pytest.raises(ValueError, match="named twice"):
        select_rows(measured, ["clm", "clm: CLM"])


def test_count_parameters_reads_the_safetensors_headers(tmp_path):
    from slm.reported import count_parameters

    n = tiny_model(tmp_path / "m", 16)
    assert count_parameters(tmp_path / "m") == n  # the tied output layer counted once
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        count_parameters(tmp_path)


def test_usable_mapping_keeps_the_tables_columns():
    from slm.reported import usable_mapping

    mapping = {"gsm8k_cot": "GSM8K", "Train tokens": "train", "x": "GSM-Hard", "run": "reference"}
    assert usable_mapping(mapping, "table3_weak_to_strong") == {"gsm8k_cot": "GSM8K", "run": "reference"}
    assert usable_mapping(mapping, "table1_math_fewshot_cot") == {"gsm8k_cot": "GSM8K", "Train tokens": "train"}


def test_paper_table_cli_with_the_weak_to_strong_rows(tmp_path):
    import json

    from slm.cli import main

    small, big = tiny_model(tmp_path / "reference", 8), tiny_model(tmp_path / "base-strong", 16)
    spec = {
        "results_csv": str(results_csv(tmp_path)),
        "table": "table3_weak_to_strong",
        "mapping": {"arith_gen": "GSM8K", "Train tokens": "train", "reference": "reference"},
        "usable_mapping": True,
        "rows": ["Base (strong)", "w2s-clm", "w2s-slm"],
        "values": {"w2s-clm": {"reference": None}, "w2s-slm": {"reference": "Reference"}},
        "parameters": {
            "Reference": str(tmp_path / "reference"),
            "Base (strong)": str(tmp_path / "base-strong"),
            "w2s-slm": str(tmp_path / "base-strong"),
        },
        "provenance": {"config": "suite.yaml", "base of w2s-slm": "results/models/base-strong"},
    }
    assert main(["paper-table", "--spec", json.dumps(spec), "--out", str(tmp_path / "table3")]) == 0
    df = pd.read_csv(tmp_path / "table3.csv")
    paper = reported_table("table3_weak_to_strong")
    assert df["Source"].tolist() == ["this run"] * 3 + ["paper"] * 2
    assert df["Model"].tolist() == [
        "Base (strong)",
        "w2s-clm: CLM, from Base (strong)",
        "w2s-slm: SLM (ratio 0.6), from Base (strong)",
        "Llama-2-7B-CT",
        "Llama-2-7B-SLM",
    ]
    assert list(df.columns[: 3 + len(paper.attrs["score_columns"])]) == [
        "Source",
        "Model",
        "reference",
        *paper.attrs["score_columns"],
    ]
    assert df["reference"].fillna("").tolist() == ["", "", "Reference", "", "TinyLlama-1.1B RM"]
    assert df["AVG"].tolist()[3:] == [43.5, 44.4] and df["AVG (this run)"].tolist()[:3] == [9.0, 12.0, 16.0]
    assert df["Parameters"].fillna(-1).tolist() == [big, -1, big, -1, -1]
    md = (tmp_path / "table3.md").read_text()
    assert f"parameters of Reference: {small}" in md and "base of w2s-slm: results/models/base-strong" in md
    assert r"\begin{tabular}" in (tmp_path / "table3.tex").read_text()
