"""Start the engine: ``python -m galley.engine --token-file PATH [--registry-url URL | --model KEY=PATH ...]``.

Prints ``GALLEY_ENGINE_READY ws://127.0.0.1:PORT/`` on stdout once it listens; logs go to
stderr. SIGTERM or SIGINT stops it gracefully, ending every worker. See docs/contracts.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from galley.engine.errors import EngineError
from galley.lifecycle import exit_with_parent


def default_models_dir() -> Path:
    """``$GALLEY_HOME/models``, with GALLEY_HOME defaulting as in docs/contracts.md."""
    home = os.environ.get("GALLEY_HOME")
    if home:
        return Path(home) / "models"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Galley" / "models"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "Galley" / "models"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "galley" / "models"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m galley.engine", description="Galley's engine: spawns models on local devices."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default)")
    parser.add_argument(
        "--token-file", required=True, type=Path, help="file holding the bearer token clients must send"
    )

    registry = parser.add_mutually_exclusive_group()
    registry.add_argument(
        "--registry-url", help="control plane URL for the model registry (token from GALLEY_API_TOKEN)"
    )
    registry.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="KEY=PATH",
        help="standalone: register the model folder PATH under KEY (repeatable)",
    )
    parser.add_argument(
        "--architecture",
        action="append",
        default=[],
        metavar="KEY=PATH",
        help="standalone: register an architecture-only entry from a config.json (planning only)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="folder where save() writes models (default $GALLEY_HOME/models)",
    )

    parser.add_argument(
        "--devices", default=None, help="'auto' (default), 'cuda', 'cpu', or virtual devices such as 4x80GiB"
    )
    parser.add_argument(
        "--keep-warm",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a closed session's inference spawns stay loaded for reuse (default 30)",
    )
    parser.add_argument(
        "--telemetry-interval",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="seconds between telemetry events to subscribers (default 0.5)",
    )

    parser.add_argument(
        "--spare-workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes kept started ahead of spawns (default 0 with the fork server, 1 with subprocesses)",
    )
    parser.add_argument(
        "--worker-start",
        choices=("forkserver", "subprocess"),
        default=None,
        help="how workers start: forked from a server that imported torch once (default where available), "
        "or as fresh interpreters",
    )
    parser.add_argument(
        "--log-level", default=os.environ.get("GALLEY_LOG_LEVEL", "INFO"), help="logging level (default INFO)"
    )

    args = parser.parse_args(argv)
    if args.architecture and args.registry_url:
        parser.error(
            "--architecture is for standalone mode; register architectures in the control plane instead"
        )
    if args.keep_warm < 0:
        parser.error(f"--keep-warm {args.keep_warm} is invalid; use 0 or more seconds")
    if args.spare_workers is not None and args.spare_workers < 0:
        parser.error(f"--spare-workers {args.spare_workers} is invalid; use 0 or more")
    if args.telemetry_interval <= 0:
        parser.error(
            f"--telemetry-interval {args.telemetry_interval} is invalid; use a positive number of seconds"
        )
    return args


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise SystemExit(f"error: cannot read --token-file {path}: {error.strerror}") from None
    if not token:
        raise SystemExit(f"error: --token-file {path} is empty; write the bearer token into it")
    return token


async def run(args: argparse.Namespace) -> int:
    from galley.engine.devices import DeviceInventory, DeviceSpecError
    from galley.engine.registry import HttpRegistry, LocalRegistry
    from galley.engine.server import EngineConfig, EngineServer

    log = logging.getLogger("galley.engine")
    token = read_token(args.token_file)
    try:
        if args.registry_url:
            registry = HttpRegistry(args.registry_url, os.environ.get("GALLEY_API_TOKEN"))
            where = f"registry {args.registry_url}"
        else:
            registry = LocalRegistry.from_args(args.model, args.architecture)
            where = f"standalone registry with {len(registry.records)} models ({', '.join(registry.records) or 'none'})"
        inventory = DeviceInventory(args.devices)
    except (EngineError, DeviceSpecError) as error:
        print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
        return 2

    config = EngineConfig(
        host=args.host,
        port=args.port,
        token=token,
        keep_warm_s=args.keep_warm,
        telemetry_interval_s=args.telemetry_interval,
        models_dir=(args.models_dir or default_models_dir()).expanduser().resolve(),
        devices=args.devices,
        spare_workers=args.spare_workers,
        worker_start=args.worker_start,
    )
    log.info(
        "engine starting (pid %d): %s, devices %s, keep-warm %.0f s, models saved to %s",
        os.getpid(),
        where,
        inventory.kind,
        config.keep_warm_s,
        config.models_dir,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(
            signum, lambda s=signum: (log.info("received %s", signal.Signals(s).name), stop.set())
        )
    try:
        await EngineServer(config, registry, inventory).serve(stop)
    except OSError as error:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, error)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    exit_with_parent()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
