"""Continuous batching for inference spawns: a scheduler that runs many generations in one batch.

The worker builds one ``Scheduler`` per inference spawn and runs its ``run()`` loop on the
thread that owns the model. Generate and logprobs ops submit their requests to it.
"""

from galley.engine.batching.batch import check_model_supported
from galley.engine.batching.logprobs import iter_padded_batches, token_logprobs
from galley.engine.batching.requests import GenerationRequest, GenerationResult
from galley.engine.batching.scheduler import Scheduler, SchedulerClosed, SchedulerStats
from galley.engine.batching.throughput import ThroughputMeter

__all__ = [
    "GenerationRequest",
    "GenerationResult",
    "Scheduler",
    "SchedulerClosed",
    "SchedulerStats",
    "ThroughputMeter",
    "check_model_supported",
    "iter_padded_batches",
    "token_logprobs",
]
