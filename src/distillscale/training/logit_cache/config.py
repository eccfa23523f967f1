"""What `distillscale cache-logits` caches: the cache's own settings over a teacher and its corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from distillscale.settings import Settings, count
from distillscale.training.config import CorpusSettings, HardwareSettings, TeacherSettings
from distillscale.units import Quantity


class CacheSettings(Settings):
    section, title = "cache", "Logit cache"

    out: Path = Field(description="cache directory (re-run the same command to resume)")
    targets: Literal["top-k", "sampled"] = Field(
        "top-k", description="what to store per position: the teacher's top-k log-probabilities, or "
                             "--samples ids drawn from its distribution (unbiased, see docs/science.md §9)")
    top_k: int | None = Field(None, ge=1, description="with --targets top-k: predictions kept per position, "
                                                     "e.g. 128")
    samples: int | None = Field(None, ge=1, description="with --targets sampled: ids drawn per position, "
                                                       "e.g. 12")
    temperature: float = Field(1.0, gt=0, description="with --targets sampled: draw from softmax(logits / "
                                                      "temperature); distil at the same --temperature")
    seed: int = Field(0, description="with --targets sampled: seed of the draws")
    tokens: Annotated[int | None, count("tokens", kind=Quantity.TOKENS)] = Field(
        None, description="cache the first TOKENS of the split, e.g. 50M (default: the whole split)")
    seq_len: int = Field(256, ge=2, description="window length; students use the same")
    batch_size: int = Field(32, ge=1, description="windows per teacher forward pass")
    shard_tokens: Annotated[int, count("shard_tokens", kind=Quantity.TOKENS)] = Field(
        1 << 20, description="tokens per shard file (about 300 MB at k = 128 for a 32k vocabulary)")
    eval_tokens: Annotated[int | None, count("eval_tokens", kind=Quantity.TOKENS)] = Field(
        None, description="validation tokens for the teacher's loss: the sample of the split's windows that "
                          "a run with this --eval-tokens evaluates on (default: the whole split)")
    device: Literal["auto", "cpu", "cuda"] = HardwareSettings.model_fields["device"]
    overwrite: bool = Field(False, description="replace a cache of other settings in out")


class CacheConfig(CacheSettings, TeacherSettings, CorpusSettings):
    """What `distillscale cache-logits` caches (see its --help)."""

    teacher: Path = TeacherSettings.model_fields["teacher"]
    split: Literal["teacher", "student"] = Field(
        "student", description="half to cache (default: the half a run teacher did not train on)")

    @model_validator(mode="after")
    def _targets_sized(self) -> "CacheConfig":
        if self.targets == "top-k" and self.top_k is None:
            raise ValueError("missing required setting --top-k (teacher predictions kept per position, "
                             "e.g. 128), or use --targets sampled --samples K")
        if self.targets == "sampled" and self.samples is None:
            raise ValueError("missing required setting --samples (ids drawn per position, e.g. 12) for "
                             "--targets sampled")
        return self
