"""The engine on a CUDA device: placement, measured GPU memory, generation, release.

NOTE: these tests have not run on a GPU yet. They skip where torch.cuda.is_available() is
false.
"""

from __future__ import annotations

import asyncio

import pytest
import torch
from engine_harness import EngineClient, inference_model, pid_alive, start_engine, string_thread
from transformers import AutoModelForCausalLM, AutoTokenizer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

PROMPT = "Hello there"


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llama_dir):
    with start_engine(
        {"tiny": tiny_llama_dir}, tmp_path_factory.mktemp("engine-gpu"), extra_args=["--devices", "cuda"]
    ) as engine:
        yield engine


def reference_greedy(folder, max_new_tokens: int) -> list[int]:
    # The tiny models' config.json sets float32, which is the dtype the engine loads on CUDA.
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to("cuda").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"].to("cuda")
    with torch.inference_mode():
        output = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
    return output[0, ids.shape[1] :].tolist()


async def test_spawn_on_cuda_reports_gpu_memory_and_generates(engine, tiny_llama_dir):
    async with EngineClient.connect(engine.url, engine.token) as client:
        result = await client.call(
            "spawn",
            name="gpu",
            kind="inference",
            model=inference_model("tiny", kv_cache_len=512, tokens_to_generate=8),
        )
        (device,) = result["devices"]
        assert device.startswith("cuda:")
        assert result["plan"]["components"]["overhead"] > 0  # the CUDA context is planned on GPUs

        generated = await client.op("gpu", "generate", thread=string_thread(("user", PROMPT)), sampling={})
        assert generated["completion_ids"] == reference_greedy(tiny_llama_dir, 8)

        (spawn,) = (await client.call("list_spawns"))["spawns"]
        (rank,) = spawn["ranks"]
        assert rank["torch_allocated"] > 0
        assert rank["torch_peak"] >= rank["torch_allocated"]
        assert rank["torch_reserved"] >= rank["torch_allocated"]
        devices = (await client.call("devices"))["devices"]
        assert any(d["id"] == device and d["kind"] == "cuda" for d in devices)

        pid = rank["pid"]
        await client.call("dealloc", spawn="gpu")
        assert not pid_alive(pid)
        # NVML stops listing the process once its memory is returned.
        await asyncio.sleep(1.0)
        devices = (await client.call("devices"))["devices"]
        listed = [p["pid"] for d in devices for p in d["processes"]]
        assert pid not in listed
