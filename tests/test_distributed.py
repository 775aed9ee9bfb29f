"""Data-parallel training with two CPU processes (DDP over gloo) trains as one process does (issue 26).

Each training runs in a subprocess (``tests/ddp_worker.py``) that Lightning copies for rank 1; the
global batch is 8 in both, so one process takes 8 items a step and each of two takes 4.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from img2spec.data import SpectraDataModule
from img2spec.distributed import GlobalBatchNorm
from img2spec.statistics import image_stats, spectrum_stats
from torch import nn

from tests.conftest import REPO

STEPS = 12
#: Relative agreement of one- and two-process losses and weights: the same arithmetic in another
#: order (gradients averaged over processes, statistics summed), float32 rounding only.
AGREEMENT = 2e-4
#: The diffusion validation loss is a mean of per-batch losses, and the batches differ (4 galaxies in
#: one batch against 2 in each process's), so it agrees less closely than the per-pixel MSEs.
BATCH_MEAN_AGREEMENT = 2e-3


def _train(dataset: Path, network: str, out: Path, devices: int, steps: int = STEPS) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tests.ddp_worker", str(dataset), network, str(out), str(devices), str(steps)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(out / "worker.log", "a") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _finished(process: subprocess.Popen, out: Path) -> int:
    status = process.wait(timeout=300)
    if status not in (0, 3):
        raise AssertionError(f"training failed with status {status}:\n{(out / 'worker.log').read_text()[-3000:]}")
    return status


def _ranks(out: Path, world: int) -> list[dict]:
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(world)]


@pytest.fixture(scope="module", params=["cdm_lr", "contrastive_sr"])
def one_and_two_processes(request, tiny_dataset, tmp_path_factory):
    """The same training with one and with two processes: (network, one's folder, two's folder)."""
    root = tmp_path_factory.mktemp(request.param)
    folders = root / "one", root / "two"
    for folder, devices in zip(folders, (1, 2)):
        _finished(_train(tiny_dataset, request.param, folder, devices), folder)
    return request.param, *folders


def test_two_processes_follow_the_one_process_loss_curve_and_validation(one_and_two_processes):
    network, one, two = one_and_two_processes
    curves = [pd.read_csv(folder / "metrics.csv") for folder in (one, two)]
    assert curves[0]["step"].tolist() == curves[1]["step"].tolist()
    for column in curves[0].columns.drop(["epoch", "step"]):
        tolerance = BATCH_MEAN_AGREEMENT if (network, column) == ("cdm_lr", "val_loss") else AGREEMENT
        np.testing.assert_allclose(curves[1][column], curves[0][column], rtol=tolerance, err_msg=column)
    assert curves[1]["train_loss"].notna().sum() >= 3 and curves[1]["val_loss"].notna().sum() == 4
    weights = [rank["weights"] for rank in _ranks(two, 2)]
    assert weights[0] == weights[1]  # the EMA (diffusion) or model weights are identical on both ranks
    assert weights[0] == pytest.approx(_ranks(one, 1)[0]["weights"], rel=AGREEMENT)


def test_the_processes_share_each_global_batch_without_repeating_an_item(one_and_two_processes):
    _, one, two = one_and_two_processes
    (single,), (first, second) = _ranks(one, 1), _ranks(two, 2)
    assert len(single["batches"]) == len(first["batches"]) == len(second["batches"]) == STEPS
    for (epoch, batch), (_, mine), (_, theirs) in zip(single["batches"], first["batches"], second["batches"]):
        assert len(mine) == len(theirs) == len(batch) // 2
        assert not set(mine) & set(theirs) and sorted(mine + theirs) == sorted(batch)
    for epoch in {epoch for epoch, _ in single["batches"]}:
        seen = [row for rank in (first, second) for e, rows in rank["batches"] if e == epoch for row in rows]
        assert len(seen) == len(set(seen))


def test_checkpoints_are_written_once_by_rank_zero(one_and_two_processes):
    _, _, two = one_and_two_processes
    first, second = _ranks(two, 2)
    assert second["writes"] == [] and {"best.ckpt", "last.ckpt"} <= set(first["writes"])
    assert sorted(path.name for path in two.glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    assert not (two / "resume").exists()
    saved = torch.load(two / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == STEPS


def test_sigterm_to_the_process_group_saves_the_state_and_the_rerun_continues_to_the_same_weights(
    tiny_dataset, tmp_path
):
    steps = 24
    uninterrupted = _train(tiny_dataset, "cdm_lr", tmp_path / "uninterrupted", 2, steps)
    _finished(uninterrupted, tmp_path / "uninterrupted")
    out = tmp_path / "interrupted"
    process = _train(tiny_dataset, "cdm_lr", out, 2, steps)
    deadline = time.monotonic() + 240
    while not (out / "resume" / "last.ckpt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGTERM)  # rank 0 and the rank Lightning started from it
    assert _finished(process, out) == 3  # non-zero: the workflow runs the job again
    assert [rank["status"] for rank in _ranks(out, 2)] == [3, 3]
    saved_step = torch.load(out / "resume" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert 0 < saved_step < steps and not (out / "last.ckpt").exists()
    assert _finished(_train(tiny_dataset, "cdm_lr", out, 2, steps), out) == 0
    log = (out / "worker.log").read_text()
    assert f"resuming cdm_lr from {out / 'resume' / 'last.ckpt'}" in log
    resumed = _ranks(out, 2)
    assert len(resumed[0]["batches"]) == steps - saved_step  # it continued from the saved step
    assert resumed[0]["weights"] == resumed[1]["weights"] == _ranks(tmp_path / "uninterrupted", 2)[0]["weights"]


def _global_batch_norm_rank(rank: int, store: str, inputs: torch.Tensor, results: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.manual_seed(0)
    layer = GlobalBatchNorm().apply(nn.Sequential(nn.BatchNorm1d(3)))
    share = inputs[rank::2].clone().requires_grad_(True)
    output = layer(share)
    (output * torch.arange(1.0, 4.0)[:, None]).pow(2).sum().backward()  # a loss that is a sum over items
    torch.save({"output": output.detach(), "grad": share.grad, "state": layer.state_dict()}, f"{results}{rank}.pt")
    torch.distributed.destroy_process_group()


def test_global_batch_norm_in_two_processes_equals_batch_norm_of_the_whole_batch(tmp_path):
    inputs = torch.randn(8, 3, 5, generator=torch.Generator().manual_seed(1)) * 3 + 2
    torch.multiprocessing.spawn(
        _global_batch_norm_rank, args=(str(tmp_path / "store"), inputs, str(tmp_path / "rank")), nprocs=2
    )
    reference = nn.Sequential(nn.BatchNorm1d(3))
    whole = inputs.clone().requires_grad_(True)
    expected = reference(whole)
    (expected * torch.arange(1.0, 4.0)[:, None]).pow(2).sum().backward()
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    for rank, result in enumerate(ranks):
        torch.testing.assert_close(result["output"], expected.detach()[rank::2], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result["grad"], whole.grad[rank::2], rtol=1e-4, atol=1e-5)
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(result["state"][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_global_batch_norm_reverts_to_the_layers_it_replaced():
    model = nn.Sequential(nn.Conv2d(5, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(4)))
    parameters = [p.data_ptr() for p in model.parameters()]
    plugin = GlobalBatchNorm()
    converted = plugin.apply(model)
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in converted.modules())
    reverted = plugin.revert(converted)
    assert [type(m) for m in reverted.modules()] == [
        nn.Sequential,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.Sequential,
        nn.BatchNorm1d,
    ]
    assert [p.data_ptr() for p in reverted.parameters()] == parameters  # the same parameters, not copies


def test_a_global_batch_that_the_processes_cannot_share_equally_is_refused(tiny_dataset):
    stats = spectrum_stats(str(tiny_dataset), "flux_lowres")
    module = SpectraDataModule(
        str(tiny_dataset), "flux_lowres", 8, stats, image_stats(str(tiny_dataset), "linear"), None
    )
    module.trainer = SimpleNamespace(global_rank=0, world_size=3)
    with pytest.raises(ValueError, match=r"batch size 8 \(train\) cannot be split over 3 processes"):
        module.train_dataloader()
