"""Training inside a spawn: losses, packing into micro-batches, AdamW steps, save and resume.

The worker of a ``spawn_train`` spawn builds one :class:`Trainer` around its loaded model.
It sends ``train_*``, ``optim_step``, ``get_optim_step`` and ``set_optim_step`` through
``run_training_op``, and calls ``Trainer.save`` and ``Trainer.clone_frozen`` for ``save`` and
``clone_inf``. ``Trainer.scorer`` (and any :class:`FrozenPolicy`) serves the
inference ops that need one forward pass: logprobs, logprobs_per_token, raw_logprobs, score
and score_last_token.
"""

from galley.engine.training.ops import TRAINING_OPS, run_training_op
from galley.engine.training.reference import FrozenPolicy
from galley.engine.training.scoring import SequenceScorer
from galley.engine.training.trainer import NonFiniteGradientError, TrainableModel, Trainer

__all__ = [
    "TRAINING_OPS",
    "FrozenPolicy",
    "NonFiniteGradientError",
    "SequenceScorer",
    "TrainableModel",
    "Trainer",
    "run_training_op",
]
