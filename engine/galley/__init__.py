"""Galley: engine, recipe runner and SDK. The SDK's public names are exported here.

Recipes import these names from ``galley`` or, unchanged from Adaptive Engine recipes, from
``adaptive_harmony``; the entry point and config types are in ``galley.runtime``. Importing
this package loads no torch: the engine's worker processes run the models.
"""

from galley.sdk.builder import ModelBuilder
from galley.sdk.client import HarmonyClient, get_client
from galley.sdk.config import AdaptiveModel, InputConfig
from galley.sdk.errors import (
    EngineConnectionError,
    EngineError,
    EngineInternalError,
    GalleyError,
    InvalidRequest,
    ModelLoadError,
    ModelNotFound,
    NotFound,
    OpFailed,
    SpawnRefused,
    StructuredOutputError,
    WorkerDied,
)
from galley.sdk.models import InferenceModel, TrainingModel
from galley.sdk.notifier import JobArtifact, JobNotifier, StageNotifier
from galley.sdk.threads import StringThread, TokenizedThread, TokenizedTurn, Turn

__all__ = [
    "AdaptiveModel",
    "EngineConnectionError",
    "EngineError",
    "EngineInternalError",
    "GalleyError",
    "HarmonyClient",
    "InferenceModel",
    "InputConfig",
    "InvalidRequest",
    "JobArtifact",
    "JobNotifier",
    "ModelBuilder",
    "ModelLoadError",
    "ModelNotFound",
    "NotFound",
    "OpFailed",
    "SpawnRefused",
    "StageNotifier",
    "StringThread",
    "StructuredOutputError",
    "TokenizedThread",
    "TokenizedTurn",
    "TrainingModel",
    "Turn",
    "WorkerDied",
    "get_client",
]
