"""Generation in lockstep across the ranks of a tensor-parallel spawn.

Every rank computes the same full logits (the lm_head gathers them), so greedy decoding
picks the same token everywhere. A sampled request draws from a seeded generator, and a
request without a seed gets one that rank 0 draws and broadcasts, so every rank samples
the same token and the ranks' KV caches stay in step.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import torch

from galley.engine.tp.collectives import broadcast_int, rank


class LockstepGenerator:
    """A worker generator whose sampled requests carry one seed on every rank."""

    def __init__(self, inner: Any, device: torch.device):
        self.inner = inner
        self.device = device

    def submit(self, request, done) -> None:
        if request.temperature and request.seed is None:
            # Each rank submits the same requests in the same order, so the broadcasts pair up.
            drawn = secrets.randbits(62) if rank() == 0 else 0
            request = dataclasses.replace(request, seed=broadcast_int(drawn, device=self.device))
        self.inner.submit(request, done)

    def has_work(self) -> bool:
        return self.inner.has_work()

    def step(self) -> None:
        self.inner.step()
