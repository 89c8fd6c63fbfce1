"""ModelBuilder: what it records, immutability, argument checks and later features."""

from __future__ import annotations

import pytest

from galley.sdk.builder import ModelBuilder

LLAMA = "model_registry://llama-3.1-8b-instruct"


def builder(path: str = LLAMA, **kwargs) -> ModelBuilder:
    # The client is only needed to spawn; recording settings works without one.
    return ModelBuilder.create(None, path, **kwargs)  # type: ignore[arg-type]


def test_unset_parameters_stay_none():
    recorded = builder().to_python_dict()
    assert recorded == {
        "path": LLAMA,
        "kv_cache_len": None,
        "tokens_to_generate": None,
        "tp": None,
        "use_adapter": None,
        "scoring": False,
    }


def test_seed_builder_chain_records_everything():
    reward = builder("model_registry://qwen3-32b", kv_cache_len=100_000, tokens_to_generate=2048)
    reward = reward.tp(1).with_adapter().into_scoring_model()
    assert reward.to_python_dict() == {
        "path": "model_registry://qwen3-32b",
        "kv_cache_len": 100_000,
        "tokens_to_generate": 2048,
        "tp": 1,
        "use_adapter": True,
        "scoring": True,
    }
    assert reward.model_key == "qwen3-32b"


def test_methods_return_new_builders():
    base = builder(kv_cache_len=4096)
    with_tp = base.tp(2)
    adapter = base.with_adapter()
    scoring = base.into_scoring_model()
    assert base.to_python_dict()["tp"] is None
    assert base.to_python_dict()["use_adapter"] is None
    assert base.to_python_dict()["scoring"] is False
    assert with_tp.to_python_dict()["tp"] == 2
    assert adapter.to_python_dict()["use_adapter"] is True
    assert adapter.to_python_dict()["tp"] is None
    assert scoring.to_python_dict()["scoring"] is True
    assert len({id(base), id(with_tp), id(adapter), id(scoring)}) == 4


def test_with_adapter_false_is_recorded():
    assert builder().with_adapter(False).to_python_dict()["use_adapter"] is False


def test_spec_property_is_a_copy():
    base = builder()
    base.spec.tp = 8
    assert base.to_python_dict()["tp"] is None


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_tp_rejects_non_positive_ints(value):
    with pytest.raises(ValueError, match="tp must be an int >= 1"):
        builder().tp(value)


@pytest.mark.parametrize("name", ["kv_cache_len", "tokens_to_generate"])
def test_sizes_must_be_positive_ints(name):
    with pytest.raises(ValueError, match=f"{name} must be a positive int"):
        builder(**{name: 0})


def test_with_adapter_rejects_non_bool():
    with pytest.raises(TypeError, match="use_adapter must be True or False"):
        builder().with_adapter("yes")  # type: ignore[arg-type]


def test_path_without_scheme_names_the_fix():
    with pytest.raises(
        ValueError, match="'qwen3-32b' must start with model_registry://; write model_registry://qwen3-32b"
    ):
        builder("qwen3-32b")


def test_external_provider_is_not_supported_yet():
    with pytest.raises(NotImplementedError, match="external providers \\(openai://\\)"):
        builder("openai://gpt-4o")


def test_empty_registry_key_is_rejected():
    with pytest.raises(ValueError, match="empty or contains whitespace"):
        builder("model_registry://")


def test_later_features_are_recorded():
    recorded = (
        builder()
        .with_draft("model_registry://qwen3-0.6b", num_draft_steps=4)
        .tools([{"name": "search"}])
        .api_key("sk-secret")
        .extra_params(foo=1)
        .extra_params(bar=2)
        .to_python_dict()
    )
    assert recorded["with_draft"] == {"path": "model_registry://qwen3-0.6b", "num_draft_steps": 4}
    assert recorded["tools"] == [{"name": "search"}]
    assert recorded["extra_params"] == {"foo": 1, "bar": 2}
    assert recorded["api_key"] == "***"


@pytest.mark.parametrize(
    ("configure", "expected"),
    [
        (lambda b: b.with_draft("model_registry://qwen3-0.6b"), "with_draft"),
        (lambda b: b.tools([{"name": "search"}]), "tools"),
        (lambda b: b.extra_params(foo=1), "extra_params"),
    ],
)
async def test_later_features_raise_at_spawn(configure, expected):
    with pytest.raises(NotImplementedError, match=f"\\.{expected}\\("):
        await configure(builder()).spawn_inference("policy")


async def test_spawn_name_must_be_non_empty():
    with pytest.raises(ValueError, match="spawn name must be a non-empty string"):
        await builder().spawn_inference(" ")


@pytest.mark.parametrize("value", [0, -5, 2.0, None])
async def test_spawn_train_checks_max_batch_size(value):
    with pytest.raises(ValueError, match="max_batch_size must be a positive int"):
        await builder().spawn_train("policy", value)  # type: ignore[arg-type]
