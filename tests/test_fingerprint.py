"""slm.fingerprint: the content hashes a training state is keyed by."""

import json
import shutil
import time

import pytest

from conftest import TINY_LLAMA
from slm.fingerprint import changed_inputs, input_fingerprint, model_fingerprint, score_fingerprint
from slm.io import sha256_file
from slm.model import init_model
from slm.score import score_shard


@pytest.fixture(scope="module")
def scored(tmp_path_factory, base_model, shards):
    out = tmp_path_factory.mktemp("scored")
    for i, shard in enumerate(shards):
        score_shard(base_model, shard, out / f"shard-{i}", batch_size=8, device="cpu")
    return [out / f"shard-{i}" for i in range(len(shards))]


def test_model_fingerprint_follows_the_weights_not_the_path(tmp_path, base_model):
    copy = tmp_path / "copy"
    shutil.copytree(base_model, copy)
    assert (
        model_fingerprint(copy)
        == model_fingerprint(base_model)
        == "sha256:" + sha256_file(base_model / "model.safetensors")
    )
    time.sleep(0.01)  # a new modification time, as a rebuilt model has
    init_model(copy, copy, **TINY_LLAMA, seed=1)
    assert model_fingerprint(copy) != model_fingerprint(base_model)
    assert model_fingerprint("org/hub-model") == "id:org/hub-model"


def test_score_fingerprint_uses_the_stored_hash_or_the_file(tmp_path, scored):
    stored = score_fingerprint(scored[0])
    bare = tmp_path / "bare"
    shutil.copytree(scored[0], bare)
    meta = json.loads((bare / "meta.json").read_text())
    del meta["scores_sha256"]  # a shard scored before the hash was stored
    (bare / "meta.json").write_text(json.dumps(meta))
    assert score_fingerprint(bare) == stored


def test_changed_inputs_name_the_parts(base_model, shards, scored):
    kwargs = dict(init_model=str(base_model), data=[str(s) for s in shards], scores=[str(s) for s in scored])
    saved = input_fingerprint("options-1", reference_model=str(base_model), **kwargs)
    assert changed_inputs(saved, input_fingerprint("options-1", reference_model=str(base_model), **kwargs)) == []
    swapped = {**kwargs, "data": kwargs["data"][::-1], "scores": kwargs["scores"][::-1]}
    now = input_fingerprint("options-2", reference_model=str(base_model), **swapped)
    assert changed_inputs(saved, now) == ["options", "data", "scores"]
    assert changed_inputs("an older state's string", now) == ["fingerprint format"]
