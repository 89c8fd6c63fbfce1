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
