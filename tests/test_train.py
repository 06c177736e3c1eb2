import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import SEQ_LEN, TINY_LLAMA, train_spec
from processes import kill, slm, wait_for
from slm.data.packed import KIND_NAMES, pack_documents
from slm.data.sources import iter_files
from slm.model import init_model
from slm.score import score_shard
from slm.selection import select_tokens
from slm.train import BatchLoader, TrainConfig, Trainer


def _spec(tmp_path, base_model, shards, **overrides):
    return train_spec(tmp_path, base_model, shards, **overrides)


def _trainer(tmp_path, base_model, shards, **overrides) -> Trainer:
    trainer = Trainer(TrainConfig.from_dict(_spec(tmp_path, base_model, shards, **overrides)))
    trainer.model = AutoModelForCausalLM.from_pretrained(base_model)
    return trainer


def _batch(trainer, step=0):
    batch = BatchLoader(trainer).load(step)
    return batch, batch.ids, batch.ref


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _hf_cross_entropy(base_model, ids):
    """The independent computation: a fresh HF model and its per-token losses from log-softmax of its
    logits, ``[batch, length - 1]`` (position t predicts token t + 1)."""
    model = AutoModelForCausalLM.from_pretrained(base_model)
    logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
    return model, -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]


def _assert_same_step(trainer, stats, model, loss):
    """The trainer's step logged ``loss`` and took its gradients."""
    assert stats.as_log()["loss"] == pytest.approx(loss.item(), rel=1e-5)
    loss.backward()
    ours, theirs = _grads(trainer.model), _grads(model)
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-7)


def test_clm_loss_equals_the_standard_mean_cross_entropy(tmp_path, base_model, shards):
    trainer = _trainer(tmp_path, base_model, shards)
    batch, ids, _ = _batch(trainer)
    stats, mask = trainer.train_step(0, batch)
    stats = stats.total(trainer.world)
    reference = AutoModelForCausalLM.from_pretrained(base_model)
    expected = reference(input_ids=ids, labels=ids).loss
    assert stats.as_log()["loss"] == pytest.approx(expected.item(), rel=1e-6)
    assert stats.n_selected == stats.n_valid == ids.numel() - ids.shape[0]
    expected.backward()
    ours, theirs = _grads(trainer.model), _grads(reference)
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-7)


def test_slm_gradient_comes_only_from_the_selected_tokens(tmp_path, base_model, shards, score_dirs):
    trainer = _trainer(tmp_path, base_model, shards, ratio=0.5, scores=[str(s) for s in score_dirs])
    batch, ids, ref = _batch(trainer)
    stats, mask = trainer.train_step(0, batch)
    stats = stats.total(trainer.world)
    n_valid = ids.numel() - ids.shape[0]
    assert int(mask.sum()) == stats.n_selected == round(0.5 * n_valid)
    # Independent: HF logits, excess loss from log-softmax, top half, mean CE over those tokens.
    model, ce = _hf_cross_entropy(base_model, ids)
    current = torch.cat([torch.full((ids.shape[0], 1), float("nan")), ce.detach()], dim=1)
    valid = torch.ones_like(ids, dtype=torch.bool)
    valid[:, 0] = False
    expected_mask = select_tokens(current - ref, valid, 0.5, "batch")
    assert torch.equal(mask, expected_mask)
    loss = ce[expected_mask[:, 1:]].mean()
    _assert_same_step(trainer, stats, model, loss)


@pytest.mark.parametrize(
    "unit, weighting", [("batch", "hard"), ("sequence", "hard"), ("document", "hard"), ("batch", "soft")]
)
def test_gradient_accumulation_selects_and_steps_like_one_big_batch(
    tmp_path, base_model, shards, score_dirs, unit, weighting
):
    kwargs = dict(ratio=0.6, unit=unit, weighting=weighting, scores=[str(s) for s in score_dirs])
    whole = _trainer(tmp_path, base_model, shards, **kwargs)
    split = _trainer(tmp_path, base_model, shards, micro_batch_size=1, **kwargs)
    batch, _, _ = _batch(whole)
    stats_whole, mask_whole = whole.train_step(0, batch)
    stats_split, mask_split = split.train_step(0, batch)
    stats_whole, stats_split = stats_whole.total(whole.world), stats_split.total(split.world)
    assert torch.equal(mask_whole, mask_split)
    assert stats_whole.n_selected == stats_split.n_selected
    for name, grad in _grads(whole.model).items():
        torch.testing.assert_close(_grads(split.model)[name], grad, rtol=1e-4, atol=1e-6)


def test_soft_weighting_loss_is_the_softmax_weighted_mean(tmp_path, base_model, shards, score_dirs):
    trainer = _trainer(
        tmp_path, base_model, shards, weighting="soft", temperature=0.5, scores=[str(s) for s in score_dirs]
    )
    batch, ids, ref = _batch(trainer)
    stats, mask = trainer.train_step(0, batch)
    stats = stats.total(trainer.world)
    model, ce = _hf_cross_entropy(base_model, ids)
    weights = torch.softmax(((ce.detach() - ref[:, 1:]) / 0.5).reshape(-1), 0)
    expected = (weights * ce.reshape(-1)).sum()
    assert stats.as_log()["loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert int(mask.sum()) == ids.numel() - ids.shape[0]


def _kind_mask(batch, shard_dir, names):
    """Loss-bearing tokens of ``names``, computed apart from the trainer: every position but the first."""
    kind_names = json.loads((Path(shard_dir) / "index.json").read_text())["kind_names"]
    mask = torch.zeros_like(batch.kinds, dtype=torch.bool)
    for name in names:
        mask |= batch.kinds == kind_names.index(name)
    mask[:, 0] = False
    return mask


def test_loss_kinds_train_on_those_kinds_only(tmp_path, base_model, shards):
    trainer = _trainer(tmp_path, base_model, shards, loss_kinds=["math"])
    batch, ids, _ = _batch(trainer)
    stats, mask = trainer.train_step(0, batch)
    stats = stats.total(trainer.world)
    expected_mask = _kind_mask(batch, shards[0], ["math"])
    assert 0 < int(expected_mask.sum()) < ids.numel() - ids.shape[0]
    assert torch.equal(mask, expected_mask) and stats.n_valid == stats.n_selected == int(expected_mask.sum())
    # Independent: HF logits, the mean cross-entropy over the math tokens only.
    model, ce = _hf_cross_entropy(base_model, ids)
    loss = ce[expected_mask[:, 1:]].mean()
    _assert_same_step(trainer, stats, model, loss)


def test_loss_kinds_with_selection_rank_the_loss_bearing_tokens_only(tmp_path, base_model, shards, score_dirs):
    trainer = _trainer(
        tmp_path, base_model, shards, ratio=0.5, loss_kinds=["math", "noise"], scores=[str(s) for s in score_dirs]
    )
    batch, ids, ref = _batch(trainer)
    stats, mask = trainer.train_step(0, batch)
    valid = _kind_mask(batch, shards[0], ["math", "noise"])
    model, ce = _hf_cross_entropy(base_model, ids)
    current = torch.cat([torch.full((ids.shape[0], 1), float("nan")), ce.detach()], dim=1)
    expected_mask = select_tokens(current - ref, valid, 0.5, "batch")
    assert torch.equal(mask, expected_mask) and int(mask.sum()) == round(0.5 * int(valid.sum()))
    loss = ce[expected_mask[:, 1:]].mean()
    _assert_same_step(trainer, stats.total(trainer.world), model, loss)


def test_loss_kinds_must_be_kinds_of_the_data(tmp_path, base_model, shards):
    with pytest.raises(ValueError, match=r"'loss_kinds': \['program'\] are not span kinds of .*packed-0"):
        Trainer(TrainConfig.from_dict(_spec(tmp_path, base_model, shards, loss_kinds=["math", "program"])))


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def _reinit(model_dir: Path, seed: int) -> None:
    """Other weights of the same shape at the same path (the tokenizer is the directory's own)."""
    init_model(model_dir, model_dir, **TINY_LLAMA, seed=seed)


PATH_KEYS = ("init_model", "data", "out_dir", "state_dir", "scores", "checkpoint_dir", "reference_model")


def _train_command(spec: dict, log: Path, *extra: str) -> subprocess.Popen:
    """``python -m slm train`` on ``spec`` (and ``extra`` arguments) in its own process (one thread,
    as every run of these tests)."""
    paths = {k: spec[k] for k in PATH_KEYS if k in spec}
    options = {k: v for k, v in spec.items() if k not in paths}
    return slm(
        "train", "--options", json.dumps(options), "--paths", json.dumps(paths), "--threads", "1", *extra, log=log
    )


def _killed_after_a_save(spec: dict, log: Path) -> int:
    """Start training, SIGKILL it as soon as its first state is saved; return the saved step."""
    states = Path(spec["state_dir"])
    process = _train_command(spec, log)
    wait_for(lambda: any(states.glob("step-*[0-9]")) or process.poll() is not None, 120, "the first state save")
    assert process.poll() is None, f"training ended before it could be killed:\n{log.read_text()}"
    kill(process)
    assert process.returncode == -signal.SIGKILL
    assert not Path(spec["out_dir"]).exists()
    state = sorted(states.glob("step-*[0-9]"))[-1]  # complete once renamed to its step; the newest resumes
    return torch.load(state / "trainer.pt", weights_only=False)["step"]


def _finish(spec: dict, log: Path, *extra: str) -> str:
    process = _train_command(spec, log, *extra)
    assert process.wait() == 0, log.read_text()
    return log.read_text()


# Long enough (40 steps, a save every 5) that the first save comes well before the end.
RESUMABLE = dict(batch_size=4, max_tokens=4 * 32 * 40, save_every=5, checkpoints=[4 * 32 * 3])


def test_killed_training_resumes_to_the_same_weights(tmp_path, base_model, shards, score_dirs):
    kwargs = dict(ratio=0.6, scores=[str(s) for s in score_dirs], **RESUMABLE)
    spec_a = _spec(tmp_path / "a", base_model, shards, checkpoint_dir=str(tmp_path / "a" / "ckpt"), **kwargs)
    spec_b = _spec(tmp_path / "b", base_model, shards, checkpoint_dir=str(tmp_path / "b" / "ckpt"), **kwargs)
    _finish(spec_a, tmp_path / "a.log")
    saved = _killed_after_a_save(spec_b, tmp_path / "b-killed.log")
    assert saved % 5 == 0 and 0 < saved < 40
    log = _finish(spec_b, tmp_path / "b.log")
    assert f"at step {saved}/40" in log and "resumed from" in log
    wa, wb = _weights(tmp_path / "a" / "run" / "final"), _weights(tmp_path / "b" / "run" / "final")
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    assert not (tmp_path / "b" / "state").exists()
    stats = json.loads((tmp_path / "b" / "run" / "final" / "train_stats.json").read_text())
    assert stats["tokens_seen"] == 40 * 4 * 32
    assert sum(k["selected"] for k in stats["kinds"].values()) == stats["tokens_selected"]
    assert stats["kind_names"] == list(KIND_NAMES)
    metrics = [
        json.loads(line) for line in (tmp_path / "b" / "run" / "final" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["step"] for m in metrics] == list(range(1, 41))
    ckpt = tmp_path / "b" / "ckpt" / f"tokens-{4 * 32 * 3}"
    assert json.loads((ckpt / "train_stats.json").read_text())["steps"] == 3
    assert _weights(ckpt).keys() == wa.keys()
    for name, tensor in _weights(tmp_path / "a" / "ckpt" / f"tokens-{4 * 32 * 3}").items():
        assert torch.equal(tensor, _weights(ckpt)[name]), name


@pytest.mark.parametrize("changed", ["init_model", "data", "scores", "reference_model"])
def test_state_of_other_inputs_at_the_same_paths_is_not_resumed(
    tmp_path, base_model, shards, score_dirs, tokenizer, corpus_files, changed
):
    """An input rebuilt with other contents at the same path: the rerun starts from step 0, says why,
    drops the checkpoints staged with the old state, and ends where a fresh run on the new inputs ends."""
    inputs = tmp_path / "inputs"
    model, reference = inputs / "base", inputs / "reference"
    shutil.copytree(base_model, model)
    shutil.copytree(base_model, reference)
    data = [inputs / f"packed-{i}" for i in range(2)]
    for src, dst in zip(shards, data):
        shutil.copytree(src, dst)
    scores = [inputs / f"scores-{i}" for i in range(2)]
    for src, dst in zip(score_dirs, scores):
        shutil.copytree(src, dst)
    # scored by `reference` (a copy of the base: the same weights), which the run names
    for dst in scores:
        meta = json.loads((dst / "meta.json").read_text())
        (dst / "meta.json").write_text(json.dumps({**meta, "reference_model": str(reference)}))
    kwargs = dict(ratio=0.6, scores=[str(s) for s in scores], reference_model=str(reference), **RESUMABLE)
    spec = _spec(tmp_path / "run", model, data, checkpoint_dir=str(tmp_path / "run" / "ckpt"), **kwargs)
    _killed_after_a_save(spec, tmp_path / "killed.log")
    staged = Path(spec["state_dir"]) / "checkpoints" / f"tokens-{4 * 32 * 3}"
    assert staged.is_dir()
    staged_before = _weights(staged)

    if changed in ("init_model", "reference_model"):
        # other weights at the same path (the reference: scores re-made by it, as the workflow would)
        target = model if changed == "init_model" else reference
        _reinit(target, seed=11)
        if changed == "reference_model":
            for shard, dst in zip(data, scores):
                score_shard(reference, shard, dst, batch_size=8, device="cpu")
    elif changed == "data":
        # the corpus re-prepared from other documents (its scores re-made to match)
        for i, dst in enumerate(data):
            pack_documents(iter_files([corpus_files[1 - i]]), tokenizer, dst, seq_len=SEQ_LEN)
            score_shard(reference, dst, scores[i], batch_size=8, device="cpu")
    else:
        # the same tokens and reference model, rescored in bf16: other scores, the same token and model hashes
        for shard, dst in zip(data, scores):
            score_shard(reference, shard, dst, batch_size=8, device="cpu", precision="bf16")

    log = _finish(spec, tmp_path / "rerun.log")
    assert "ignoring saved state" in log and "starting from step 0" in log, log
    assert changed in log.split("ignoring saved state")[1].split(" changed since")[0]
    assert "resumed from" not in log
    fresh = _spec(tmp_path / "fresh", model, data, checkpoint_dir=str(tmp_path / "fresh" / "ckpt"), **kwargs)
    _finish(fresh, tmp_path / "fresh.log")
    ours, theirs = _weights(tmp_path / "run" / "run" / "final"), _weights(tmp_path / "fresh" / "run" / "final")
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    checkpoint = _weights(tmp_path / "run" / "ckpt" / f"tokens-{4 * 32 * 3}")
    expected = _weights(tmp_path / "fresh" / "ckpt" / f"tokens-{4 * 32 * 3}")
    for name in expected:
        assert torch.equal(checkpoint[name], expected[name]), name
    if changed != "scores":  # (rescaled scores may select the same tokens in the first steps)
        assert any(not torch.equal(staged_before[n], checkpoint[n]) for n in checkpoint)


def test_bad_options_fail_before_training(tmp_path, base_model, shards, score_dirs):
    with pytest.raises(ValueError, match="'ratio'"):
        Trainer(TrainConfig.from_dict(_spec(tmp_path, base_model, shards, ratio=1.2)))
    with pytest.raises(ValueError, match="'scores'"):
        Trainer(TrainConfig.from_dict(_spec(tmp_path, base_model, shards, ratio=0.6)))
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict(_spec(tmp_path, base_model, shards, ratoi=0.6))
    swapped = [str(score_dirs[1]), str(score_dirs[0])]
    with pytest.raises(ValueError, match="does not match token shard"):
        Trainer(TrainConfig.from_dict(_spec(tmp_path, base_model, shards, ratio=0.6, scores=swapped)))
