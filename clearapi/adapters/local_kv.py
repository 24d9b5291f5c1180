"""Prompt-prefix reuse for the embedded model: one llama.cpp sequence and snapshots of its prefixes.

A row's calls share most of their prompt (system prompt, demonstrations, the row's prompt),
so each evaluates only what differs from the longest prefix already computed: the live
sequence, truncated, or a saved copy of its KV state (kept for prompt boundaries, in an LRU
bounded in bytes), which lets calls of rows in flight interleave without losing their prefixes.

Results do not depend on what ran before: llama.cpp's CPU kernels give bit-identical values
for a position whatever batch of two or more tokens it is computed in, but different ones in a
batch of one. So a call never evaluates a single-token batch from the cache, logits are always
asked for at least two positions, and only tokens evaluated in batches (never sampled ones,
which are decoded one at a time) are reused. Logits are computed only for the positions read.
"""

from __future__ import annotations

import ctypes
import itertools
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["DEFAULT_SNAPSHOT_BYTES", "PrefixCache", "common_prefix"]

#: room for saved prefixes: about ten 500-token prompts of SmolLM2-135M (23 KB a token)
DEFAULT_SNAPSHOT_BYTES = 128 * 1024 * 1024


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """Evaluates token lists on sequence 0 of a `Llama`'s context, reusing what it can."""

    def __init__(self, llama: Any, budget_bytes: int = DEFAULT_SNAPSHOT_BYTES) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self._ctx = llama._ctx.ctx
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama._batch.batch
        self._n_batch = int(llama.n_batch)
        self._n_vocab = int(llama.n_vocab())
        self._budget = budget_bytes
        self._snaps: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._bytes = 0
        #: tokens whose KV is in the sequence, every one computed in a batch of two or more
        self.live: list[int] = []
        self.evaluated = 0
        self.reused = 0

    def evaluate(self, tokens: Sequence[int], first_output: int, marks: Iterable[int] = ()) -> Any:
        """Logits (float32 rows) of positions ``first_output'..len(tokens)-1``, where ``first_output'``
        is `first_output` moved back to leave two rows at least; the KV state at each of `marks`
        (prompt boundaries other calls may share) is saved for reuse."""
        import numpy as np

        n = len(tokens)
        if n == 0:
            raise ValueError("nothing to evaluate")
        first_output = max(0, min(first_output, n - 2))
        base = min(common_prefix(self.live, tokens), first_output)
        snap = max((k for k in self._snaps if base < len(k) <= first_output and tuple(tokens[:len(k)]) == k),
                   key=len, default=None)
        if snap is not None and self._restore(snap):
            base = len(snap)
        else:
            self._lib.llama_memory_seq_rm(self._mem, 0, base, -1)
            self.live = list(tokens[:base])
        self.reused += base
        self.evaluated += n - base
        wanted = set(marks)
        rows = []
        for start, end in _chunks(base, n, sorted(m for m in wanted if base < m < n), self._n_batch):
            rows.append(self._decode(tokens, start, end, first_output))
            self.live = list(tokens[:end])
            if end in wanted:
                self._save()
        return np.concatenate([r for r in rows if r is not None])

    def rewind(self, n: int) -> None:
        """Forget positions from `n` on (a sample's tokens, before the next sample)."""
        self._lib.llama_memory_seq_rm(self._mem, 0, n, -1)
        self.live = self.live[:n]

    def step(self, token: int, pos: int) -> Any:
        """Logits after one sampled token at `pos`; its KV is not reused by later calls."""
        self.live = self.live[:pos]
        return self._decode([token], 0, 1, 0, pos_offset=pos)[0]

    def _decode(self, tokens: Sequence[int], start: int, end: int, first_output: int,
                pos_offset: int = 0) -> Any:
        import numpy as np

        b = self._batch
        for i in range(end - start):
            p = start + i
            b.token[i] = tokens[p]
            b.pos[i] = p + pos_offset
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = p >= first_output
        b.n_tokens = end - start
        rc = self._lib.llama_decode(self._ctx, b)
        if rc != 0:
            self.rewind(0)
            raise RuntimeError(f"llama_decode returned {rc}")
        outputs = end - max(start, first_output)
        if outputs <= 0:
            return None
        ptr = self._lib.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(outputs, self._n_vocab)).copy()

    def _save(self) -> None:
        key = tuple(self.live)
        if key in self._snaps:
            self._snaps.move_to_end(key)
            return
        size = int(self._lib.llama_state_seq_get_size(self._ctx, 0))
        if size > self._budget:
            return
        buf = (ctypes.c_uint8 * size)()
        self._lib.llama_state_seq_get_data(self._ctx, buf, size, 0)
        self._snaps[key] = buf
        self._bytes += size
        while self._bytes > self._budget:
            _, old = self._snaps.popitem(last=False)
            self._bytes -= len(old)

    def _restore(self, key: tuple[int, ...]) -> bool:
        buf = self._snaps[key]
        self._snaps.move_to_end(key)
        self._lib.llama_memory_clear(self._mem, True)
        if self._lib.llama_state_seq_set_data(self._ctx, buf, len(buf), 0) == 0:
            self._lib.llama_memory_clear(self._mem, True)
            self.live = []
            return False
        self.live = list(key)
        return True


def _chunks(start: int, end: int, cuts: list[int], n_batch: int) -> list[tuple[int, int]]:
    """[start, end) split at `cuts` and into batches of at most `n_batch`, none of one token
    (a cut that would leave one is dropped; `start` is at least two before `end`)."""
    points = [start]
    for c in [*cuts, end]:
        if c - points[-1] >= 2 and (c == end or end - c >= 2):
            points.append(c)
    if points[-1] != end:
        points[-1] = end
    out: list[tuple[int, int]] = []
    for a, b in itertools.pairwise(points):
        while b - a > n_batch:
            step = n_batch if b - a - n_batch >= 2 else n_batch - 1
            out.append((a, a + step))
            a += step
        out.append((a, b))
    return out
