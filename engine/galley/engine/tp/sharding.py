"""Split a loaded Llama-style causal LM into one rank's shard, in the Megatron-LM layout.

Per decoder layer, with H query heads, KV key/value heads and ``tp`` ranks:

- q_proj, k_proj, v_proj, gate_proj and up_proj are column-parallel: rank r keeps the
  output rows of its H/tp query heads, of the KV heads those heads use, and of its slice
  of the intermediate size. Once tp exceeds KV, several ranks keep the same KV head.
- o_proj and down_proj are row-parallel: rank r keeps the matching input columns.
- A pre-hook on the attention and MLP blocks applies ``copy_to_ranks`` to their input,
  and a hook on their output applies ``reduce_from_ranks``, so each block costs one
  all-reduce forward and one backward.
- The embedding and lm_head are vocab-parallel: rank r keeps a slice of the vocabulary
  rows. Embedding lookups outside the slice give zeros and the ranks' results are summed.
  The lm_head's logits are gathered, so every rank gets the full (…, vocab) logits.
- Norms stay whole on every rank.

LoRA layers of peft are split with their base layer: beside a column-parallel layer
``lora_B`` is split by rows and ``lora_A`` stays whole, beside a row-parallel layer
``lora_A`` is split by columns and ``lora_B`` stays whole. The whole factor's gradient is
a partial sum on each rank (see ``ShardLayout``).

Splits that ``tp`` does not divide (intermediate size, vocabulary) give the first
``n % tp`` ranks one more row, as the planner's ``split_sizes`` assumes.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from galley.engine.errors import ModelError
from galley.engine.tp.collectives import copy_to_ranks, gather_from_ranks, reduce_from_ranks
from galley.engine.tp.layout import GradientRule, ShardLayout
from galley.planner.sharding import split_sizes

log = logging.getLogger("galley.engine.worker")

COLUMN_PARALLEL = ("q_proj", "k_proj", "v_proj")
MLP_COLUMN_PARALLEL = ("gate_proj", "up_proj")


@dataclass
class ShardedModel:
    """The layouts of one rank's parameters, by parameter name in the sharded module."""

    rank: int
    tp: int
    layouts: dict[str, ShardLayout] = field(default_factory=dict)

    def layout_named(self, name: str) -> ShardLayout:
        """Layout of a parameter by its name in the module; other names (a value head) are replicated."""
        return self.layouts.get(name) or ShardLayout.replicated(self.tp)


# ---------------------------------------------------------------------------------------
# Vocab-parallel modules


class VocabParallelEmbedding(nn.Module):
    """Rows ``[start, stop)`` of an embedding; the ranks' lookups are summed."""

    def __init__(self, weight: Tensor, start: int, stop: int, padding_idx: int | None):
        super().__init__()
        self.weight = _as_parameter(weight)
        self.start, self.stop = start, stop
        self.padding_idx = (
            padding_idx - start if padding_idx is not None and start <= padding_idx < stop else None
        )

    def forward(self, input_ids: Tensor) -> Tensor:
        outside = (input_ids < self.start) | (input_ids >= self.stop)
        local_ids = (input_ids - self.start).masked_fill(outside, 0)
        embedded = F.embedding(local_ids, self.weight, self.padding_idx)  # (…, hidden)
        embedded = embedded.masked_fill(outside.unsqueeze(-1), 0.0)
        return reduce_from_ranks(embedded)


class VocabParallelLMHead(nn.Module):
    """Vocabulary rows of the LM head; returns the full logits, gathered from every rank."""

    def __init__(self, weight: Tensor, sizes: tuple[int, ...]):
        super().__init__()
        self.weight = _as_parameter(weight)
        self.sizes = sizes

    def forward(self, hidden: Tensor) -> Tensor:
        local_logits = F.linear(copy_to_ranks(hidden), self.weight)  # (…, vocab / tp)
        return gather_from_ranks(local_logits, self.sizes)  # (…, vocab)


# ---------------------------------------------------------------------------------------
# Sharding


class _Sharder:
    def __init__(self, rank: int, tp: int):
        self.rank = rank
        self.tp = tp
        # By id() of the parameter; every recorded parameter stays referenced by the module.
        self.by_parameter: dict[int, ShardLayout] = {}

    def record(self, parameter: Tensor | None, layout: ShardLayout) -> None:
        if parameter is not None:
            self.by_parameter[id(parameter)] = layout

    def split(
        self,
        owner: nn.Module,
        name: str,
        dim: int,
        ranges: tuple[tuple[int, int], ...],
        gradient: GradientRule,
    ) -> None:
        """Replace ``owner.<name>`` by this rank's slice of it, and record its layout."""
        full = getattr(owner, name)
        if full is None:
            return
        layout = ShardLayout(dim=dim, ranges=ranges, full_size=full.shape[dim], gradient=gradient)
        piece = nn.Parameter(layout.local_slice(full.detach(), self.rank), requires_grad=full.requires_grad)
        setattr(owner, name, piece)
        self.record(piece, layout)

    def keep(self, parameter: Tensor | None, gradient: GradientRule) -> None:
        self.record(parameter, ShardLayout.replicated(self.tp, gradient))

    # -- linear layers --------------------------------------------------------------------

    def column_parallel(self, layer: Any, ranges: tuple[tuple[int, int], ...]) -> None:
        base, loras = _lora_parts(layer)
        gradient: GradientRule = "local" if _disjoint(ranges) else "sum"
        self.split(base, "weight", 0, ranges, gradient)
        self.split(base, "bias", 0, ranges, gradient)
        base.out_features = ranges[self.rank][1] - ranges[self.rank][0]
        for lora_a, lora_b in loras:
            self.keep(lora_a.weight, "sum")
            self.split(lora_b, "weight", 0, ranges, gradient)
            lora_b.out_features = base.out_features
        if loras:
            layer.out_features = base.out_features

    def row_parallel(self, layer: Any, ranges: tuple[tuple[int, int], ...], where: str) -> None:
        base, loras = _lora_parts(layer)
        if base.bias is not None:
            # NOTE: a row-parallel bias must be added once after the all-reduce; Llama and
            # Qwen3 have none, so that path is not built.
            raise ModelError(
                f"{where} has a bias, which tensor parallelism does not support in row-parallel "
                f"layers (o_proj, down_proj); spawn this model with tp=1"
            )
        self.split(base, "weight", 1, ranges, "local")
        base.in_features = ranges[self.rank][1] - ranges[self.rank][0]
        for lora_a, lora_b in loras:
            self.split(lora_a, "weight", 1, ranges, "local")
            lora_a.in_features = base.in_features
            self.keep(lora_b.weight, "sum")
        if loras:
            layer.in_features = base.in_features

    # -- blocks ---------------------------------------------------------------------------

    def attention(self, attention: Any, config: Any, where: str) -> None:
        heads, kv_heads = int(config.num_attention_heads), int(config.num_key_value_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        query_ranges, kv_ranges, groups = head_ranges(heads, kv_heads, self.tp)

        def rows(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
            return tuple((start * head_dim, stop * head_dim) for start, stop in ranges)

        self.column_parallel(attention.q_proj, rows(query_ranges))
        self.column_parallel(attention.k_proj, rows(kv_ranges))
        self.column_parallel(attention.v_proj, rows(kv_ranges))
        self.row_parallel(attention.o_proj, rows(query_ranges), f"{where}.o_proj")
        attention.num_key_value_groups = groups[self.rank]
        for norm in ("q_norm", "k_norm"):
            # Per-head norms see only this rank's heads, so their gradients are partial.
            if isinstance(getattr(attention, norm, None), nn.Module):
                for parameter in getattr(attention, norm).parameters():
                    self.keep(parameter, "sum")
        _reduce_block(attention)

    def mlp(self, mlp: Any, where: str) -> None:
        base, _ = _lora_parts(mlp.gate_proj)
        ranges = _ranges(split_sizes(base.out_features, self.tp))
        for name in MLP_COLUMN_PARALLEL:
            self.column_parallel(getattr(mlp, name), ranges)
        self.row_parallel(mlp.down_proj, ranges, f"{where}.down_proj")
        _reduce_block(mlp)

    def embeddings(self, causal_lm: Any) -> None:
        embedding = causal_lm.get_input_embeddings()
        lm_head = causal_lm.get_output_embeddings()
        if type(embedding) is not nn.Embedding:
            raise ModelError(
                f"tensor parallelism splits plain nn.Embedding input embeddings; "
                f"{type(causal_lm).__name__} has {type(embedding).__name__}; spawn it with tp=1"
            )
        if type(lm_head) is not nn.Linear or lm_head.bias is not None:
            raise ModelError(
                f"tensor parallelism splits an lm_head that is a plain nn.Linear without bias; "
                f"{type(causal_lm).__name__} has {type(lm_head).__name__}; spawn it with tp=1"
            )
        tied = lm_head.weight is embedding.weight
        ranges = _ranges(split_sizes(embedding.num_embeddings, self.tp))
        start, stop = ranges[self.rank]
        self.split(embedding, "weight", 0, ranges, "local")
        causal_lm.set_input_embeddings(
            VocabParallelEmbedding(embedding.weight, start, stop, embedding.padding_idx)
        )

        head_sizes = split_sizes(lm_head.out_features, self.tp)
        if tied:  # one parameter, split once, serves both
            head_weight = embedding.weight
        else:
            self.split(lm_head, "weight", 0, _ranges(head_sizes), "local")
            head_weight = lm_head.weight
        causal_lm.set_output_embeddings(VocabParallelLMHead(head_weight, tuple(head_sizes)))


def shard_module(module: nn.Module, rank: int, tp: int) -> ShardedModel:
    """Replace ``module``'s layers in place by rank ``rank``'s shards; return the layouts.

    ``module`` is a transformers causal LM with the Llama layout, or a peft model around
    one. Raises ModelError for a model this sharding does not cover.
    """
    from galley.engine.training.forward import is_peft_model

    causal_lm: Any = module.get_base_model() if is_peft_model(module) else module  # type: ignore[operator]
    config = causal_lm.config.get_text_config()
    sharder = _Sharder(rank, tp)
    layers = getattr(causal_lm.get_decoder(), "layers", None)
    if layers is None:
        raise ModelError(f"{type(causal_lm).__name__} has no decoder layers to split; spawn it with tp=1")

    for index, layer in enumerate(layers):
        where = f"layer {index} of {type(causal_lm).__name__}"
        attention: Any = getattr(layer, "self_attn", None)
        mlp: Any = getattr(layer, "mlp", None)
        if not _has_children(attention, (*COLUMN_PARALLEL, "o_proj")) or not _has_children(
            mlp, (*MLP_COLUMN_PARALLEL, "down_proj")
        ):
            raise ModelError(
                f"{where} does not have the Llama layout (self_attn.q_proj/k_proj/v_proj/o_proj, "
                f"mlp.gate_proj/up_proj/down_proj) that tensor parallelism splits; spawn it with tp=1"
            )
        sharder.attention(attention, config, where)
        sharder.mlp(mlp, where)
    sharder.embeddings(causal_lm)

    sharded = ShardedModel(rank=rank, tp=tp)
    for name, parameter in module.named_parameters(remove_duplicate=False):
        sharded.layouts[name] = sharder.by_parameter.get(id(parameter)) or ShardLayout.replicated(tp)
    log.info(
        "rank %d of %d: %d parameters split, %.1f M elements on this rank",
        rank,
        tp,
        sum(layout.is_split for layout in sharded.layouts.values()),
        sum(p.numel() for p in module.parameters()) / 1e6,
    )
    return sharded


def head_ranges(
    heads: int, kv_heads: int, tp: int
) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...], list[int]]:
    """Query-head and KV-head ranges of every rank, and each rank's query heads per KV head.

    Query head q uses KV head ``q // (heads // kv_heads)``; a rank keeps every KV head that
    its query heads use. Raises ModelError when tp does not divide the query heads, or a
    rank's query heads do not share its KV heads evenly (which the attention kernels need).
    """
    if heads % tp or heads % kv_heads:
        raise ModelError(
            f"tp={tp} does not divide the {heads} attention heads (with {kv_heads} KV heads); "
            f"choose a tp that divides {heads}"
        )
    per_rank = heads // tp
    group = heads // kv_heads
    query_ranges, kv_ranges, groups = [], [], []
    for rank in range(tp):
        first_query = rank * per_rank
        first_kv = first_query // group
        last_kv = (first_query + per_rank - 1) // group
        local_kv = last_kv - first_kv + 1
        uses = [(first_query + q) // group - first_kv for q in range(per_rank)]
        even = per_rank % local_kv == 0 and uses == [q // (per_rank // local_kv) for q in range(per_rank)]
        if not even:
            raise ModelError(
                f"tp={tp} gives rank {rank} query heads {first_query}-{first_query + per_rank - 1}, which "
                f"use KV heads {first_kv}-{last_kv} unevenly; choose a tp that divides or is a multiple "
                f"of the {kv_heads} KV heads"
            )
        query_ranges.append((first_query, first_query + per_rank))
        kv_ranges.append((first_kv, last_kv + 1))
        groups.append(per_rank // local_kv)
    return tuple(query_ranges), tuple(kv_ranges), groups


# ---------------------------------------------------------------------------------------
# Helpers


def _as_parameter(weight: Tensor) -> nn.Parameter:
    """Keep a parameter as it is, so a tied embedding and lm_head go on sharing it."""
    return weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight)


def _ranges(sizes: list[int]) -> tuple[tuple[int, int], ...]:
    ranges, start = [], 0
    for size in sizes:
        ranges.append((start, start + size))
        start += size
    return tuple(ranges)


def _disjoint(ranges: tuple[tuple[int, int], ...]) -> bool:
    return all(previous[1] <= current[0] for previous, current in itertools.pairwise(ranges))


def _has_children(module: nn.Module | None, names: tuple[str, ...]) -> bool:
    return module is not None and all(isinstance(getattr(module, name, None), nn.Module) for name in names)


def _lora_parts(layer: Any) -> tuple[nn.Linear, list[tuple[nn.Linear, nn.Linear]]]:
    """Return the base nn.Linear of a layer and its LoRA (A, B) pairs; a plain nn.Linear has none."""
    if type(layer) is nn.Linear:
        return layer, []
    base = getattr(layer, "base_layer", None)
    lora_a, lora_b = getattr(layer, "lora_A", None), getattr(layer, "lora_B", None)
    if type(base) is not nn.Linear or lora_a is None or lora_b is None:
        raise ModelError(
            f"tensor parallelism splits nn.Linear layers and peft LoRA layers around them, "
            f"not {type(layer).__name__}; spawn this model with tp=1"
        )
    if getattr(layer, "lora_variant", None):
        raise ModelError("tensor parallelism supports plain LoRA adapters, not DoRA or other LoRA variants")
    return base, [(lora_a[name], lora_b[name]) for name in lora_a]


def _reduce_block(block: nn.Module) -> None:
    """Make ``block`` take a replicated input and return the sum of the ranks' partial outputs."""

    def copy_input(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (copy_to_ranks(args[0]), *args[1:]), kwargs
        kwargs["hidden_states"] = copy_to_ranks(kwargs["hidden_states"])
        return args, kwargs

    def reduce_output(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if isinstance(output, tuple):  # attention returns (output, attention weights)
            return (reduce_from_ranks(output[0]), *output[1:])
        return reduce_from_ranks(output)

    block.register_forward_pre_hook(copy_input, with_kwargs=True)
    block.register_forward_hook(reduce_output, with_kwargs=True)
