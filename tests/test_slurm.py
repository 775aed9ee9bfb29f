"""The tiny DAG submitted through ``workflow/profiles/slurm`` to a real single-node SLURM cluster (issue 26).

``tests/slurm/cluster.sh`` starts munged, slurmctld and slurmd on this machine (installing them through
apt when missing); where it cannot, the test skips with its one-line reason.  Every rule runs as a SLURM
job; the training of contrastive_lr is pre-empted with ``scancel --signal=TERM`` and resumed through the
profile's ``restart-times``; the results equal those of the local tiny run that the end-to-end test
checks (fixture ``tiny_run``).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from .conftest import REPO
from .tiny_dag import PRE_EMPTED, TINY, make_workdir

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
#: Plugin settings for the test cluster: squeue for job states (no accounting database), and status
#: checks from 2 s on instead of 40 s so that the tiny jobs do not wait.
PLUGIN_SETTINGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"]


def _test_profile(folder: Path) -> Path:
    """The SLURM profile with this machine's account, memory and threads; everything else as shipped."""
    profile = yaml.safe_load(PROFILE.read_text())
    profile["default-resources"] |= {"slurm_account": "img2spec-test", "mem_mb": 2000}
    profile["set-resources"]["train"] |= {"mem_mb": 4000}
    profile["set-threads"]["train"] = 1
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(
        [str(CLUSTER), "start", str(state)], capture_output=True, text=True, timeout=600, check=False
    )
    if started.returncode != 0:
        reason = started.stderr.strip().splitlines()[-1] if started.stderr.strip() else f"exit {started.returncode}"
        subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True, timeout=120, check=False)
        pytest.skip(reason)
    yield state
    subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True, timeout=120, check=False)


def _jobs_of(workdir: Path) -> list[dict[str, str]]:
    """This run's SLURM jobs (finished ones stay listed for MinJobAge): id, state, rule, partition."""
    listing = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T|%k|%P|%Z"], capture_output=True, text=True, check=True
    ).stdout
    jobs = [
        dict(zip(("id", "state", "comment", "partition", "workdir"), line.split("|"))) for line in listing.splitlines()
    ]
    return sorted((job for job in jobs if Path(job["workdir"]) == workdir), key=lambda job: int(job["id"]))


def _pre_empt_training(workdir: Path, run: subprocess.Popen) -> str:
    """Wait for the training's first periodic checkpoint, then send its job SIGTERM; the job's id."""
    resume = workdir / "results" / "models" / PRE_EMPTED / "resume" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not resume.exists():
        assert run.poll() is None and time.monotonic() < deadline, "the training job never saved its first checkpoint"
        time.sleep(0.2)
    (job,) = [
        job
        for job in _jobs_of(workdir)
        if job["comment"] == f"rule_train_wildcards_{PRE_EMPTED}" and job["state"] == "RUNNING"
    ]
    subprocess.run(["scancel", "--signal=TERM", job["id"]], check=True)
    return job["id"]


@pytest.mark.slow
@pytest.mark.workflow
def test_tiny_dag_through_the_slurm_profile_equals_the_local_run(slurm_cluster, tiny_run, tmp_path):
    local, ran = tiny_run.folder, tiny_run.result
    assert ran.returncode == 0, ran.stderr[-3000:]
    rules = set(re.findall(r"^(?:local)?rule (\w+):", ran.stdout + ran.stderr, flags=re.MULTILINE)) - {"all"}

    cluster = make_workdir(tmp_path / "cluster", TINY)
    command = [
        "python",
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
        "--workflow-profile",
        str(_test_profile(tmp_path / "profile")),
        "--configfile",
        "tiny.yaml",
        *PLUGIN_SETTINGS,
    ]
    started = time.monotonic()
    with open(cluster / "snakemake.log", "w") as log:
        run = subprocess.Popen(command, cwd=cluster, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            pre_empted = _pre_empt_training(cluster, run)
            status = run.wait(timeout=1800)
        finally:
            if run.poll() is None:  # a failed check: Snakemake cancels its jobs on SIGTERM
                run.terminate()
                run.wait(timeout=120)
    cluster_seconds = time.monotonic() - started
    output = (cluster / "snakemake.log").read_text()
    assert status == 0, output[-4000:]

    jobs = _jobs_of(cluster)
    table = "\n".join(f"{job['id']:>5} {job['state']:<10} {job['partition']:<4} {job['comment']}" for job in jobs)
    print(f"\nlocal run {tiny_run.seconds:.0f} s, SLURM run {cluster_seconds:.0f} s; jobs:\n{table}")
    assert {re.match(r"rule_(\w+?)(_wildcards|$)", job["comment"]).group(1) for job in jobs} == rules
    trainings = [job for job in jobs if job["comment"] == f"rule_train_wildcards_{PRE_EMPTED}"]
    assert [job["state"] for job in trainings] == ["FAILED", "COMPLETED"] and trainings[0]["id"] == pre_empted
    assert all(job["partition"] == "gpu" for job in jobs if job["comment"].startswith("rule_train_"))
    assert all(job["state"] == "COMPLETED" for job in jobs if job not in trainings)
    first_attempt = (cluster / ".snakemake/slurm_logs/rule_train" / PRE_EMPTED / f"{pre_empted}.log").read_text()
    assert re.search(rf"TrainingInterrupted: {PRE_EMPTED}: stopped at step \d+ of 400", first_attempt)
    log = (cluster / "results" / "logs" / f"train_{PRE_EMPTED}.log").read_text()
    assert f"resuming {PRE_EMPTED} from" in log

    for network in ("cdm_lr", "cdm_sr", "contrastive_lr", "contrastive_sr"):
        checkpoints = [
            torch.load(run / "results/models" / network / "last.ckpt", map_location="cpu", weights_only=False)
            for run in (local, cluster)
        ]
        for name, value in checkpoints[0]["state_dict"].items():
            assert torch.equal(value, checkpoints[1]["state_dict"][name]), f"{network}: {name}"
    with (
        h5py.File(local / "results/predictions/test.h5") as expected,
        h5py.File(cluster / "results/predictions/test.h5") as found,
    ):
        assert sorted(expected) == sorted(found)
        for key in expected:
            np.testing.assert_array_equal(found[key][()], expected[key][()], err_msg=key)
    assert yaml.safe_load((cluster / "results/evaluation/quality/summary.json").read_text()) == yaml.safe_load(
        (local / "results/evaluation/quality/summary.json").read_text()
    )
