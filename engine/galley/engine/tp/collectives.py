"""Collectives of a tensor-parallel spawn, as autograd functions and plain helpers.

Every worker of a spawn is one rank of its own default process group (``dist.WORLD``), so
no function here takes a group. The three autograd functions are Megatron-LM's ``f``, ``g``
and the vocabulary gather:

- ``copy_to_ranks``: identity forward, all-reduce (sum) of the gradient backward. It sits
  where a replicated activation enters column-parallel layers, whose input gradients are
  partial sums.
- ``reduce_from_ranks``: all-reduce (sum) forward, identity backward. It sits where the
  partial outputs of row-parallel layers leave a block.
- ``gather_from_ranks``: all-gather along the last dimension (shards may differ in size by
  one), and the local slice of the gradient backward.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


class _CopyToRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad


class _ReduceFromRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        output = tensor.contiguous().clone()
        dist.all_reduce(output)
        return output

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


class _GatherFromRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, sizes: tuple[int, ...]) -> Tensor:
        ctx.sizes = sizes
        ctx.rank = rank()
        return all_gather_last_dim(tensor, sizes)

    @staticmethod
    def backward(ctx, grad: Tensor):
        start = sum(ctx.sizes[: ctx.rank])
        return grad[..., start : start + ctx.sizes[ctx.rank]].contiguous(), None


def copy_to_ranks(tensor: Tensor) -> Tensor:
    return _CopyToRanks.apply(tensor)


def reduce_from_ranks(tensor: Tensor) -> Tensor:
    return _ReduceFromRanks.apply(tensor)


def gather_from_ranks(tensor: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """Concatenate every rank's ``tensor`` along the last dimension; rank r's has ``sizes[r]`` columns."""
    return _GatherFromRanks.apply(tensor, sizes)


def all_gather_last_dim(tensor: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """All-gather shards of unequal width along the last dimension, without autograd.

    Gloo and NCCL gather equal shapes only, so each shard is padded to the widest first.
    """
    widest = max(sizes)
    local = tensor.contiguous()
    if local.shape[-1] < widest:
        local = torch.nn.functional.pad(local, (0, widest - local.shape[-1]))
    pieces = [torch.empty_like(local) for _ in sizes]
    dist.all_gather(pieces, local)
    return torch.cat([piece[..., :size] for piece, size in zip(pieces, sizes, strict=True)], dim=-1)


def broadcast_int(value: int, source: int = 0, device: torch.device | None = None) -> int:
    """Return rank ``source``'s ``value`` on every rank."""
    tensor = torch.tensor([value], dtype=torch.long, device=device)
    dist.broadcast(tensor, src=source)
    return int(tensor.item())
