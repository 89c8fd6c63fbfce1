"""One spawn rank: ``python -m galley.engine.worker``, started by the engine's launcher.

The worker loads its model, reports "ready" with its PID and memory, then serves ops until
the engine sends "shutdown" or closes the connection. A reader thread puts incoming requests
on a queue, so many requests can be in flight. The main thread runs all torch work and
replies to each request by id. Generate requests go to the generator, which the loop steps
between reads, so new requests join while others generate.

Every reply carries the worker's memory after the op (RSS on CPU; torch allocated,
reserved and peak on CUDA).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any

from galley.engine.channel import WORKER_FD_ENV, Channel
from galley.engine.errors import EngineError, InvalidRequest, NotFound, OpFailed
from galley.engine.spec import LoadSpec

log = logging.getLogger("galley.engine.worker")

INFERENCE_OPS = frozenset(
    {
        "tokenize",
        "detokenize",
        "tokenize_thread",
        "detokenize_thread",
        "serialize_thread",
        "logprobs",
        "logprobs_per_token",
        "raw_logprobs",
        "score",
        "score_last_token",
    }
)
GENERATE_OPS = frozenset({"generate", "generate_tokens"})
# Ops that concurrent requests share one forward pass for (see ModelView.run_batch).
BATCHED_OPS = frozenset({"logprobs", "logprobs_per_token", "score", "score_last_token"})
# Ops that change or read training state; any other "train_*" op is one too.
TRAINING_STATE_OPS = frozenset({"optim_step", "get_optim_step", "set_optim_step", "save", "clone_inf"})


def is_training_op(op: str) -> bool:
    return op.startswith("train_") or op in TRAINING_STATE_OPS


def memory_snapshot(device: Any) -> dict[str, int | None]:
    """Measured memory of this process: RSS, plus torch's allocator counters on CUDA."""
    import psutil
    import torch

    snapshot: dict[str, int | None] = {
        "process_bytes": psutil.Process().memory_info().rss,
        "torch_allocated": None,
        "torch_reserved": None,
        "torch_peak": None,
    }
    if device.type == "cuda":
        snapshot.update(
            torch_allocated=torch.cuda.memory_allocated(device),
            torch_reserved=torch.cuda.memory_reserved(device),
            torch_peak=torch.cuda.max_memory_allocated(device),
        )
    return snapshot


class ContextGenerator:
    """A generator whose steps run inside a context, e.g. a frozen copy's weights."""

    def __init__(self, inner: Any, context: Callable[[], AbstractContextManager[Any]]):
        self.inner = inner
        self.context = context

    def submit(self, request, done) -> Any:
        return self.inner.submit(request, done)

    def has_work(self) -> bool:
        return self.inner.has_work()

    def step(self) -> None:
        with self.context():
            self.inner.step()


class Worker:
    def __init__(self, spec: LoadSpec, channel: Channel):
        from galley.engine import seams
        from galley.engine.modeling import load_model

        self.spec = spec
        self.channel = channel
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.loaded = load_model(spec)
        self.trainer = seams.build_trainer(self.loaded, spec) if spec.kind == "train" else None
        main_view = seams.main_view(self.loaded, spec, self.trainer)
        self.views: dict[str | None, Any] = {None: main_view}
        self.generators: dict[str | None, Any] = {None: seams.build_generator(self.loaded, spec)}
        # Futures of generations that can still be cancelled, by request id. Only the batching
        # scheduler returns one; a one-at-a-time generator runs each request to its end.
        self.cancellable: dict[int, Future] = {}

    # -- loop -----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "adapter": self.loaded.adapter,
            "scalar": self.loaded.value_head is not None,
            "device": str(self.loaded.device),
            "eos_ids": self.loaded.eos_ids,
        }

    def run(self) -> None:
        threading.Thread(target=self._read_loop, name="worker-reader", daemon=True).start()
        # Tensor-parallel ranks must run the same forward passes in the same order. So each
        # request runs to the end before the next is read, and timing cannot change the batches.
        in_order = self.spec.world_size > 1
        while True:
            busy = any(generator.has_work() for generator in self.generators.values())
            messages = [self.inbox.get()] if in_order else self._take_messages(block=not busy)
            for group in _consecutive_groups(messages):
                message = group[0]
                if message is None or message.get("op") == "shutdown":
                    log.info(
                        "shutting down (%s)",
                        "engine closed the connection" if message is None else "shutdown request",
                    )
                    return
                if len(group) > 1:
                    self.handle_batch([request for request in group if request is not None])
                else:
                    self.handle(message)
            self._step_generators(until_idle=in_order)

    def _step_generators(self, until_idle: bool) -> None:
        while True:
            for generator in list(self.generators.values()):
                if generator.has_work():
                    generator.step()
            if not until_idle or not any(g.has_work() for g in self.generators.values()):
                return

    def _read_loop(self) -> None:
        while True:
            message = self.channel.read()
            self.inbox.put(message)
            if message is None:
                return

    def _take_messages(self, block: bool) -> list[dict[str, Any] | None]:
        messages: list[dict[str, Any] | None] = []
        try:
            messages.append(self.inbox.get(block=block))
            while True:
                messages.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        return messages

    # -- requests -------------------------------------------------------------------------

    def reply(self, request_id: int, *, result: Any = None, error: EngineError | None = None) -> None:
        message: dict[str, Any] = {"id": request_id, "memory": memory_snapshot(self.loaded.device)}
        if error is not None:
            message["error"] = error.to_wire()
        else:
            message["result"] = result
        try:
            self.channel.send(message)
        except OSError as send_error:  # the engine is gone; the reader thread ends the loop
            log.warning("cannot send the reply to request %s: %s", request_id, send_error)

    def handle(self, message: dict[str, Any]) -> None:
        request_id = message.get("id", -1)
        op = message.get("op", "")
        args = message.get("args") or {}
        view_name = message.get("view")
        started = time.monotonic()
        if op == "cancel":  # the engine expects no reply
            self._cancel(args.get("request"))
            return
        try:
            view = self.views.get(view_name)
            if view is None:
                raise NotFound(f"this worker has no model view {view_name!r}")
            if op in GENERATE_OPS:
                self._submit_generation(request_id, op, args, view_name, started)
                return
            result = self.dispatch(op, args, view_name)
        except EngineError as error:
            self.reply(request_id, error=error)
            return
        except Exception as error:  # an op's bug or a torch error: report it and keep serving
            log.exception("op %s failed", op)
            self.reply(request_id, error=OpFailed(f"{op} failed: {type(error).__name__}: {error}"))
            return
        log.debug("op %s done in %.3f s", op, time.monotonic() - started)
        self.reply(request_id, result=result)

    def handle_batch(self, messages: list[dict[str, Any]]) -> None:
        """Run same-op scoring requests for one view in one packed forward pass where possible."""
        first = messages[0]
        view = self.views.get(first.get("view"))
        try:
            if view is None:
                raise NotFound(f"this worker has no model view {first.get('view')!r}")
            results = view.run_batch(first["op"], [message.get("args") or {} for message in messages])
        except Exception as error:  # one bad request fails the batch; run each alone for its own error
            log.debug(
                "batched %s of %d requests failed (%s); running them one by one",
                first["op"],
                len(messages),
                error,
            )
            for message in messages:
                self.handle(message)
            return
        log.debug("ran %d %s requests as one batch", len(messages), first["op"])
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, EngineError):
                self.reply(message.get("id", -1), error=result)
            else:
                self.reply(message.get("id", -1), result=result)

    def dispatch(self, op: str, args: dict[str, Any], view_name: str | None) -> Any:
        from galley.engine import seams

        view = self.views[view_name]
        if op in INFERENCE_OPS:
            return getattr(view, op)(args)
        if op == "drop_view":
            return self._drop_view(args)
        if is_training_op(op):
            if view_name is not None:
                raise InvalidRequest(f"{op} is a training op, and this spawn is a frozen inference copy")
            if self.trainer is None:
                raise InvalidRequest(
                    f"{op} needs a training spawn; spawn {self.spec.name!r} was made with spawn_inference"
                )
            if op == "clone_inf":
                return self._clone(args)
            return seams.run_training_op(self.trainer, op, args)
        raise NotFound(f"unknown op {op!r}")

    def _submit_generation(self, request_id: int, op: str, args: dict[str, Any], view_name, started) -> None:
        view = self.views[view_name]
        request = view.generation_request(op, args)

        def done(outcome) -> None:
            self.cancellable.pop(request_id, None)
            if isinstance(outcome, EngineError):
                self.reply(request_id, error=outcome)
            elif isinstance(outcome, BaseException):
                log.error("%s failed: %s: %s", op, type(outcome).__name__, outcome)
                self.reply(request_id, error=OpFailed(f"{op} failed: {type(outcome).__name__}: {outcome}"))
            else:
                # This runs as a callback on the compute thread: an error here must still reach
                # the caller, or its request would wait forever.
                try:
                    result = view.generation_result(op, args, outcome)
                except EngineError as error:
                    self.reply(request_id, error=error)
                    return
                except Exception as error:
                    log.exception("%s: building the result failed", op)
                    self.reply(request_id, error=OpFailed(f"{op} failed: {type(error).__name__}: {error}"))
                    return
                result["generated_tokens"] = len(outcome.ids)
                result["seconds"] = time.monotonic() - started
                self.reply(request_id, result=result)

        future = self.generators[view_name].submit(request, done)
        if future is not None and not future.done():
            self.cancellable[request_id] = future

    def _cancel(self, request_id: Any) -> None:
        future = self.cancellable.pop(request_id, None) if isinstance(request_id, int) else None
        if future is not None and future.cancel():
            log.info("generation request %s cancelled by the client", request_id)

    def _clone(self, args: dict[str, Any]) -> dict[str, Any]:
        from galley.engine import seams

        name = args.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("clone_inf needs a non-empty 'name' for the frozen copy")
        if name in self.views:
            raise InvalidRequest(f"this spawn already has a frozen copy named {name!r}")
        view, generator = seams.frozen_view(self.loaded, self.spec, self.trainer)
        self.views[name] = view
        self.generators[name] = ContextGenerator(generator, view.weights_context)
        log.info("made frozen inference copy %r", name)
        return {"view": name}

    def _drop_view(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        if name not in self.views or name is None:
            raise NotFound(f"this worker has no frozen copy named {name!r}")
        del self.views[name]
        self.generators.pop(name, None)
        log.info("dropped frozen inference copy %r", name)
        return {"dropped": name}


def _consecutive_groups(messages: list[dict[str, Any] | None]) -> list[list[dict[str, Any] | None]]:
    """Group runs of consecutive batchable requests with the same op and view; others stay alone.

    Only consecutive requests are grouped, so no request moves past a training op sent
    between them.
    """
    groups: list[list[dict[str, Any] | None]] = []
    for message in messages:
        batchable = message is not None and message.get("op") in BATCHED_OPS
        previous = groups[-1][0] if groups else None
        if (
            batchable
            and previous is not None
            and previous.get("op") == message.get("op")  # type: ignore[union-attr]
            and previous.get("view") == message.get("view")  # type: ignore[union-attr]
        ):
            groups[-1].append(message)
        else:
            groups.append([message])
    return groups


# ---------------------------------------------------------------------------------------
# Entry point


def _configure_logging(spec: LoadSpec | None) -> None:
    label = f"spawn={spec.name} rank={spec.rank}" if spec else "spare"
    logging.basicConfig(
        level=os.environ.get("GALLEY_LOG_LEVEL", "INFO").upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s galley.worker[{label} pid={os.getpid()}] %(message)s",
        force=True,
    )


def _preimport() -> None:
    """Import the heavy libraries before the spawn is assigned, which is what makes a spare worker fast."""
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    import galley.engine.modeling  # noqa: F401
    import galley.engine.seams  # noqa: F401


def main() -> int:
    """Entry point of ``python -m galley.engine.worker`` (the subprocess start method)."""
    fd = os.environ.get(WORKER_FD_ENV)
    if fd is None:
        print(f"error: {WORKER_FD_ENV} is not set; workers are started by the engine", file=sys.stderr)
        return 2
    _configure_logging(None)
    _preimport()
    return serve(Channel(socket.socket(fileno=int(fd))))


def forked_main(sock: socket.socket) -> None:
    """Entry point of a worker forked by the engine's fork server."""
    os.setsid()  # Ctrl-C in the engine's terminal must not reach the workers: the engine stops them.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the engine's stdout carries only its READY line
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _configure_logging(None)
    code = serve(Channel(sock))
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


def serve(channel: Channel) -> int:
    """Load the assigned spawn rank, report ready, and serve ops until shutdown."""
    first = channel.read()
    if first is None or first.get("op") == "shutdown":
        return 0
    # Applied before torch touches CUDA: CUDA_VISIBLE_DEVICES, and the process group's rendezvous.
    os.environ.update(first.get("env") or {})
    spec = LoadSpec.model_validate(first["spec"])
    _configure_logging(spec)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    started = time.monotonic()

    try:
        worker = Worker(spec, channel)
    except EngineError as error:
        log.error("load failed: %s", error.message)
        channel.send({"event": "load_failed", "error": error.to_wire()})
        return 1
    except Exception as error:  # a bug or an unexpected torch/transformers failure while loading
        log.exception("load failed")
        channel.send(
            {
                "event": "load_failed",
                "error": {"type": "model_error", "message": f"{type(error).__name__}: {error}"},
            }
        )
        return 1

    memory = memory_snapshot(worker.loaded.device)
    log.info(
        "ready in %.1f s on %s: model %s, %.2f GiB resident",
        time.monotonic() - started,
        spec.device,
        spec.model_key,
        (memory["process_bytes"] or 0) / 2**30,
    )
    channel.send({"event": "ready", "pid": os.getpid(), "memory": memory, "info": worker.info()})
    worker.run()
    return 0


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stderr.flush()
    # Skip interpreter teardown (seconds with torch loaded): the engine waits for this exit.
    os._exit(code)
