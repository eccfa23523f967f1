"""How the sweep a law was fitted on trained its models: its rate, batch rule, warmup and schedule. A
law fitted on a sweep (`report`, `demo`: report.json's laws) carries it in its file as "recipe", and a
plan under that law runs its models the same way (`planning.sweep_recipes`) instead of extrapolating a
hyperparameter law far outside its data: the law predicts runs trained as the sweep trained its own.
A law file without one (written before, or fitted on a table of runs) plans as it always did.

    recipe = laws.recipe                          # a SweepRecipe, or None
    recipe.batch_sequences(tokens, n_ctx, "student"), recipe.flags()   # '--lr 0.003 --schedule wsd'
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from distillscale.laws.schema import Text
from distillscale.rules import batch_for_min_steps


class LadderRule(BaseModel):
    """A ladder's batch rule: each model's batch halved until its run takes at least `min_steps` steps;
    `min_tokens`/`max_tokens`: the window of the ladder's runs (tokens)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_steps: int | None = Field(None, ge=1)
    min_tokens: float | None = Field(None, gt=0)
    max_tokens: float | None = Field(None, gt=0)


class SweepRecipe(BaseModel):
    """The sweep's own recipe, read from its resolved spec (`[model]`, `[teachers]`, `[students]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Text                               # the sweep it was read from
    lr: float = Field(gt=0, le=10)             # the `--lr` every run took (muP's base rate under muP)
    mup: bool = True
    schedule: Literal["cosine", "wsd"] = "cosine"
    cooldown_fraction: float | None = Field(None, gt=0, le=1)
    batch_size: int = Field(ge=1)              # sequences a micro-batch the ladders start from
    grad_accum: int = Field(1, ge=1)           # micro-batches a step
    seq_len: int = Field(ge=1)
    warmup_steps: int | None = Field(None, ge=0)   # the sweep's fixed warmup; None: the engine's default
    teachers: LadderRule = LadderRule()
    students: LadderRule = LadderRule()        # the students' and their baselines' (trained alone)

    def rule(self, role: str) -> LadderRule:
        """The ladder rule of a plan's run: the teachers' for a teacher, the students' for the rest."""
        return self.teachers if role == "teacher" else self.students

    def batch_sequences(self, tokens: float, n_ctx: int, role: str) -> int:
        """The sequences a step of a run of `tokens` at context `n_ctx`, by the ladder's rule."""
        micro = batch_for_min_steps(tokens, self.batch_size, n_ctx * self.grad_accum, self.rule(role).min_steps)
        return micro * self.grad_accum

    def flags(self) -> str:
        """The flags that make `train`/`distill` run at the sweep's rate and schedule."""
        cooldown = "" if self.cooldown_fraction is None else f" --cooldown-fraction {self.cooldown_fraction:g}"
        return f"--lr {self.lr:g} --schedule {self.schedule}{cooldown}"

    def describe(self) -> str:
        """The recipe in a clause, for the run sheet."""
        rules = {rule.min_steps for rule in (self.teachers, self.students) if rule.min_steps is not None}
        halved = f", halved until a run takes at least {min(rules):,} steps" if rules else ""
        warmup = "" if self.warmup_steps is None else f", warmup {self.warmup_steps:,} steps"
        batch = self.batch_size * self.grad_accum
        return f"the sweep's recipe ({self.source}): {self.flags()}, a batch of {batch} sequences{halved}{warmup}"
