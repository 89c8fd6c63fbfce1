"""``python -m galley.run``: schema output, config validation and load failures (no engine needed).

Each test runs the real runner in a subprocess and checks its exit code and the final
``error: FILE:LINE: message`` line of docs/contracts.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ENGINE_DIR = Path(__file__).resolve().parents[1]
RECIPES = Path(__file__).resolve().parent / "recipes"
REGISTRY_TOKEN = "registry-test-token"
REGISTRY_KEYS = ["llama-3.1-8b-instruct", "qwen3-32b"]


def run_galley(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GALLEY_") and key not in ("HTTP_PROXY", "http_proxy")
    }
    environment.update(PYTHONPATH=str(ENGINE_DIR), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "galley.run", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def write_recipe(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    for file in RECIPES.iterdir():
        shutil.copy(file, tmp_path / file.name)
    return tmp_path


# -- schema -------------------------------------------------------------------------------


def test_schema_of_seed_config(recipes):
    result = run_galley("seed_config.py", "--schema", cwd=recipes)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["properties"]["model_to_train"]["x-galley-kind"] == "model"
    assert schema["properties"]["model_to_train"]["description"] == "Model to train"
    assert schema["properties"]["tp"]["minimum"] == 1
    assert schema["required"] == ["model_to_train", "tp", "max_seq_len", "train_adapter"]


def test_schema_of_recipe_without_config(recipes):
    result = run_galley("seed_builders.py", "--schema", cwd=recipes)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"type": "object", "properties": {}}


def test_schema_contacts_no_engine(recipes):
    # An address nothing listens on: the schema must not need it.
    env = {"GALLEY_ENGINE_URL": "ws://127.0.0.1:9/", "GALLEY_API_URL": "http://127.0.0.1:9"}
    result = run_galley("seed_config.py", "--schema", cwd=recipes, env=env)
    assert result.returncode == 0, result.stderr


# -- recipes that cannot load -------------------------------------------------------------


def test_annotated_with_one_argument(recipes):
    result = run_galley("seed_config_as_printed.py", cwd=recipes)
    assert result.returncode == 2
    assert last_line(result.stderr) == (
        "error: seed_config_as_printed.py:5: Annotated[AdaptiveModel] needs a type and at least one "
        'annotation; write Annotated[AdaptiveModel, Field(description="...")] or just AdaptiveModel'
    )
    # Every one-argument Annotated of the class is listed, not only the first.
    for line, inner in [(6, "int"), (7, "int"), (8, "bool")]:
        assert f"seed_config_as_printed.py:{line}: Annotated[{inner}]" in result.stderr


def test_script_mode_hands_off_to_runner(recipes):
    # `python recipe.py` runs the file through the runner, with the runner's messages.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GALLEY_")}
    environment["PYTHONPATH"] = str(ENGINE_DIR)
    result = subprocess.run(
        [sys.executable, "seed_builders.py"],
        cwd=recipes,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert last_line(result.stderr).startswith("error: seed_builders.py:3: GALLEY_ENGINE_URL is not set")


def test_syntax_error_points_at_line_with_caret(tmp_path):
    write_recipe(
        tmp_path,
        "broken.py",
        """
        from adaptive_harmony.runtime import recipe_main

        @recipe_main
        async def main(ctx):
            total = (1 +
        """,
    )
    result = run_galley("broken.py", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        last_line(result.stderr)
        == "error: broken.py:5: SyntaxError: '(' was never closed; fix the line shown above"
    )
    assert "    total = (1 +" in result.stderr
    assert "^" in result.stderr


def test_sdk_name_from_wrong_module_suggests_import(tmp_path):
    write_recipe(tmp_path, "wrong_import.py", "from adaptive_harmony import recipe_main\n")
    result = run_galley("wrong_import.py", cwd=tmp_path)
    assert result.returncode == 2
    assert last_line(result.stderr) == (
        "error: wrong_import.py:1: cannot import 'recipe_main' from 'adaptive_harmony'; it is in "
        "adaptive_harmony.runtime: write `from adaptive_harmony.runtime import recipe_main`"
    )
    assert "galley/run/loader.py" not in result.stderr


def test_misspelled_sdk_name_suggests_close_match(tmp_path):
    write_recipe(tmp_path, "typo.py", "import os\nfrom galley.runtime import RecipeCtx\n")
    result = run_galley("typo.py", cwd=tmp_path)
    assert result.returncode == 2
    assert last_line(result.stderr) == (
        "error: typo.py:2: cannot import 'RecipeCtx' from 'galley.runtime'; "
        "did you mean `from galley.runtime import RecipeContext`?"
    )


def test_missing_module_is_named(tmp_path):
    write_recipe(tmp_path, "needs_module.py", "import os\nimport not_a_real_module_xyz\n")
    result = run_galley("needs_module.py", cwd=tmp_path)
    assert result.returncode == 2
    assert last_line(result.stderr).startswith(
        "error: needs_module.py:2: no module named 'not_a_real_module_xyz': it is not installed"
    )


def test_missing_sdk_submodule_lists_sdk_modules(tmp_path):
    write_recipe(tmp_path, "old_sdk.py", "from adaptive_harmony.core import StringThread\n")
    result = run_galley("old_sdk.py", cwd=tmp_path)
    assert result.returncode == 2
    line = last_line(result.stderr)
    assert "no module named 'adaptive_harmony.core'" in line
    assert "adaptive_harmony.runtime (recipe_main" in line


def test_exception_at_import_time(tmp_path):
    write_recipe(tmp_path, "raises.py", "SAMPLES = {}\nFIRST = SAMPLES['x']\n")
    result = run_galley("raises.py", cwd=tmp_path)
    assert result.returncode == 2
    assert last_line(result.stderr) == "error: raises.py:2: loading the recipe raised KeyError: 'x'"


def test_recipe_without_entry_point(tmp_path):
    write_recipe(tmp_path, "no_entry.py", "async def main(ctx):\n    pass\n")
    result = run_galley("no_entry.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "no @recipe_main function found" in last_line(result.stderr)


def test_two_entry_points(tmp_path):
    write_recipe(
        tmp_path,
        "two.py",
        """
        from galley.runtime import recipe_main

        @recipe_main
        async def main(ctx):
            pass

        @recipe_main
        async def other(ctx):
            pass
        """,
    )
    result = run_galley("two.py", cwd=tmp_path)
    assert result.returncode == 2
    assert last_line(result.stderr) == (
        "error: two.py:7: found 2 @recipe_main functions (main at line 3, other at line 7); keep one entry point"
    )


def test_sync_entry_point_is_rejected(tmp_path):
    write_recipe(
        tmp_path,
        "sync.py",
        "from galley.runtime import recipe_main\n\n@recipe_main\ndef main(ctx):\n    pass\n",
    )
    result = run_galley("sync.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "@recipe_main needs an async function" in last_line(result.stderr)
    assert "write `async def main(...)`" in last_line(result.stderr)


def test_unfillable_parameter_is_named(tmp_path):
    write_recipe(
        tmp_path,
        "params.py",
        "from galley.runtime import recipe_main\n\n@recipe_main\nasync def main(ctx, steps):\n    pass\n",
    )
    result = run_galley("params.py", cwd=tmp_path)
    assert result.returncode == 2
    assert last_line(result.stderr).startswith(
        "error: params.py:3: main's parameter 'steps' cannot be filled"
    )


def test_missing_recipe_file(tmp_path):
    result = run_galley("nothing_here.py", cwd=tmp_path)
    assert result.returncode == 2
    assert last_line(result.stderr) == (
        "error: nothing_here.py:1: recipe file not found: nothing_here.py; pass the path of a .py file"
    )


# -- config -------------------------------------------------------------------------------


class RegistryHandler(BaseHTTPRequestHandler):
    """Serves GET /api/internal/models like the control plane, for the runner's key check."""

    requests: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).requests.append((self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != f"Bearer {REGISTRY_TOKEN}":
            self.send_error(401)
            return
        if self.path != "/api/internal/models":
            self.send_error(404)
            return
        body = json.dumps({"models": [{"key": key, "name": key} for key in REGISTRY_KEYS]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    """A real HTTP server in the test process standing in for the control plane's registry route."""
    RegistryHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RegistryHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def registry_env(url: str, token: str = REGISTRY_TOKEN) -> dict[str, str]:
    # The engine address is never contacted: the config fails first.
    return {"GALLEY_API_URL": url, "GALLEY_API_TOKEN": token, "GALLEY_ENGINE_URL": "ws://127.0.0.1:9/"}


def test_unknown_model_key_lists_known_keys(recipes, registry_url):
    (recipes / "unknown.json").write_text(
        '{"model_to_train": "llama-9000",\n "tp": 1, "max_seq_len": 2048, "train_adapter": true}\n'
    )
    result = run_galley(
        "seed_config.py", "--config", "unknown.json", cwd=recipes, env=registry_env(registry_url)
    )
    assert result.returncode == 2
    line = last_line(result.stderr)
    assert line.startswith(
        'error: seed_config.py:6: invalid config (1 problem): config field "model_to_train" = "llama-9000": '
    )
    assert "unknown model key 'llama-9000'; known keys: llama-3.1-8b-instruct, qwen3-32b" in line
    assert RegistryHandler.requests == [("/api/internal/models", f"Bearer {REGISTRY_TOKEN}")]


def test_registry_rejecting_token_is_reported(recipes, registry_url):
    env = registry_env(registry_url, token="wrong")
    result = run_galley("seed_config.py", "--config", "seed_config.json", cwd=recipes, env=env)
    assert result.returncode == 2
    line = last_line(result.stderr)
    assert "cannot check the config's model keys" in line
    assert "returned HTTP 401; check GALLEY_API_TOKEN" in line


def test_every_config_problem_is_listed(recipes, registry_url):
    (recipes / "bad.json").write_text(
        '{\n  "model_to_train": "nope",\n  "tp": 0,\n  "max_seq_len": 2048,\n  "extra": 1\n}\n'
    )
    result = run_galley("seed_config.py", "--config", "bad.json", cwd=recipes, env=registry_env(registry_url))
    assert result.returncode == 2
    assert (
        '  seed_config.py:6: config field "model_to_train" = "nope": unknown model key \'nope\''
        in result.stderr
    )
    assert (
        '  seed_config.py:7: config field "tp" = 0: Input should be greater than or equal to 1; '
        'change "tp" in the config' in result.stderr
    )
    assert (
        '  seed_config.py:9: config field "train_adapter" is missing; '
        'add "train_adapter": true or false to the config' in result.stderr
    )
    # A field the config class does not declare points at the class.
    assert '  seed_config.py:5: config field "extra" is not a field of MyConfig; remove it' in result.stderr
    line = last_line(result.stderr)
    assert line.startswith(
        'error: seed_config.py:6: invalid config (4 problems): (1) config field "model_to_train"'
    )
    assert '(2) config field "tp" = 0' in line


def test_config_errors_never_point_into_the_config_file(recipes):
    # The run manager passes a pretty-printed copy of the config, so a line of that file
    # would not match the file the person wrote.
    (recipes / "nested.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel
            from galley.runtime import InputConfig, recipe_main


            class Optimizer(BaseModel):
                lr: float
                betas: list[float]


            class Config(InputConfig):
                optimizer: Optimizer
                steps: int = 10


            @recipe_main
            async def main(config: Config, ctx):
                pass
            """
        ).lstrip("\n")
    )
    (recipes / "nested.json").write_text(
        json.dumps({"optimizer": {"lr": "fast", "betas": [0.9, "x"]}, "steps": "many"}, indent=2)
    )
    result = run_galley("nested.py", "--config", "nested.json", cwd=recipes)
    assert result.returncode == 2
    assert "nested.json" not in result.stderr
    # A nested field's problem points at its own declaration in the nested class.
    assert (
        '  nested.py:6: config field "optimizer.lr" = "fast": Input should be a valid number' in result.stderr
    )
    assert (
        '  nested.py:7: config field "optimizer.betas[1]" = "x": Input should be a valid number'
        in result.stderr
    )
    assert '  nested.py:12: config field "steps" = "many": Input should be a valid integer' in result.stderr
    assert last_line(result.stderr).startswith("error: nested.py:6: invalid config (3 problems): ")


NESTED_RECIPE = """
from pydantic import BaseModel, ConfigDict
from galley.runtime import InputConfig, recipe_main


class Opt(BaseModel):
    steps: int
    lr: float = 0.001


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = "x"


class Config(InputConfig):
    opt: Opt
    schedule: list[Opt] = []
    by_name: dict[str, Opt] = {}
    maybe: Opt | None = None
    loose: Loose = Loose()


@recipe_main
async def main(config: Config, ctx):
    print("ran with", config.model_dump_json())
"""


@pytest.fixture
def nested_recipe(tmp_path: Path) -> Path:
    write_recipe(tmp_path, "nested.py", NESTED_RECIPE)
    return tmp_path


def check_nested(folder: Path, config: dict) -> subprocess.CompletedProcess[str]:
    (folder / "config.json").write_text(json.dumps(config))
    return run_galley("nested.py", "--config", "config.json", "--check", cwd=folder)


def test_unknown_nested_key_is_rejected(nested_recipe):
    result = check_nested(nested_recipe, {"opt": {"steps": 1, "extra": 1}})
    assert result.returncode == 2, result.stderr
    assert last_line(result.stderr) == (
        'error: nested.py:5: invalid config (1 problem): config field "opt.extra" is not a field of Opt; '
        "remove it from the config (fields: steps, lr)"
    )


def test_nested_typo_names_the_close_field(nested_recipe):
    result = check_nested(nested_recipe, {"opt": {"steps": 1, "lrr": 0.1}})
    assert result.returncode == 2, result.stderr
    assert last_line(result.stderr) == (
        'error: nested.py:5: invalid config (1 problem): config field "opt.lrr" is not a field of Opt; '
        'did you mean "opt.lr"? Rename or remove it in the config (fields: steps, lr)'
    )


def test_unknown_keys_in_lists_dicts_and_optionals(nested_recipe):
    config = {
        "opt": {"steps": 1},
        "schedule": [{"steps": 1}, {"steps": 2, "warmup": 3}],
        "by_name": {"fast": {"steps": 1, "speed": 2}},
        "maybe": {"steps": 1, "later": True},
    }
    result = check_nested(nested_recipe, config)
    assert result.returncode == 2, result.stderr
    assert '  nested.py:5: config field "schedule[1].warmup" is not a field of Opt' in result.stderr
    assert '  nested.py:5: config field "by_name.fast.speed" is not a field of Opt' in result.stderr
    assert '  nested.py:5: config field "maybe.later" is not a field of Opt' in result.stderr
    assert "invalid config (3 problems)" in last_line(result.stderr)


def test_nested_model_allowing_extra_keeps_it(nested_recipe):
    result = check_nested(nested_recipe, {"opt": {"steps": 1}, "loose": {"name": "y", "free": 1}})
    assert result.returncode == 0, result.stderr


def test_missing_nested_field_points_at_it(nested_recipe):
    result = check_nested(nested_recipe, {"opt": {"lr": 0.1}})
    assert result.returncode == 2, result.stderr
    assert last_line(result.stderr) == (
        'error: nested.py:6: invalid config (1 problem): config field "opt.steps" is missing; '
        'add "steps": <integer> to "opt" in the config'
    )


def test_missing_nested_field_in_list_item(nested_recipe):
    result = check_nested(nested_recipe, {"opt": {"steps": 1}, "schedule": [{"lr": 0.1}]})
    assert result.returncode == 2, result.stderr
    assert last_line(result.stderr) == (
        'error: nested.py:6: invalid config (1 problem): config field "schedule[0].steps" is missing; '
        'add "steps": <integer> to "schedule[0]" in the config'
    )


def test_missing_config_names_the_fields(recipes):
    result = run_galley("seed_config.py", cwd=recipes, env={"GALLEY_ENGINE_URL": "ws://127.0.0.1:9/"})
    assert result.returncode == 2
    assert "invalid config (4 problems)" in last_line(result.stderr)
    assert (
        'seed_config.py:6: config field "model_to_train" is missing; pass --config FILE with' in result.stderr
    )


def test_invalid_json_config_points_at_line(recipes):
    (recipes / "broken.json").write_text('{\n  "tp": 1,\n  "max_seq_len": ,\n}\n')
    result = run_galley("seed_config.py", "--config", "broken.json", cwd=recipes)
    assert result.returncode == 2
    assert last_line(result.stderr).startswith("error: broken.json:3: invalid JSON: Expecting value")


def test_config_for_recipe_without_config(recipes):
    (recipes / "extra.json").write_text('{"tp": 2}')
    result = run_galley("seed_builders.py", "--config", "extra.json", cwd=recipes)
    assert result.returncode == 2
    line = last_line(result.stderr)
    assert line.startswith("error: seed_builders.py:3: the recipe takes no config, but the config sets tp")


# -- engine connection --------------------------------------------------------------------


def test_missing_engine_address(recipes):
    result = run_galley("seed_builders.py", cwd=recipes)
    assert result.returncode == 2
    assert last_line(result.stderr).startswith("error: seed_builders.py:3: GALLEY_ENGINE_URL is not set")


def test_unreachable_engine(recipes):
    # Port 9 (discard) has no listener on the loopback interface here.
    result = run_galley("seed_builders.py", cwd=recipes, env={"GALLEY_ENGINE_URL": "ws://127.0.0.1:9/"})
    assert result.returncode == 2
    line = last_line(result.stderr)
    assert line.startswith("error: seed_builders.py:3: could not connect to the engine at ws://127.0.0.1:9/")


# -- check --------------------------------------------------------------------------------


def test_check_of_valid_config_needs_no_engine(recipes, registry_url):
    env = {"GALLEY_API_URL": registry_url, "GALLEY_API_TOKEN": REGISTRY_TOKEN}
    result = run_galley("seed_config.py", "--config", "seed_config.json", "--check", cwd=recipes, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert RegistryHandler.requests == [("/api/internal/models", f"Bearer {REGISTRY_TOKEN}")]


def test_check_reports_invalid_config(recipes, registry_url):
    (recipes / "bad.json").write_text(
        '{"model_to_train": "nope", "tp": 1, "max_seq_len": 2048, "train_adapter": true}'
    )
    env = {"GALLEY_API_URL": registry_url, "GALLEY_API_TOKEN": REGISTRY_TOKEN}
    result = run_galley("seed_config.py", "--config", "bad.json", "--check", cwd=recipes, env=env)
    assert result.returncode == 2
    assert last_line(result.stderr).startswith(
        'error: seed_config.py:6: invalid config (1 problem): config field "model_to_train" = "nope"'
    )


def test_check_reports_syntax_error(tmp_path):
    write_recipe(tmp_path, "broken.py", "def main(:\n    pass\n")
    result = run_galley("broken.py", "--check", cwd=tmp_path)
    assert result.returncode == 2
    assert last_line(result.stderr).startswith("error: broken.py:1: SyntaxError")


ALIAS_UNION_RECIPE = """
from typing import Literal
from pydantic import BaseModel, ConfigDict, Field
from galley.runtime import InputConfig, recipe_main


class Aliased(BaseModel):
    learning_rate: float = Field(1.0, alias="learningRate")


class ByName(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    learning_rate: float = Field(1.0, alias="learningRate")


class A(BaseModel):
    kind: Literal["a"]
    x: int


class B(BaseModel):
    kind: Literal["b"]
    y: int


class Config(InputConfig):
    al: Aliased = Aliased()
    by_name: ByName = ByName()
    choice: A | B = A(kind="a", x=0)
    choices: list[A | B] = []


@recipe_main
async def main(config: Config, ctx):
    print("ran with", config.model_dump_json(by_alias=True))
"""


@pytest.fixture
def alias_union_recipe(tmp_path: Path) -> Path:
    write_recipe(tmp_path, "shapes.py", ALIAS_UNION_RECIPE)
    return tmp_path


def check_shapes(folder: Path, config: dict) -> subprocess.CompletedProcess[str]:
    (folder / "config.json").write_text(json.dumps(config))
    return run_galley("shapes.py", "--config", "config.json", "--check", cwd=folder)


def test_field_name_suggests_alias(alias_union_recipe):
    result = check_shapes(alias_union_recipe, {"al": {"learning_rate": 1}})
    assert result.returncode == 2, result.stderr
    assert (
        'config field "al.learning_rate" is not a field of Aliased; write it as "al.learningRate", '
        "the alias that Aliased accepts (fields: learningRate)"
    ) in result.stderr
    assert 'did you mean "al.learning_rate"' not in result.stderr


def test_alias_typo_suggests_alias(alias_union_recipe):
    result = check_shapes(alias_union_recipe, {"al": {"learningRat": 1}})
    assert result.returncode == 2, result.stderr
    assert last_line(result.stderr).endswith(
        'config field "al.learningRat" is not a field of Aliased; did you mean "al.learningRate"? '
        "Rename or remove it in the config (fields: learningRate)"
    )


def test_populate_by_name_lists_both_keys(alias_union_recipe):
    accepted = check_shapes(alias_union_recipe, {"by_name": {"learning_rate": 2}, "al": {"learningRate": 3}})
    assert accepted.returncode == 0, accepted.stderr

    result = check_shapes(alias_union_recipe, {"by_name": {"learning_rat": 1}})
    assert result.returncode == 2, result.stderr
    assert last_line(result.stderr).endswith(
        'config field "by_name.learning_rat" is not a field of ByName; did you mean "by_name.learning_rate"? '
        "Rename or remove it in the config (fields: learningRate, learning_rate)"
    )


def test_union_reports_matching_branch(alias_union_recipe):
    result = check_shapes(alias_union_recipe, {"choice": {"kind": "a", "x": 1, "bogus": 4}})
    assert result.returncode == 2, result.stderr
    assert last_line(result.stderr) == (
        'error: shapes.py:15: invalid config (1 problem): config field "choice.bogus" is not a field of A; '
        "remove it from the config (fields: kind, x)"
    )


def test_union_in_list_reports_matching_branch(alias_union_recipe):
    config = {"choices": [{"kind": "a", "x": 1}, {"kind": "b", "x": 2}]}
    result = check_shapes(alias_union_recipe, config)
    assert result.returncode == 2, result.stderr
    assert "invalid config (2 problems)" in last_line(result.stderr)
    assert 'config field "choices[1].y" is missing' in result.stderr
    assert 'config field "choices[1].x" is not a field of B' in result.stderr
    assert ".A." not in result.stderr
    assert ".B." not in result.stderr


def test_union_without_matching_literal(alias_union_recipe):
    result = check_shapes(alias_union_recipe, {"choice": {"kind": "c", "x": 1}})
    assert result.returncode == 2, result.stderr
    assert last_line(result.stderr).endswith(
        """invalid config (1 problem): config field "choice.kind" = "c": Input should be 'a' or 'b'; """
        'change "choice.kind" in the config'
    )
