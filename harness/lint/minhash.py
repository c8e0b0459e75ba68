"""Near-duplicate search: MinHash signatures over word shingles, LSH banding, and a union-find for clusters.

`ShingleSignatures` hashes each text's word shingles (texts padded at both ends, template boilerplate
dropped) and computes `NUM_PERM` MinHash values per text; `candidate_pairs` finds the pairs sharing an LSH
band tuned to a Jaccard threshold, comparing a large bucket only within a sliding window
(`BUCKET_WINDOW`), so the work grows with the number of texts, not its square. Candidates are estimates:
callers verify each with the exact Jaccard similarity of the shingle sets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

_M64 = np.uint64
_MIX1, _MIX2 = _M64(0xBF58476D1CE4E5B9), _M64(0x94D049BB133111EB)
NUM_PERM = 128
"""MinHash values per text (hash functions); an estimate's standard error is about 0.04 at Jaccard 0.8."""
BUCKET_WINDOW = 16
"""In an LSH bucket, each member is compared with at most this many neighbours (all pairs in small buckets)."""
_START, _END = "\x02", "\x03"
_BOILERPLATE_MIN_TEXTS = 50


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps)."""
    x = x ^ (x >> _M64(30))
    x = x * _MIX1
    x = x ^ (x >> _M64(27))
    x = x * _MIX2
    return x ^ (x >> _M64(31))


_RNG = np.random.default_rng(20240601)
_PERM_A = _RNG.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) * _M64(2) + _M64(1)  # odd multipliers
_PERM_B = _RNG.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
_SHINGLE_MULT = _RNG.integers(1, 2**63, size=10, dtype=np.uint64) * _M64(2) + _M64(1)


def _bands_for(threshold: float) -> tuple[int, int]:
    """(rows per band, bands): the most selective banding that still finds ≥ 99.5% of pairs at `threshold`."""
    best = (1, NUM_PERM)
    for rows in range(1, 17):
        bands = NUM_PERM // rows
        if 1 - (1 - threshold**rows) ** bands >= 0.995:
            best = (rows, bands)
    return best


class ShingleSignatures:
    """Word-shingle hashes of one text per example, flat, and their MinHash signatures (perm × example)."""

    def __init__(self, texts: Sequence[str], k: int, vocab: dict[str, int], counter: Iterator[int],
                 boilerplate: float) -> None:
        n = len(texts)
        lengths = np.zeros(n, dtype=np.int64)
        words: list[str] = []
        edge_start, edge_end = [_START] * (k - 1), [_END] * (k - 1)
        for i, text in enumerate(texts):
            if text:
                # Edge markers put every word, first and last too, in exactly k shingles: one changed
                # word weighs the same wherever it is, and a text shorter than k still has shingles.
                ws = edge_start + text.split() + edge_end if k > 1 else text.split()
                lengths[i] = len(ws)
                words += ws
        # Word ids: a new word takes the counter's next value (ids are unique, deterministic, not dense).
        ids = np.fromiter(map(vocab.setdefault, words, counter), dtype=np.uint64, count=len(words))
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if n else np.zeros(0, dtype=np.int64)
        per_doc = np.maximum(lengths - k + 1, 0)
        total = len(ids)
        if total >= k:
            mixed = _mix(ids + _M64(0x9E3779B97F4A7C15))
            span = total - k + 1
            combined = mixed[:span] * _SHINGLE_MULT[0]
            for j in range(1, k):
                combined = combined + mixed[j: span + j] * _SHINGLE_MULT[j]
            combined = _mix(combined)
            first = np.repeat(starts, per_doc)
            within = np.arange(int(per_doc.sum())) - np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
            self.hashes = combined[first + within]
        else:
            self.hashes = np.zeros(0, dtype=np.uint64)
        self.offsets = np.concatenate(([0], np.cumsum(per_doc))).astype(np.int64)
        self.boilerplate = self._drop_boilerplate(texts, boilerplate)
        self.present = self.offsets[1:] > self.offsets[:-1]
        self.empty = not len(self.hashes)
        self.sig = self._signatures(n)

    def _drop_boilerplate(self, texts: Sequence[str], share: float) -> int:
        """Drop shingles found in more than `share` of the distinct texts (and in at least 50).

        A long shared template or instruction would otherwise make every pair of examples look
        near-identical (and every pair a candidate): similarity is measured on what varies.
        Returns how many distinct shingles were dropped.
        """
        first: dict[str, int] = {}
        for i, text in enumerate(texts):
            if text:
                first.setdefault(text, i)
        limit = max(_BOILERPLATE_MIN_TEXTS, share * len(first))
        if len(first) <= limit or not len(self.hashes):
            return 0
        distinct = np.zeros(len(texts), dtype=bool)
        distinct[list(first.values())] = True
        counts_per_doc = self.offsets[1:] - self.offsets[:-1]
        values, counts = np.unique(self.hashes[np.repeat(distinct, counts_per_doc)], return_counts=True)
        common = values[counts > limit]
        if not len(common):
            return 0
        keep = ~np.isin(self.hashes, common)
        kept = np.concatenate(([0], np.cumsum(keep)))
        self.offsets = kept[self.offsets]
        self.hashes = self.hashes[keep]
        return len(common)

    def _signatures(self, n: int) -> np.ndarray | None:
        if self.empty:
            return None
        sig = np.full((NUM_PERM, n), np.iinfo(np.uint32).max, dtype=np.uint32)
        present = self.present
        starts = self.offsets[:-1][present]
        for p in range(NUM_PERM):
            permuted = ((self.hashes * _PERM_A[p] + _PERM_B[p]) >> _M64(32)).astype(np.uint32)
            sig[p, present] = np.minimum.reduceat(permuted, starts)
        return sig

    def shingles(self, i: int) -> np.ndarray:
        return self.hashes[self.offsets[i]: self.offsets[i + 1]]


def _band_keys(sig: np.ndarray, rows: int, bands: int) -> list[np.ndarray]:
    keys = []
    for band in range(bands):
        key = np.zeros(sig.shape[1], dtype=np.uint64)
        for row in sig[band * rows: (band + 1) * rows]:
            key = _mix(key * _M64(0x100000001B3) + row.astype(np.uint64))
        keys.append(key)
    return keys


def candidate_pairs(sig: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column pairs (i < j) sharing at least one LSH band whose estimated Jaccard is near `threshold` or above.

    Returns (i, j, estimate), best estimates first.
    """
    m = sig.shape[1]
    nothing = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    if m < 2:
        return nothing
    rows, bands = _bands_for(threshold)
    keys = _band_keys(sig, rows, bands)
    left, right = [], []
    for band, key in enumerate(keys):
        # Members of a bucket sharing a second band sit next to each other, so a big bucket
        # (templated data) is compared within a window, never all pairs.
        order = np.lexsort((keys[(band + 1) % bands], key))
        sorted_keys = key[order]
        for d in range(1, min(BUCKET_WINDOW, m - 1) + 1):
            same = np.flatnonzero(sorted_keys[d:] == sorted_keys[:-d])
            if not len(same):
                break
            left.append(order[same])
            right.append(order[same + d])
    if not left:
        return nothing
    a, b = np.concatenate(left), np.concatenate(right)
    codes = np.unique(np.minimum(a, b).astype(np.int64) * m + np.maximum(a, b))
    lo, hi = codes // m, codes % m
    estimates = []
    for start in range(0, len(lo), 50_000):
        i, j = lo[start: start + 50_000], hi[start: start + 50_000]
        estimates.append((sig[:, i] == sig[:, j]).mean(axis=0))
    estimate = np.concatenate(estimates)
    margin = 0.15  # ~4 standard errors of a 128-permutation estimate
    keep = np.flatnonzero(estimate >= threshold - margin)
    keep = keep[np.argsort(-estimate[keep], kind="stable")]
    return lo[keep], hi[keep], estimate[keep]


class UnionFind:
    """Clusters of near-identical examples: pairs joined as they are verified."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return [sorted(g) for g in out.values() if len(g) > 1]
