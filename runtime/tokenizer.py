"""Byte-level BPE tokenizer, trained by the project (numpy + the standard library; no download).

Vocabulary: ids 0..255 are the raw bytes; each merge (a, b) -> 256 + rank adds one token whose bytes are
bytes(a) + bytes(b); the last ids are special tokens (``<|endoftext|>`` separates documents). Any text round-trips
exactly: ``decode(encode(s)) == s`` for every str ``s`` (bytes are UTF-8; special tokens are never produced by
``encode``).

Training (Sennrich et al. 2016, byte-level as in GPT-2): text is first split into pre-tokens by ``PATTERN``
(an optional leading space plus an identifier, a number, a punctuation run, or whitespace; the last space of a
run attaches to the next word, so indentation becomes whole tokens); then the most frequent adjacent pair, counted
over pre-tokens weighted by frequency, is merged repeatedly. Ties go to the smallest (a, b), so training is
deterministic. Pair counts are updated incrementally (only pre-tokens containing the merged pair are touched) and
the best pair comes from a lazy max-heap, so 3,840 merges over ~10 MB of source take about a minute.
Encoding applies merges in rank order inside each pre-token (cached per distinct pre-token).
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from speccascade.errors import InputError
from speccascade.readers import read_json

PATTERN = r" ?[^\W\d]\w*| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+"
EOT = "<|endoftext|>"
FORMAT = "speccascade-byte-bpe"


class ByteBPETokenizer:
    """A trained byte-level BPE: ``merges[r] = (a, b)`` creates token ``256 + r``; specials follow."""

    def __init__(self, merges: list[tuple[int, int]], special_tokens: tuple[str, ...] = (EOT,),
                 pattern: str = PATTERN):
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.pattern = pattern
        self._regex = re.compile(pattern)
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        token_bytes = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            if not (a < len(token_bytes) and b < len(token_bytes)):
                raise InputError(f"tokenizer merge ({a}, {b}) refers to a token not yet defined")
            token_bytes.append(token_bytes[a] + token_bytes[b])
        self.special_tokens = {text: len(token_bytes) + i for i, text in enumerate(special_tokens)}
        self.token_bytes = token_bytes + [t.encode() for t in special_tokens]
        self._cache: dict[str, tuple[int, ...]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    @property
    def eot_id(self) -> int:
        return self.special_tokens[EOT]

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        ids = list(piece.encode("utf-8"))
        while len(ids) > 1:
            ranked = [(self.ranks.get(pair, 1 << 30), i) for i, pair in enumerate(zip(ids, ids[1:]))]
            rank, _ = min(ranked)
            if rank == 1 << 30:
                break
            pair, merged, out, i = self.merges[rank], 256 + rank, [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                    out.append(merged)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        result = tuple(ids)
        if len(self._cache) < 1_000_000:
            self._cache[piece] = result
        return result

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for piece in self._regex.findall(text):
            out.extend(self._encode_piece(piece))
        return out

    def encode_documents(self, texts: Iterable[str]) -> np.ndarray:
        """All texts as one int32 stream, each followed by the end-of-text token."""
        out: list[int] = []
        for text in texts:
            out.extend(self.encode(text))
            out.append(self.eot_id)
        return np.asarray(out, dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        try:
            data = b"".join(self.token_bytes[int(i)] for i in ids)
        except IndexError as err:
            raise InputError(f"token id out of range for a vocabulary of {self.vocab_size}") from err
        return data.decode("utf-8", errors="replace")

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": 1, "pattern": self.pattern, "merges": [list(m) for m in self.merges],
                "special_tokens": list(self.special_tokens)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()))

    @classmethod
    def from_json(cls, data: dict) -> "ByteBPETokenizer":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"not a {FORMAT} tokenizer file (missing or wrong 'format')")
        try:
            return cls([tuple(m) for m in data["merges"]], tuple(data["special_tokens"]), data["pattern"])
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, InputError):
                raise
            raise InputError(f"malformed tokenizer file: {err}") from err

    @classmethod
    def load(cls, path: str | Path) -> "ByteBPETokenizer":
        try:
            data = read_json(path)
        except InputError as err:
            raise InputError(f"cannot read tokenizer {err}") from None
        return cls.from_json(data)


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, special_tokens: tuple[str, ...] = (EOT,),
              pattern: str = PATTERN) -> ByteBPETokenizer:
    """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``texts`` (deterministic)."""
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise InputError(f"vocab_size {vocab_size} is below 256 bytes + {len(special_tokens)} special tokens")
    regex = re.compile(pattern)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(regex.findall(text))
    words = [list(piece.encode("utf-8")) for piece in counts]
    freqs = list(counts.values())
    pair_count: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for index, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_count[pair] += freq
            where[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges and heap:
        negative, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negative or negative == 0:
            continue  # stale heap entry
        new_id = 256 + len(merges)
        merges.append(pair)
        touched: dict[tuple[int, int], None] = {}
        for index in sorted(where.pop(pair, ())):
            word, freq = words[index], freqs[index]
            for old in zip(word, word[1:]):
                pair_count[old] -= freq
                touched[old] = None
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            words[index] = merged
            for new in zip(merged, merged[1:]):
                pair_count[new] += freq
                where[new].add(index)
                touched[new] = None
        pair_count.pop(pair, None)
        for changed in touched:
            count = pair_count.get(changed, 0)
            if count > 0:
                heapq.heappush(heap, (-count, changed))
            else:
                pair_count.pop(changed, None)
    return ByteBPETokenizer(merges, special_tokens, pattern)
