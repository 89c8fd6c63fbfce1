"""Helpers shared by the training tests: loading tiny models, threads, reference forwards.

This module contains no tests. It is named test_* only to sit with the tests it serves.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from galley.engine.threads import render_thread
from galley.engine.training import TrainableModel, Trainer

torch.set_num_threads(1)

HIDDEN_SIZE = 64  # TinyShape's default hidden size


def load_model(
    folder: Path,
    *,
    lora: bool = False,
    lora_dropout: float = 0.0,
    scoring: bool = False,
    dtype: torch.dtype = torch.float32,
) -> TrainableModel:
    """Load a tiny model in the form a training spawn trains it."""
    module = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if lora:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=8, lora_alpha=16, lora_dropout=lora_dropout, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        torch.manual_seed(0)  # LoRA A matrices start random; two loads must agree
        module = get_peft_model(module, config)
    head = None
    if scoring:
        torch.manual_seed(0)
        head = nn.Linear(module.config.hidden_size, 1)
    return TrainableModel(
        module=module, tokenizer=tokenizer, scalar_head=head, base_key="tiny-base" if lora else None
    )


def make_trainer(folder: Path, max_batch_size: int = 512, **load_options) -> Trainer:
    return Trainer(load_model(folder, **load_options), max_batch_size=max_batch_size)


def chat(question: str, answer: str, weights: list[float] | None = None) -> dict:
    thread: dict = {"kind": "string", "turns": [["user", question], ["assistant", answer]]}
    if weights is not None:
        thread["weights"] = weights
    return thread


def rendered(trainer: Trainer, thread: dict):
    return render_thread(trainer.model.tokenizer, thread)


@functools.cache
def _tokenizer(folder: Path):
    return AutoTokenizer.from_pretrained(folder)


def render_tokens(folder: Path, thread: dict) -> list[int]:
    """Token ids of a thread rendered with the chat template of the model in ``folder``."""
    return render_thread(_tokenizer(folder), thread).ids


def weighted_positions(weights: list[float]) -> list[int]:
    return [t for t in range(1, len(weights)) if weights[t] > 0]


def reference_token_logprobs(module: nn.Module, ids: list[int]) -> torch.Tensor:
    """log p(x_t | x_<t) for t = 1..n-1 from a plain, unpacked forward of the whole model."""
    device = next(module.parameters()).device
    logits = module(input_ids=torch.tensor([ids], device=device)).logits[0].float()  # (n, V)
    logprobs = torch.log_softmax(logits[:-1], dim=-1)
    targets = torch.tensor(ids[1:], device=device).unsqueeze(-1)
    return logprobs.gather(-1, targets).squeeze(-1)  # (n - 1,)


def reference_weighted_logprobs(module: nn.Module, ids: list[int], weights: list[float]) -> torch.Tensor:
    all_tokens = reference_token_logprobs(module, ids)
    return all_tokens[[t - 1 for t in weighted_positions(weights)]]


def reference_hidden(module: nn.Module, ids: list[int]) -> torch.Tensor:
    """Final hidden states (after the last norm) of a plain forward, shape (n, H)."""
    output = module(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return output.hidden_states[-1][0]


def reference_values(trainer: Trainer, ids: list[int]) -> torch.Tensor:
    head = trainer.model.scalar_head
    assert head is not None
    return head(reference_hidden(trainer.model.module, ids)).squeeze(-1)


def parameter_copy(module: nn.Module, predicate=lambda name: True) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters() if predicate(name)}


def gradients(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Accumulated (unscaled) gradients of the trainable parameters after running the queue."""
    trainer.flush()
    return {
        entry.name: entry.parameter.grad.detach().clone()
        for entry in trainer.optimizer.parameters
        if entry.parameter.grad is not None
    }


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||: float32 sums in another order differ by ~1e-6 of the norm."""
    return float(
        torch.linalg.vector_norm(actual - expected) / torch.linalg.vector_norm(expected).clamp_min(1e-12)
    )
