"""Run events: JobNotifier, metrics and the two sinks (a pipe named by GALLEY_EVENTS_FD, stderr)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from galley.runtime import JobArtifact, JobNotifier, RecipeContext
from galley.sdk.events import JsonLinesSink, StderrSink, sink_from_environment


class Recorder:
    def __init__(self):
        self.events: list[dict] = []

    def emit(self, event: dict) -> None:
        self.events.append(event)


def read_pipe_events(read_fd: int) -> list[dict]:
    with os.fdopen(read_fd, encoding="utf-8") as reader:
        return [json.loads(line) for line in reader]


def test_events_fd_receives_json_lines(monkeypatch):
    read_fd, write_fd = os.pipe()
    monkeypatch.setenv("GALLEY_EVENTS_FD", str(write_fd))
    sink = sink_from_environment()
    assert isinstance(sink, JsonLinesSink)
    notifier = JobNotifier(sink)
    notifier.register_stages(["train", "eval"])
    notifier.report_progress("train", tot_num_samples=30, processed_num_samples=3)
    notifier.stage_notifier("eval").report_progress(10, 10)
    notifier.register_artifact(JobArtifact(name="policy", kind="model", uri="model_registry://policy-1"))
    notifier.report_error("judge returned no score for sample 4")
    os.close(write_fd)
    assert read_pipe_events(read_fd) == [
        {"type": "stages", "stages": ["train", "eval"]},
        {"type": "progress", "stage": "train", "total": 30, "done": 3},
        {"type": "progress", "stage": "eval", "total": 10, "done": 10},
        {"type": "artifact", "name": "policy", "kind": "model", "uri": "model_registry://policy-1"},
        {"type": "error", "message": "judge returned no score for sample 4"},
    ]


def test_events_fd_not_a_number(monkeypatch):
    monkeypatch.setenv("GALLEY_EVENTS_FD", "three")
    with pytest.raises(ValueError, match="GALLEY_EVENTS_FD='three' is not an open file descriptor"):
        sink_from_environment()


def test_without_events_fd_events_are_readable_on_stderr(monkeypatch):
    monkeypatch.delenv("GALLEY_EVENTS_FD", raising=False)
    assert isinstance(sink_from_environment(), StderrSink)
    stream = io.StringIO()
    notifier = JobNotifier(StderrSink(stream))
    notifier.register_stages(["train"])
    notifier.report_progress("train", 30, 3)
    assert stream.getvalue().splitlines() == ["[galley] stages: train", "[galley] progress train: 3/30 (10%)"]


def test_unregistered_stage_is_rejected_once_stages_exist():
    notifier = JobNotifier(Recorder())
    notifier.register_stages(["train"])
    with pytest.raises(ValueError, match="stage 'trian' is not registered; registered stages: train"):
        notifier.report_progress("trian", 10, 1)


def test_first_progress_registers_the_stage_without_register_stages():
    recorder = Recorder()
    notifier = JobNotifier(recorder)
    notifier.report_progress("train", 4, 1)
    notifier.report_progress("eval", 2, 1)
    assert recorder.events == [
        {"type": "stages", "stages": ["train"]},
        {"type": "progress", "stage": "train", "total": 4, "done": 1},
        {"type": "stages", "stages": ["train", "eval"]},
        {"type": "progress", "stage": "eval", "total": 2, "done": 1},
    ]


@pytest.mark.parametrize(("total", "done"), [(-1, 0), (10, -2), (10, 1.5)])
def test_progress_counts_must_be_non_negative_ints(total, done):
    with pytest.raises(ValueError, match="must be a non-negative int"):
        JobNotifier(Recorder()).report_progress("train", total, done)


def test_duplicate_stage_names_are_rejected():
    with pytest.raises(ValueError, match="train appear more than once"):
        JobNotifier(Recorder()).register_stages(["train", "eval", "train"])


def context_with(recorder: Recorder, tmp_path: Path) -> RecipeContext:
    # The client is not used by metrics.
    return RecipeContext(None, "run-1", tmp_path, events=recorder)  # type: ignore[arg-type]


def test_log_metric_with_and_without_step(tmp_path):
    recorder = Recorder()
    ctx = context_with(recorder, tmp_path)
    ctx.log_metric("loss", 2.5)
    ctx.log_metric("loss", 2.0)
    ctx.log_metric("reward", 1, step=10)
    ctx.log_metric("reward", 3)
    assert recorder.events == [
        {"type": "metric", "name": "loss", "value": 2.5, "step": 0},
        {"type": "metric", "name": "loss", "value": 2.0, "step": 1},
        {"type": "metric", "name": "reward", "value": 1.0, "step": 10},
        {"type": "metric", "name": "reward", "value": 3.0, "step": 11},
    ]


def test_log_metric_skips_non_finite_values(tmp_path, capsys):
    recorder = Recorder()
    ctx = context_with(recorder, tmp_path)
    ctx.log_metric("loss", float("nan"))
    assert recorder.events == []
    assert "metric 'loss' at step 0 is nan; not recorded" in capsys.readouterr().err


def test_log_metric_rejects_bad_arguments(tmp_path):
    ctx = context_with(Recorder(), tmp_path)
    with pytest.raises(TypeError, match="value must be a number"):
        ctx.log_metric("loss", "0.3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        ctx.log_metric("loss", 0.3, step=-1)
    with pytest.raises(ValueError, match="metric name must be a non-empty string"):
        ctx.log_metric("", 0.3)


def test_context_exposes_run_identity(tmp_path):
    ctx = context_with(Recorder(), tmp_path)
    assert ctx.run_id == "run-1"
    assert ctx.run_dir == tmp_path
    assert isinstance(ctx.job, JobNotifier)
