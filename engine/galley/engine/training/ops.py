"""Argument checking and dispatch of the training ops that arrive as ``OpParams`` on the wire.

The worker calls :func:`run_training_op` for every op in :data:`TRAINING_OPS`. ``save`` and
``clone_inf`` are not here because they need the worker's context (the models folder, the
registry, a new spawn name): the worker calls ``Trainer.save`` and ``Trainer.clone_frozen``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from galley.engine.errors import InvalidRequest
from galley.engine.training.trainer import Trainer

Thread = dict[str, Any]


class OpArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TrainLanguageModellingArgs(OpArgs):
    thread: Thread


class TrainMseArgs(OpArgs):
    thread: Thread
    target: float


class TrainMsePerTokenArgs(OpArgs):
    thread: Thread
    targets: list[float]


class TrainRankingArgs(OpArgs):
    pos: Thread
    neg: Thread


class TrainDpoArgs(OpArgs):
    pos: Thread
    neg: Thread
    ref_logprobs_pos: float
    ref_logprobs_neg: float
    beta: float = Field(gt=0)


class TrainPpoArgs(OpArgs):
    thread: Thread
    trajectory_logprobs: list[float]
    # One advantage for every weighted token, or one per weighted token.
    advantages: float | list[float]
    clip_range: float = Field(gt=0)


class TrainGrpoArgs(OpArgs):
    thread: Thread
    trajectory_logprobs: list[float]
    reference_logprobs: list[float]
    advantages: float | list[float]
    clip_range: float = Field(gt=0)
    kl_beta: float = Field(ge=0)


class OptimStepArgs(OpArgs):
    lr: float = Field(ge=0)
    wd: float = Field(default=0.0, ge=0)
    # None turns clipping off. The norm is still measured and reported.
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    skip_nan_gradients: bool = False


class NoArgs(OpArgs):
    pass


class SetOptimStepArgs(OpArgs):
    step: int = Field(ge=0)


# Op name -> its argument model. Each op name is also the name of the Trainer method that runs it.
TRAINING_OPS: dict[str, type[OpArgs]] = {
    "train_language_modelling": TrainLanguageModellingArgs,
    "train_mse": TrainMseArgs,
    "train_mse_per_token": TrainMsePerTokenArgs,
    "train_ranking": TrainRankingArgs,
    "train_dpo": TrainDpoArgs,
    "train_ppo": TrainPpoArgs,
    "train_grpo": TrainGrpoArgs,
    "optim_step": OptimStepArgs,
    "get_optim_step": NoArgs,
    "set_optim_step": SetOptimStepArgs,
}


def parse_op_args(op: str, args: dict[str, Any]) -> OpArgs:
    """Validate an op's arguments, raising InvalidRequest that names each invalid field."""
    model = TRAINING_OPS.get(op)
    if model is None:
        raise InvalidRequest(f"{op!r} is not a training op; training ops are {', '.join(TRAINING_OPS)}")
    try:
        return model.model_validate(args)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'args'}: {item['msg']} (got {item.get('input')!r:.80})"
            for item in error.errors()
        )
        raise InvalidRequest(f"{op}: invalid arguments: {problems}") from None


def run_training_op(trainer: Trainer, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one training op on ``trainer`` and return its JSON result."""
    parsed = parse_op_args(op, args)
    return getattr(trainer, op)(**parsed.model_dump())
