"""How to run each model a plan trains when its law was fitted on a sweep that says how it trained
(`LawSet.recipe`, `laws.sweep_recipe`): the sweep's own recipe, not a hyperparameter law's. The law
predicts runs trained as the sweep trained its own; a hyperparameter law read at the plan's sizes (for a
micro sweep's law, about 1000x below its data) gives another rate, batch and schedule, and so runs the
law never measured.

    recipes = sweep_recipes(plan.runs(), laws.recipe, n_ctx=128, aspect_ratio=24)
    recipes["best-case"].train_lr, .batch_sequences, .steps, .schedule, .follows

The rules (the sweep's, `sweeps.spec`): every run at the sweep's `--lr` (muP's base rate: the hidden
matrices train at --lr x base_width / d_model) and schedule; its batch the sweep's batch_size in
sequences, halved until the run takes at least the ladder's min_steps (`rules.batch_for_min_steps`:
a teacher by the teachers' ladder, a student or a model trained alone by the students'); steps =
ceil(D / batch); warmup the sweep's fixed steps where it gave them, else the engine's default.
"""

from __future__ import annotations

import math

from distillscale.laws.sweep_recipe import SweepRecipe
from distillscale.model.config import ModelConfig, family_width
from distillscale.planning.recipes import MUP_BASE_WIDTH, RunRecipe
from distillscale.rules import WARMUP_RULE, warmup_steps
from distillscale.units import format_quantity

SWEEP_WARMUP_RULE = "the sweep's ({steps:,} steps), at most the run's steps"


def sweep_recipes(runs: dict[str, tuple[float, float]], recipe: SweepRecipe, n_ctx: int, aspect_ratio: float,
                  model: ModelConfig | None = None) -> dict[str, RunRecipe]:
    """The recipe of each run (`Plan.runs()`: name -> (N, D)) under the sweep's `recipe`; `model`, a
    given student's config, is the run of its size (its width, muP and context)."""
    return {name: sweep_run_recipe(recipe, name, params, tokens, n_ctx, aspect_ratio,
                                   model if model is not None and params == float(model.non_embedding_params) else None)
            for name, (params, tokens) in runs.items()}


def sweep_run_recipe(recipe: SweepRecipe, name: str, params: float, tokens: float, n_ctx: int,
                     aspect_ratio: float, model: ModelConfig | None = None) -> RunRecipe:
    """One run under the sweep's recipe."""
    from distillscale.laws.hyperparameters.rates import family_mup_multiplier, recipe_problems
    from distillscale.planning.run_sheet import role_of

    if model is not None:
        n_ctx = min(n_ctx, model.max_seq_len)
    role = role_of(name)
    sequences = recipe.batch_sequences(tokens, n_ctx, role)
    batch = float(sequences * n_ctx)
    steps = max(1, math.ceil(tokens / batch))
    width = float(model.d_model) if model is not None else family_width(params, aspect_ratio)
    mup = model.mup if model is not None else recipe.mup
    multiplier = model.mup_multiplier if model is not None else family_mup_multiplier(width, mup)
    peak = recipe.lr * multiplier
    if recipe.warmup_steps is None:
        warmup, rule = warmup_steps(steps), WARMUP_RULE
    else:
        warmup, rule = min(recipe.warmup_steps, steps), SWEEP_WARMUP_RULE.format(steps=recipe.warmup_steps)
    least = recipe.rule(role).min_steps
    notes = () if least is None or steps >= least else (
        f"{name}: {steps:,} steps even at one sequence a step, fewer than the {least:,} the sweep gave every run "
        f"(runs this short are still in training's early transient, above the law): give it more tokens "
        f"than {format_quantity(tokens)}",)
    return RunRecipe(name=name, law="sweep", params=float(params), tokens=float(tokens), lr=peak,
                     lr_interval=(peak, peak), level=1.0, batch_tokens=batch, batch_interval=None,
                     optimal_batch_tokens=None, n_ctx=int(n_ctx), batch_sequences=sequences, steps=steps,
                     warmup_steps=warmup, d_model=width, train_lr=recipe.lr,
                     mup_base_width=(model.mup_base_width if model is not None else MUP_BASE_WIDTH) if mup else None,
                     notes=notes, warmup_rule=rule, schedule=recipe.schedule, sweep=recipe.describe(),
                     cooldown_fraction=recipe.cooldown_fraction,
                     problems=tuple(recipe_problems(peak, recipe.lr, batch, tokens)))
