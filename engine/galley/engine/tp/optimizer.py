"""AdamW over one rank's shards: combined gradients, the global gradient norm, unsharded state files.

``TensorParallelAdamW`` is the trainer's ``MasterWeightsAdamW`` with three additions:

1. Before clipping, each gradient is combined across ranks by its ``ShardLayout`` rule, so
   every rank has its slice of the gradient that the unsharded model would have.
2. The gradient norm is the norm of the full model's gradient: each rank sums its share
   of the squared norm and one all-reduce adds the shares.
3. ``state_dict`` gathers the AdamW moments and master weights into full tensors, and
   ``load_state_dict`` takes full tensors and keeps this rank's slice, so an optimizer
   file is the same whatever tp wrote or reads it.

AdamW itself is element-wise, so stepping each shard gives the slices of the unsharded step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from galley.engine.tp.layout import ShardLayout
from galley.engine.tp.sharding import ShardedModel
from galley.engine.training.optimizer import MasterWeightsAdamW


class TensorParallelAdamW(MasterWeightsAdamW):
    def __init__(self, named_parameters: list[tuple[str, nn.Parameter]], sharded: ShardedModel):
        super().__init__(named_parameters)
        self.sharded = sharded
        self.rank = sharded.rank
        self.layouts = [sharded.layout_named(entry.name) for entry in self.parameters]

    def gather_gradients(self, scale: float) -> None:
        super().gather_gradients(scale)
        whole: dict[str, list[Tensor]] = {"sum": [], "mean": []}
        for entry, layout in zip(self.parameters, self.layouts, strict=True):
            grad = entry.master.grad
            if grad is None or layout.gradient == "local":
                continue
            if layout.is_split:  # replicated K/V heads: few tensors, combined one by one
                layout.combine_gradient(grad, self.rank)
            else:
                whole[layout.gradient].append(grad)
        for rule, grads in whole.items():
            _all_reduce_together(grads, mean=rule == "mean")

    def clip_gradients(self, max_norm: float | None) -> float:
        pairs = [
            (entry.master, layout)
            for entry, layout in zip(self.parameters, self.layouts, strict=True)
            if entry.master.grad is not None
        ]
        if not pairs:
            return 0.0
        device = pairs[0][0].device
        share = torch.zeros((), dtype=torch.float64, device=device)
        for master, layout in pairs:
            assert master.grad is not None
            share += layout.squared_norm_share(master.grad, self.rank).to(device)
        dist.all_reduce(share)
        total = share.sqrt()
        norm = float(total)  # a device sync, once per step
        if max_norm is not None and max_norm > 0 and torch.isfinite(total):
            masters = [master for master, _ in pairs]
            torch.nn.utils.clip_grads_with_norm_(masters, max_norm, total.to(masters[0].grad.dtype))  # type: ignore[union-attr]
        return norm

    # -- persistence ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The unsharded state, on every rank; every rank must call this, in the same order.

        NOTE: each rank keeps the whole AdamW state in CPU memory until the caller drops it.
        """
        state = super().state_dict()
        layouts = self._layouts_in_group_order()
        # torch's state_dict shares the live per-parameter dicts, so build new ones.
        state["optimizer"]["state"] = {
            index: {
                key: layouts[index].gather(value, self.rank).cpu() if _is_moment(value) else value
                for key, value in values.items()
            }
            for index, values in state["optimizer"]["state"].items()
        }
        state["master_weights"] = {
            entry.name: layout.gather(entry.master.detach(), self.rank).cpu()
            for entry, layout in zip(self.parameters, self.layouts, strict=True)
            if entry.has_master_copy
        }
        return state

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        """Load an unsharded state (written with any tp), keeping this rank's slices."""
        layouts = self._layouts_in_group_order()
        state["optimizer"]["state"] = {
            index: {
                key: layouts[index].local_slice(value, self.rank) if _is_moment(value) else value
                for key, value in values.items()
            }
            for index, values in state["optimizer"]["state"].items()
        }
        by_name = dict(zip(self.names, self.layouts, strict=True))
        state["master_weights"] = {
            name: by_name[name].local_slice(tensor, self.rank)
            for name, tensor in state.get("master_weights", {}).items()
            if name in by_name
        }
        super().load_state_dict(state, source)

    def _layouts_in_group_order(self) -> list[ShardLayout]:
        """Layouts indexed as torch's optimizer state_dict numbers parameters: group by group."""
        by_master = {
            id(entry.master): layout for entry, layout in zip(self.parameters, self.layouts, strict=True)
        }
        return [by_master[id(master)] for group in self.optimizer.param_groups for master in group["params"]]


def _is_moment(value: Any) -> bool:
    """Check whether an AdamW state entry is a per-element tensor (exp_avg, exp_avg_sq), not the step count."""
    return isinstance(value, Tensor) and value.ndim > 0


def _all_reduce_together(grads: list[Tensor], mean: bool) -> None:
    """All-reduce many small gradients as one flat buffer per dtype."""
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for grad in grads:
        by_dtype.setdefault(grad.dtype, []).append(grad)
    for group in by_dtype.values():
        flat = torch.cat([grad.reshape(-1) for grad in group])
        dist.all_reduce(flat)
        if mean:
            flat.div_(dist.get_world_size())
        offset = 0
        for grad in group:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def use_tensor_parallel_optimizer(trainer: Any, sharded: ShardedModel) -> None:
    """Give a ``Trainer`` of a tensor-parallel rank the optimizer above, before any step."""
    trainer.optimizer = TensorParallelAdamW(trainer._trainable_parameters(), sharded)
