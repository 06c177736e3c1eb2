import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from slm.data.packed import KIND_NAMES
from slm.selection import select_tokens
from slm.train import TrainConfig, Trainer, train


def _spec(tmp_path, base_model, shards, **overrides):
    spec = dict(
        init_model=str(base_model),
        data=[str(s) for s in shards],
        out_dir=str(tmp_path / "run" / "final"),
        state_dir=str(tmp_path / "state"),
        batch_size=4,
        max_tokens=4 * 32 * 6,
        lr=3e-3,
        warmup_steps=2,
        save_every=2,
        log_every=1,
        seed=3,
        device="cpu",
    )
    spec.update(overrides)
    return spec


def _trainer(tmp_path, base_model, shards, **overrides) -> Trainer:
    trainer = Trainer(TrainConfig.from_dict(_spec(tmp_path, base_model, shards, **overrides)))
    trainer.model = AutoModelForCausalLM.from_pretrained(base_model)
    return trainer


def _batch(trainer, step=0):
    families = [[s.tokens for s in trainer.corpus.shards]] + ([trainer.scores] if trainer.scores else [])
    arrays = trainer.corpus.gather(trainer.sampler.batch(step), families)
    ids = torch.from_numpy(arrays[0].astype(np.int64))
    ref = torch.from_numpy(arrays[1].astype(np.float32)) if trainer.scores else None
    return ids, ref


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_clm_loss_equals_the_standard_mean_cross_entropy(tmp_path, base_model, shards):
    trainer = _trainer(tmp_path, base_model, shards)
    ids, _ = _batch(trainer)
    stats, mask = trainer.train_step(0, ids, None)
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
    ids, ref = _batch(trainer)
    stats, mask = trainer.train_step(0, ids, ref)
    n_valid = ids.numel() - ids.shape[0]
    assert int(mask.sum()) == stats.n_selected == round(0.5 * n_valid)
    # Independent: HF logits, excess loss from log-softmax, top half, mean CE over those tokens.
    model = AutoModelForCausalLM.from_pretrained(base_model)
    logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
    ce = -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    current = torch.cat([torch.full((ids.shape[0], 1), float("nan")), ce.detach()], dim=1)
    valid = torch.ones_like(ids, dtype=torch.bool)
    valid[:, 0] = False
    expected_mask = select_tokens(current - ref, valid, 0.5, "batch")
    assert torch.equal(mask, expected_mask)
    loss = ce[expected_mask[:, 1:]].mean()
    assert stats.as_log()["loss"] == pytest.approx(loss.item(), rel=1e-5)
    loss.backward()
    ours, theirs = _grads(trainer.model), _grads(model)
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    "unit, weighting", [("batch", "hard"), ("sequence", "hard"), ("document", "hard"), ("batch", "soft")]
)
def test_gradient_accumulation_selects_and_steps_like_one_big_batch(
    tmp_path, base_model, shards, score_dirs, unit, weighting
):
    kwargs = dict(ratio=0.6, unit=unit, weighting=weighting, scores=[str(s) for s in score_dirs])
    whole = _trainer(tmp_path, base_model, shards, **kwargs)
    split = _trainer(tmp_path, base_model, shards, micro_batch_size=1, **kwargs)
    ids, ref = _batch(whole)
    stats_whole, mask_whole = whole.train_step(0, ids, ref)
    stats_split, mask_split = split.train_step(0, ids, ref)
    assert torch.equal(mask_whole, mask_split)
    assert stats_whole.n_selected == stats_split.n_selected
    for name, grad in _grads(whole.model).items():
        torch.testing.assert_close(_grads(split.model)[name], grad, rtol=1e-4, atol=1e-6)


def test_soft_weighting_loss_is_the_softmax_weighted_mean(tmp_path, base_model, shards, score_dirs):
    trainer = _trainer(
        tmp_path, base_model, shards, weighting="soft", temperature=0.5, scores=[str(s) for s in score_dirs]
    )
    ids, ref = _batch(trainer)
    stats, mask = trainer.train_step(0, ids, ref)
    model = AutoModelForCausalLM.from_pretrained(base_model)
    logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
    ce = -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    weights = torch.softmax(((ce.detach() - ref[:, 1:]) / 0.5).reshape(-1), 0)
    expected = (weights * ce.reshape(-1)).sum()
    assert stats.as_log()["loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert int(mask.sum()) == ids.numel() - ids.shape[0]


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, base_model, shards, score_dirs):
    kwargs = dict(
        ratio=0.6, scores=[str(s) for s in score_dirs], checkpoints=[4 * 32 * 3], checkpoint_dir=str(tmp_path / "ckpt")
    )
    straight = train(_spec(tmp_path / "a", base_model, shards, **kwargs))
    spec_b = _spec(tmp_path / "b", base_model, shards, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        train(spec_b, interrupt_at_step=5)
    assert (tmp_path / "b" / "state" / "state.pt").is_file()
    assert not (tmp_path / "b" / "run" / "final").exists()
    resumed = train(spec_b)
    assert resumed["tokens_selected"] == straight["tokens_selected"]
    wa, wb = _weights(tmp_path / "a" / "run" / "final"), _weights(tmp_path / "b" / "run" / "final")
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    assert not (tmp_path / "b" / "state").exists()
    stats = json.loads((tmp_path / "b" / "run" / "final" / "train_stats.json").read_text())
    assert stats["tokens_seen"] == 6 * 4 * 32
    assert sum(k["selected"] for k in stats["kinds"].values()) == stats["tokens_selected"]
    assert stats["kind_names"] == list(KIND_NAMES)
    metrics = [
        json.loads(line) for line in (tmp_path / "b" / "run" / "final" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["step"] for m in metrics] == list(range(1, 7))
    ckpt = tmp_path / "ckpt" / f"tokens-{4 * 32 * 3}"
    assert json.loads((ckpt / "train_stats.json").read_text())["steps"] == 3
    AutoModelForCausalLM.from_pretrained(ckpt)


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
