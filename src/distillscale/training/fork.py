"""Forks: a WSD run that starts from its parent's stable phase instead of from scratch.

A parent is a WSD run that lists, in `fork_tokens`, the budgets D of its forks; when it passes a
fork's cooldown start s0 (steps_for(D) minus the cooldown) it keeps its state there
(`state/branch-<s0>.pt`). The fork, the same config with `tokens = D` and `fork_from = parent`,
computes exactly what the parent did up to s0, so it loads that state and trains its cooldown only:
its result is that of a WSD run of D tokens from scratch (tests/training/test_fork.py), for a fraction of the
compute (Hägele et al. 2024, docs/science.md §8). The fork is otherwise an ordinary run: its own run
directory and result.json, and it resumes from its own checkpoints after an interruption.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distillscale.errors import UserError
from distillscale.training.config import TrainConfig, fork_own_keys
from distillscale.training.records import ForkRecord, RunPlan
from distillscale.training.run_dir import RunDirectory

# Settings a fork may give otherwise than its parent: its length, and the fork links themselves
# (declared on their fields: `FORK_OWN`).
LENGTH_KEYS = fork_own_keys(TrainConfig)


@dataclass(frozen=True)
class Branch:
    """Where a fork leaves its parent: the step its cooldown starts, i.e. the steps they share."""

    parent: RunDirectory
    step: int

    def state(self) -> dict[str, Any]:
        return self.parent.load_branch(self.step)

    def record(self, tokens_per_step: int, flops_per_token: float) -> ForkRecord:
        """result.json's `fork`: the parent, and the tokens and FLOPs the fork did not spend itself."""
        shared_tokens = self.step * tokens_per_step
        return ForkRecord(parent=str(self.parent.path), branch_step=self.step, shared_tokens=shared_tokens,
                          shared_flops=flops_per_token * shared_tokens)


def find_branch(config: TrainConfig, plan: RunPlan) -> Branch | None:
    """The parent's state a fork of `plan.token_budget` tokens starts from (None for a run that is not a fork);
    checks that the parent computed the same steps, so that the fork equals a run from scratch."""
    if config.fork_from is None:
        return None
    parent = RunDirectory(config.fork_from)
    where = f"--fork-from {parent.path}"
    if not parent.config_path.is_file():
        raise UserError(f"{where} is not a run directory (no config.json): give the WSD run to fork")
    parent_config, parent_plan = parent.stored_config(type(config)), parent.stored_plan()
    differing = [key for key in parent_config.differing_keys(config) if key not in LENGTH_KEYS]
    if differing:
        raise UserError(f"{where} differs from this run in {', '.join(differing)}: a fork repeats its "
                        f"parent's settings except the tokens")
    if parent_plan.data_fingerprint != plan.data_fingerprint:
        raise UserError(f"{where} trained on other data than this run: a fork reads its parent's data")
    if parent_plan.warmup_steps != plan.warmup_steps:
        raise UserError(f"{where} warmed up for {parent_plan.warmup_steps} steps and this run "
                        f"would for {plan.warmup_steps}: give --warmup-steps {parent_plan.warmup_steps}")
    step = plan.total_steps - plan.cooldown_steps
    if step < max(1, plan.warmup_steps):
        raise UserError(f"this fork's cooldown would start at step {step}, before the end of the warmup "
                        f"({plan.warmup_steps} steps): give it more tokens, or warm up for fewer steps")
    if step not in parent_config.branch_steps():
        raise UserError(f"{where} does not keep step {step}, where this fork's cooldown starts: list "
                        f"{round(plan.token_budget)} in the "
                        f"parent's --fork-tokens")
    if not parent.branch_path(step).is_file():
        raise UserError(f"{where} has not reached step {step} yet, where this fork's cooldown starts: "
                        f"finish the parent first")
    return Branch(parent, step)
