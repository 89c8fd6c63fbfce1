"""Training throughput: packed micro-batches against padded batches, on mixed-length samples.

    python -m galley.bench.training [--samples 32] [--lengths 32:512] [--max-batch-size 2048] [--out FILE]

Builds a Llama-architecture model from config (random weights, nothing downloaded). By
default it has about 20M parameters, half of them in the embeddings and LM head. The
samples are random token ids with lengths uniform in ``--lengths``, and the second half of
each is weighted as a completion. Each optimizer step trains every sample once
(language-modelling loss, forward, backward, AdamW), in two ways that alternate step by
step in one process on the same model:

- packed: ``galley.engine.training.Trainer``, which packs samples into micro-batches of at
  most ``--max-batch-size`` tokens. Each micro-batch runs as rows as wide as its longest
  sample, several samples per row with restarting position ids, padded only at row ends;
- padded: the same loss, LM-head restriction to weighted tokens and AdamW, on right-padded
  batches with an attention mask. Samples are taken in arrival order while
  ``batch_size * longest_length`` fits in ``--max-batch-size`` tokens, the usual
  fixed-token-budget batching without sorting by length.

tokens/s counts only real (non-padding) tokens. The first step of each way is a warm-up and
is not timed. Prints one JSON object on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel  # noqa: E402

from galley.engine.training import TrainableModel, Trainer  # noqa: E402
from galley.engine.training.optimizer import MasterWeightsAdamW  # noqa: E402

LEARNING_RATE = 1e-4


def build_model(args: argparse.Namespace, device: torch.device) -> PreTrainedModel:
    config = LlamaConfig(
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        vocab_size=args.vocab_size,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
    )
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model.to(device)
    return model


def make_samples(args: argparse.Namespace) -> list[dict[str, list]]:
    """Make random token ids with lengths uniform in the range, weighting the second half of each."""
    generator = torch.Generator().manual_seed(args.seed)
    low, high = args.lengths
    lengths = torch.randint(low, high + 1, (args.samples,), generator=generator).tolist()
    samples = []
    for length in lengths:
        ids = torch.randint(1, args.vocab_size, (length,), generator=generator).tolist()
        prompt = length // 2
        samples.append({"ids": ids, "weights": [0.0] * prompt + [1.0] * (length - prompt)})
    return samples


def render_pretokenized(sample: dict[str, list]) -> SimpleNamespace:
    return SimpleNamespace(ids=sample["ids"], weights=sample["weights"])


# ---------------------------------------------------------------------------------------
# Padded baseline


def padded_batches(samples: list[dict[str, list]], max_tokens: int) -> list[list[dict[str, list]]]:
    batches: list[list[dict[str, list]]] = []
    current: list[dict[str, list]] = []
    for sample in samples:
        longest = max([len(s["ids"]) for s in current] + [len(sample["ids"])])
        if current and (len(current) + 1) * longest > max_tokens:
            batches.append(current)
            current = []
        current.append(sample)
    if current:
        batches.append(current)
    return batches


def padded_step(model: PreTrainedModel, optimizer: MasterWeightsAdamW, batches, device: torch.device) -> None:
    """Train one step over every batch: weighted mean NLL per sample, mean over samples, AdamW."""
    decoder = model.get_decoder()
    lm_head = model.get_output_embeddings()
    assert lm_head is not None
    count = sum(len(batch) for batch in batches)
    for batch in batches:
        width = max(len(s["ids"]) for s in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        weights = torch.zeros((len(batch), width))
        for row, sample in enumerate(batch):
            length = len(sample["ids"])
            ids[row, :length] = torch.tensor(sample["ids"])
            mask[row, :length] = 1
            weights[row, :length] = torch.tensor(sample["weights"])
        ids, mask, weights = ids.to(device), mask.to(device), weights.to(device)

        hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # (B, L, H)
        rows, positions = torch.nonzero(weights[:, 1:] > 0, as_tuple=True)  # predicted token at position + 1
        logits = lm_head(hidden[rows, positions]).float()
        nll = F.cross_entropy(logits, ids[rows, positions + 1], reduction="none")
        token_weights = weights[rows, positions + 1]
        per_row = torch.zeros(len(batch), device=device).index_add(0, rows, nll * token_weights)
        totals = torch.zeros(len(batch), device=device).index_add(0, rows, token_weights)
        (per_row / totals).sum().backward()

    optimizer.gather_gradients(1.0 / count)
    optimizer.clip_gradients(1.0)
    optimizer.step(LEARNING_RATE, 0.0)
    optimizer.zero_grad()


# ---------------------------------------------------------------------------------------
# Packed


def packed_step(trainer: Trainer, samples: list[dict[str, list]]) -> dict[str, Any]:
    for sample in samples:
        trainer.train_language_modelling(sample)
    return trainer.optim_step(lr=LEARNING_RATE, wd=0.0, max_grad_norm=1.0)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m galley.bench.training",
        description="Training tokens/s with packed micro-batches against padded batches.",
    )
    parser.add_argument("--samples", type=int, default=32, help="samples per optimizer step")
    parser.add_argument("--lengths", default="32:512", help="sample length range in tokens, MIN:MAX")
    parser.add_argument(
        "--max-batch-size", type=int, default=2048, help="tokens per micro-batch, padding included"
    )
    parser.add_argument("--steps", type=int, default=2, help="timed optimizer steps of each way")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--intermediate-size", type=int, default=688)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args(argv)

    try:
        low, high = (int(part) for part in args.lengths.split(":"))
    except ValueError:
        parser.error(f"--lengths {args.lengths!r} is invalid; write MIN:MAX, e.g. 32:512")
    if not 2 <= low <= high:
        parser.error(f"--lengths {args.lengths!r} is invalid; MIN must be at least 2 and at most MAX")
    if high > args.max_batch_size:
        parser.error(
            f"--lengths MAX {high} exceeds --max-batch-size {args.max_batch_size}; samples would be dropped"
        )
    args.lengths = (low, high)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    model = build_model(args, device)
    samples = make_samples(args)
    real_tokens = sum(len(s["ids"]) for s in samples)
    batches = padded_batches(samples, args.max_batch_size)
    padded_tokens = sum(len(batch) * max(len(s["ids"]) for s in batch) for batch in batches)

    trainer = Trainer(TrainableModel(model, tokenizer=None), args.max_batch_size, render=render_pretokenized)
    padded_optimizer = MasterWeightsAdamW([(n, p) for n, p in model.named_parameters() if p.requires_grad])
    model.train()

    print(f"warm-up on {device}", file=sys.stderr)
    packed_stats = packed_step(trainer, samples)
    padded_step(model, padded_optimizer, batches, device)

    seconds = {"packed": 0.0, "padded": 0.0}
    for step in range(args.steps):
        synchronize(device)
        started = time.perf_counter()
        packed_stats = packed_step(trainer, samples)
        synchronize(device)
        seconds["packed"] += time.perf_counter() - started

        started = time.perf_counter()
        padded_step(model, padded_optimizer, batches, device)
        synchronize(device)
        seconds["padded"] += time.perf_counter() - started
        print(f"step {step + 1}/{args.steps}: packed {seconds['packed']:.1f} s, padded {seconds['padded']:.1f} s",
              file=sys.stderr)  # fmt: skip

    packed_rate = real_tokens * args.steps / seconds["packed"]
    padded_rate = real_tokens * args.steps / seconds["padded"]
    report = {
        "name": "training",
        "tokens_per_s_packed": round(packed_rate, 1),
        "tokens_per_s_padded": round(padded_rate, 1),
        "speedup_vs_padded": round(packed_rate / padded_rate, 3),
        "setup": {
            "model": "Llama architecture from config, random weights",
            "parameters": sum(p.numel() for p in model.parameters()),
            "hidden_size": args.hidden_size,
            "layers": args.layers,
            "heads": args.heads,
            "vocab_size": args.vocab_size,
            "dtype": str(next(model.parameters()).dtype),
            "samples_per_step": args.samples,
            "sample_lengths": list(args.lengths),
            "real_tokens_per_step": real_tokens,
            "padded_tokens_per_step": padded_tokens,
            "max_batch_size": args.max_batch_size,
            "micro_batches_packed": packed_stats["micro_batches"],
            "micro_batches_padded": len(batches),
            "timed_steps": args.steps,
            "loss": "language modelling on the second half of each sample",
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }
    text = json.dumps(report)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
