"""The recipe a sweep trained its models by (`laws.sweep_recipe.SweepRecipe`), read from the resolved
spec `sweep run` wrote into its directory (spec.toml): what a law fitted on the sweep carries, so that
a plan under it runs its models as the sweep ran its own.

    recipe = sweep_recipe("sweeps/micro")     # a SweepRecipe, or None

None where there is no one recipe to carry: an exported records file (no spec), a sweep whose rate
varies by size or run (`[model] lr_law`, `lr_width_exponent`, a `[tune]` grid), or whose warmup is
given in tokens; a plan under such a law takes its hyperparameter law's rates, as before.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from distillscale.laws.sweep_recipe import LadderRule, SweepRecipe

VARYING = ("lr_law", "lr_width_exponent", "warmup_tokens", "warmup_tokens_per_param")


def sweep_recipe(source: str | Path) -> SweepRecipe | None:
    """The recipe of the sweep directory `source` (its spec.toml), or None (see the module)."""
    from distillscale.sweeps.runner import sweep_spec

    sections = sweep_spec(source)
    if sections is None or "tune" in sections:
        return None
    model, data = sections.get("model", {}), sections.get("data", {})
    if any(model.get(key) is not None for key in VARYING):
        return None
    try:
        return SweepRecipe(source=str(source), lr=model["lr"], mup=model.get("mup", True),
                           schedule=model.get("schedule", "cosine"), cooldown_fraction=model.get("cooldown_fraction"),
                           batch_size=model["batch_size"], grad_accum=model.get("grad_accum", 1),
                           seq_len=data["seq_len"], warmup_steps=model.get("warmup_steps"),
                           teachers=_rule(sections.get("teachers")), students=_rule(sections.get("students")))
    except (KeyError, TypeError, ValidationError):   # a spec of another shape: no recipe to carry
        return None


def _rule(section: dict | None) -> LadderRule:
    section = section or {}
    return LadderRule(**{key: section.get(key) for key in ("min_steps", "min_tokens", "max_tokens")})
