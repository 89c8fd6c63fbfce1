"""Registry access: the control plane's HTTP API (served here by a small real HTTP server in
the test process, standing in for the control plane) and the standalone registry."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from engine_harness import ENGINE_ROOT, EngineClient, inference_model, pid_alive, start_engine, string_thread

from galley.engine.errors import InvalidRequest, ModelError, NotFound
from galley.engine.registry import HttpRegistry, LocalRegistry, parse_model_arg, record_from_folder
from galley.models.folders import inspect_folder
from galley.protocol import NewModel

API_TOKEN = "registry-token"


class FakeControlPlane:
    """The registry endpoints of docs/contracts.md over a real HTTP server, with records in memory."""

    def __init__(self, records: list[dict[str, Any]]):
        self.records = {record["key"]: record for record in records}
        self.posted: list[dict[str, Any]] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self):
        plane = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {API_TOKEN}":
                    return True
                self._reply(401, {"error": {"message": "bad token"}})
                return False

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path == "/api/internal/models":
                    self._reply(200, {"models": list(plane.records.values())})
                    return
                key = self.path.removeprefix("/api/internal/models/")
                if key in plane.records:
                    self._reply(200, plane.records[key])
                else:
                    self._reply(
                        404,
                        {"error": {"message": f"unknown model {key}", "known_keys": sorted(plane.records)}},
                    )

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                plane.posted.append(body)
                if body["key"] in plane.records:
                    self._reply(409, {"error": {"message": "exists"}})
                    return
                info = inspect_folder(body["path"])
                record = {
                    "key": body["key"],
                    "name": body["name"],
                    "kind": body["kind"],
                    "path": body["path"],
                    "base_key": body.get("adapter_base_key"),
                    "config": info.config,
                    "facts": {},
                    "defaults": {"kv_cache_len": None, "tokens_to_generate": None, "tp": None},
                    "lineage": {
                        key: body.get(key) for key in ("parent_key", "run_id", "recipe_hash", "optim_step")
                    },
                }
                plane.records[body["key"]] = record
                self._reply(201, record)

        return Handler

    def __enter__(self) -> FakeControlPlane:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def base_record(key: str, folder: Path, **defaults: Any) -> dict[str, Any]:
    return {
        "key": key,
        "name": key,
        "kind": "base",
        "path": str(folder),
        "base_key": None,
        "config": json.loads((folder / "config.json").read_text()),
        "facts": {},
        "defaults": {"kv_cache_len": None, "tokens_to_generate": None, "tp": None, **defaults},
        "lineage": {},
    }


@pytest.fixture
def control_plane(tiny_llama_dir) -> Iterator[FakeControlPlane]:
    with FakeControlPlane(
        [base_record("llama", tiny_llama_dir, tokens_to_generate=3, kv_cache_len=300)]
    ) as plane:
        yield plane


# -- HTTP registry --------------------------------------------------------------------------


async def test_http_registry_reads_records(control_plane):
    registry = HttpRegistry(control_plane.url, API_TOKEN)
    record = await registry.get("llama")
    assert record.kind == "base"
    assert record.defaults.tokens_to_generate == 3
    assert await registry.known_keys() == ["llama"]


async def test_http_registry_unknown_key_lists_known_keys(control_plane):
    with pytest.raises(NotFound) as error:
        await HttpRegistry(control_plane.url, API_TOKEN).get("mistral")
    assert "'mistral'" in error.value.message
    assert "known keys: llama" in error.value.message
    assert error.value.data == {"key": "mistral", "known_keys": ["llama"]}


async def test_http_registry_wrong_token_names_the_variable(control_plane):
    with pytest.raises(ModelError, match="GALLEY_API_TOKEN"):
        await HttpRegistry(control_plane.url, "wrong").get("llama")


async def test_http_registry_unreachable_names_the_url():
    with pytest.raises(ModelError, match="cannot reach the model registry at http://127.0.0.1:9"):
        await HttpRegistry("http://127.0.0.1:9", API_TOKEN, timeout=2).get("llama")


async def test_http_registry_register_conflict_is_invalid(control_plane, tiny_llama_dir):
    registry = HttpRegistry(control_plane.url, API_TOKEN)
    new = NewModel(key="llama", name="again", path=str(tiny_llama_dir), kind="full")
    with pytest.raises(InvalidRequest, match="already exists"):
        await registry.register(new)
    assert await registry.free_key("Llama") == "llama-2"


# -- engine against the control plane ---------------------------------------------------------


async def test_engine_uses_registry_defaults_and_records_lineage(control_plane, tmp_path):
    with start_engine(
        {}, tmp_path, extra_args=["--registry-url", control_plane.url], env={"GALLEY_API_TOKEN": API_TOKEN}
    ) as engine:
        headers = {"X-Galley-Run-Id": "run-42", "X-Galley-Recipe-Hash": "abc123"}
        async with EngineClient.connect(engine.url, engine.token, headers) as client:
            spawned = await client.call(
                "spawn",
                name="policy",
                kind="train",
                max_batch_size=128,
                model=inference_model("llama", use_adapter=True),
            )
            assert spawned["tokens_to_generate"] == 3  # the record's default
            assert spawned["kv_cache_len"] == 300
            generated = await client.op(
                "policy", "generate", thread=string_thread(("user", "Hi")), sampling={}
            )
            assert len(generated["completion_ids"]) == 3

            await client.op(
                "policy",
                "train_language_modelling",
                thread=string_thread(("user", "Hi"), ("assistant", "Hello")),
            )
            await client.op("policy", "optim_step", lr=1e-3)
            saved = await client.op("policy", "save", model_name="Tuned")
            (spawn,) = (await client.call("list_spawns"))["spawns"]
            worker_pid = spawn["ranks"][0]["pid"]

    # The engine stopped on SIGTERM (end of the with block) and ended its worker first.
    assert engine.process.returncode == 0
    assert not pid_alive(worker_pid)
    assert "engine stopped" in engine.log_text()

    assert saved["key"] == "tuned"
    (posted,) = control_plane.posted
    assert posted["kind"] == "adapter"
    assert posted["parent_key"] == "llama"
    assert posted["adapter_base_key"] == "llama"
    assert posted["run_id"] == "run-42"
    assert posted["recipe_hash"] == "abc123"
    assert posted["optim_step"] == 1
    assert posted["path"] == str(engine.models_dir / "tuned")


# -- standalone registry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("llama", "write KEY=PATH"),
        ("=/models/x", "write KEY=PATH"),
        ("bad key=/x", "model key 'bad key' is invalid"),
    ],
)
def test_model_argument_errors_name_the_value(value, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_model_arg(value)


def test_folder_without_weights_is_a_model_error(tmp_path, tiny_llama_dir):
    (tmp_path / "config.json").write_text((tiny_llama_dir / "config.json").read_text())
    (tmp_path / "tokenizer.json").write_text((tiny_llama_dir / "tokenizer.json").read_text())
    with pytest.raises(ModelError, match="has no weights"):
        record_from_folder("broken", tmp_path)


async def test_standalone_registry_records_have_facts(tiny_qwen3_dir):
    registry = LocalRegistry.from_args([f"qwen={tiny_qwen3_dir}"], [])
    record = await registry.get("qwen")
    assert record.kind == "base"
    assert record.facts["family"] == "qwen3"
    assert record.facts["layers"] == 2
    with pytest.raises(NotFound, match="known keys: qwen"):
        await registry.get("other")


def test_engine_with_bad_model_folder_exits_with_message(tmp_path):
    token = tmp_path / "token"
    token.write_text("t")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "galley.engine",
            "--token-file",
            str(token),
            "--model",
            f"x={tmp_path / 'missing'}",
        ],
        cwd=ENGINE_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "missing does not exist" in result.stderr


def test_engine_with_empty_token_file_exits_with_message(tmp_path):
    token = tmp_path / "token"
    token.write_text("  \n")
    result = subprocess.run(
        [sys.executable, "-m", "galley.engine", "--token-file", str(token)],
        cwd=ENGINE_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "is empty" in result.stderr


def test_engine_server_process_imports_no_torch():
    # The server stays light: models live only in worker processes.
    code = "import sys, galley.engine.__main__, galley.engine.server; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ENGINE_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
