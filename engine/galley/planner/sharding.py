"""Tensor-parallel sharding of each weight tensor across ranks, in the Megatron layout.

- q/k/v, gate and up projections are column-parallel: their output rows are split. Query rows
  split by attention head and K/V rows by KV head. A rank keeps every KV head that its query
  heads use, so K/V heads are replicated once tp exceeds their count.
- o and down projections are row-parallel: their input columns are split. Their biases are
  added after the all-reduce, so they are replicated.
- The embedding and lm_head are vocab-parallel: their vocabulary rows are split.
- Norms and anything unrecognized are replicated in full on every rank.

Uneven splits (an intermediate size or vocabulary that tp does not divide) give the first
``n % tp`` ranks one extra row, as ``torch.tensor_split`` does.
"""

from __future__ import annotations

import math

ROLES = ("embedding", "lm_head", "q", "k", "v", "o", "gate", "up", "down", "replicated")


def split_sizes(total: int, tp: int) -> list[int]:
    """Split ``total`` rows over ``tp`` ranks, the first ``total % tp`` ranks taking one more."""
    base, extra = divmod(total, tp)
    return [base + (1 if rank < extra else 0) for rank in range(tp)]


def kv_heads_on_rank(heads: int, kv_heads: int, tp: int, rank: int) -> int:
    """Count the KV heads that rank ``rank`` needs for its share of the query heads.

    Query head q uses KV head ``q // (heads // kv_heads)``. With tp dividing heads, rank r has
    query heads ``[r * heads/tp, (r+1) * heads/tp)``, and needs every KV head those map to.
    """
    queries_per_rank = heads // tp
    group = heads // kv_heads
    first = rank * queries_per_rank
    last = first + queries_per_rank - 1
    return last // group - first // group + 1


def elements_on_rank(
    role: str, shape: tuple[int, ...], *, heads: int, kv_heads: int, tp: int, rank: int
) -> int:
    """Count the elements of one tensor (weight or bias) that rank ``rank`` holds."""
    if tp == 1 or role == "replicated":
        return math.prod(shape)
    rows, rest = shape[0], math.prod(shape[1:])
    if role in ("embedding", "lm_head", "gate", "up"):
        return split_sizes(rows, tp)[rank] * rest
    if role == "q":
        return rows // tp * rest
    if role in ("k", "v"):
        head_rows = rows // kv_heads
        return kv_heads_on_rank(heads, kv_heads, tp, rank) * head_rows * rest
    if role in ("o", "down"):
        # (out_features, in_features): the input columns are split.
        return rows * split_sizes(shape[1], tp)[rank]
    raise ValueError(f"unknown tensor role {role!r}; expected one of {', '.join(ROLES)}")
