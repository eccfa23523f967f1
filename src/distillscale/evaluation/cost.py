"""What scoring a model will cost, known before it is loaded: its memory (float32 weights and one
window's logits and activations) against what the device has, and its time at the device's matmul
rate measured now; a model too large for the machine is refused in one line.

    estimate = estimate_cost(size, tokens=1_000_000, seq_len=2048, vocab_size=32000, device=torch.device("cpu"))
    estimate.describe()        # "about 1,234 MB of 16.0 GB available on cpu and about 3 minutes (...)"
    estimate.check("models/qwen")
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from distillscale.errors import UserError

if TYPE_CHECKING:
    import torch

    from distillscale.model.sizes import ModelSize

MEMORY_HEADROOM = 0.9        # refuse a model whose estimate passes this share of the memory available


@dataclass(frozen=True)
class CostEstimate:
    """What scoring will take: memory (float32 weights and one window's logits and activations) against
    what the device has, and time at the device's matmul rate measured now."""

    memory_bytes: float
    available_bytes: float | None
    flops: float
    flops_per_second: float
    device: str

    @property
    def seconds(self) -> float:
        return self.flops / self.flops_per_second

    def describe_memory(self) -> str:
        available = "" if self.available_bytes is None else f" of {_size(self.available_bytes)} available"
        return f"about {_size(self.memory_bytes)}{available} on {self.device}"

    def describe(self) -> str:
        return (f"{self.describe_memory()} and about {_duration(self.seconds)} "
                f"({self.flops:.3g} FLOPs at {self.flops_per_second / 1e9:,.0f} GFLOP/s measured now)")

    @property
    def fits(self) -> bool:
        """Whether the memory estimate is within MEMORY_HEADROOM of what the device has (or that is not known)."""
        return self.available_bytes is None or self.memory_bytes <= MEMORY_HEADROOM * self.available_bytes

    def check(self, model: str) -> None:
        if not self.fits:
            raise UserError(f"model {model} needs {self.describe()}: too large for this machine; measure it on one with "
                            "more memory (a GPU: --device cuda), or serve it and give its URL")


def estimate_cost(size: ModelSize, tokens: int, seq_len: int, vocab_size: int, device: torch.device) -> CostEstimate:
    """The cost of scoring `tokens` tokens in windows of `seq_len` with the model of `size` on `device`."""
    activations = 4.0 * seq_len * (vocab_size + 16 * _width(size)) * 2
    return CostEstimate(memory_bytes=4.0 * size.total_params + activations, available_bytes=available_memory(device),
                        flops=float(size.forward_flops_per_token(seq_len)) * tokens,
                        flops_per_second=_matmul_rate(device), device=str(device))


def _width(size: ModelSize) -> int:
    return int(getattr(size.count, "d_model", 0) or math.sqrt(max(size.non_embedding_params, 1) / 12))


def available_memory(device: torch.device) -> float | None:
    """Bytes free on `device` now: a GPU's, or the machine's available memory (None: not known)."""
    import torch

    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _matmul_rate(device: torch.device) -> float:
    """FLOP/s of a float32 matmul on `device` now (a few milliseconds on a CPU)."""
    import torch

    a = torch.randn(256, 1024, device=device)
    b = torch.randn(1024, 1024, device=device)
    torch.matmul(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(4):
        torch.matmul(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 4 * 2.0 * 256 * 1024 * 1024 / max(time.perf_counter() - start, 1e-9)


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.0f} MB" if n_bytes < 1e9 else f"{n_bytes / 1e9:,.1f} GB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:,.1f} hours"
