"""Tokenizers: train a byte-level BPE on a corpus, or load a `tokenizer.json` / Hugging Face
tokenizer directory; find its end-of-text token. Its identity (the parts of its own serialisation that
decide its ids): `data.loss_identity.tokenizer_identity`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from distillscale.data.sources import first_line
from distillscale.errors import UserError

END_OF_TEXT = "<|endoftext|>"
# Names end-of-text tokens go by in common tokenizers, tried in order when a loaded tokenizer does not
# declare one (GPT-2/Pythia, Llama-2/T5, Llama-3, Gemma).
END_OF_TEXT_CANDIDATES = (END_OF_TEXT, "</s>", "<|end_of_text|>", "<eos>")


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A GPT-2 style byte-level BPE with `vocab_size` entries (fewer if the corpus runs out of
    merges), `END_OF_TEXT` as its only special token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | Path) -> tuple[Tokenizer, str]:
    """Load a tokenizer and name its end-of-text token: `path` is a tokenizer.json, a directory
    holding one, or a Hugging Face tokenizer directory (read with AutoTokenizer, no remote code)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"tokenizer {path} does not exist: give a tokenizer.json or a tokenizer directory")
    declared_eos = None
    if path.is_dir() and (path / "tokenizer_config.json").is_file():
        tokenizer, declared_eos = _load_hf_tokenizer(path)
    elif path.is_dir() and (path / "tokenizer.json").is_file():
        tokenizer = _load_tokenizer_json(path / "tokenizer.json")
    elif path.is_dir():
        raise UserError(f"tokenizer directory {path} has neither tokenizer.json nor tokenizer_config.json")
    else:
        tokenizer = _load_tokenizer_json(path)
    return tokenizer, end_of_text_token(tokenizer, declared_eos, str(path))


def end_of_text_token(tokenizer: Tokenizer, declared: str | None = None, name: str = "tokenizer") -> str:
    """The token that separates documents: the declared eos token, else a conventional name."""
    for candidate in (declared, *END_OF_TEXT_CANDIDATES):
        if candidate is not None and tokenizer.token_to_id(candidate) is not None:
            return candidate
    raise UserError(f"{name} has no end-of-text token (looked for {', '.join(END_OF_TEXT_CANDIDATES)}): "
                    "add one, or leave out --tokenizer to train a tokenizer on the corpus")


def tokenizer_vocab_size(tokenizer: Tokenizer) -> int:
    """One more than the largest token id: the embedding rows a model needs (ids may have gaps)."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1


def tokenizer_hash(tokenizer: Tokenizer) -> str:
    """sha256 of a tokenizer's whole JSON serialisation (its decoder, truncation and padding too): what
    a prepared corpus's fingerprint hashes. Whether two tokenizers are the same tokenizer is
    `data.loss_identity.tokenizer_identity`'s question."""
    return hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()


def _load_tokenizer_json(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for malformed files
        raise UserError(f"cannot read tokenizer {path}: {first_line(exc)}") from None


def _load_hf_tokenizer(directory: Path) -> tuple[Tokenizer, str | None]:
    from transformers import AutoTokenizer

    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False,
                                                     local_files_only=True)
    except Exception as exc:  # transformers raises many types for unusable directories
        raise UserError(f"cannot load the tokenizer in {directory}: {first_line(exc)}") from None
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(f"the tokenizer in {directory} has no fast (tokenizers) version: "
                        "save it with a tokenizer.json")
    return backend, hf_tokenizer.eos_token
