"""How to run each model a plan trains: its peak learning rate (with interval), its batch
in tokens and in sequences at the plan's context, its steps and warmup, from a hyperparameter law
(`plan --hyperparameter-law`, default steplaw2025: `laws.hyperparameters`), and the `--lr` to give
`train`/`distill` that trains the model at that rate.

    recipes = plan_recipes(plan, load_hyperparameter_law("steplaw2025"), batch_tokens=None)
    recipes["best-case"].lr, .train_lr, .batch_tokens, .batch_sequences, .steps, .warmup_steps

The rules, stated once here:
- the law is evaluated at the run's N (non-embedding parameters) and D (the tokens it trains on);
- batch: the law's B* (or the batch the user fixed, `--batch-tokens`), as whole sequences of the
  run's context, round(B / n_ctx) and at least one; the run's batch is those sequences, and its rate
  is the law's at that batch (`HyperparameterLaw.at_batch`: the law's exponent, where it has one);
  steps = ceil(D / (sequences x n_ctx)); the context is the plan's, or a `--student-model`'s own
  (at most the plan's) for the runs of that model only;
- warmup: the law's, where it carries one (the warmup steps of its runs, `fit hyperparameters
  --warmup-col`) and the run lies within FAR_FACTOR of the law's data, at most the run's steps; else
  WARMUP_FRACTION of the steps, at most WARMUP_CAP steps (`distillscale.rules`: the engine's default
  warmup too, declared there once);
- beta2: the law's, where it carries one (`--beta2-col`; `train --adam-beta2`), else None (unknown);
- the rate: `lr` is the rate the hidden matrices train at (the law's rate in its declared unit,
  `laws.hyperparameters.rates`, at the run's width: d_model the family's at N, N = 12 d_model^3 /
  aspect ratio, `model.config.family_width`, exact for a `--student-model`), and `train_lr` the
  `--lr` that trains them there (`rates.train_lr`: under muP, the family's default, the hidden
  matrices train at --lr x base_width / d_model; a model without muP takes the peak rate itself);
- a batch above B*: the rate at that batch with the law's fitted exponent (`distillscale.rules.lr_at_batch`,
  not a fixed square root), the loss penalty at the same tokens and the tokens that recover it
  (`HyperparameterLaw.at_batch`); a law that cannot give them says so in the recipe's notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distillscale.errors import UserError
from distillscale.model.config import ModelConfig, family_width
from distillscale.rules import WARMUP_RULE, warmup_steps
from distillscale.units import format_quantity

if TYPE_CHECKING:  # SciPy: loaded on the first plan
    from distillscale.laws.hyperparameters import HyperparameterLaw, BatchAdaptation

DEFAULT_HYPERPARAMETER_LAW = "steplaw2025"
HYPERPARAMETER_LAW_HELP = ("the law that gives each run's peak learning rate and batch: a preset (steplaw2025, "
                           "the default: Li et al. 2025, nearest the measured optima on Step Law's public grid; "
                           "deepseek2024) or a file `distillscale fit hyperparameters --out` wrote")
LAW_WARMUP_RULE = "the hyperparameter law's (the warmup steps of its runs), at most the run's steps"
MUP_BASE_WIDTH = ModelConfig.model_fields["mup_base_width"].default


@dataclass(frozen=True)
class RunRecipe:
    """How to run one model of a plan: what `train`/`distill` need besides the model and the data."""

    name: str                                  # the plan's name for the model
    law: str                                   # the hyperparameter law
    params: float                              # N, non-embedding
    tokens: float                              # D, the tokens it trains on
    lr: float                                  # the hidden matrices' peak rate, at `batch_tokens`
    lr_interval: tuple[float, float]
    level: float                               # the intervals' level
    batch_tokens: float                        # the batch the run takes: batch_sequences x n_ctx
    batch_interval: tuple[float, float] | None  # B*'s; None: the batch is the user's, or the law's only one
    optimal_batch_tokens: float | None         # B* (None: the law was fitted at one batch)
    n_ctx: int                                 # the context of its sequences
    batch_sequences: int                       # round(the law's or the user's batch / n_ctx), at least 1
    steps: int                                 # ceil(tokens / (batch_sequences n_ctx))
    warmup_steps: int                          # `warmup_rule`
    d_model: float                             # its width (the family's at N, or the model's own)
    train_lr: float                            # `train`/`distill --lr` that trains the hidden matrices at `lr`
    mup_base_width: int | None = MUP_BASE_WIDTH  # muP's base width (None: the model has no muP)
    adaptation: BatchAdaptation | None = None  # at a batch the user fixed: its rate, penalty, recovering tokens
    beyond_data: bool = False                  # N or D outside the law's data
    extrapolation: float = 1.0                 # how far outside, as a factor (`HyperparameterLaw.extrapolation`)
    notes: tuple[str, ...] = field(default=())
    beta2: float | None = None                 # AdamW beta2 (`train --adam-beta2`) the law carries; None: unknown
    warmup_rule: str = WARMUP_RULE             # where `warmup_steps` comes from: WARMUP_RULE or LAW_WARMUP_RULE
    law_lr_unit: str = "peak"                  # the unit the law states its rate in (`rates.LrUnit.text`)
    problems: tuple[str, ...] = ()             # why it is no run to train (`rates.recipe_problems`): empty for a recipe
    schedule: str | None = None                # `train --schedule` the run takes (None: the engine's default, cosine)
    sweep: str | None = None                   # the sweep's recipe it follows (`planning.sweep_recipes`), described
    cooldown_fraction: float | None = None     # `train --cooldown-fraction` (WSD; None: the engine's default)

    @property
    def follows(self) -> str:
        """What its rate, batch and warmup follow: the sweep's recipe or the hyperparameter law."""
        return "the sweep's recipe" if self.sweep is not None else f"hyperparameter law {self.law}"

    def flags(self) -> str:
        """The rate (and schedule) flags to give `train`/`distill` for this run."""
        cooldown = "" if self.cooldown_fraction is None else f" --cooldown-fraction {self.cooldown_fraction:g}"
        schedule = "" if self.schedule is None else f" --schedule {self.schedule}"
        return f"--lr {self.train_lr:.4g}{schedule}{cooldown}"

    def to_dict(self) -> dict[str, Any]:
        adaptation = None if self.adaptation is None else {   # its rate as the recipe's: the hidden matrices' peak
            **{key: value for key, value in self.adaptation.model_dump(mode="json").items() if key != "notes"},
            "lr": self.lr}
        return {"name": self.name, "hyperparameter_law": None if self.sweep is not None else self.law,
                "params": self.params, "tokens": self.tokens,
                "lr": self.lr, "lr_interval": list(self.lr_interval), "lr_unit": "peak (hidden matrices)",
                "level": self.level, "batch_tokens": self.batch_tokens,
                "batch_interval": None if self.batch_interval is None else list(self.batch_interval),
                "optimal_batch_tokens": self.optimal_batch_tokens, "n_ctx": self.n_ctx,
                "batch_sequences": self.batch_sequences, "steps": self.steps, "warmup_steps": self.warmup_steps,
                "warmup_rule": self.warmup_rule, "beta2": self.beta2, "d_model": self.d_model,
                "mup_base_width": self.mup_base_width, "train_lr": self.train_lr,
                "law_lr_unit": self.law_lr_unit, "batch_adaptation": adaptation,
                "beyond_law_data": self.beyond_data, "extrapolation": self.extrapolation, "notes": list(self.notes),
                "problems": list(self.problems), "follows": self.follows, "schedule": self.schedule,
                "flags": self.flags()}


def run_recipe(law: HyperparameterLaw, name: str, params: float, tokens: float, n_ctx: int,
               aspect_ratio: float, batch_tokens: float | None = None,
               model: ModelConfig | None = None) -> RunRecipe:
    """The recipe of one run under `law`; `model`: the run's own config (its width, muP and context)."""
    from distillscale.laws.hyperparameters.law import FAR_FACTOR
    from distillscale.laws.hyperparameters.rates import family_mup_multiplier, recipe_problems, train_lr

    notes: list[str] = []
    if model is not None:
        n_ctx = min(n_ctx, model.max_seq_len)   # the run's sequences are at most its context
    recommendation = law.recommend(params, tokens)
    wanted = recommendation.batch_tokens if batch_tokens is None else float(batch_tokens)
    sequences = max(1, round(wanted / n_ctx))
    run_batch = float(sequences * n_ctx)   # the batch the run takes: whole sequences
    if batch_tokens is not None and wanted < n_ctx / 2:
        notes.append(f"your batch of {format_quantity(wanted)} tokens is less than one sequence of {n_ctx:,}: "
                     f"the run takes one sequence a step ({n_ctx:,} tokens), and the rate is for that batch")
    adaptation = None
    if batch_tokens is not None or (law.batch is not None and law.lr_batch_exponent is not None
                                    and not math.isclose(run_batch, wanted, rel_tol=1e-9)):
        try:  # the rate at the batch the run takes (B* rounded to whole sequences, or the user's)
            at_batch = law.recommend(params, tokens, batch_tokens=run_batch)
        except UserError as exc:  # the law has no batch exponent (deepseek2024), or one batch only
            notes.append(f"{_clause(exc)}; the lr shown is the law's for its own batch, "
                         f"{format_quantity(recommendation.batch_tokens)} tokens, not for "
                         + (f"yours ({format_quantity(run_batch)})" if batch_tokens is not None
                            else f"the run's {format_quantity(run_batch)} (B* as whole sequences)"))
            if batch_tokens is not None:
                recommendation = recommendation.model_copy(update={"batch_interval": None})
        else:
            adaptation = at_batch.adaptation if batch_tokens is not None else None
            notes += [note for note in at_batch.notes if note not in notes]
            recommendation = at_batch.model_copy(update={"batch_interval": None if batch_tokens is not None
                                                         else recommendation.batch_interval})
    factor, where = law.extrapolation(params, tokens)   # said once for the whole sheet (`extrapolation`)
    notes = [note for note in notes + [n for n in recommendation.notes if n not in notes] if note != where]
    steps = max(1, math.ceil(tokens / run_batch))
    width = float(model.d_model) if model is not None else family_width(params, aspect_ratio)
    multiplier = model.mup_multiplier if model is not None else family_mup_multiplier(width)
    mup = model is None or model.mup
    unit = law.lr_unit
    if recommendation.warmup is None:
        warmup, rule = warmup_steps(steps), WARMUP_RULE
    elif factor > FAR_FACTOR:   # steps measured at the law's scale say little of a run this far from it
        warmup, rule = warmup_steps(steps), WARMUP_RULE
        notes.append(f"law {law.name}'s warmup ({recommendation.warmup:g} steps) was measured on runs {factor:,.0f}x "
                     f"from this one: the warmup is {WARMUP_RULE}")
    else:
        warmup, rule = min(int(recommendation.warmup), steps), LAW_WARMUP_RULE
    low, high = recommendation.lr_interval
    peak, run_lr = unit.hidden_lr(recommendation.lr, width), train_lr(recommendation.lr, unit, width, multiplier)
    return RunRecipe(name=name, law=law.name, params=float(params), tokens=float(tokens), lr=peak,
                     lr_interval=(unit.hidden_lr(low, width), unit.hidden_lr(high, width)), level=recommendation.level,
                     batch_tokens=run_batch,
                     batch_interval=None if recommendation.batch_interval is None
                     else tuple(recommendation.batch_interval),
                     optimal_batch_tokens=recommendation.optimal_batch_tokens, n_ctx=int(n_ctx),
                     batch_sequences=sequences, steps=steps, warmup_steps=warmup, d_model=width,
                     train_lr=run_lr,
                     mup_base_width=(model.mup_base_width if model is not None else MUP_BASE_WIDTH) if mup else None,
                     adaptation=adaptation, beyond_data=factor > 1, extrapolation=factor, notes=tuple(notes),
                     beta2=recommendation.beta2, warmup_rule=rule, law_lr_unit=unit.text(),
                     problems=tuple(recipe_problems(peak, run_lr, run_batch, tokens)))


def plan_recipes(runs: dict[str, tuple[float, float]], law: HyperparameterLaw, n_ctx: int, aspect_ratio: float,
                 batch_tokens: float | None = None, model: ModelConfig | None = None) -> dict[str, RunRecipe]:
    """The recipe of each run (`Plan.runs()`: name -> (N, D)); `model`, a given student's config,
    is the run of its size (its exact width, muP and context); every other run is the family's at
    the plan's context `n_ctx`."""
    return {name: run_recipe(law, name, params, tokens, n_ctx, aspect_ratio, batch_tokens,
                             model if model is not None and params == float(model.non_embedding_params) else None)
            for name, (params, tokens) in runs.items()}


def hyperparameter_warning(params: float, tokens: float, lr: float, batch_tokens: float, mup_multiplier: float = 1.0,
                           law: str | HyperparameterLaw = DEFAULT_HYPERPARAMETER_LAW,
                           d_model: float | None = None) -> str | None:
    """The one line `train`/`distill` warn with when a run's peak rate or batch lies outside the
    law's interval at its N and D (non-embedding parameters, tokens); None inside it, and for a run
    outside the law's data, where its recommendation would be an extrapolation (a micro-scale run).

    The run's peak rate is the one its hidden matrices train at (`--lr` x muP's multiplier, 1 without
    muP), compared with the law's rate at the run's own batch (`HyperparameterLaw.at_batch`, where the
    law has a batch exponent) in the same unit (`rates.LrUnit.hidden_lr` at the run's width `d_model`;
    a law in muP base units is not compared when the width is unknown); its batch (tokens per
    optimizer step) with the law's interval on B*."""
    from distillscale.laws.hyperparameters import load_hyperparameter_law
    from distillscale.laws.hyperparameters.rates import train_lr

    law = load_hyperparameter_law(law)
    if law.data_range is None or law.extrapolation(params, tokens)[0] > 1:
        return None
    optimal = law.recommend(params, tokens)
    try:  # the law's rate at the run's batch
        at_batch = law.recommend(params, tokens, batch_tokens=batch_tokens)
    except UserError:
        at_batch = optimal
    level, far = f"{optimal.level:.0%}", []
    if d_model is not None or law.lr_unit.kind == "peak":
        width = d_model or 1.0
        peak = lr * mup_multiplier
        low, high = (law.lr_unit.hidden_lr(value, width) for value in at_batch.lr_interval)
        if not low <= peak <= high:
            given = f" (--lr {lr:.3g} x muP's {mup_multiplier:.3g} at this width)" if mup_multiplier != 1 else ""
            far.append(f"the hidden matrices' peak lr {peak:.3g}{given} is outside its {level} interval {low:.3g} "
                       f"to {high:.3g} (lr* {law.lr_unit.hidden_lr(at_batch.lr, width):.3g} at this batch: "
                       f"--lr {train_lr(at_batch.lr, law.lr_unit, width, mup_multiplier):.3g})")
    if optimal.batch_interval is not None and not optimal.batch_interval[0] <= batch_tokens <= optimal.batch_interval[1]:
        low, high = optimal.batch_interval
        far.append(f"batch {format_quantity(batch_tokens)} tokens is outside its {level} interval "
                   f"{format_quantity(low)} to {format_quantity(high)} (B* {format_quantity(optimal.batch_tokens)})")
    if not far:
        return None
    return (f"hyperparameter law {law.name} at N {format_quantity(params)}, D {format_quantity(tokens)} tokens: "
            + "; ".join(far) + ": the run may miss the loss the scaling laws predict (`distillscale predict "
            f"hyperparameters --law {law.name} --params {format_quantity(params)} --tokens {format_quantity(tokens)}`)")


def _clause(exc: UserError) -> str:
    """An error's message as a clause (no trailing full stop), naming a parameter as "your batch"."""
    from distillscale.errors import ParameterError

    text = exc.for_cli({"batch_tokens": "your batch"}) if isinstance(exc, ParameterError) else str(exc)
    return text.rstrip(". ")
