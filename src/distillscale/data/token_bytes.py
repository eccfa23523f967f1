"""What the tokens of a prepared split stand for: the UTF-8 bytes of source text behind each token
(`bytes_behind`, from the tokenizer's character offsets, so a tokenizer without a decoder counts the
same bytes as one with it) and the split's fingerprint (`split_sha256`, the sha256 of its ids)."""

from __future__ import annotations

import hashlib

import numpy as np

BYTES_DTYPE = "uint32"  # the UTF-8 bytes of source text behind each token (`PreparedData.token_bytes`)
BLOCK_TOKENS = 1 << 24  # tokens hashed at a time


def split_sha256(tokens: np.ndarray) -> str:
    """sha256 of a split's token ids as little-endian uint32: the text's fingerprint in a loss's identity."""
    digest = hashlib.sha256()
    for first in range(0, len(tokens), BLOCK_TOKENS):
        digest.update(np.asarray(tokens[first:first + BLOCK_TOKENS]).astype("<u4").tobytes())
    return digest.hexdigest()


def bytes_behind(text: str, offsets: list[tuple[int, int]]) -> np.ndarray:
    """The UTF-8 bytes of `text` behind each of its tokens (`offsets`: each token's character span, as
    the tokenizer gives it): each character counted once, with the first token whose span reaches it;
    characters no span covers (what a pre-tokenizer drops) with the next token, those after the last
    span with the last token. The counts add up to the text's bytes whenever it has a token."""
    if not offsets:
        return np.zeros(0, BYTES_DTYPE)
    encoded = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    starts = np.flatnonzero((encoded & 0xC0) != 0x80)  # the byte where each character starts
    at = np.append(starts, len(encoded))               # ... and the end of the text
    ends = np.maximum.accumulate(np.minimum(np.array([end for _, end in offsets], dtype=np.int64), len(starts)))
    reached = at[ends]
    reached[-1] = len(encoded)
    return np.diff(reached, prepend=0).astype(BYTES_DTYPE)
