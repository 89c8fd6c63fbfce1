"""Next-token choice for a batch whose rows each carry their own sampling settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RowSampling:
    """Sampling settings of one batch row."""

    # None or 0: greedy (argmax, first index on ties, as transformers' generate).
    temperature: float | None
    # None or 1.0: no nucleus filtering.
    top_p: float | None
    generator: torch.Generator | None
    # True while the row has fewer new tokens than its min_new_tokens.
    suppress_eos: bool

    @property
    def greedy(self) -> bool:
        return not self.temperature


def choose_next_tokens(
    logits: torch.Tensor, rows: list[RowSampling], eos_token_ids: torch.Tensor
) -> list[int]:
    """Pick one token per row from (rows, vocab) logits.

    The order of operations follows transformers' logits processors: EOS suppression for
    min_new_tokens, then temperature, then top-p, then a draw from the row's generator.
    """
    logits = logits.float()
    suppressed = [index for index, row in enumerate(rows) if row.suppress_eos]
    if suppressed and eos_token_ids.numel() > 0:
        row_index = torch.tensor(suppressed, device=logits.device)
        logits[row_index[:, None], eos_token_ids[None, :]] = float("-inf")

    tokens = logits.argmax(dim=-1)  # (rows,)
    sampled = [index for index, row in enumerate(rows) if not row.greedy]
    if sampled:
        sampled_index = torch.tensor(sampled, device=logits.device)
        probabilities = _sampling_probabilities(logits[sampled_index], [rows[index] for index in sampled])
        draws = [
            torch.multinomial(probabilities[position], 1, generator=rows[index].generator)
            for position, index in enumerate(sampled)
        ]
        tokens[sampled_index] = torch.cat(draws)
    return tokens.tolist()


def _sampling_probabilities(logits: torch.Tensor, rows: list[RowSampling]) -> torch.Tensor:
    """Return (len(rows), vocab) probabilities after temperature and top-p, not renormalized.

    ``logits`` holds only the sampled rows, in the order of ``rows``.
    """
    temperatures = torch.tensor([row.temperature for row in rows], dtype=torch.float32, device=logits.device)
    return _apply_top_p(torch.softmax(logits / temperatures[:, None], dim=-1), rows)


def _apply_top_p(probabilities: torch.Tensor, rows: list[RowSampling]) -> torch.Tensor:
    """Zero the tokens outside each row's nucleus: the smallest set of top tokens whose mass reaches top_p."""
    if all(row.top_p is None or row.top_p >= 1.0 for row in rows):
        return probabilities
    # Rows without top-p get an infinite threshold, so float rounding in the cumulative sum
    # cannot cut their tail.
    thresholds = torch.tensor(
        [row.top_p if row.top_p is not None and row.top_p < 1.0 else float("inf") for row in rows],
        dtype=probabilities.dtype,
        device=probabilities.device,
    )
    sorted_probabilities, sorted_index = probabilities.sort(dim=-1, descending=True)
    mass_above = sorted_probabilities.cumsum(dim=-1) - sorted_probabilities
    # The top token has mass_above 0 < top_p, so every row keeps at least one token.
    outside_sorted = mass_above >= thresholds[:, None]
    outside = torch.zeros_like(outside_sorted).scatter(1, sorted_index, outside_sorted)
    return probabilities.masked_fill(outside, 0.0)
