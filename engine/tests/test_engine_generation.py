"""Generation and scoring ops of inference spawns, checked against plain transformers."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import torch
from engine_harness import EngineCallError, EngineClient, inference_model, start_engine, string_thread
from transformers import AutoModelForCausalLM, AutoTokenizer

TOKENS_TO_GENERATE = 10
PROMPTS = ["Hello there", "Write a haiku about the sea, please.", "2 + 2 ="]
FAMILIES = {"llama": "llama-3.1-8b-instruct", "qwen3": "qwen3-32b"}


def copy_with_eos(source: Path, target: Path, eos_ids: list[int]) -> Path:
    """A model folder sharing ``source``'s files, whose generation_config.json names other EOS ids."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "generation_config.json":
            (target / item.name).symlink_to(item)
    generation = json.loads((source / "generation_config.json").read_text())
    generation["eos_token_id"] = eos_ids
    (target / "generation_config.json").write_text(json.dumps(generation))
    return target


@pytest.fixture(scope="module")
def reference(tiny_llama_dir, tiny_qwen3_dir):
    """Plain transformers models and tokenizers of both families, in float32 on the CPU."""
    torch.set_num_threads(1)
    loaded = {}
    for family, folder in (("llama", tiny_llama_dir), ("qwen3", tiny_qwen3_dir)):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        loaded[family] = (model, AutoTokenizer.from_pretrained(folder))
    return loaded


def reference_greedy(reference, family: str, prompt: str, max_new_tokens: int) -> list[int]:
    model, tokenizer = reference[family]
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    with torch.inference_mode():
        output = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
    return output[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def eos_token(reference) -> int:
    """A token greedy decoding of PROMPTS[0] produces third, and not before."""
    generated = reference_greedy(reference, "llama", PROMPTS[0], 6)
    for position in range(2, 6):
        if generated[position] not in generated[:position]:
            return generated[position]
    pytest.fail(f"greedy output {generated} repeats tokens; pick another prompt")


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llama_dir, tiny_qwen3_dir, reference, eos_token):
    folder = tmp_path_factory.mktemp("engine-generation")
    stops_early = copy_with_eos(tiny_llama_dir, folder / "llama-eos", [eos_token])
    models = {FAMILIES["llama"]: tiny_llama_dir, FAMILIES["qwen3"]: tiny_qwen3_dir, "llama-eos": stops_early}
    with start_engine(models, folder, keep_warm=60) as engine:
        yield engine


async def spawn(client: EngineClient, name: str, key: str, **model) -> dict:
    model.setdefault("kv_cache_len", 1024)
    model.setdefault("tokens_to_generate", TOKENS_TO_GENERATE)
    return await client.call("spawn", name=name, kind="inference", model=inference_model(key, **model))


# -- greedy and sampled decoding ----------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "qwen3"])
async def test_greedy_generation_equals_transformers_generate(engine, reference, family):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "model", FAMILIES[family])
        for prompt in PROMPTS:
            result = await client.op(
                "model", "generate", thread=string_thread(("user", prompt)), sampling={"temperature": 0.0}
            )
            expected = reference_greedy(reference, family, prompt, TOKENS_TO_GENERATE)
            assert result["completion_ids"] == expected, prompt
            assert result["finish_reason"] == "length"
            _, tokenizer = reference[family]
            assert result["completion"] == tokenizer.decode(expected)


async def test_concurrent_greedy_requests_match_one_by_one(engine, reference):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "model", FAMILIES["llama"])
        requests = [
            client.op(
                "model",
                "generate",
                thread=string_thread(("user", prompt)),
                sampling={"temperature": 0.0, "max_gen_len": length},
            )
            for prompt, length in zip(PROMPTS * 3, [3, 7, 10, 5, 9, 2, 10, 4, 6], strict=True)
        ]
        results = await asyncio.gather(*requests)
    for (prompt, length), result in zip(
        zip(PROMPTS * 3, [3, 7, 10, 5, 9, 2, 10, 4, 6], strict=True), results, strict=True
    ):
        assert result["completion_ids"] == reference_greedy(reference, "llama", prompt, length)


async def test_seeded_sampling_is_reproducible(engine):
    thread = string_thread(("user", PROMPTS[1]))
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "model", FAMILIES["qwen3"])

        async def sample(seed: int) -> list[int]:
            result = await client.op(
                "model", "generate", thread=thread, sampling={"temperature": 1.0, "top_p": 0.95, "seed": seed}
            )
            return result["completion_ids"]

        first, again, other = await sample(7), await sample(7), await sample(8)
    assert first == again
    assert first != other


async def test_generate_tokens_takes_a_tokenized_thread(engine, reference):
    _, tokenizer = reference["llama"]
    ids = tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]
    thread = {"kind": "tokens", "turns": [["user", ids]]}
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "model", FAMILIES["llama"])
        result = await client.op("model", "generate_tokens", thread=thread, sampling={})
    assert result["completion_ids"] == reference_greedy(reference, "llama", PROMPTS[0], TOKENS_TO_GENERATE)


# -- stopping -----------------------------------------------------------------------------


async def test_generation_length_limits(engine):
    thread = string_thread(("user", PROMPTS[2]))
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "five", FAMILIES["llama"], tokens_to_generate=5)
        default = await client.op("five", "generate", thread=thread, sampling={})
        shorter = await client.op("five", "generate", thread=thread, sampling={"max_gen_len": 2})
        longer = await client.op("five", "generate", thread=thread, sampling={"max_gen_len": 8})
        await client.call("dealloc", spawn="five")
    assert len(default["completion_ids"]) == 5
    assert len(shorter["completion_ids"]) == 2
    assert len(longer["completion_ids"]) == 8
    assert default["finish_reason"] == shorter["finish_reason"] == "length"


async def test_generation_stops_at_eos_of_generation_config(engine, reference, eos_token):
    thread = string_thread(("user", PROMPTS[0]))
    expected = reference_greedy(reference, "llama", PROMPTS[0], 6)
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "eos", "llama-eos")
        result = await client.op("eos", "generate", thread=thread, sampling={})
        position = expected.index(eos_token)
        assert result["finish_reason"] == "eos"
        assert result["completion_ids"] == expected[:position]  # the EOS token itself is not part of it

        held = await client.op("eos", "generate", thread=thread, sampling={"min_gen_len": position + 3})
        assert len(held["completion_ids"]) >= position + 3
        assert eos_token not in held["completion_ids"][: position + 3]


async def test_prompt_beyond_kv_cache_rejected(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "tiny-cache", FAMILIES["llama"], kv_cache_len=16)
        with pytest.raises(EngineCallError) as error:
            await client.op(
                "tiny-cache", "generate", thread=string_thread(("user", "word " * 40)), sampling={}
            )
        assert error.value.type == "invalid_request"
        assert "kv_cache_len=16" in error.value.message
        # The spawn still serves requests that fit.
        fits = await client.op("tiny-cache", "generate", thread=string_thread(("user", "Hi")), sampling={})
        assert 1 <= len(fits["completion_ids"]) <= 16
        await client.call("dealloc", spawn="tiny-cache")


async def test_min_gen_len_beyond_kv_cache_rejected(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "short-cache", FAMILIES["llama"], kv_cache_len=96, tokens_to_generate=90)
        thread = string_thread(("user", "Hi"))
        with pytest.raises(EngineCallError) as error:
            await client.op("short-cache", "generate", thread=thread, sampling={"min_gen_len": 90})
        message = error.value.message
        assert error.value.type == "invalid_request"
        assert "min_new_tokens" not in message
        assert "max_new_tokens" not in message
        found = re.search(r"the prompt, which has (\d+) tokens", message)
        assert found, message
        prompt_tokens = int(found.group(1))
        assert "min_gen_len=90 does not fit in the KV cache: kv_cache_len=96 leaves room" in message
        assert f"room for {96 - prompt_tokens} new tokens" in message
        assert f"spawn with kv_cache_len >= {prompt_tokens + 90}" in message
        assert "shorten the prompt" in message
        assert f"lower min_gen_len to {96 - prompt_tokens}" in message

        with pytest.raises(EngineCallError) as error:
            await client.op(
                "short-cache", "generate", thread=thread, sampling={"min_gen_len": 5, "max_gen_len": 3}
            )
        assert (
            "min_gen_len=5 exceeds max_gen_len=3; lower min_gen_len or raise max_gen_len"
            in error.value.message
        )

        with pytest.raises(EngineCallError) as error:
            await client.op("short-cache", "generate", thread=thread, sampling={"min_gen_len": 91})
        assert "min_gen_len=91 exceeds the spawn's tokens_to_generate=90" in error.value.message
        await client.call("dealloc", spawn="short-cache")


# -- text, threads and log-probabilities --------------------------------------------------


async def test_tokenize_and_thread_ops_agree_with_the_tokenizer(engine, reference):
    _, tokenizer = reference["qwen3"]
    thread = string_thread(("user", "Hi"), ("assistant", "Hello!"))
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "model", FAMILIES["qwen3"])
        ids = (await client.op("model", "tokenize", text="Hello world"))["ids"]
        assert ids == tokenizer("Hello world", add_special_tokens=False)["input_ids"]
        assert (await client.op("model", "detokenize", ids=ids))["text"] == "Hello world"

        serialized = await client.op("model", "serialize_thread", thread=thread)
        assert serialized["ids"] == list(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
            )["input_ids"]
        )
        assert len(serialized["weights"]) == len(serialized["ids"])
        assert serialized["image_tokens"] == []

        tokenized = (await client.op("model", "tokenize_thread", thread=thread))["thread"]
        assert tokenized["kind"] == "tokens"
        restored = (await client.op("model", "detokenize_thread", thread=tokenized))["thread"]
        assert restored["turns"] == thread["turns"]


async def test_logprobs_equal_transformers_forward(engine, reference):
    model, tokenizer = reference["llama"]
    thread = string_thread(("user", "Hi"), ("assistant", "Hello there!"))
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "model", FAMILIES["llama"])
        serialized = await client.op("model", "serialize_thread", thread=thread)
        per_token = (await client.op("model", "logprobs_per_token", thread=thread))["logprobs"]
        total = (await client.op("model", "logprobs", thread=thread))["logprob"]
        raw = (await client.op("model", "raw_logprobs", ids=serialized["ids"]))["logprobs"]

    ids = torch.tensor([serialized["ids"]])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)  # (T-1, V)
    expected_raw = logprobs.gather(1, ids[0, 1:, None])[:, 0]
    weighted = [t for t in range(1, len(serialized["ids"])) if serialized["weights"][t] > 0]
    assert (
        len(per_token)
        == len(weighted)
        == len(tokenizer("Hello there!", add_special_tokens=False)["input_ids"]) + 1
    )
    assert per_token == pytest.approx([expected_raw[t - 1].item() for t in weighted], abs=1e-4)
    assert total == pytest.approx(sum(per_token), abs=1e-4)
    assert raw == pytest.approx(expected_raw.tolist(), abs=1e-4)


async def test_score_needs_value_head(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "model", FAMILIES["llama"])
        with pytest.raises(EngineCallError) as error:
            await client.op(
                "model", "score_last_token", thread=string_thread(("user", "Hi"), ("assistant", "Yo"))
            )
    assert error.value.type == "invalid_request"
    assert "into_scoring_model" in error.value.message


async def test_scoring_spawn_scores_each_weighted_token(engine):
    thread = string_thread(("user", "Hi"), ("assistant", "Hello there!"))
    async with EngineClient.connect(engine.url, engine.token) as client:
        result = await spawn(client, "scorer", FAMILIES["qwen3"], scoring=True)
        assert result["scalar"] is True
        scores = (await client.op("scorer", "score", thread=thread))["scores"]
        last = (await client.op("scorer", "score_last_token", thread=thread))["score"]
        weights = (await client.op("scorer", "serialize_thread", thread=thread))["weights"]
        await client.call("dealloc", spawn="scorer")
    assert len(scores) == sum(1 for w in weights[1:] if w > 0)
    assert all(isinstance(score, float) for score in scores)
    assert isinstance(last, float)


async def test_invalid_op_arguments_are_reported(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "model", FAMILIES["llama"])
        with pytest.raises(EngineCallError) as missing:
            await client.op("model", "tokenize")
        assert missing.value.type == "invalid_request"
        assert "'text'" in missing.value.message
        with pytest.raises(EngineCallError) as out_of_vocab:
            await client.op("model", "detokenize", ids=[10**9])
        assert "outside the tokenizer's vocabulary" in out_of_vocab.value.message
        with pytest.raises(EngineCallError) as training:
            await client.op("model", "optim_step", lr=1e-3)
        assert training.value.type == "invalid_request"
        assert "spawn_inference" in training.value.message
        with pytest.raises(EngineCallError) as unknown:
            await client.op("model", "fly")
        assert unknown.value.type == "not_found"


def test_engine_log_names_spawns_and_pids(engine):
    text = engine.log_text()
    assert re.search(r"spawning spawn 'model' \(id \w+, session \w+", text)
    assert re.search(r"spawn 'model' \(id \w+, session \w+, pid \d+\) ready in", text)


async def test_concurrent_logprobs_match_one_by_one(engine):
    threads = [
        string_thread(("user", prompt), ("assistant", f"Answer {i}.")) for i, prompt in enumerate(PROMPTS * 2)
    ]
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "model", FAMILIES["qwen3"])
        one_by_one = [(await client.op("model", "logprobs", thread=thread))["logprob"] for thread in threads]
        together = await asyncio.gather(
            *(client.op("model", "logprobs", thread=thread) for thread in threads),
            client.op("model", "logprobs", thread={"turns": [["robot", "beep"]]}),
            return_exceptions=True,
        )
    assert [result["logprob"] for result in together[:-1]] == pytest.approx(one_by_one, abs=1e-4)
    assert isinstance(together[-1], EngineCallError)
    assert "role 'robot'" in together[-1].message
