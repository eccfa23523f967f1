"""Fixtures of the training tests: a run killed once its checkpoint is on disk, and the rounding
tolerances of data-parallel training."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def kill_after_checkpoint():
    """kill_after_checkpoint(out, *args) -> step: start `distillscale ARGS` (a run writing to `out`)
    in a subprocess, SIGKILL it once a checkpoint is on disk, and return the checkpoint's step."""
    import signal
    import subprocess
    import sys
    import time

    import torch

    def run(out: Path, *args: str) -> int:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen([sys.executable, "-m", "distillscale.cli", *map(str, args)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        checkpoint = out / "state" / "checkpoint.pt"
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        stderr = process.communicate()[1].decode()
        assert process.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{stderr}"
        assert not (out / "result.json").exists()
        return torch.load(checkpoint, weights_only=True)["progress"]["step"]

    return run


@pytest.fixture(scope="session")
def rounding_drift():
    """Tolerances for two trainings of the same model on the same batches that sum in another order
    (2 DDP/FSDP ranks' gradients reduced, against micro-batches accumulated in one process): their
    rounding differences grow over the AdamW steps by an amount that depends on the CPU's kernels.
    Measured after the 20 steps of test_ddp.py and test_fsdp.py (greatest over the steps):
    loss 1.6e-6, grad norm 1.2e-5 (relative) with this AMD EPYC's AVX2 kernels, 1 or 2 threads
    alike; 5.4e-6 and 4.1e-5 with ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE (other kernels,
    as on another CPU; another CPU gave 3x ours in issue 32). The bounds are about 10x the largest:
    a real difference (a batch split wrongly, gradients summed instead of averaged) is 1e-3 or more."""
    from types import SimpleNamespace

    return SimpleNamespace(loss=5e-5, grad_norm_rel=5e-4)
