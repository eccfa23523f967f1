"""The compact encoding of a teacher's top-k predictions: one fixed-size record per token.

Every record has the same size, so a shard is a plain memory-mapped array of records and any
position can be read without reading the others. A record holds:

- the k token ids, sorted, in Elias-Fano form (Elias 1974, Fano 1971). With l = floor(log2(V / k))
  each id is split into its low l bits, stored packed (k * l bits), and its high part h_i, stored
  in unary as the set bits i + h_i of a vector of k + ((V - 1) >> l) + 1 bits. That is at most
  2 + log2(V / k) bits per id: 160 bytes for k = 128 and V = 32768, where uint16 ids take 256.
- their log-probabilities relative to the most likely token, r = log p - max log p <= 0, as uint8
  codes c = round(-r / step), with a float32 `step` per token that spreads the 256 codes over
  that token's range (-min r). Decoding gives r within step / 2;
- the log of their total probability (float32), which the relative codes lose: the tail mass
  1 - sum(top-k) that the loss keeps as one category (caches made before had no such field).

Bytes per token: ceil((k + ((V - 1) >> l) + 1) / 8) + ceil(k l / 8) + k + 4 + 4; 296 at k = 128 and
V = 32768 (or V = 32168).

Quantisation error (documented bound, held by the tests): with h = step / (2 tau), every
renormalised teacher log-probability log p_T^k is within 2h of the exact one, so each probability
is within a factor exp(+-2h), and one token's forward-KL term tau^2 KL(p_T^k || p_S) is within

    tau^2 (2h + (exp(2h) - 1) * sum_a p_T^k(a) |log p_T^k(a) - log p_S(a)|)

of its value with the exact top-k probabilities: KL(p'||q) - KL(p||q) = sum (p' - p)(log p -
log q) + sum p' (log p' - log p). The errors of rounding are unbiased, so the error of a mean
over many tokens is far below this worst case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

CODE_LEVELS = 255  # uint8 codes 0..255
NAME = "elias-fano-ids+uint8-relative-logprob"  # caches made before the top-k mass was stored
MASS_NAME = "elias-fano-ids+uint8-relative-logprob+float32-log-mass"
SAMPLED_NAME = "elias-fano-sampled-ids+float32-entropy"


@dataclass(frozen=True)
class EliasFanoIds:
    """`count` ids of a `vocab_size` vocabulary per record, sorted, in Elias-Fano form; repeated ids
    (a multiset, as samples are) code as well as distinct ones: the set bits i + h_i stay distinct."""

    vocab_size: int
    count: int

    @property
    def low_bits(self) -> int:
        """l = floor(log2(V / k)): bits of each id stored verbatim."""
        return max(0, math.floor(math.log2(self.vocab_size / self.count)))

    @property
    def high_bits(self) -> int:
        """Length of the unary bit vector of the high parts."""
        return self.count + ((self.vocab_size - 1) >> self.low_bits) + 1

    @property
    def fields(self) -> list[tuple]:
        return [("ids_high", np.uint8, (_bytes_for(self.high_bits),)),
                ("ids_low", np.uint8, (_bytes_for(self.count * self.low_bits),))]

    def encode(self, records: np.ndarray, ids: np.ndarray) -> None:
        """Write ids [n, count] (ascending per row) into `records`."""
        n, k, l = len(ids), self.count, self.low_bits
        unary = np.zeros((n, self.high_bits), dtype=np.uint8)
        unary[np.arange(n)[:, None], (ids >> l) + np.arange(k)] = 1
        records["ids_high"] = np.packbits(unary, axis=1)
        if l:  # a bit stream of k l-bit numbers, most significant bit first
            low = (ids & ((1 << l) - 1))[:, :, None] >> np.arange(l - 1, -1, -1) & 1
            records["ids_low"] = np.packbits(low.astype(np.uint8).reshape(n, k * l), axis=1)

    def decode(self, records: np.ndarray) -> np.ndarray:
        """ids [n, count] int64, ascending per row."""
        n, k, l = len(records), self.count, self.low_bits
        unary = np.unpackbits(records["ids_high"], axis=1, count=self.high_bits).view(bool)
        set_bits = np.flatnonzero(unary)  # row-major, so row by row in ascending order
        if len(set_bits) != n * k:
            raise ValueError("a record's id bits do not hold its ids: the data is corrupted")
        positions = set_bits.reshape(n, k) - (np.arange(n) * self.high_bits)[:, None]
        ids = (positions - np.arange(k)) << l
        if l:
            ids |= _read_bit_stream(records["ids_low"], k, l)
        return ids

    def decode_tensors(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """`decode` in torch on the device the bytes are on, from the records' ids_high [n, bytes] and
        ids_low [n, bytes] (uint8): ids [n, count] int64, the same numbers. Static shapes, no wait for
        the device: the i-th id's high part is the place of the i-th set bit (a batched search of the
        bits' running count) minus i. The shards' checksums were verified when the cache was opened."""
        n, k, l = high.shape[0], self.count, self.low_bits
        unary = _bits(high)[:, :self.high_bits].to(torch.int32).cumsum(1)
        wanted = torch.arange(1, k + 1, device=high.device, dtype=unary.dtype).expand(n, k).contiguous()
        ids = (torch.searchsorted(unary, wanted) - torch.arange(k, device=high.device)) << l
        if l:
            bits = _bits(low)[:, :k * l].reshape(n, k, l).to(torch.int64)
            ids |= (bits << torch.arange(l - 1, -1, -1, device=low.device)).sum(-1)
        return ids


@dataclass(frozen=True)
class TopKEncoding:
    """Encodes the top `top_k` (ids, log-probabilities) of a `vocab_size` vocabulary per token, and
    (`with_mass`, the default) the log of their total probability, float32, which
    the relative codes lose: with it the tail mass 1 - sum(top-k) is known to the loss. Caches made
    before have no mass (`with_mass=False`); see `LogitCache.teacher_predictions`."""

    vocab_size: int
    top_k: int
    with_mass: bool = True
    targets = "top-k"

    def __post_init__(self):
        if not 1 <= self.top_k <= self.vocab_size:
            raise ValueError(f"top_k must be in 1..vocab_size ({self.vocab_size}), got {self.top_k}")

    @property
    def ids(self) -> EliasFanoIds:
        return EliasFanoIds(self.vocab_size, self.top_k)

    @property
    def record_dtype(self) -> np.dtype:
        mass = [("log_mass", "<f4")] if self.with_mass else []
        return np.dtype([*self.ids.fields, ("codes", np.uint8, (self.top_k,)), ("step", "<f4"), *mass])

    @property
    def bytes_per_token(self) -> int:
        return self.record_dtype.itemsize

    def describe(self) -> dict:
        """What cache.json records about the encoding."""
        return {"name": MASS_NAME if self.with_mass else NAME, "vocab_size": self.vocab_size, "top_k": self.top_k,
                "low_bits": self.ids.low_bits, "high_bits": self.ids.high_bits,
                "record": {name: self.record_dtype.fields[name][0].itemsize
                           for name in self.record_dtype.names},
                "bytes_per_token": self.bytes_per_token}

    def encode(self, ids: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
        """Records [n] for ids [n, k] (distinct per row) and their log-probabilities [n, k],
        normalised over the whole vocabulary when `with_mass` (their logsumexp is stored)."""
        n, k = ids.shape
        if k != self.top_k or log_probs.shape != ids.shape:
            raise ValueError(f"expected ids and log-probabilities [n, {self.top_k}], got "
                             f"{ids.shape} and {log_probs.shape}")
        order = np.argsort(ids, axis=1)
        ids = np.take_along_axis(ids.astype(np.int64), order, axis=1)
        relative = np.take_along_axis(log_probs.astype(np.float32), order, axis=1)
        relative -= relative.max(axis=1, keepdims=True)
        step = (-relative.min(axis=1) / CODE_LEVELS).astype(np.float32)
        safe_step = np.where(step > 0, step, np.float32(1))  # all k equally likely: every code 0
        records = np.zeros(n, dtype=self.record_dtype)
        records["step"] = step
        if self.with_mass:
            records["log_mass"] = np.minimum(_logsumexp(log_probs.astype(np.float64)), 0.0)
        records["codes"] = np.rint(-relative / safe_step[:, None]).clip(0, CODE_LEVELS)
        self.ids.encode(records, ids)
        return records

    def decode(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """(ids [n, k] int64 ascending, relative log-probabilities [n, k] float32, step [n], the log
        top-k mass [n] float32 or None without `with_mass`)."""
        records = np.asarray(records).reshape(-1)
        ids = self.ids.decode(records)
        relative = records["codes"].astype(np.float32) * -records["step"][:, None]
        return ids, relative, records["step"].copy(), records["log_mass"].copy() if self.with_mass else None

    def decode_tensors(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`decode` in torch on the device `raw` is on, from the records' bytes [n, bytes_per_token]
        (uint8): (ids [n, k] int64, relative log-probabilities [n, k] float32, the log top-k mass [n] or
        None). The ids and the relative log-probabilities are `decode`'s exactly (codes x -step is one
        correctly rounded float32 product either way)."""
        fields = _fields(raw, self.record_dtype)
        ids = self.ids.decode_tensors(fields["ids_high"], fields["ids_low"])
        relative = fields["codes"].to(torch.float32) * -_float32(fields["step"]).unsqueeze(-1)
        return ids, relative, _float32(fields["log_mass"]) if self.with_mass else None


@dataclass(frozen=True)
class SampledEncoding:
    """`samples` token ids drawn (with replacement) from the teacher's softmax(logits / tau) per
    token, and that distribution's entropy H_T (float32): what the unbiased estimator needs (see
    `logit_cache.objective`). The ids are a sorted multiset in Elias-Fano form: the counts are
    what the estimator reads, the order of the draws is not. Nothing is quantised.

    Bytes per token: ceil((K + ((V - 1) >> l) + 1) / 8) + ceil(K l / 8) + 4, l = floor(log2(V / K));
    16 at K = 12 and V = 512, 25 at K = 12 and V = 32768 (uint16 ids and a float32 would take 28).
    """

    vocab_size: int
    samples: int
    targets = "sampled"

    def __post_init__(self):
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")

    @property
    def ids(self) -> EliasFanoIds:
        return EliasFanoIds(self.vocab_size, self.samples)

    @property
    def record_dtype(self) -> np.dtype:
        return np.dtype([*self.ids.fields, ("entropy", "<f4")])

    @property
    def bytes_per_token(self) -> int:
        return self.record_dtype.itemsize

    def describe(self) -> dict:
        return {"name": SAMPLED_NAME, "vocab_size": self.vocab_size, "samples": self.samples,
                "low_bits": self.ids.low_bits, "high_bits": self.ids.high_bits,
                "record": {name: self.record_dtype.fields[name][0].itemsize
                           for name in self.record_dtype.names},
                "bytes_per_token": self.bytes_per_token}

    def encode(self, ids: np.ndarray, entropy: np.ndarray) -> np.ndarray:
        """Records [n] for sampled ids [n, K] (any order, repeats allowed) and entropies [n]."""
        if ids.ndim != 2 or ids.shape[1] != self.samples or entropy.shape != ids.shape[:1]:
            raise ValueError(f"expected ids [n, {self.samples}] and entropies [n], got {ids.shape} and "
                             f"{entropy.shape}")
        records = np.zeros(len(ids), dtype=self.record_dtype)
        records["entropy"] = entropy
        self.ids.encode(records, np.sort(ids.astype(np.int64), axis=1))
        return records

    def decode(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sampled ids [n, K] int64 ascending, teacher entropies [n] float32)."""
        records = np.asarray(records).reshape(-1)
        return self.ids.decode(records), records["entropy"].copy()

    def decode_tensors(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`decode` in torch from the records' bytes [n, bytes_per_token] (uint8), on their device."""
        fields = _fields(raw, self.record_dtype)
        return self.ids.decode_tensors(fields["ids_high"], fields["ids_low"]), _float32(fields["entropy"])


Encoding = TopKEncoding | SampledEncoding


def encoding_from(description: dict) -> Encoding:
    """The encoding that cache.json's `encoding` describes."""
    if description.get("name") == SAMPLED_NAME:
        return SampledEncoding(description["vocab_size"], description["samples"])
    return TopKEncoding(description["vocab_size"], description["top_k"], with_mass=description.get("name") == MASS_NAME)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1)
    return top + np.log(np.exp(x - top[:, None]).sum(axis=1))


def _read_bit_stream(data: np.ndarray, count: int, width: int) -> np.ndarray:
    """The `count` numbers of `width` bits packed most significant bit first in each row of
    `data` [n, bytes]: by whole groups of bytes that hold whole numbers where such a group fits a
    machine word (`_read_bit_groups`, ~3x faster), else each from the few bytes that it spans (at
    most ceil((width + 7) / 8)). Both read the same numbers exactly."""
    if width * 8 // math.gcd(width, 8) <= 64:
        return _read_bit_groups(data, count, width)
    return _read_bit_spans(data, count, width)


def _read_bit_groups(data: np.ndarray, count: int, width: int) -> np.ndarray:
    """`_read_bit_stream` by groups: lcm(width, 8) bits are a whole number of bytes holding a whole
    number of values (6-bit ids: 3 bytes hold 4), read as one big-endian word and cut by shifts."""
    group_bits = width * 8 // math.gcd(width, 8)
    group_bytes, per_group = group_bits // 8, group_bits // width
    groups, n = -(-count // per_group), len(data)
    if data.shape[1] < groups * group_bytes:  # the stream's last group, padded with zero bits
        data = np.pad(data, ((0, 0), (0, groups * group_bytes - data.shape[1])))
    word = np.uint32 if group_bits <= 32 else np.uint64
    grouped = data[:, :groups * group_bytes].reshape(n, groups, group_bytes)
    words = grouped[..., 0].astype(word)
    for index in range(1, group_bytes):
        words = words << word(8) | grouped[..., index]
    out = np.empty((n, groups, per_group), dtype=np.int64)
    mask = word((1 << width) - 1)
    for index in range(per_group):
        out[..., index] = words >> word(group_bits - width * (index + 1)) & mask
    return out.reshape(n, groups * per_group)[:, :count]


def _read_bit_spans(data: np.ndarray, count: int, width: int) -> np.ndarray:
    """`_read_bit_stream` value by value: each read from the few bytes that it spans."""
    span = _bytes_for(width + 7)
    word = np.uint32 if span <= 4 else np.uint64
    start = np.arange(count) * width
    padded = np.pad(data, ((0, 0), (0, span - 1))).astype(word)
    window = padded[:, start // 8]
    for offset in range(1, span):
        window = window << word(8) | padded[:, start // 8 + offset]
    shift = (8 * span - width - start % 8).astype(word)
    return (window >> shift & word((1 << width) - 1)).astype(np.int64)


def _bits(data: torch.Tensor) -> torch.Tensor:
    """The bits of uint8 rows [n, bytes], most significant first: [n, 8 bytes] uint8."""
    shifts = torch.arange(7, -1, -1, device=data.device, dtype=torch.uint8)
    return (data.unsqueeze(-1) >> shifts & 1).reshape(data.shape[0], -1)


def _fields(raw: torch.Tensor, dtype: np.dtype) -> dict[str, torch.Tensor]:
    """A record array's fields as byte columns of its raw bytes [n, itemsize] (uint8)."""
    if raw.dtype != torch.uint8 or raw.shape[-1] != dtype.itemsize:
        raise ValueError(f"expected record bytes [n, {dtype.itemsize}] uint8, got {tuple(raw.shape)} {raw.dtype}")
    raw = raw.reshape(-1, dtype.itemsize)
    return {name: raw[:, offset:offset + field.itemsize] for name, (field, offset, *_) in dtype.fields.items()}


def _float32(column: torch.Tensor) -> torch.Tensor:
    """A little-endian float32 field's 4 byte columns [n, 4] as numbers [n]."""
    return column.contiguous().view(torch.float32).reshape(-1)


def _bytes_for(bits: int) -> int:
    return (bits + 7) // 8
