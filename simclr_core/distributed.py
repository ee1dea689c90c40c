"""Several processes, one model: torchrun setup and NT-Xent over the global batch.

Launch with `torchrun --nproc_per_node=N -m simclr_core train ...`. Each process holds a shard of every
global batch. NT-Xent needs every image of the global batch as a negative, so each process gathers all
embeddings with `torch.distributed.nn.functional.all_gather`, whose backward sends each process the
gradient on its own embeddings from every process's loss (the classic bug is a plain `all_gather`,
which carries no gradient, so the negatives from other processes never push back). Each process then
computes the loss rows of its own views against all 2 * global-batch candidates; DistributedDataParallel
averages the gradients, which makes them those of the single-process loss on the whole batch
(tests/test_distributed.py checks this to float tolerance).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_gather, all_reduce

from .loss import contrastive_loss, simclr_logits_targets


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and plots."""
        return self.rank == 0


SINGLE_PROCESS = Distributed()


def setup() -> Distributed:
    """Join the process group torchrun describes in the environment (one process: nothing to do)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return SINGLE_PROCESS
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def global_logits_targets(z1: torch.Tensor, z2: torch.Tensor, temperature: float,
                          world: Distributed) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's rows of the global NT-Xent logits, with their positives' global indices."""
    if world.world_size == 1:
        return simclr_logits_targets(z1, z2, temperature)
    z1_all, z2_all = torch.cat(all_gather(z1)), torch.cat(all_gather(z2))
    local = torch.arange(len(z1), device=z1.device) + world.rank * len(z1)
    rows = torch.cat([local, local + len(z1_all)])  # view 1 and view 2 of this process's images
    return simclr_logits_targets(z1_all, z2_all, temperature, rows)


def global_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, world: Distributed,
                   decoupled: bool = False) -> torch.Tensor:
    """This process's share of the global NT-Xent (or DCL) loss (the mean over processes is the global loss)."""
    return contrastive_loss(*global_logits_targets(z1, z2, temperature, world), decoupled)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the global batch, on any backend (CPU too).

    SimCLR's "global BN": with per-process statistics the network can tell which views share a process
    and exploit it. PyTorch's SyncBatchNorm needs GPUs; this computes the per-channel sum and sum of
    squares, adds them over all processes with a differentiable all_reduce, and normalises with them.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xf = x.float()
        count = torch.tensor([xf.numel() / xf.shape[1]], device=x.device)
        dist.all_reduce(count)
        mean = all_reduce(xf.sum((0, 2, 3))) / count
        var = all_reduce(xf.pow(2).sum((0, 2, 3))) / count - mean.pow(2)
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / (count - 1), self.momentum)
        shape = (1, -1, 1, 1)
        out = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return (out * self.weight.view(shape) + self.bias.view(shape)).to(x.dtype)


def use_global_batch_norm(model: nn.Module) -> nn.Module:
    """Turn every BatchNorm2d of `model` into a GlobalBatchNorm2d, keeping its parameters, statistics and mode."""
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum)
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)  # a fresh module starts in training mode; keep the model's
            setattr(model, name, replacement.to(child.weight.device))
        else:
            use_global_batch_norm(child)
    return model


def mean_over_processes(values: torch.Tensor, world: Distributed) -> torch.Tensor:
    """The mean of `values` over all processes (on the device: no host synchronisation)."""
    if world.world_size == 1:
        return values
    values = values.detach().clone()
    dist.all_reduce(values)
    return values / world.world_size


def max_over_processes(value: float, world: Distributed, device: torch.device) -> float:
    """The largest `value` of any process: a time-budgeted run plans for its slowest process."""
    if world.world_size == 1:
        return value
    tensor = torch.tensor([value], device=device, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.item()


def any_process(flag: bool, world: Distributed, device: torch.device) -> bool:
    """True on every process if it is true on any: a stop request must stop them all at the same step."""
    if world.world_size == 1:
        return flag
    tensor = torch.tensor([int(flag)], device=device)
    dist.all_reduce(tensor)
    return bool(tensor.item())


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
