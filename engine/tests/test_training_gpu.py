"""Training on CUDA in bfloat16: packing without leakage under the GPU sdpa kernels, and
steps through float32 master weights.

NOTE: these tests have not run on a GPU yet. They skip where torch.cuda.is_available() is
false.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_training_support import chat, reference_token_logprobs
from transformers import AutoModelForCausalLM, AutoTokenizer

from galley.engine.training import TrainableModel, Trainer
from galley.engine.training.forward import ModelParts, forward_packed
from galley.engine.training.packing import TokenSequence

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def cuda_model(folder: Path) -> TrainableModel:
    module: Any = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.bfloat16, attn_implementation="sdpa"
    )
    return TrainableModel(module=module.to("cuda"), tokenizer=AutoTokenizer.from_pretrained(folder))


def test_packing_no_leakage_cuda(tiny_model_dir: Path):
    model = cuda_model(tiny_model_dir)
    parts = ModelParts.from_module(model.module)
    # Rows of 40 tokens: the second and third sequences share a row.
    sequences = [[100 + i for i in range(40)], [900 + i for i in range(15)], [5000 + i for i in range(20)]]
    altered = [[i + 7 for i in sequences[0]], sequences[1], sequences[2]]

    def packed(rows: list[list[int]]):
        tokens = [TokenSequence(ids=ids, weights=[1.0] * len(ids)) for ids in rows]
        return forward_packed(parts, tokens, logprobs_for=[True] * 3, values_for=[False] * 3)

    with torch.no_grad():
        original = packed(sequences)
        changed = packed(altered)
        alone = [reference_token_logprobs(model.module, ids).cpu() for ids in sequences]

    for index in range(3):
        got = original[index].logprobs
        assert got is not None
        # bfloat16 activations: within 0.05 nats of the lone forward.
        assert torch.allclose(got.cpu(), alone[index], atol=5e-2), f"sequence {index}"
    for index in (1, 2):
        unchanged, other = original[index].logprobs, changed[index].logprobs
        assert unchanged is not None and other is not None
        assert torch.allclose(unchanged, other, atol=1e-3), f"sequence {index} saw sequence 0"


def test_bfloat16_training_steps_cuda(tiny_llama_dir: Path):
    trainer = Trainer(cuda_model(tiny_llama_dir), max_batch_size=1024)
    entry = trainer.optimizer.parameters[0]
    assert entry.has_master_copy
    assert entry.master.dtype == torch.float32

    thread = chat("What is the capital of Freedonia?", "Fredville.")
    losses = []
    for _ in range(5):
        trainer.train_language_modelling(thread)
        stats = trainer.optim_step(lr=1e-3, wd=0.0, max_grad_norm=1.0)
        assert stats["skipped"] is False
        assert math.isfinite(stats["grad_norm"])
        losses.append(stats["loss"])

    assert losses[-1] < losses[0]
    assert torch.equal(entry.parameter, entry.master.to(torch.bfloat16))
