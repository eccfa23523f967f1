"""What a WSD cooldown fork costs beyond its training steps, run as a process of its own (one
`distillscale train` per fork, as local sweeps ran them) and in a sweep's long-lived worker process
(sweeps/executors.py, as they run now). One parent of the micro family with 20 tiny forks; each fork
is run both ways, alternately (side by side, so both see the same load), through the local executor.

Overhead per fork = the wall time from submitting the fork to its end, minus its training steps
(result.json's train_seconds). The worker's start-up is charged to its first fork. Prints the mean and
median overhead of each way and their ratio, and checks that both ways give the same losses.

Usage: python bench/speed/fork_overhead.py [--forks 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.micro import FAMILY

from distillscale.settings import to_toml
from distillscale.sweeps.executors import Job, LocalExecutor
from distillscale.training.config import TrainConfig
from distillscale.training.recipe import train
from distillscale.training.run_dir import RunDirectory

SETTINGS = {**FAMILY, "n_layers": 1, "schedule": "wsd", "warmup_steps": 2, "eval_tokens": 4096}
FIRST_FORK_STEPS = 10  # forks of 10, 11, ... steps: cooldowns of 2 to 6 steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forks", type=int, default=20)
    forks = parser.parse_args().forks
    torch.set_num_threads(1)
    tokens_per_step = SETTINGS["batch_size"] * SETTINGS["seq_len"]
    budgets = [(FIRST_FORK_STEPS + i) * tokens_per_step for i in range(forks)]
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        parent = root / "parent"
        train(TrainConfig(out=parent, tokens=budgets[-1] + 10 * tokens_per_step, fork_tokens=budgets, **SETTINGS),
              progress=False)
        ways = {"separate": LocalExecutor(1, reuse_processes=False), "worker": LocalExecutor(1)}
        overhead: dict[str, list[float]] = {way: [] for way in ways}
        losses: dict[str, list[float]] = {way: [] for way in ways}
        try:
            for tokens in budgets:
                for way, executor in ways.items():
                    out = root / way / str(tokens)
                    config = root / way / f"{tokens}.toml"
                    config.parent.mkdir(parents=True, exist_ok=True)
                    config.write_text(to_toml(TrainConfig(out=out, tokens=tokens, fork_from=parent, **SETTINGS)))
                    start = time.perf_counter()
                    status = executor.submit(Job(args=("train", "--config", str(config)),
                                                 log_path=root / way / f"{tokens}.log", env=env)).result()
                    wall = time.perf_counter() - start
                    if status != 0:
                        raise SystemExit(f"{way} fork {tokens} failed: {(root / way / f'{tokens}.log').read_text()}")
                    result = RunDirectory(out).read_result()
                    overhead[way].append(wall - result.train_seconds)
                    losses[way].append(result.val_loss)
        finally:
            for executor in ways.values():
                executor.shutdown()
    same = losses["separate"] == losses["worker"]
    for way, values in overhead.items():
        print(f"{way:>8}: overhead per fork mean {statistics.mean(values):.2f} s, median "
              f"{statistics.median(values):.2f} s, first {values[0]:.2f} s ({forks} forks)")
    ratio = statistics.mean(overhead["separate"]) / statistics.mean(overhead["worker"])
    print(f"ratio separate / worker: {ratio:.1f}x; losses identical: {same}")
    print(json.dumps({"forks": forks, "overhead_separate": overhead["separate"], "overhead_worker": overhead["worker"],
                      "ratio": ratio, "losses_identical": same}))


if __name__ == "__main__":
    main()
