"""Per-stage resources from config: fallbacks, retry growth and the cross-key checks."""

import pytest

from slm.resources import STAGES, StageResources, check_resources, stage_resources


def test_fallbacks_stage_then_default_then_builtin():
    config = {"device": "cuda", "resources": {"default": {"mem_mb": 8000}, "train": {"gpus": 8, "runtime": 600}}}
    train = stage_resources(config, "train")
    assert (train.gpus, train.mem_mb, train.runtime, train.nodes) == (8, 8000, 600, 1)
    score = stage_resources(config, "score")
    assert (score.gpus, score.mem_mb, score.runtime) == (1, 8000, StageResources(gpus=0).runtime)
    assert stage_resources({"device": "cpu"}, "evaluate").gpus == 0


def test_retry_growth_and_world_size():
    res = StageResources(gpus=4, nodes=2, mem_mb=1000, runtime=10, retry_growth=2.0)
    assert [res.grown(res.mem_mb, a) for a in (1, 2, 3)] == [1000, 2000, 4000]
    assert res.world_size == 8
    assert StageResources(gpus=0).world_size == 1


def test_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage 'tables'"):
        stage_resources({}, "tables")


@pytest.mark.parametrize(
    "config, key",
    [
        ({"device": "cpu", "resources": {"train": {"gpus": 2}}}, "resources.train.gpus"),
        ({"device": "cuda", "resources": {"score": {"gpus": 2}}}, "resources.score"),
        ({"device": "cuda", "resources": {"default": {"nodes": 2}}}, "resources.default"),
        ({"device": "cpu", "resources": {"train": {"nodes": 2}}}, "resources.train.nodes"),
    ],
)
def test_checks_name_the_key(config, key):
    assert key in [k for k, _ in check_resources(config)]


def test_paper_scale_request_is_clean():
    config = {"device": "cuda", "resources": {"train": {"gpus": 8, "nodes": 4, "mem_mb": 480000}}}
    assert check_resources(config) == []
    assert {stage_resources(config, s).world_size for s in STAGES} == {1, 32}
