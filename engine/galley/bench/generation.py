"""Generation throughput: the batching scheduler against plain transformers ``generate``.

    python -m galley.bench.generation [--prompts 64,256] [--new-tokens 32] [--out FILE]

Builds a Llama-architecture model from config (random weights, nothing downloaded, about
110M parameters by default), makes random prompts, and measures generated tokens per second
three ways, side by side in one process:

- scheduler: all prompts submitted at once to ``galley.engine.batching.Scheduler``, with a
  kv_cache_len that admits them all together (see ``cache_slots``);
- sequential: ``generate`` on one prompt at a time. Its rate does not depend on how many
  prompts wait, so it is measured on ``--sequential-prompts`` prompts, and the time for all
  prompts is extrapolated from that rate (marked ``"extrapolated": true`` in the JSON);
- padded: one ``generate`` call on all prompts, left-padded. One call has one
  ``max_new_tokens``, so it runs until the longest request is done; only the tokens each
  request asked for count as generated.

Each request sets its own number of new tokens, uniform in [new/2, 3*new/2], because
generations end at different lengths in real traffic. ``--uniform-new-tokens`` gives every
request exactly ``--new-tokens``, where padded batching wastes nothing. The model has no EOS
token, so every request generates exactly what it asked for. Decoding is greedy.

Prints one JSON object on stdout (progress goes to stderr). Each way is timed by the wall
clock and by this process's CPU time. Both kinds of speedup are reported. The CPU-time ones
are steadier when other work shares the machine, which ``cpu_seconds`` well below
``seconds`` times ``torch_threads`` reveals.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM  # noqa: E402

from galley.engine.batching import GenerationRequest, Scheduler  # noqa: E402

PAD_TOKEN_ID = 0


@dataclass(frozen=True)
class Workload:
    prompts: list[list[int]]
    max_new_tokens: list[int]

    @property
    def requested_tokens(self) -> int:
        return sum(self.max_new_tokens)


def build_model(args: argparse.Namespace) -> LlamaForCausalLM:
    config = LlamaConfig(
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        vocab_size=args.vocab_size,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=PAD_TOKEN_ID,
    )
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=None, pad_token_id=PAD_TOKEN_ID)
    return model


def make_workload(count: int, args: argparse.Namespace) -> Workload:
    generator = torch.Generator().manual_seed(args.seed + count)
    low, high = args.prompt_tokens
    lengths = torch.randint(low, high + 1, (count,), generator=generator).tolist()
    prompts = [
        torch.randint(1, args.vocab_size, (length,), generator=generator).tolist() for length in lengths
    ]
    if args.uniform_new_tokens:
        new_tokens = [args.new_tokens] * count
    else:
        low_new, high_new = max(1, args.new_tokens // 2), args.new_tokens * 3 // 2
        new_tokens = torch.randint(low_new, high_new + 1, (count,), generator=generator).tolist()
    return Workload(prompts, new_tokens)


# ---------------------------------------------------------------------------------------
# The three ways to generate


@dataclass(frozen=True)
class Timing:
    wall_s: float
    # CPU time of this process, all threads. On a machine shared with other work it grows
    # far less than wall time does, so ratios of CPU times are the steadier comparison.
    cpu_s: float

    def report(self, tokens: int) -> dict:
        return {
            "seconds": round(self.wall_s, 3),
            "cpu_seconds": round(self.cpu_s, 3),
            "tokens_per_s": round(tokens / self.wall_s, 1),
            "tokens_per_cpu_s": round(tokens / self.cpu_s, 1),
        }


def fastest(timings: list[Timing]) -> Timing:
    """Keep the fastest of repeated runs: interference from other work only ever adds time."""
    return Timing(min(t.wall_s for t in timings), min(t.cpu_s for t in timings))


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info) -> None:
        self.timing = Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


def cache_slots(workload: Workload) -> int:
    """Return the kv_cache_len that admits every prompt at once: rows times the longest reservation.

    Padded ``generate`` allocates the same number of slots (rows times longest prompt plus longest
    generation), so both ways run with the same KV cache memory.
    """
    longest = max(len(p) + n for p, n in zip(workload.prompts, workload.max_new_tokens, strict=True))
    return len(workload.prompts) * longest


def run_scheduler(model: LlamaForCausalLM, workload: Workload) -> tuple[Timing, list[list[int]], int]:
    """Return the timing, the outputs and the number of scheduler steps."""
    kv_cache_len = cache_slots(workload)
    scheduler = Scheduler(
        model, eos_token_ids=[], pad_token_id=PAD_TOKEN_ID, kv_cache_len=kv_cache_len, tokens_to_generate=1
    )
    with Stopwatch() as stopwatch:
        futures = [
            scheduler.add(GenerationRequest(prompt, new_tokens))
            for prompt, new_tokens in zip(workload.prompts, workload.max_new_tokens, strict=True)
        ]
        steps = 0
        while scheduler.step():
            steps += 1
    return stopwatch.timing, [future.result().ids for future in futures], steps


@torch.inference_mode()
def run_sequential(model: LlamaForCausalLM, workload: Workload) -> tuple[Timing, list[list[int]]]:
    outputs = []
    with Stopwatch() as stopwatch:
        for prompt, new_tokens in zip(workload.prompts, workload.max_new_tokens, strict=True):
            output = model.generate(  # pyright: ignore[reportAttributeAccessIssue]  (transformers' self-type protocol)
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                max_new_tokens=new_tokens,
                do_sample=False,
            )
            outputs.append(output[0, len(prompt) :].tolist())
    return stopwatch.timing, outputs


@torch.inference_mode()
def run_padded(model: LlamaForCausalLM, workload: Workload) -> Timing:
    width = max(len(prompt) for prompt in workload.prompts)
    input_ids = torch.full((len(workload.prompts), width), PAD_TOKEN_ID, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, prompt in enumerate(workload.prompts):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
        attention_mask[row, width - len(prompt) :] = 1
    with Stopwatch() as stopwatch:
        model.generate(  # pyright: ignore[reportAttributeAccessIssue]  (transformers' self-type protocol)
            input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max(workload.max_new_tokens),
            do_sample=False,
        )
    return stopwatch.timing


# ---------------------------------------------------------------------------------------
# Report


def measure_case(
    model: LlamaForCausalLM, count: int, sequential: Timing, sequential_tokens: int, args
) -> dict:
    workload = make_workload(count, args)
    tokens = workload.requested_tokens
    log(f"{count} prompts: scheduler")
    runs = [run_scheduler(model, workload) for _ in range(args.repeat)]
    scheduler, steps = fastest([timing for timing, _, _ in runs]), runs[0][2]
    log(f"{count} prompts: padded generate")
    padded = fastest([run_padded(model, workload) for _ in range(args.repeat)])

    # Sequential generate's rate does not depend on the number of prompts, so its time for
    # this case is the sampled time scaled by the token count.
    scale = tokens / sequential_tokens
    estimate = Timing(sequential.wall_s * scale, sequential.cpu_s * scale)
    longest = max(workload.max_new_tokens)
    return {
        "concurrent_prompts": count,
        "requested_new_tokens": tokens,
        "prompt_tokens": sum(len(prompt) for prompt in workload.prompts),
        "scheduler": {**scheduler.report(tokens), "steps": steps, "kv_cache_len": cache_slots(workload)},
        "padded": {
            **padded.report(tokens),
            "max_new_tokens": longest,
            "discarded_tokens": count * longest - tokens,
        },
        "sequential": {**estimate.report(tokens), "extrapolated": True},
        "speedup_vs_sequential": round(estimate.wall_s / scheduler.wall_s, 2),
        "speedup_vs_padded": round(padded.wall_s / scheduler.wall_s, 2),
        "cpu_time_speedup_vs_sequential": round(estimate.cpu_s / scheduler.cpu_s, 2),
        "cpu_time_speedup_vs_padded": round(padded.cpu_s / scheduler.cpu_s, 2),
    }


def measure_sequential(model: LlamaForCausalLM, args) -> tuple[dict, Timing, int]:
    """Time one-at-a-time generate on a sample, and check the scheduler's greedy output against it."""
    sample = make_workload(args.sequential_prompts, args)
    log(f"sequential generate on {args.sequential_prompts} prompts")
    runs = [run_sequential(model, sample) for _ in range(args.repeat)]
    timing, expected = fastest([timing for timing, _ in runs]), runs[0][1]
    _, outputs, _ = run_scheduler(model, sample)
    # Random weights with the default init give nearly tied logits, so a mismatch here can be
    # float rounding. The exact-equality check is in the tests, on models built for it.
    matches = sum(a == b for a, b in zip(outputs, expected, strict=True))
    report = {
        "measured_prompts": args.sequential_prompts,
        "measured_tokens": sample.requested_tokens,
        **timing.report(sample.requested_tokens),
        "scheduler_greedy_matches": f"{matches}/{len(expected)}",
    }
    return report, timing, sample.requested_tokens


def warm_up(model: LlamaForCausalLM, args) -> None:
    """Run each path once on a small batch, so first-call costs stay out of the measurements."""
    warm = make_workload(2, argparse.Namespace(**{**vars(args), "new_tokens": 2, "uniform_new_tokens": True}))
    run_scheduler(model, warm)
    run_sequential(model, warm)
    run_padded(model, warm)


def log(message: str) -> None:
    print(f"[bench.generation] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m galley.bench.generation",
        description="Measure generation tokens/s: the batching scheduler, sequential generate, padded generate.",
    )
    parser.add_argument(
        "--prompts", default="64,256", help="comma-separated numbers of concurrent prompts, one case each"
    )
    parser.add_argument("--new-tokens", type=int, default=32, help="mean new tokens per request")
    parser.add_argument(
        "--uniform-new-tokens", action="store_true", help="every request asks for exactly --new-tokens"
    )
    parser.add_argument("--prompt-tokens", default="8:32", help="prompt length range in tokens, MIN:MAX")
    parser.add_argument("--sequential-prompts", type=int, default=8, help="prompts timed one at a time")
    parser.add_argument("--hidden-size", type=int, default=768)
    parser.add_argument("--intermediate-size", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement; the fastest wall and CPU times count"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args(argv)

    try:
        args.prompts = [int(count) for count in args.prompts.split(",")]
        low, high = (int(part) for part in args.prompt_tokens.split(":"))
    except ValueError:
        parser.error(
            f"--prompts {args.prompts!r} or --prompt-tokens {args.prompt_tokens!r} is invalid; "
            f"use e.g. --prompts 64,256 --prompt-tokens 8:32"
        )
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat} is invalid; use 1 or more")
    if not 1 <= low <= high:
        parser.error(f"--prompt-tokens {args.prompt_tokens} is invalid; use MIN:MAX with 1 <= MIN <= MAX")
    args.prompt_tokens = (low, high)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    log(f"model: {parameters / 1e6:.0f}M parameters, {torch.get_num_threads()} threads")

    warm_up(model, args)
    sequential, sequential_timing, sequential_tokens = measure_sequential(model, args)
    cases = [measure_case(model, count, sequential_timing, sequential_tokens, args) for count in args.prompts]

    new_low, new_high = (
        (args.new_tokens, args.new_tokens)
        if args.uniform_new_tokens
        else (max(1, args.new_tokens // 2), args.new_tokens * 3 // 2)
    )
    report = {
        "benchmark": "generation",
        "model": {
            "architecture": "LlamaForCausalLM",
            "parameters": parameters,
            "hidden_size": args.hidden_size,
            "layers": args.layers,
            "heads": args.heads,
            "vocab_size": args.vocab_size,
            "dtype": "float32",
            "weights": "random",
        },
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "repeat": args.repeat,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "workload": {
            "prompt_tokens": list(args.prompt_tokens),
            "new_tokens_per_request": [new_low, new_high],
            "decoding": "greedy",
            "eos": "none: every request generates exactly its new tokens",
        },
        "sequential_sample": sequential,
        "cases": cases,
        "speedup_vs_sequential": {
            str(case["concurrent_prompts"]): case["speedup_vs_sequential"] for case in cases
        },
        "speedup_vs_padded": {str(case["concurrent_prompts"]): case["speedup_vs_padded"] for case in cases},
        "cpu_time_speedup_vs_sequential": {
            str(case["concurrent_prompts"]): case["cpu_time_speedup_vs_sequential"] for case in cases
        },
        "cpu_time_speedup_vs_padded": {
            str(case["concurrent_prompts"]): case["cpu_time_speedup_vs_padded"] for case in cases
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
