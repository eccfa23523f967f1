"""Per-step overhead of the training step at tiny sizes, where Python between the operations is most of
a step (issue 65 item 2): the recipe's step (the background reader, `train_step` with clipping and
the on-device skip of a non-finite step, the muP optimizer groups, `DivergenceWatch`) against a plain
PyTorch loop over the same model (cross-entropy on float32 logits, one fused AdamW group, clipping),
microseconds per step on one CPU thread, side by side in one run; with --baseline DIR the recipe's
step of another checkout (e.g. `git worktree add /tmp/base 86c347b`) beside this one's, each in its
own process, alternating, so both see the same machine load.

Each figure: --steps timed steps after --warmup, the median over --rounds rounds (the machine is
shared: rounds alternate the trees). The losses of the two trees' steps are compared too: they must
be the same bits (the overhead changes are not allowed to change a number).

Usage: python bench/speed/step_overhead.py [--baseline /tmp/base] [--rounds 5] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# (name, layers, aspect ratio, head size, vocabulary, sequence, batch): tiny enough that overhead rules
SIZES = [("overhead-bound (1 x 16)", 1, 16, 16, 256, 32, 2), ("tiny (2 x 64)", 2, 32, 32, 512, 64, 4)]


def child(size: tuple, steps: int, warmup: int) -> dict:
    """In this process: µs per step of the recipe's step and of the plain loop, and the recipe's losses."""
    import time

    import numpy as np
    import torch
    import torch.nn.functional as F

    from distillscale.data import TokenSampler
    from distillscale.model import ModelConfig, Transformer
    from distillscale.training.distributed import Distributed
    from distillscale.training.objective import SupervisedObjective
    from distillscale.training.optim import build_optimizer
    from distillscale.training.parallel import TrainingModel
    from distillscale.training.prefetch import BatchPrefetcher
    from distillscale.training.step import DivergenceWatch, train_step

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)  # as a CPU run of the recipe
    _, layers, aspect, head, vocab, seq_len, batch = size
    config = ModelConfig(n_layers=layers, aspect_ratio=aspect, head_dim=head, vocab_size=vocab, max_seq_len=seq_len)
    tokens = np.random.default_rng(0).integers(0, vocab, 64 * seq_len + 1).astype(np.uint16)
    sampler = TokenSampler(tokens, seq_len, batch, seed=0)
    device, total = torch.device("cpu"), warmup + steps

    torch.manual_seed(0)
    model = Transformer(config)
    group = Distributed(device=device)
    trained = TrainingModel(model, group)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=1e-4)
    objective = SupervisedObjective(z_loss_weight=1e-4)
    watch, losses = DivergenceWatch(device), []
    autocast = torch.autocast("cpu", enabled=False)
    with BatchPrefetcher(lambda index: [sampler.batch(index)], 0, total, device) as reader:
        for index in range(total):
            if index == warmup:
                start = time.perf_counter()
            result = train_step(trained, objective, optimizer, reader.next(index), 1.0, group, autocast,
                                halted=watch.halted)
            watch.record(index + 1, result)
            losses.append(result.values)
    recipe = (time.perf_counter() - start) / steps * 1e6
    losses = [value.tolist() for value in losses[-3:]]

    torch.manual_seed(0)
    model = Transformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    for index in range(total):
        if index == warmup:
            start = time.perf_counter()
        inputs, targets = sampler.batch(index)
        logits = model(inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    plain = (time.perf_counter() - start) / steps * 1e6
    return {"recipe_us": recipe, "plain_us": plain, "losses": losses}


def run_child(src: Path, size: tuple, steps: int, warmup: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps([list(size), steps, warmup])],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout's root (its src/ is used)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        size, steps, warmup = json.loads(args.child)
        print(json.dumps(child(tuple(size), steps, warmup)))
        return
    trees = {"this tree": ROOT / "src"}
    if args.baseline is not None:
        trees = {"baseline": args.baseline / "src", **trees}
    print(f"µs per step on one CPU thread, median of {args.rounds} rounds of {args.steps} steps "
          f"(trees alternate within each round)")
    header = " ".join(f"{name + ' recipe':>20}" for name in trees)
    print(f"{'size':<26} {header} {'plain loop':>12} {'recipe / plain':>15}"
          + (f" {'this / baseline':>16}" if len(trees) > 1 else ""))
    for size in SIZES:
        found: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                found[name].append(run_child(src, size, args.steps, args.warmup))
        recipe = {name: statistics.median(r["recipe_us"] for r in rows) for name, rows in found.items()}
        plain = statistics.median(r["plain_us"] for rows in found.values() for r in rows)
        cells = " ".join(f"{recipe[name]:>20.0f}" for name in trees)
        line = f"{size[0]:<26} {cells} {plain:>12.0f} {recipe['this tree'] / plain:>15.2f}"
        if len(trees) > 1:
            same = all(r["losses"] == found["baseline"][0]["losses"] for rows in found.values() for r in rows)
            line += f" {recipe['this tree'] / recipe['baseline']:>16.2f}  losses {'the same bits' if same else 'DIFFER'}"
        print(line)


if __name__ == "__main__":
    main()
