"""Key/value cache for a batch whose sequences join and leave between decode steps.

The cache owns a fixed number of token slots (the spawn's ``kv_cache_len``): per layer one
flat key pool and one flat value pool of ``slots * heads * head_dim`` elements, allocated
in full at the first insert. The memory plan counts exactly these bytes, so the cache never
allocates more than was planned, whatever the mix of sequence lengths.

The pools are viewed as (row_capacity, heads, column_capacity, head_dim) with
``row_capacity * column_capacity <= slots``. A row is a sequence and a column a token slot.
All rows end at column ``length - 1`` (left padding), so a decode step writes column
``length`` of every row and attends over columns ``[0, length]``. ``mask[row, col]`` is True
where the row has a real token. Padding columns contain zeros, because a masked value still
enters the attention product (as 0 * value), and NaN there would poison the row.

When the batch needs more columns or more rows than the current view has, the pools are
re-viewed with another column capacity and the used part is moved in place, one layer at a
time. Rows leave by moving rows from the end of the batch into the holes, one row copy per
hole. Leading columns that no row uses any more are cut off, so the attention span follows
the longest sequence still running.

The model reaches this cache through ``BatchKVCache.hf_cache``: a transformers ``Cache`` whose
layers write into these pools instead of concatenating new tensors each step.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

# Column capacities are multiples of this; a new view leaves room to double the columns in use.
COLUMN_GROWTH = 64


class KVCacheFull(RuntimeError):
    """The rows and columns asked for do not fit the cache's slots (admission should have prevented it)."""


class BatchKVCache:
    def __init__(self, num_layers: int, slots: int):
        if slots < 1:
            raise ValueError(f"slots={slots} is invalid; the cache needs at least one token slot")
        self.num_layers = num_layers
        self.slots = slots
        self._key_pools: list[torch.Tensor] = []  # flat, slots * heads * head_dim elements per layer
        self._value_pools: list[torch.Tensor] = []
        self._shapes: list[tuple[int, int]] = []  # (heads, head_dim) per layer
        # Views of the pools, (row_capacity, heads, column_capacity, head_dim) per layer.
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.mask: torch.Tensor | None = None  # (row_capacity, column_capacity) bool; None while empty
        self.rows = 0
        self.length = 0
        self._row_hint = 0  # rows the first view should hold, from reserve_rows
        self.hf_cache = Cache(layers=[_BufferLayer(self, index) for index in range(num_layers)])

    # ----------------------------------------------------------------------------------
    # Shape and capacity

    @property
    def row_capacity(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    @property
    def column_capacity(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    @property
    def allocated_bytes(self) -> int:
        """Bytes held by the key and value pools (0 before the first insert)."""
        return sum(pool.numel() * pool.element_size() for pool in (*self._key_pools, *self._value_pools))

    def _allocate_pools(self, like: list[torch.Tensor]) -> None:
        """Allocate pools for ``slots`` tokens, shaped after ``like`` (one (n, heads, L, dim) tensor per layer).

        They are left uninitialized: every column a forward reads, ``[0, length]`` of each
        row, is written first (tokens, or zeros for padding).
        """
        self._key_pools = [
            torch.empty(self.slots * t.shape[1] * t.shape[3], dtype=t.dtype, device=t.device) for t in like
        ]
        self._value_pools = [torch.empty_like(pool) for pool in self._key_pools]
        self._shapes = [(t.shape[1], t.shape[3]) for t in like]

    def _view(self, pools: list[torch.Tensor], columns: int) -> list[torch.Tensor]:
        rows = self.slots // columns
        views = []
        for pool, (heads, dim) in zip(pools, self._shapes, strict=True):
            views.append(pool[: rows * heads * columns * dim].view(rows, heads, columns, dim))
        return views

    def _choose_columns(self, rows: int, columns: int) -> int:
        """Pick a column capacity of at least ``columns`` that leaves room for ``rows`` rows."""
        limit = self.slots // max(rows, 1)
        if columns > limit:
            raise KVCacheFull(
                f"the batch needs {rows} rows of {columns} columns, more than the cache's {self.slots} token slots"
            )
        return max(columns, min(_round_up(2 * columns, COLUMN_GROWTH), limit))

    def _relayout(self, columns: int) -> None:
        """Re-view the pools with ``columns`` column capacity, moving the used rows and columns along."""
        assert self.mask is not None
        rows, length = self.rows, self.length
        new_keys, new_values = self._view(self._key_pools, columns), self._view(self._value_pools, columns)
        # Old and new views share the pool, so each layer's used block is copied out before it is
        # written back. The extra memory is one layer's block at a time.
        for old_views, new_views in ((self.keys, new_keys), (self.values, new_values)):
            for old, new in zip(old_views, new_views, strict=True):
                if rows and length:
                    block = old[:rows, :, :length].clone()
                    new[:rows, :, :length] = block
        mask = torch.zeros(self.slots // columns, columns, dtype=torch.bool, device=self.mask.device)
        mask[:rows, :length] = self.mask[:rows, :length]
        self.keys, self.values, self.mask = new_keys, new_values, mask

    def _make_room(self, rows: int, extra_columns: int, *, min_length: int = 0) -> None:
        """Make the view hold ``rows`` rows and ``max(length, min_length) + extra_columns`` columns.

        Unused leading columns are cut off first when the batch would not fit otherwise.
        Raises KVCacheFull when even that leaves too few slots.
        """
        assert self.mask is not None

        def needed() -> int:
            return max(self.length, min_length) + extra_columns

        if rows <= self.row_capacity and needed() <= self.column_capacity:
            return
        self._trim_leading_columns(force=True)
        if rows <= self.row_capacity and needed() <= self.column_capacity:
            return
        self._relayout(self._choose_columns(rows, needed()))

    def reserve_rows(self, count: int) -> None:
        """Make room for ``count`` rows in all, so that the inserts of one prefill need no further re-view."""
        if self.mask is None:
            self._row_hint = count
        else:
            self._make_room(count, 1)

    def clear(self) -> None:
        """Drop all rows. The pools stay allocated, because the plan counts them for the spawn's life."""
        self.keys, self.values, self.mask = [], [], None
        self.rows = 0
        self.length = 0
        self._row_hint = 0

    # ----------------------------------------------------------------------------------
    # Rows joining and leaving

    def insert(self, keys: list[torch.Tensor], values: list[torch.Tensor], mask: torch.Tensor) -> None:
        """Append rows from a left-padded prefill: per layer (n, heads, L, dim), mask (n, L).

        The new rows are right-aligned with the running ones. A prefill longer than the
        running rows shifts those right by the difference.
        """
        count, prefill_length = mask.shape
        if self.mask is None:
            if not self._key_pools:
                self._allocate_pools(keys)
            columns = self._choose_columns(max(count, self._row_hint), prefill_length + 1)
            self.keys, self.values = (
                self._view(self._key_pools, columns),
                self._view(self._value_pools, columns),
            )
            self.mask = torch.zeros(self.slots // columns, columns, dtype=torch.bool, device=mask.device)
        self._make_room(self.rows + count, 1, min_length=prefill_length)
        if prefill_length > self.length:
            self._shift_right(prefill_length - self.length)
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
        """Prepend ``count`` padding columns to the running rows (the view must have room)."""
        assert self.mask is not None and self.length + count <= self.column_capacity
        rows, length = self.rows, self.length
        if rows:
            for buffers in (self.keys, self.values):
                for buffer in buffers:
                    buffer[:rows, :, count : count + length] = buffer[:rows, :, :length].clone()
                    buffer[:rows, :, :count] = 0
            self.mask[:rows, count : count + length] = self.mask[:rows, :length].clone()
            self.mask[:rows, :count] = False
        self.length += count

    def _trim_leading_columns(self, *, force: bool = False) -> None:
        """Cut off leading columns that hold no token of any row.

        Unless ``force`` is set, only once they are a quarter of the span, which keeps the
        copy amortized: a cut costs one pass over the cache.
        """
        assert self.mask is not None
        if self.rows == 0 or self.length == 0:
            self.length = 0
            return
        used = self.mask[: self.rows, : self.length].any(dim=0)
        first = int(used.to(torch.int8).argmax().item())
        if first == 0 or (not force and first < max(16, self.length // 4)):
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
        assert self.mask is not None
        self._make_room(self.rows, 1)
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


def kv_bytes_per_token(model: Any) -> int:
    """Return the K and V bytes one token takes in the cache of a (tp=1) causal LM, in its weight dtype."""
    config = model.config.get_text_config()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    element_size = model.get_input_embeddings().weight.element_size()
    return 2 * config.num_hidden_layers * kv_heads * head_dim * element_size


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class _BufferLayer(DynamicLayer):
    """A transformers cache layer that stores into a BatchKVCache's pools."""

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
