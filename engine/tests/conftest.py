"""Shared fixtures: tiny generated models of both families, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from galley.models.tiny import make_tiny


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny("llama-3.1", tmp_path_factory.mktemp("tiny-llama"), seed=0)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny("qwen3", tmp_path_factory.mktemp("tiny-qwen3"), seed=1)


@pytest.fixture(scope="session", params=["llama-3.1", "qwen3"])
def tiny_model_dir(request: pytest.FixtureRequest, tiny_llama_dir: Path, tiny_qwen3_dir: Path) -> Path:
    """Each test that takes this runs once per family."""
    return tiny_llama_dir if request.param == "llama-3.1" else tiny_qwen3_dir


# ---------------------------------------------------------------------------------------
# A real engine (see engine_harness.py)

# Registry keys of the seed recipes, served by the tiny generated models of the same families.
SEED_MODEL_KEYS = {"llama-3.1-8b-instruct": "llama", "qwen3-32b": "qwen3"}


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, tiny_qwen3_dir: Path):
    """One engine subprocess for the whole test session, in standalone mode.

    It serves the tiny Llama as ``llama-3.1-8b-instruct`` and the tiny Qwen3 as ``qwen3-32b``
    and yields an ``EngineProcess`` (``.url``, ``.token``, ``.log_text()``). Inference spawns
    stay warm for 30 s after a session closes, so tests that spawn the same configuration
    reuse one worker.
    """
    from engine_harness import start_engine

    models = {"llama-3.1-8b-instruct": tiny_llama_dir, "qwen3-32b": tiny_qwen3_dir}
    with start_engine(models, tmp_path_factory.mktemp("tiny-engine")) as engine:
        yield engine
