"""AdamW over a spawn's trainable parameters, with float32 master weights for low-precision ones.

Parameters stored in float32 (every parameter on CPU, LoRA adapters, value heads) are
stepped in place. A bfloat16 or float16 parameter gets a float32 master copy: its gradient
is accumulated in the parameter's own dtype across micro-batches, converted to float32
before clipping, the optimizer steps the master, and the master is rounded back into the
parameter. This keeps small updates from vanishing in bfloat16 rounding.

Weight decay applies to matrices only (parameters with 2 or more dimensions), not to
biases or norm scales, as is usual for transformers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

OPTIMIZER_FILE = "optimizer.pt"
OPTIMIZER_FORMAT = 1


@dataclass
class TrainableParameter:
    name: str
    parameter: nn.Parameter
    # The tensor AdamW steps: the parameter itself if it is float32, else a float32 copy.
    master: Tensor

    @property
    def has_master_copy(self) -> bool:
        return self.master is not self.parameter


class MasterWeightsAdamW:
    """AdamW with gradient scaling, global-norm clipping and master weights."""

    def __init__(self, named_parameters: list[tuple[str, nn.Parameter]]):
        if not named_parameters:
            raise ValueError(
                "the model has no trainable parameters (every parameter has requires_grad=False)"
            )
        self.parameters: list[TrainableParameter] = []
        for name, parameter in named_parameters:
            if parameter.dtype == torch.float32:
                master = parameter
            else:
                master = parameter.detach().clone().float()
            self.parameters.append(TrainableParameter(name, parameter, master))

        decay = [p.master for p in self.parameters if p.parameter.ndim >= 2]
        no_decay = [p.master for p in self.parameters if p.parameter.ndim < 2]
        groups = [{"params": decay, "decay": True}, {"params": no_decay, "decay": False}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=0.0, weight_decay=0.0)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def gather_gradients(self, scale: float) -> None:
        """Move each parameter's accumulated gradient, multiplied by ``scale``, onto its master."""
        for entry in self.parameters:
            grad = entry.parameter.grad
            if grad is None:
                entry.master.grad = None
                continue
            if entry.has_master_copy:
                entry.master.grad = grad.float().mul_(scale)
                entry.parameter.grad = None
            else:
                grad.mul_(scale)

    def clip_gradients(self, max_norm: float | None) -> float:
        """Clip the master gradients to a global L2 norm of ``max_norm`` and return the norm before clipping.

        ``max_norm=None`` measures without clipping. A gradient that is not finite gives a
        nan or inf norm, and then nothing is clipped.
        """
        masters = [p.master for p in self.parameters if p.master.grad is not None]
        if not masters:
            return 0.0
        total = torch.nn.utils.get_total_norm([m.grad for m in masters if m.grad is not None])
        norm = float(total)  # a device sync, once per step
        if max_norm is not None and max_norm > 0 and math.isfinite(norm):
            torch.nn.utils.clip_grads_with_norm_(masters, max_norm, total)
        return norm

    def step(self, lr: float, weight_decay: float) -> None:
        """Apply one AdamW update with this step's learning rate and weight decay."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            group["weight_decay"] = weight_decay if group["decay"] else 0.0
        self.optimizer.step()
        with torch.no_grad():
            for entry in self.parameters:
                if entry.has_master_copy:
                    entry.parameter.copy_(entry.master)

    def zero_grad(self) -> None:
        for entry in self.parameters:
            entry.parameter.grad = None
            if entry.has_master_copy:
                entry.master.grad = None

    # -- persistence ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        masters = {p.name: p.master.detach().cpu() for p in self.parameters if p.has_master_copy}
        return {
            "format": OPTIMIZER_FORMAT,
            "parameter_names": self.names,
            "optimizer": self.optimizer.state_dict(),
            "master_weights": masters,
        }

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        """Restore a state from :meth:`state_dict`. ``source`` names the file in errors."""
        if state.get("format") != OPTIMIZER_FORMAT:
            raise ValueError(
                f"{source} has optimizer format {state.get('format')!r}; expected {OPTIMIZER_FORMAT}"
            )
        saved_names = list(state["parameter_names"])
        if saved_names != self.names:
            missing = sorted(set(self.names) - set(saved_names))[:3]
            unexpected = sorted(set(saved_names) - set(self.names))[:3]
            raise ValueError(
                f"{source} was saved for other trainable parameters ({len(saved_names)} saved, "
                f"{len(self.names)} here; missing e.g. {missing}, unexpected e.g. {unexpected}); "
                f"resume with the same model, adapter and scoring settings it was saved with"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        masters: dict[str, Tensor] = state.get("master_weights", {})
        with torch.no_grad():
            for entry in self.parameters:
                if entry.has_master_copy and entry.name in masters:
                    entry.master.copy_(masters[entry.name])


def save_optimizer(optimizer: MasterWeightsAdamW, folder: Path) -> str:
    torch.save(optimizer.state_dict(), folder / OPTIMIZER_FILE)
    return OPTIMIZER_FILE


def load_optimizer(optimizer: MasterWeightsAdamW, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state, str(path))
