"""Data-parallel training (DDP) over several processes: what makes W processes train as one does.

Each of W processes takes B/W items of the global batch of B (:class:`img2spec.data.ShardedEpochSampler`
deals them round-robin, so the processes' k-th batches together are one process's k-th batch).  For
the W-process training to equal the one-process training on the same global batch, whatever
depends on the whole batch must see the whole batch:

- the diffusion noise and the loss normalisation (:meth:`img2spec.diffusion.NoiseSchedule.training_loss`
  draws for the global batch and takes its rows),
- the negatives of the contrastive loss (:func:`gather_with_gradient`),
- batch normalisation's statistics (:class:`GlobalBatchNorm`; torch's ``SyncBatchNorm`` runs on GPUs
  only, this one on any backend),
- validation metrics (summed over processes, :func:`sum_over_ranks`, or gathered, :func:`gather_rows`).

Every function here is a collective operation when there are several processes: all of them must
call it, in the same order.
"""

from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.layer_sync import LayerSync
from torch import nn


def local_rank() -> int:
    """This process's rank on its node: 0, or that of a copy of the script Lightning's DDP launcher started."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def threads_per_process(threads: int, devices: int) -> int:
    """Torch CPU threads of each of a node's ``devices`` training processes when the job has ``threads`` in all."""
    return max(1, threads // max(1, devices))


def shard_of(module: pl.LightningModule) -> tuple[int, int]:
    """(rank, world size) of the process training ``module``; (0, 1) outside a trainer."""
    trainer = module._trainer
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def sum_over_ranks(module: pl.LightningModule, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the processes training ``module`` (``tensor`` itself with one process)."""
    if shard_of(module)[1] == 1:
        return tensor
    return module.trainer.strategy.reduce(tensor.clone(), reduce_op="sum")


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The rows of ``tensor`` of every process, rank after rank; the processes may hold different numbers."""
    world = torch.distributed.get_world_size()
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    torch.distributed.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    torch.distributed.all_gather(parts, padded)
    return torch.cat([part[: int(c.item())] for part, c in zip(parts, counts)])


class _GatherWithGradient(torch.autograd.Function):
    """All processes' rows (equal numbers per process), with the gradient of a process's own rows summed over processes.

    Every process computes the same loss on the gathered rows; summing their gradients here and
    averaging the parameters' gradients over processes (DDP) gives the gradient of that loss.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = torch.distributed.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        torch.distributed.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_gradient(module: pl.LightningModule, tensor: torch.Tensor) -> torch.Tensor:
    """The global batch's rows of ``tensor`` (rank after rank), differentiable; ``tensor`` itself with one process."""
    if shard_of(module)[1] == 1:
        return tensor
    return _GatherWithGradient.apply(tensor)


class _SummedOverProcesses(torch.autograd.Function):
    """Sum over processes whose gradient is the sum of the processes' gradients (each loss depends on the sum)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        torch.distributed.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class _GlobalBatchNormLayer(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation with the mean and variance of the global batch, on any process-group backend.

    In training mode with several processes each process normalises with the statistics of all
    processes' items (one all-reduce of the per-channel count, sum and sum of squares), updates the
    running statistics with them as one process with the global batch would, and back-propagates
    through them.  Otherwise it is the layer it replaced.
    """

    replaced: type[nn.modules.batchnorm._BatchNorm]

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"batch normalisation needs (N, C, ...) input, got {input.dim()} dimensions")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not (self.training and distributed and torch.distributed.get_world_size() > 1):
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        values = input.float()  # statistics in float32 also under bf16 mixed precision, as torch's layers do
        count = torch.tensor([values.numel() / values.shape[1]], device=values.device)
        local = torch.cat([count.expand(values.shape[1]), values.sum(dims), (values * values).sum(dims)])
        n, total, squares = _SummedOverProcesses.apply(local).view(3, -1)
        mean = total / n
        variance = (squares / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            assert self.num_batches_tracked is not None  # tracked with the running statistics
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(variance.detach() * n / (n - 1).clamp_min(1), momentum)
        shape = [1, -1] + [1] * (input.dim() - 2)
        normalised = (values - mean.view(shape)) * torch.rsqrt(variance.view(shape) + self.eps)
        if self.weight is not None and self.bias is not None:
            normalised = normalised * self.weight.view(shape) + self.bias.view(shape)
        return normalised.to(input.dtype)


class GlobalBatchNorm(LayerSync):
    """Lightning layer-sync plugin: every batch-norm layer normalises with the global batch (:class:`_GlobalBatchNormLayer`)."""

    def apply(self, model: nn.Module) -> nn.Module:
        for name, child in model.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, _GlobalBatchNormLayer):
                replacement = _convert(child, _GlobalBatchNormLayer)
                assert isinstance(replacement, _GlobalBatchNormLayer)
                replacement.replaced = type(child)
                setattr(model, name, replacement)
            else:
                self.apply(child)
        return model

    def revert(self, model: nn.Module) -> nn.Module:
        for name, child in model.named_children():
            if isinstance(child, _GlobalBatchNormLayer):
                setattr(model, name, _convert(child, child.replaced))
            else:
                self.revert(child)
        return model


def _convert(layer: nn.modules.batchnorm._BatchNorm, kind: type) -> nn.modules.batchnorm._BatchNorm:
    """``layer`` as a ``kind`` holding the same parameters and buffers (shared, not copied)."""
    converted = kind(layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
    converted.weight, converted.bias = layer.weight, layer.bias
    converted.running_mean, converted.running_var = layer.running_mean, layer.running_var
    converted.num_batches_tracked = layer.num_batches_tracked
    converted.train(layer.training)
    return converted
