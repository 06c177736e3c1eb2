"""Progress with an ETA: log lines when not on a terminal (as under Snakemake), a bar on a terminal."""

import logging
import os
import sys

from slm.progress import LM_EVAL_MODULES, LogLineProgress, TerminalProgress, lm_eval_log_lines, progress
from slm.score import score_shard


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "slm.progress"]


def test_log_lines_carry_the_count_and_an_eta(caplog):
    caplog.set_level(logging.INFO)
    bar = LogLineProgress(total=10, desc="train slm", unit="step", initial=4, interval=0)
    for _ in range(6):
        bar.update()
    bar.close()
    lines = _lines(caplog)
    assert lines[0].startswith("train slm:  40% 4/10 step [00:00 elapsed, ETA ?")
    assert lines[-1].startswith("train slm: 100% 10/10 step [") and "ETA 00:00" in lines[-1]
    assert len(lines) == 7  # the start and each update; closing after the last adds no duplicate


def test_log_lines_come_at_most_every_interval(caplog):
    caplog.set_level(logging.INFO)
    with LogLineProgress(total=1000, desc="score", unit="tok", interval=3600) as bar:
        for _ in range(1000):
            bar.update()
    assert [line.split(":")[1].split("%")[0].strip() for line in _lines(caplog)] == ["0", "100"]


def test_not_on_a_terminal_progress_is_log_lines_and_lm_eval_follows(caplog):
    import importlib

    assert not sys.stderr.isatty()  # pytest captures stderr, as Snakemake redirects it to logs/
    assert isinstance(progress(5, "x"), LogLineProgress)
    lm_eval_log_lines()
    assert all(importlib.import_module(name).tqdm is LogLineProgress for name in LM_EVAL_MODULES)


def test_on_a_terminal_progress_is_a_bar_and_log_records_go_above_it(monkeypatch):
    leader, follower = os.openpty()
    terminal = os.fdopen(follower, "w")
    monkeypatch.setattr(sys, "stderr", terminal)
    root = logging.getLogger()
    handler = logging.StreamHandler(terminal)
    root.addHandler(handler)
    try:
        bar = progress(3, "train slm", "step")
        assert isinstance(bar, TerminalProgress)
        assert handler not in root.handlers  # routed through tqdm.write while the bar is drawn
        bar.update(3)
        bar.close()
        assert handler in root.handlers
    finally:
        root.removeHandler(handler)
        terminal.close()
        os.close(leader)


def test_scoring_reports_progress(caplog, base_model, shards, tmp_path):
    caplog.set_level(logging.INFO)
    score_shard(base_model, shards[0], tmp_path / "scores", batch_size=8, device="cpu")
    lines = _lines(caplog)
    assert lines[-1].startswith(f"score {shards[0]}: 100% ") and "tok/s]" in lines[-1]


def test_a_stage_run_as_snakemake_runs_it_writes_no_carriage_returns(tokenizer_dir, tmp_path):
    """Output redirected to a file, as the rules do: the libraries' own bars (transformers' model
    writing, here) are off, so the log is plain lines."""
    import subprocess

    log = tmp_path / "init.log"
    spec = (
        '{"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64}'
    )
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "slm", "init-model", "--tokenizer", str(tokenizer_dir), "--spec", spec]
            + ["--seed", "0", "--out", str(tmp_path / "model")],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    text = log.read_text()
    assert "initialised Llama" in text and "\r" not in text
