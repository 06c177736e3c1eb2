"""The workflow on a real single-node SLURM cluster (Debian's slurmctld, slurmd and munge, no
accounting database; tests/slurm/start-cluster.sh) through profiles/slurm.

One run of the smoke config as SLURM jobs from the base model's pretraining on (on the local run's
data), with a GPU request for training and scoring (the node advertises GPUs without devices, so
`device: auto` runs them on the CPU), in which the SLM training job is cancelled with scancel after
its first state save: the profile's retry resubmits it with more memory and time, it resumes from
the saved step, and every output equals the local run's.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from processes import stop_after_first_save
from smoke import REPO, SNAKEMAKE, differences, output_digest, smoke_workdir, start_snakemake

pytestmark = pytest.mark.slurm

START_CLUSTER = REPO / "tests" / "slurm" / "start-cluster.sh"
CANNOT_INSTALL = 3  # start-cluster.sh: not root, no apt-get, or the packages cannot be fetched
# What a cluster without an accounting database needs (profiles/slurm/README.md), and quick status
# checks for short test jobs (the plugin's default waits 40 s before the first).
NO_ACCOUNTING = ["--slurm-no-account", "--slurm-status-command", "squeue"]
QUICK_STATUS = ["--slurm-init-seconds-before-status-checks", "2"]
# The SLURM run took 7 min on 2 cores busy with two other jobs; a job left pending (a node gone
# invalid) fails the test after this many seconds per wait instead of holding the suite for hours.
TIMEOUT = 1200
SUBMITTED = re.compile(r"SLURM jobid (\d+) \(log: \S*?/rule_(\w+)/(?:(\S+)/)?\d+\.log\)")


@pytest.fixture(scope="module")
def cluster() -> str:
    """The partition of the test cluster, started (and installed) if it is not running."""
    if shutil.which("bash") is None:
        pytest.skip("no bash to run tests/slurm/start-cluster.sh")
    proc = subprocess.run(["bash", str(START_CLUSTER)], capture_output=True, text=True)
    if proc.returncode == CANNOT_INSTALL:
        pytest.skip(f"SLURM cannot be installed here: {proc.stderr.strip()}")
    assert proc.returncode == 0, f"the SLURM test cluster did not start:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


def scontrol(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as key=value pairs (finished jobs stay for MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+(?:/\w+)?)=(\S*)", out))


def submissions(log: str) -> list[tuple[str, str, str]]:
    """(SLURM job id, rule, wildcards) of every job the slurm executor submitted, in order."""
    return [(job, rule, wildcards or "") for job, rule, wildcards in SUBMITTED.findall(log)]


# The SLURM run's overlay: GPU requests for training and scoring, and two threads per job, as every
# job of the local run it is compared with (--cores 2): another thread count gives other bits.
GPU_RESOURCES = {
    "default": {"cpus": 2},
    "train": {"gpus": 1, "cpus_per_gpu": 2},
    "score": {"gpus": 1, "cpus_per_gpu": 2},
}


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory, smoke_local):
    # The local run's data (the base model's pretraining, which takes `device`, and all that follows
    # it run again) and one config file, as the local run's: the paper table names its config files.
    untrained = smoke_local.before_training(tmp_path_factory.mktemp("slurm") / "run")
    workdir = smoke_workdir(untrained, device="auto", resources=GPU_RESOURCES)
    log = workdir / "snakemake.log"
    command = ["--workflow-profile", str(REPO / "profiles" / "slurm"), *NO_ACCOUNTING, *QUICK_STATUS]
    start = time.monotonic()
    process = start_snakemake(workdir, *command, log=log)
    # Held (SIGSTOP) the moment its first state is saved, then cancelled: scancel takes longer than the
    # few steps between a save and the end of the smoke config's training.
    stop_after_first_save(process, workdir, "slm", signal.SIGSTOP, TIMEOUT, cwd=workdir)
    train_slm = [job for job, rule, wildcards in submissions(log.read_text()) if (rule, wildcards) == ("train", "slm")]
    subprocess.run(["scancel", train_slm[-1]], check=True)
    assert process.wait(timeout=TIMEOUT) == 0, log.read_text()[-6000:]
    return workdir, log.read_text(), train_slm[-1], time.monotonic() - start


def test_every_job_ran_as_a_slurm_job(slurm_run):
    workdir, log, cancelled, seconds = slurm_run
    print(f"SLURM run of the smoke config: {seconds:.0f} s")
    submitted = submissions(log)
    rules = {rule for _, rule, _ in submitted}
    assert {"pretrain_base", "train_reference", "score", "train", "evaluate", "dynamics", "tables"} <= rules, rules
    ran_in = {}
    for rule_log in (workdir / "logs").rglob("*.log"):
        if "slurm" in rule_log.relative_to(workdir / "logs").parts:
            continue
        found = re.findall(r"in SLURM job (\d+) on ", rule_log.read_text())
        assert len(found) == 1, f"{rule_log} does not say which SLURM job ran it"
        ran_in[found[0]] = rule_log
    # every job's log names its SLURM job; the cancelled job's log was replaced by its retry's
    assert set(ran_in) == {job for job, _, _ in submitted} - {cancelled}
    for job, rule, _ in submitted:
        info = scontrol(job)
        assert info["JobState"] == ("CANCELLED" if job == cancelled else "COMPLETED"), (rule, info)
        assert info["Partition"] == "main" and info["WorkDir"] == str(workdir)


def test_outputs_equal_the_local_run(slurm_run, smoke_local):
    workdir = slurm_run[0]
    ours = output_digest(workdir)
    assert any(name.endswith("model.safetensors") for name in ours) and any(n.endswith("scores.npy") for n in ours)
    assert "results/tables/results.csv" in ours
    assert differences(ours, smoke_local[1]) == []


def test_cancelled_training_job_is_retried_with_more_and_resumes(slurm_run):
    workdir, log, cancelled, _ = slurm_run
    train_slm = [job for job, rule, wildcards in submissions(log) if (rule, wildcards) == ("train", "slm")]
    assert train_slm[0] == cancelled and len(train_slm) == 2
    first, retry = scontrol(train_slm[0]), scontrol(train_slm[1])
    # resources.train: 4000 MB and 60 min at the first attempt, x1.5 at the second (retry_growth)
    assert (first["MinMemoryNode"], first["TimeLimit"]) == ("4000M", "01:00:00")
    assert (retry["MinMemoryNode"], retry["TimeLimit"]) == ("6000M", "01:30:00")
    # a GPU request (one launcher on it, tasks_per_gpu=0: no --ntasks-per-gpu)
    assert retry["TresPerJob"] == "gres:gpu:1" and retry["NumTasks"] == "1"
    train_log = (workdir / "logs" / "train" / "slm.log").read_text()
    resumed = re.search(r"resumed from results/train_state/slm/step-\d+ at step (\d+)/16", train_log)
    assert resumed and int(resumed.group(1)) % 4 == 0, train_log
    assert train_log.count("training results/models/slm/final from") == 1
    assert not (workdir / "results" / "train_state" / "slm").exists()


def test_a_multi_gpu_job_starts_its_command_once(cluster, tmp_path):
    """The plugin derives --ntasks-per-gpu from `tasks` for GPU jobs unless tasks_per_gpu is given;
    with slm.resources' mapping a 2-GPU job runs its command (the launcher) once, on 2 GPUs."""
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(REPO / "workflow")!r})
            from slm.resources import StageResources, job_resources, job_threads

            TWO_GPUS = StageResources(gpus=2, cpus_per_gpu=1, mem_mb=200, runtime=5)

            rule launch:
                output: "launches.txt"
                threads: job_threads(TWO_GPUS, None)
                resources: **job_resources(TWO_GPUS, attempt=1)
                shell: "echo $SLURM_JOB_ID >> {{output}}"
            """
        )
    )
    proc = subprocess.run(
        [*SNAKEMAKE[:-2], "--snakefile", str(tmp_path / "Snakefile"), "--directory", str(tmp_path)]
        + ["--workflow-profile", "none", "--executor", "slurm", "--jobs", "1", *NO_ACCOUNTING, *QUICK_STATUS],
        capture_output=True,
        text=True,
        timeout=600,  # a job that pends (a node gone invalid) fails the test, not the whole suite
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    launches = (tmp_path / "launches.txt").read_text().splitlines()
    assert len(launches) == 1, launches
    info = scontrol(launches[0])
    assert info["TresPerJob"] == "gres:gpu:2" and info["NumTasks"] == "1"
