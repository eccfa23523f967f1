"""The settings of `distillscale plan`, declared once: the command's flags and --help
(`cli_options.command`), the planner page's validation and its "the same plan as a command"
(`cli_options.command_line`), and `Plan.as_cli_command` are all generated from `PlanSettings`;
`planning.plan.plan_from_settings` makes the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import BeforeValidator, field_validator, model_validator

from distillscale.cli_options import CommandSettings, option
from distillscale.errors import UserError
from distillscale.laws.lawset import LAW_HELP
from distillscale.laws.repetition import DEFAULT_MAX_PENALTY
from distillscale.laws.student_init import PRUNED_MICRO, STUDENT_INITS
from distillscale.planning.flops import SCENARIOS
from distillscale.planning.modes import OnPolicy
from distillscale.settings import quantity
from distillscale.units import Quantity, parse_quantity

SCENARIO_HELP = f"{', '.join(SCENARIOS)}, or all"
FLOPS_HELP = "forward FLOPs per token: corrected (Busbridge App. H) or simple (2N)"


def _fractions(text: object) -> tuple[float, ...] | None:
    """--on-policy-fraction: one number or several, comma-separated."""
    if text is None or isinstance(text, tuple):
        return text
    if isinstance(text, (int, float)):
        return (float(text),)
    try:
        return tuple(float(part) for part in (text if isinstance(text, list) else str(text).split(",")))
    except ValueError:
        raise UserError(f"--on-policy-fraction must be numbers in (0, 1], comma-separated (e.g. 0.5 or "
                        f"0.25,0.5,1), got {text!r}") from None


def _sizes(text: object) -> tuple[float, ...] | None:
    """--teacher-mixture: sizes, comma-separated (1B,300M)."""
    if text is None or isinstance(text, tuple):
        return text
    parts = text if isinstance(text, list) else str(text).split(",")
    try:
        return tuple(float(parse_quantity(str(part).strip(), "--teacher-mixture", kind=Quantity.PARAMS)) for part in parts)
    except (ValueError, UserError):
        raise UserError(f"--teacher-mixture must be teacher sizes, comma-separated (e.g. 1B,300M), got {text!r}") from None


class PlanSettings(CommandSettings):
    """`distillscale plan`: compute-optimal distillation for a budget."""

    command_path: ClassVar[str] = "plan"
    always_written: ClassVar[frozenset[str]] = frozenset({"law"})  # the command names its law

    law: str = option("busbridge2025", help=LAW_HELP)
    compute: Annotated[float, quantity("--compute", kind=Quantity.FLOPS)] = option(
        ..., help="FLOP budget, e.g. 1e21")
    student_params: Annotated[float | None, quantity("--student-params", kind=Quantity.PARAMS)] = option(
        None, help="student non-embedding parameters, e.g. 546M; omit to find the best student size")
    student_model: Path | None = option(
        None, help="a model directory (model_config.json): exact N_S and forward FLOPs from its distillscale config")
    scenario: str | None = option(None, help=f"{SCENARIO_HELP} (default)")
    teacher_params: Annotated[float | None, quantity("--teacher-params", kind=Quantity.PARAMS)] = option(
        None, help="an existing teacher's non-embedding parameters")
    teacher_tokens: Annotated[float | None, quantity("--teacher-tokens", kind=Quantity.TOKENS)] = option(
        None, help="the existing teacher's pre-training tokens")
    teacher_loss: float | None = option(
        None, help="the existing teacher's loss (nats/token), with --teacher-params")
    teacher_mixture: Annotated[tuple[float, ...] | None, BeforeValidator(_sizes)] = option(
        None, help="instead of --teacher-params: the sizes of a mixture's teachers, comma-separated (e.g. "
                   "1B,300M; `distill --teacher A --teacher B`), each paid on every student token; needs "
                   "--teacher-loss, the mixture's measured cross-entropy (outside the law's fit: it was "
                   "fitted for one teacher)")
    flops: str = option("corrected", help=FLOPS_HELP)
    n_ctx: int | None = option(None, min=1, help="context length (default: the law's)")
    vocab_size: int | None = option(None, min=1, help="vocabulary size (default: the law's)")
    aspect_ratio: float | None = option(None, min=1.0, help="d_model / n_layers (default: the law's)")
    min_params: Annotated[float | None, quantity("--min-params", kind=Quantity.PARAMS)] = option(
        None, help="without --student-params: the smallest student to try (default: the smallest model "
                   "in the law's data)")
    max_params: Annotated[float | None, quantity("--max-params", kind=Quantity.PARAMS)] = option(
        None, help="without --student-params: the largest student to try (default: the largest model "
                   "in the law's data)")
    min_tokens_per_param: float | None = option(
        None, help="without --student-params: the fewest student tokens per parameter (default: the "
                   "law's data; 1 for busbridge2025)")
    max_tokens_per_param: float | None = option(
        None, help="without --student-params: the most student tokens per parameter (default: the "
                   "law's data; 5000 for busbridge2025)")
    unique_tokens: Annotated[float | None, quantity("--unique-tokens", kind=Quantity.TOKENS)] = option(
        None, help="unique tokens available, e.g. 5B: the plan's epochs, the loss penalty of repeating "
                   "them (Muennighoff et al. 2023) and the unique data that avoids it")
    max_penalty: float = option(DEFAULT_MAX_PENALTY, help="with --unique-tokens: the largest acceptable loss penalty "
                                           "from repetition (fraction)")
    on_policy: bool = option(
        False, help="with --student-params and an existing teacher: compare supervised, off-policy and "
                    "on-policy distillation (lambda 0.25, 0.5, 1); implied by the options below")
    on_policy_fraction: Annotated[tuple[float, ...] | None, BeforeValidator(_fractions)] = option(
        None, help="on-policy share lambda in (0, 1] (GKD): the student's tokens it samples itself; "
                   "several comma-separated, e.g. 0.5 or 0.25,0.5,1")
    prompt_tokens: int | None = option(
        None, help=f"on-policy: the corpus prompt length P per sampled continuation (default {OnPolicy.prompt_tokens})")
    continuation_tokens: int | None = option(
        None, help=f"on-policy: the sampled continuation length G (default {OnPolicy.continuation_tokens})")
    on_policy_efficiency: float | None = option(
        None, help=f"k: how many off-policy tokens one on-policy token is worth (default "
                   f"{OnPolicy.efficiency:g}: no gain assumed; post-training reports 9-30x, unmeasured for "
                   "pretraining-style distillation)")
    logit_cache: bool = option(
        False, help="the teacher's logits on the corpus are cached already: off-policy tokens do not pay "
                    "them (implies the mode comparison)")
    teacher_remote: bool = option(
        False, help="the teacher runs on its own GPUs (a server): its FLOPs are not on --compute "
                    "(implies the mode comparison)")
    teacher_compute: Annotated[float | None, quantity("--teacher-compute", kind=Quantity.FLOPS)] = option(
        None, help="with --teacher-remote: the teacher's own FLOP budget (default: unlimited, free to you)")
    student_init: str = option(
        "scratch", help=f"where the student starts: scratch (the law's students) or pruned (pruned from the "
                        f"teacher, `distillscale prune`): its tokens count {PRUNED_MICRO.value:g}x "
                        f"[{PRUNED_MICRO.interval[0]:g}, {PRUNED_MICRO.interval[1]:g}] in the law, "
                        f"{PRUNED_MICRO.note}")
    as_json: bool = option(False, flag="--json", help="print JSON")
    plot: Path | None = option(None, help="write a figure (.png or .svg)")
    overwrite: bool = option(False, help="replace the figure file if distillscale drew it")

    @field_validator("student_init")
    @classmethod
    def _student_init(cls, value: str) -> str:
        if value not in STUDENT_INITS:
            raise UserError(f"--student-init must be one of {', '.join(STUDENT_INITS)}, got {value!r}")
        return value

    @field_validator("max_penalty")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 < value < 1:
            raise UserError(f"--max-penalty must be a fraction between 0 and 1 (e.g. 0.01 for 1%), got {value:g}")
        return value

    @model_validator(mode="after")
    def _plot_draws_scenario_plans(self) -> "PlanSettings":
        if self.plot is not None and (self.on_policy_settings() is not None or self.logit_cache
                                      or self.teacher_remote or self.teacher_compute is not None):
            raise UserError("--plot draws scenario plans: leave it out of the mode comparison "
                            "(--on-policy, --logit-cache, --teacher-remote)")
        return self

    def on_policy_settings(self) -> OnPolicy | None:
        """The on-policy settings to compare (None: no on-policy option given)."""
        given = {"prompt_tokens": self.prompt_tokens, "continuation_tokens": self.continuation_tokens,
                 "efficiency": self.on_policy_efficiency}
        if not (self.on_policy or self.on_policy_fraction is not None
                or any(value is not None for value in given.values())):
            return None
        return OnPolicy(fraction=self.on_policy_fraction,
                        **{name: value for name, value in given.items() if value is not None})


# The flags of the on-policy settings, named apart from their fields (on_policy.prompt_tokens).
ON_POLICY_FLAGS = {"on_policy.prompt_tokens": "--prompt-tokens",
                   "on_policy.continuation_tokens": "--continuation-tokens"}
