"""What corpus to read, how to tokenise it and how to split it: `DataConfig`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from distillscale.checks import checked
from distillscale.units import parse_bytes

CACHE_ENV = "DISTILLSCALE_CACHE"
MIN_VOCAB_SIZE = 257  # the 256 byte-level symbols plus the end-of-text token
# The byte-level BPE's size when a corpus is prepared without a tokenizer or a size.
DEFAULT_VOCAB_SIZE = 8192


# A run's settings (`train`'s and `distill`'s names) that say which data it reads, and the DataConfig
# field each one sets.
RUN_DATA_SETTINGS = {"data": "path", "text_field": "text_field", "tokenizer": "tokenizer",
                     "vocab_size": "vocab_size", "val_fraction": "val_fraction", "max_bytes": "max_bytes"}
# What cuts a corpus into its splits besides the corpus itself (its files, its text field).
SPLIT_SETTINGS = ("max_bytes", "val_fraction", "seed")
# The settings of a preparation that decide its tokens and split, as the flags that give them.
SETTING_FLAGS = {"max_bytes": "--max-bytes", "val_fraction": "--val-fraction", "seed": "--seed",
                 "vocab_size": "--vocab-size", "text_field": "--text-field"}


def shown_setting(value: Any) -> str:
    """A data setting as a user writes it on the command line (digits without separators, which the flag
    would refuse): no limit for a max_bytes of None, not Python's None."""
    return "no limit" if value is None else str(value)


def _byte_count(value):
    """--max-bytes as written (`20MB`): a one-line error about the setting, named as its caller names it."""
    from distillscale.errors import ParameterError, UserError

    try:
        return int(parse_bytes(value, ParameterError.NAME)) if isinstance(value, str) else value
    except UserError as exc:
        raise ParameterError.about("max_bytes", str(exc)) from None


class DataConfig(BaseModel):
    """A corpus and how to turn it into token splits.

    `seed` only salts the document split; the tokenizer is trained on every document, so runs that
    differ only in their data seed still share a tokenizer and report losses in the same units.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(
        None, min_length=1,
        description="directory, file or glob of text/.jsonl/.parquet files, or a datasets save_to_disk "
                    "directory (default: this interpreter's standard library sources)")
    text_field: str = Field("text", min_length=1,
                            description="field holding the text in .jsonl, .parquet and datasets")
    vocab_size: int | None = Field(
        None, ge=MIN_VOCAB_SIZE, le=2**32,
        description="size of the byte-level BPE to train (default: 8192); must be left out or match "
                    "when a tokenizer is given")
    tokenizer: str | None = Field(
        None, min_length=1,
        description="tokenizer.json, or a directory holding one or a Hugging Face tokenizer "
                    "(default: train a byte-level BPE on the corpus)")
    val_fraction: float = Field(0.05, gt=0.0, lt=1.0,
                                description="fraction of the documents held out for validation (each "
                                            "document whole; one over 64 KiB in segments)")
    max_bytes: Annotated[int | None, BeforeValidator(_byte_count)] = Field(
        None, gt=0, description="read at most this many bytes of text, e.g. 20MB")
    seed: int = Field(0, ge=0, description="salt of the document split")
    route_field: str | None = Field(
        None, min_length=1, description="a field of the .jsonl/.parquet rows whose value is kept for every "
                                        "token of the row's document (the route of a mixture of teachers)")
    cache_dir: str | None = Field(
        None, min_length=1,
        description=f"where prepared corpora live (default: ${CACHE_ENV} or ~/.cache/distillscale)")

    @field_validator("path", "tokenizer", "cache_dir", mode="before")
    @classmethod
    def _path_to_text(cls, value):
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @classmethod
    @checked
    def of_run_settings(cls, settings: Mapping[str, Any]) -> "DataConfig":
        """The data a run's settings name (`RUN_DATA_SETTINGS`; those unset or None take the defaults)."""
        return cls(**{field: settings[key] for key, field in RUN_DATA_SETTINGS.items()
                      if settings.get(key) is not None})

    def resolved_cache_dir(self) -> Path:
        return cache_directory(self.cache_dir)


def cache_directory(given: str | os.PathLike | None = None) -> Path:
    """distillscale's cache: `given`, else $DISTILLSCALE_CACHE, else ~/.cache/distillscale."""
    if given is not None:
        return Path(given).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "distillscale"
