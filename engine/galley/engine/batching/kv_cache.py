"""Key/value cache for a batch whose sequences join and leave between decode steps.

Each layer keeps one key and one value buffer of shape
(row_capacity, kv_heads, column_capacity, head_dim). A row is a sequence and a column a
token slot. All rows end at column ``length - 1`` (left padding), so a decode step writes
column ``length`` of every row and attends over columns ``[0, length]``. ``mask[row, col]``
is True where the row has a real token. Padding columns contain zeros, because a masked
value still enters the attention product (as 0 * value), and NaN there would poison the row.

Rows leave by moving rows from the end of the batch into the holes, one row copy per hole
rather than a copy of the whole cache. When the leading columns no longer contain a token of
any row, they are cut off, so the attention span follows the longest sequence still running.

The model reaches this cache through ``BatchKVCache.hf_cache``: a transformers ``Cache`` whose
layers write into these buffers instead of concatenating new tensors each step.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

# Buffers grow to a multiple of this many columns, at least doubling, so appends are cheap.
COLUMN_GROWTH = 64


class BatchKVCache:
    def __init__(self, num_layers: int):
        self.num_layers = num_layers
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.mask: torch.Tensor | None = None  # (row_capacity, column_capacity) bool
        self.rows = 0
        self.length = 0
        self._initial_rows = 0  # row capacity of the next allocation, from reserve_rows
        self.hf_cache = Cache(layers=[_BufferLayer(self, index) for index in range(num_layers)])

    # ----------------------------------------------------------------------------------
    # Shape and capacity

    @property
    def row_capacity(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    @property
    def column_capacity(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def _allocate(self, like: list[torch.Tensor], rows: int, columns: int) -> None:
        """Allocate zeroed buffers shaped after ``like`` (one (n, heads, L, dim) tensor per layer)."""
        self.keys = [
            torch.zeros(rows, t.shape[1], columns, t.shape[3], dtype=t.dtype, device=t.device) for t in like
        ]
        self.values = [torch.zeros_like(k) for k in self.keys]
        self.mask = torch.zeros(rows, columns, dtype=torch.bool, device=like[0].device)

    def _grow(self, rows: int, columns: int) -> None:
        """Make room for at least ``rows`` rows and ``columns`` columns, keeping the contents."""
        assert self.mask is not None
        if rows <= self.row_capacity and columns <= self.column_capacity:
            return
        new_rows = self.row_capacity if rows <= self.row_capacity else max(rows, 2 * self.row_capacity)
        new_columns = self.column_capacity
        if columns > self.column_capacity:
            new_columns = _round_up(max(columns, 2 * self.column_capacity), COLUMN_GROWTH)
        used_rows, used_columns = self.rows, self.length
        for buffers in (self.keys, self.values):
            for index, old in enumerate(buffers):
                new = torch.zeros(
                    new_rows, old.shape[1], new_columns, old.shape[3], dtype=old.dtype, device=old.device
                )
                new[:used_rows, :, :used_columns] = old[:used_rows, :, :used_columns]
                buffers[index] = new
        mask = torch.zeros(new_rows, new_columns, dtype=torch.bool, device=self.mask.device)
        mask[:used_rows, :used_columns] = self.mask[:used_rows, :used_columns]
        self.mask = mask

    def reserve_rows(self, count: int) -> None:
        """Make room for ``count`` rows in all, so that the inserts of one prefill need no further row growth."""
        if self.mask is None:
            self._initial_rows = count
        else:
            self._grow(count, self.column_capacity)

    def reserve_columns(self, count: int) -> None:
        """Make room to write ``count`` more columns on every row."""
        if self.mask is not None:
            self._grow(self.rows, self.length + count)

    def clear(self) -> None:
        """Drop all rows and release the buffers."""
        self.keys, self.values, self.mask = [], [], None
        self.rows = 0
        self.length = 0
        self._initial_rows = 0

    # ----------------------------------------------------------------------------------
    # Rows joining and leaving

    def insert(self, keys: list[torch.Tensor], values: list[torch.Tensor], mask: torch.Tensor) -> None:
        """Append rows from a left-padded prefill: per layer (n, heads, L, dim), mask (n, L).

        The new rows are right-aligned with the running ones. A prefill longer than the
        running rows shifts those right by the difference.
        """
        count, prefill_length = mask.shape
        if self.mask is None:
            rows = max(count, self._initial_rows)
            self._allocate(keys, rows, _round_up(prefill_length + 1, COLUMN_GROWTH))
        if prefill_length > self.length:
            self._shift_right(prefill_length - self.length)
        self._grow(self.rows + count, self.length + 1)
        assert self.mask is not None

        start, end = self.rows, self.rows + count
        offset = self.length - prefill_length
        for buffers, new in ((self.keys, keys), (self.values, values)):
            for buffer, layer_new in zip(buffers, new, strict=True):
                buffer[start:end, :, :offset] = 0
                buffer[start:end, :, offset : self.length] = layer_new
        self.mask[start:end] = False
        self.mask[start:end, offset : self.length] = mask
        self.rows = end

    def remove(self, indices: list[int]) -> list[tuple[int, int]]:
        """Remove rows and return the (source, destination) row moves made to fill the holes.

        Callers that keep a list parallel to the rows replay the moves on it: for each move,
        ``items[destination] = items[source]``, then keep only the first ``rows`` items.
        """
        removed = set(indices)
        kept_rows = self.rows - len(removed)
        # Holes below kept_rows are filled by the surviving rows above it, one copy each.
        holes = sorted(index for index in removed if index < kept_rows)
        survivors = [index for index in range(kept_rows, self.rows) if index not in removed]
        moves = list(zip(survivors, holes, strict=True))
        for source, destination in moves:
            self._copy_row(source, destination)
        self.rows = kept_rows
        if self.rows == 0:
            self.clear()
        else:
            self._trim_leading_columns()
        return moves

    def _copy_row(self, source: int, destination: int) -> None:
        assert self.mask is not None
        for buffers in (self.keys, self.values):
            for buffer in buffers:
                buffer[destination, :, : self.length] = buffer[source, :, : self.length]
        self.mask[destination] = self.mask[source]

    # ----------------------------------------------------------------------------------
    # Column moves

    def _shift_right(self, count: int) -> None:
        """Prepend ``count`` padding columns to the running rows."""
        if self.rows == 0:
            self.length += count
            self._grow(self.row_capacity, self.length + 1)
            return
        self._grow(self.rows, self.length + count + 1)
        assert self.mask is not None
        rows, length = self.rows, self.length
        for buffers in (self.keys, self.values):
            for buffer in buffers:
                buffer[:rows, :, count : count + length] = buffer[:rows, :, :length].clone()
                buffer[:rows, :, :count] = 0
        self.mask[:rows, count : count + length] = self.mask[:rows, :length].clone()
        self.mask[:rows, :count] = False
        self.length += count

    def _trim_leading_columns(self) -> None:
        """Cut off leading columns that hold no token of any row, once they are a quarter of the span.

        The threshold keeps the copy amortized: a cut costs one pass over the cache.
        """
        assert self.mask is not None
        used = self.mask[: self.rows, : self.length].any(dim=0)
        first = int(used.to(torch.int8).argmax().item())
        if first < max(16, self.length // 4):
            return
        rows, keep = self.rows, self.length - first
        for buffers in (self.keys, self.values):
            for buffer in buffers:
                buffer[:rows, :, :keep] = buffer[:rows, :, first : self.length].clone()
        self.mask[:rows, :keep] = self.mask[:rows, first : self.length].clone()
        self.mask[:rows, keep : self.length] = False
        self.length = keep

    # ----------------------------------------------------------------------------------
    # Decode step

    def decode_mask(self) -> torch.Tensor:
        """Mark column ``length`` as a real token of every row; return the (rows, length + 1) mask."""
        self.reserve_columns(1)
        assert self.mask is not None
        self.mask[: self.rows, self.length] = True
        return self.mask[: self.rows, : self.length + 1]

    def write(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (rows, heads, q, dim) states at columns [length, length + q) and return the layer's views."""
        end = self.length + keys.shape[2]
        self.keys[layer][: self.rows, :, self.length : end] = keys
        self.values[layer][: self.rows, :, self.length : end] = values
        return self.keys[layer][: self.rows, :, :end], self.values[layer][: self.rows, :, :end]

    def advance(self, count: int = 1) -> None:
        """Count ``count`` columns written by the forward pass that just ran."""
        self.length += count


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class _BufferLayer(DynamicLayer):
    """A transformers cache layer that stores into a BatchKVCache's buffers."""

    def __init__(self, owner: BatchKVCache, index: int):
        super().__init__()
        self.owner = owner
        self.index = index
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        return self.owner.write(self.index, key_states, value_states)

    def get_seq_length(self) -> int:
        return self.owner.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.length + query_length, 0
