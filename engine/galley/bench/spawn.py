"""Spawn latency of the engine: the first spawn, later spawns, and a kept spawn reused.

    python -m galley.bench.spawn [--family llama-3.1] [--spawns 3] [--out FILE]

Generates a tiny model with random weights and a real tokenizer, so nothing is downloaded.
Then, for each worker start method, it runs a real engine (``python -m galley.engine``) and
measures from the client's side of the WebSocket:

- first: the first inference spawn after the engine printed its READY line. With the fork
  server this includes the rest of its torch/transformers import;
- next: the median of ``--spawns`` further spawns with new configurations (new workers);
- reused: a spawn of a configuration kept warm from a closed session.

Both start methods run in one process, one after the other, on the same model. Prints one
JSON object on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

READY_PREFIX = "GALLEY_ENGINE_READY "


class Engine:
    """A started engine subprocess and its URL and token."""

    def __init__(self, folder: Path, model_dir: Path, start_method: str):
        self.token = secrets.token_hex(16)
        token_file = folder / f"token-{start_method}"
        token_file.write_text(self.token)
        command = [
            sys.executable, "-m", "galley.engine", "--token-file", str(token_file),
            "--model", f"bench={model_dir}", "--models-dir", str(folder / "models"),
            "--worker-start", start_method, "--keep-warm", "120",
        ]  # fmt: skip
        self.log = open(folder / f"engine-{start_method}.log", "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"the engine did not start; see {self.log.name}")
        self.url = line[len(READY_PREFIX) :].strip()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.log.close()


async def call(connection, request_id: int, method: str, **params: Any) -> Any:
    await connection.send(json.dumps({"id": request_id, "method": method, "params": params}))
    while True:
        message = json.loads(await connection.recv())
        if message.get("id") == request_id:
            if message.get("error"):
                raise RuntimeError(f"{method} failed: {message['error']['message']}")
            return message["result"]


async def timed_spawn(connection, request_id: int, name: str, kv_cache_len: int) -> float:
    model = {"path": "model_registry://bench", "kv_cache_len": kv_cache_len, "tokens_to_generate": 4}
    started = time.perf_counter()
    await call(connection, request_id, "spawn", name=name, kind="inference", model=model)
    return time.perf_counter() - started


async def measure(engine: Engine, spawns: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {engine.token}"}
    async with connect(engine.url, additional_headers=headers) as connection:
        first = await timed_spawn(connection, 1, "first", 256)
        later = [await timed_spawn(connection, 2 + i, f"next-{i}", 257 + i) for i in range(spawns)]
    async with connect(engine.url, additional_headers=headers) as connection:
        reused = await timed_spawn(connection, 1, "again", 256)
    return {"first_s": first, "next_s": statistics.median(later), "next_all_s": later, "reused_s": reused}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m galley.bench.spawn", description="Measure the engine's spawn latency."
    )
    parser.add_argument("--family", default="llama-3.1", choices=("llama-3.1", "qwen3"))
    parser.add_argument(
        "--spawns", type=int, default=3, help="later spawns to time per start method (default 3)"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    args = parser.parse_args(argv)

    from galley.models.tiny import make_tiny

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="galley-bench-spawn-") as temporary:
        folder = Path(temporary)
        print(f"generating a tiny {args.family} model", file=sys.stderr)
        model_dir = make_tiny(args.family, folder / "model")
        for method in ("forkserver", "subprocess"):
            print(f"measuring spawns with --worker-start {method}", file=sys.stderr)
            engine = Engine(folder, model_dir, method)
            try:
                results[method] = asyncio.run(measure(engine, args.spawns))
            finally:
                engine.stop()

    report = {
        "name": "spawn",
        "cases": results,
        "speedup_next_spawn_forkserver_vs_subprocess": results["subprocess"]["next_s"]
        / results["forkserver"]["next_s"],
        "setup": {
            "model": f"tiny {args.family} (galley.models.tiny defaults)",
            "spawns_per_method": args.spawns,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
