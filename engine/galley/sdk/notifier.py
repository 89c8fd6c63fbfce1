"""Progress, artifacts and errors of a run, reported to the workbench as run events."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from galley.sdk.events import EventSink, default_sink

log = logging.getLogger(__name__)


class JobArtifact(BaseModel):
    """Something a run produced and wants listed with it: a saved model, a file, a dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Display name")
    kind: str = Field(default="file", min_length=1, description="model, dataset, file, evaluation, ...")
    uri: str = Field(min_length=1, description="model_registry://KEY, a file path or a URL")
    metadata: dict[str, Any] | None = None


class JobNotifier:
    """Drives the run's progress bars and artifact list in the workbench.

    Without registered stages, the first ``report_progress`` of a stage registers it. Once
    stages are registered, reporting on another stage is an error, so a typo in a stage
    name shows up at once instead of as a bar that never moves.
    """

    def __init__(self, sink: EventSink | None = None):
        self._sink = sink
        self._stages: list[str] = []
        self._explicit_stages = False

    @property
    def stages(self) -> list[str]:
        return list(self._stages)

    def _emit(self, event: dict[str, Any]) -> None:
        (self._sink or default_sink()).emit(event)

    def register_stages(self, stages: Iterable[str]) -> None:
        names = list(stages)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"stage names must be non-empty strings, got {name!r} in {names!r}")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"stage names must be unique; {', '.join(duplicates)} appear more than once")
        self._stages = names
        self._explicit_stages = True
        self._emit({"type": "stages", "stages": names})

    def report_progress(self, stage: str, tot_num_samples: int, processed_num_samples: int) -> None:
        """Report that ``processed_num_samples`` of ``tot_num_samples`` in ``stage`` are done."""
        self._check_stage(stage)
        total = _count("tot_num_samples", tot_num_samples)
        done = _count("processed_num_samples", processed_num_samples)
        if done > total:
            log.warning("stage %r: processed_num_samples=%d exceeds tot_num_samples=%d", stage, done, total)
        self._emit({"type": "progress", "stage": stage, "total": total, "done": done})

    def stage_notifier(self, stage: str) -> StageNotifier:
        self._check_stage(stage)
        return StageNotifier(self, stage)

    def register_artifact(self, artifact: JobArtifact) -> None:
        if not isinstance(artifact, JobArtifact):
            raise TypeError(f"register_artifact takes a JobArtifact, got {type(artifact).__name__}")
        event: dict[str, Any] = {
            "type": "artifact",
            "name": artifact.name,
            "kind": artifact.kind,
            "uri": artifact.uri,
        }
        if artifact.metadata:
            event["metadata"] = artifact.metadata
        self._emit(event)

    def report_error(self, message: str) -> None:
        """Record an error message for the run; the recipe keeps running."""
        self._emit({"type": "error", "message": str(message)})

    def _check_stage(self, stage: str) -> None:
        if not isinstance(stage, str) or not stage:
            raise ValueError(f"stage must be a non-empty string, got {stage!r}")
        if stage in self._stages:
            return
        if self._explicit_stages:
            raise ValueError(
                f"stage {stage!r} is not registered; registered stages: {', '.join(self._stages)}. "
                f"Add it to register_stages([...])"
            )
        self._stages.append(stage)
        self._emit({"type": "stages", "stages": list(self._stages)})


class StageNotifier:
    """Progress reporting bound to one stage of a ``JobNotifier``."""

    def __init__(self, notifier: JobNotifier, stage: str):
        self.notifier = notifier
        self.stage = stage

    def report_progress(self, tot_num_samples: int, processed_num_samples: int) -> None:
        self.notifier.report_progress(self.stage, tot_num_samples, processed_num_samples)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{name} must be a non-negative int, got {value!r}")
    if value < 0 or int(value) != value:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)
