"""What `distillscale prune` does: its settings over a teacher and its corpus (torch-free, for --help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from distillscale.settings import Settings, count, quantity
from distillscale.training.config import CorpusSettings, HardwareSettings, TeacherSettings
from distillscale.units import Quantity

CALIBRATION_WINDOW = 256  # the default calibration window, for a teacher that reads at least this many tokens
# Teacher passes per calibration token, in forward passes: gradient importance runs the forward and a
# backward that computes activation gradients only (the weights are frozen, so no weight gradients:
# one matmul per forward matmul, not two); activation importance runs the forward alone.
IMPORTANCE_PASSES = {"gradient": 2, "activation": 1}


def calibration_window(seq_len: int | None, teacher_context: int) -> int:
    """The calibration window: `seq_len` when given, else 256 or the teacher's context if shorter."""
    return min(CALIBRATION_WINDOW, teacher_context) if seq_len is None else seq_len


def calibration_input_tokens(calibration_tokens: int, window: int) -> int:
    """Tokens the importance pass reads: whole windows, at least one."""
    return max(1, calibration_tokens // window) * window


def importance_flops(importance: str, teacher_forward_flops_per_token: int, tokens: int) -> int:
    """FLOPs of the importance pass over `tokens` calibration tokens (prune.json's `flops`, the dry run's)."""
    return IMPORTANCE_PASSES[importance] * teacher_forward_flops_per_token * tokens


class PruneSettings(Settings):
    section, title = "prune", "Pruning"

    out: Path = Field(description="directory to create for the pruned model (must not exist)")
    n_layers: int | None = Field(None, ge=1, description="blocks to keep (default: the teacher's)")
    d_model: int | None = Field(None, ge=1, description="hidden channels to keep (default: the teacher's)")
    n_heads: int | None = Field(None, ge=1, description="query heads per block to keep, whole key/value "
                                                        "groups (default: the teacher's)")
    d_ff: int | None = Field(None, ge=1, description="FFN neurons per block to keep (default: the teacher's)")
    params: Annotated[float | None, quantity("params", kind=None)] = Field(
        None, description="instead of a shape: non-embedding parameters to keep, e.g. 2M (uniform width "
                          "pruning: the same share of heads, channels and neurons, depth kept)")
    importance: Literal["gradient", "activation"] = Field(
        "gradient", description="gradient: |dL/dmask| of heads, neurons and channels (MiniMA); activation: "
                                "activation magnitudes (Minitron)")
    depth_by: Literal["importance", "last"] = Field(
        "importance", description="importance: drop the blocks that change the residual stream least "
                                  "(1 - cos(in, out)); last: drop the last blocks")
    calibration_tokens: Annotated[int, count("calibration_tokens", kind=Quantity.TOKENS)] = Field(
        16384, description="tokens of the corpus the importance is measured on (windows of --seq-len)")
    seq_len: int | None = Field(None, ge=2, description=f"calibration window length (default: {CALIBRATION_WINDOW}, "
                                                        f"or the teacher's context if shorter)")
    batch_size: int = Field(8, ge=1, description="windows per calibration batch")
    seed: int = Field(0, ge=0, description="which windows are drawn")
    device: Literal["auto", "cpu", "cuda"] = HardwareSettings.model_fields["device"]


class PruneConfig(PruneSettings, TeacherSettings, CorpusSettings):
    """What `distillscale prune` does (see its --help)."""

    teacher: Path = TeacherSettings.model_fields["teacher"]
    split: Literal["teacher", "student"] = Field(
        "student", description="half to calibrate on (default: the half a run teacher did not train on)")

    @model_validator(mode="after")
    def _shape_or_params(self) -> "PruneConfig":
        shape = [key for key in ("n_layers", "d_model", "n_heads", "d_ff") if getattr(self, key) is not None]
        if self.params is not None and shape:
            raise ValueError(f"give a shape (--{shape[0].replace('_', '-')}) or --params, not both")
        if self.params is None and not shape:
            raise ValueError("give the pruned shape (--n-layers, --d-model, --n-heads, --d-ff) or --params")
        return self
