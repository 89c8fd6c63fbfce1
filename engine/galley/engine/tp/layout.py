"""Shard layouts: the place of each rank's piece in the full tensor, and the rule that combines gradients.

A ``ShardLayout`` describes one parameter across all ranks of a spawn: the dimension it is
split along (or none), the index range each rank keeps there, and how the ranks' gradients
make the gradient of the full tensor. The optimizer, the checkpoint gather and the
optimizer-state slicing all work from it, and none of them needs to know which layer a
parameter belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor

# Rules that combine the ranks' gradients of one parameter:
# - "local": each rank's gradient is exact for its own slice, and the slices are disjoint.
# - "sum": each rank computed part of the gradient of its slice, so the ranks that keep an
#   element sum their parts. This is the rule of replicated K/V heads, of LoRA factors
#   beside a split layer, and of Qwen3's per-head q_norm and k_norm.
# - "mean": a replicated parameter whose gradient is complete on every rank. Averaging
#   keeps the replicas identical when a GPU kernel's backward is not deterministic.
GradientRule = Literal["local", "sum", "mean"]


@dataclass(frozen=True)
class ShardLayout:
    """One parameter across the ranks: rank r keeps ``full.narrow(dim, *ranges[r])``."""

    dim: int | None  # None: every rank keeps the whole tensor
    ranges: tuple[tuple[int, int], ...]  # (start, stop) along ``dim`` for each rank
    full_size: int  # size of the full tensor along ``dim``
    gradient: GradientRule

    @classmethod
    def replicated(cls, tp: int, gradient: GradientRule = "mean") -> ShardLayout:
        return cls(dim=None, ranges=((0, 0),) * tp, full_size=0, gradient=gradient)

    @property
    def is_split(self) -> bool:
        return self.dim is not None

    def local_slice(self, full: Tensor, rank: int) -> Tensor:
        """Rank ``rank``'s piece of ``full``, a copy that owns its storage."""
        if self.dim is None:
            return full.clone()
        start, stop = self.ranges[rank]
        return full.narrow(self.dim, start, stop - start).clone()

    def multiplicity(self, device: torch.device) -> Tensor:
        """Count the ranks that keep each index along ``dim``; shape (full_size,)."""
        counts = torch.zeros(self.full_size, dtype=torch.float64, device=device)
        for start, stop in self.ranges:
            counts[start:stop] += 1
        return counts

    # -- collectives (every rank must call them in the same order) ------------------------

    def gather(self, local: Tensor, rank: int) -> Tensor:
        """Rebuild the full tensor from every rank's piece; every rank gets it."""
        if self.dim is None:
            return local
        widest = max(stop - start for start, stop in self.ranges)
        padded = _pad_along(local.contiguous(), self.dim, widest)
        pieces = [torch.empty_like(padded) for _ in self.ranges]
        dist.all_gather(pieces, padded)
        shape = list(local.shape)
        shape[self.dim] = self.full_size
        full = torch.empty(shape, dtype=local.dtype, device=local.device)
        for piece, (start, stop) in zip(pieces, self.ranges, strict=True):
            # Overlapping ranges (replicated K/V heads) hold equal values, so the last write wins.
            full.narrow(self.dim, start, stop - start).copy_(piece.narrow(self.dim, 0, stop - start))
        return full

    def combine_gradient(self, grad: Tensor, rank: int) -> None:
        """Turn this rank's gradient into its slice of the full gradient, in place.

        A split parameter's rule is "local" or "sum"; "mean" applies to replicated ones.
        """
        if self.gradient == "local":
            return
        if self.dim is None:
            dist.all_reduce(grad)
            if self.gradient == "mean":
                grad.div_(len(self.ranges))
            return
        shape = list(grad.shape)
        shape[self.dim] = self.full_size
        full = torch.zeros(shape, dtype=grad.dtype, device=grad.device)
        start, stop = self.ranges[rank]
        full.narrow(self.dim, start, stop - start).copy_(grad)
        dist.all_reduce(full)
        grad.copy_(full.narrow(self.dim, start, stop - start))

    def squared_norm_share(self, grad: Tensor, rank: int) -> Tensor:
        """This rank's share of the full gradient's squared L2 norm, as a float64 scalar.

        The shares of all ranks sum to the squared norm of the full gradient, because an
        element kept by k ranks counts 1/k on each. Call after ``combine_gradient``.
        """
        squares = grad.detach().double().pow(2)
        if self.dim is None:
            return squares.sum() / len(self.ranges)
        if self.gradient == "local":
            return squares.sum()
        start, stop = self.ranges[rank]
        weights = self.multiplicity(grad.device).narrow(0, start, stop - start).reciprocal()
        per_index = squares.transpose(0, self.dim).reshape(stop - start, -1).sum(dim=1)
        return (per_index * weights).sum()


def _pad_along(tensor: Tensor, dim: int, size: int) -> Tensor:
    missing = size - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)
