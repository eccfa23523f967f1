"""The GPU ladder as the bench scripts that plan or train it read it: its sections as `demo --scale
gpu` resolves them here, and how many of its runs share one GPU."""

from __future__ import annotations

GPU_RUNS_PER_GPU = 4   # bench/gpu/gpu_step.py: 4 runs sharing an H100 gave 1.60x one run's tokens/s, 2 gave 1.37x


def gpu_ladder_sections() -> tuple[dict, dict]:
    """The GPU ladder's sections as `demo --scale gpu` resolves them on the GPUs here (its token window),
    and its [model] without a per-size rate (no lr_law, no width rule: the caller sets the rates)."""
    from distillscale.report.demo import builtin_sweep
    from distillscale.sweeps.placement import visible_gpus
    from distillscale.sweeps.spec_sections import LR_RULE_KEYS

    sections = builtin_sweep(scale="gpu", gpus=max(1, len(visible_gpus()))).sections
    return sections, {key: value for key, value in sections["model"].items() if key not in LR_RULE_KEYS}
