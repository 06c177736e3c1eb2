"""Per-stage resources from config: fallbacks, retry growth and the cross-key checks."""

import pytest

from slm.resources import STAGES, StageResources, check_resources, job_resources, job_threads, stage_resources


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
        ({"device": "cuda", "resources": {"train": {"gpus": 1, "cpus": 4}}}, "resources.train.cpus"),
        ({"device": "cuda", "resources": {"default": {"gpus": 1, "cpus": 4}}}, "resources.default.cpus"),
    ],
)
def test_checks_name_the_key(config, key):
    assert key in [k for k, _ in check_resources(config)]


def test_paper_scale_request_is_clean():
    config = {"device": "cuda", "resources": {"train": {"gpus": 8, "nodes": 4, "mem_mb": 480000}}}
    assert check_resources(config) == []
    assert {stage_resources(config, s).world_size for s in STAGES} == {1, 32}


def test_cpus_of_the_default_block_serve_the_cpu_stages_only():
    config = {"device": "cuda", "resources": {"default": {"cpus": 4}, "train": {"gpus": 2}, "score": {"gpus": 0}}}
    assert check_resources(config) == []
    assert job_threads(stage_resources(config, "train"), cores=None) == 2 * 8
    assert job_threads(stage_resources(config, "score"), cores=None) == 4


def test_threads_of_a_job():
    assert job_threads(StageResources(gpus=0), cores=6) == 6  # a local run: every core given
    assert job_threads(StageResources(gpus=0), cores=None) == 1  # a cluster job without cpus
    assert job_threads(StageResources(gpus=0, cpus=3), cores=6) == 3
    assert job_threads(StageResources(gpus=2, cpus_per_gpu=4), cores=6) == 8
    # evaluation runs one thread per job unless the config says otherwise
    assert job_threads(stage_resources({"device": "cpu"}, "evaluate"), cores=6) == 1
    assert job_threads(stage_resources({"resources": {"evaluate": {"cpus": 2}}}, "evaluate"), cores=6) == 2


def test_job_resources_for_the_slurm_executor():
    cpu = job_resources(StageResources(gpus=0, mem_mb=1000, runtime=10), attempt=1)
    assert cpu == {"mem_mb": 1000, "runtime": 10, "gpu": 0}
    gpu = job_resources(StageResources(gpus=8, cpus_per_gpu=4, mem_mb=1000, runtime=10), attempt=3)
    # one launcher per job: no --ntasks-per-gpu (tasks_per_gpu=0), memory and time grown twice
    assert gpu == {"mem_mb": 2250, "runtime": 23, "gpu": 8, "cpus_per_gpu": 4, "tasks_per_gpu": 0}
    multi = job_resources(StageResources(gpus=8, nodes=4), attempt=1)
    assert multi["gpu"] == 32 and multi["gres"] == "gpu:8"
    assert (multi["nodes"], multi["tasks"], multi["mpi"]) == (4, 4, "srun")
