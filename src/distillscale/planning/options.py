"""The options of a plan, declared once in `PlanSettings`: each option's name, type, default, help
and check. `ds.plan(law, **options)` builds it (`PlanSettings.from_python`), `distillscale plan`'s
flags and --help are generated from it (`cli_options.command`), the planner page validates through
it, and a plan carries it (`Plan.settings`), which says how to reproduce the plan
(`PlanSettings.command`); `planning.plan.plan_from_settings` makes the plan. A bad value raises
`ParameterError` naming the option: as the Python parameter from Python, as the flag from the CLI.

The existing teacher (`ExistingTeacher`) and the student-size search (`StudentSearch`) are the
settings' groups as the planner reads them; their checks that need the law are in `checked`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ValidationError, field_validator, model_validator

from distillscale.checks import checked
from distillscale.cli_options import CommandSettings, command_line, option
from distillscale.errors import ParameterError, UserError, path_kind
from distillscale.laws.lawset import LAW_HELP, NO_BIAS_CORRECTION_HELP, LawSet
from distillscale.laws.repetition import DEFAULT_MAX_PENALTY
from distillscale.laws.student_init import PRUNED_MICRO, STUDENT_INITS
from distillscale.model.teacher_limits import RequestLimits, retries_option, timeout_option
from distillscale.planning.downstream import DOWNSTREAM_LAW_HELP
from distillscale.planning.family import DEFAULT_TOP_K, TARGETS
from distillscale.planning.flops import SCENARIOS, ForwardFlops
from distillscale.planning.gpu_hours import (GPU_HELP, GPUS_HELP, MFU_HELP, PRICE_HELP, TABLE_HELP, check_options,
                                             gpu_price, mfu_fraction, whole_gpus)
from distillscale.planning.modes import OnPolicy
from distillscale.planning.recipes import DEFAULT_HYPERPARAMETER_LAW, HYPERPARAMETER_LAW_HELP
from distillscale.settings import quantity
from distillscale.units import BYTES_HELP, Quantity, check_parameter, format_quantity
from distillscale.planning.option_values import (_fractions, _fractions_summing, _model_or_url, _one_student,
                                                 _sizes, _storage, _student_sizes)
from distillscale.urls import is_url, misspelled_url, redacted_url

SCENARIO_HELP = f"{', '.join(SCENARIOS)}, or all"
FLOP_METHODS = ForwardFlops.METHODS
FLOPS_HELP = "forward FLOPs per token: corrected (Busbridge App. H) or simple (2N)"


class PlanSettings(CommandSettings):
    """`distillscale plan`: compute-optimal distillation for a budget."""

    command_path: ClassVar[str] = "plan"
    always_written: ClassVar[frozenset[str]] = frozenset({"law"})  # the command names its law

    law: str = option("busbridge2025", help=LAW_HELP)
    compute: Annotated[float, quantity("--compute", kind=Quantity.FLOPS)] = option(
        ..., help="FLOP budget, e.g. 1e21")
    student_params: Annotated[float | None, quantity("--student-params", kind=Quantity.PARAMS),
                              BeforeValidator(lambda value: _one_student(value))] = option(
        None, help="student non-embedding parameters, e.g. 546M; omit to find the best student size")
    student_model: Path | None = option(
        None, help="a student model's directory (a run, a `prune` output or a Hugging Face causal LM): exact N_S and "
                   "forward FLOPs from its config")
    scenario: str | None = option(None, help=f"{SCENARIO_HELP} (default)")
    teacher_params: Annotated[float | None, quantity("--teacher-params", kind=Quantity.PARAMS)] = option(
        None, help="an existing teacher's non-embedding parameters")
    teacher_tokens: Annotated[float | None, quantity("--teacher-tokens", kind=Quantity.TOKENS)] = option(
        None, help="the existing teacher's pre-training tokens")
    teacher_loss: float | None = option(
        None, help="the existing teacher's loss (nats/token), with --teacher-params")
    teacher_model: Annotated[Path | str | None, BeforeValidator(_model_or_url)] = option(
        None, help="instead of --teacher-params: an existing teacher's directory (a run or a Hugging Face causal LM, "
                   "with its tokenizer, which must be the law's): N_T and FLOPs/token from its config, L_T from its "
                   "loss.json (`distillscale loss`) or measured on the law's split; or the URL of a `distillscale "
                   "serve-teacher` serving it, sized as the server states and measured through it")
    teacher_timeout: float | None = timeout_option()
    teacher_retries: int | None = retries_option()
    other_corpus: bool = option(False, help="with a --teacher-model run: the law's corpus shares no text with the "
                                            "corpus the run trained on; measure the run there without the check "
                                            "that keeps its training text out of the law's validation split")
    trust_remote_code: bool = option(
        False, help="run the own code of a --teacher-model or --student-model (its config's auto_map) to count it: "
                    "only code you trust")
    teacher_mixture: Annotated[tuple[float, ...] | None, BeforeValidator(_sizes)] = option(
        None, help="instead of --teacher-params: the sizes of a mixture's teachers, comma-separated (e.g. "
                   "1B,300M; `distill --teacher A --teacher B`), each paid on every student token; needs "
                   "--teacher-loss, the mixture's measured cross-entropy (outside the law's fit: it was "
                   "fitted for one teacher)")
    students: Annotated[tuple[float, ...] | None, BeforeValidator(_student_sizes)] = option(
        None, help="a family of students from one teacher, their sizes comma-separated (e.g. 500M,1B,3B): each "
                   "student's plan and verdict with the teacher's cost shared (--targets), the family's compute by "
                   "part and its logit cache's storage; needs an existing teacher (--teacher-params or "
                   "--teacher-model)")
    shares: Annotated[tuple[float, ...] | None, BeforeValidator(_fractions_summing)] = option(
        None, help="with --students: each student's share of --compute, comma-separated fractions summing to 1 "
                   "(default: equal shares)")
    targets: str = option(
        "cached", help="with --students: how the teacher's targets are made: cached (the teacher runs once over the "
                       "first tokens, its top-k kept in a logit cache the students read, each re-reading as many of "
                       "its first tokens as pays: `cache-logits`, then `distill --teacher-cache`) or online (each student runs the teacher on "
                       "its own tokens: `distill --teacher`)")
    teacher_trained: bool = option(
        False, help="with --students: the family pays the given teacher's training (its 3 F(N_T) D_T, shared "
                    "equally; needs --teacher-tokens)")
    cache_top_k: int = option(DEFAULT_TOP_K, min=1, help="with --students, cached targets: the top-k predictions the "
                                                        "cache keeps per token, for its storage")
    cache_storage: Annotated[float | None, BeforeValidator(_storage)] = option(
        None, help="with --students, cached targets: the most storage the logit cache may take, " + BYTES_HELP + ": no "
                   "student reads more of it than it holds; one that reads more tokens re-reads its first ones "
                   "(`distill --teacher-cache --unique-tokens`), its loss that of repeating them")
    flops: str = option("corrected", help=FLOPS_HELP)
    n_ctx: int | None = option(None, min=1, help="context length (default: the law's)")
    vocab_size: int | None = option(None, min=2, help="vocabulary size, at least 2 ids (default: the law's)")
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
    teacher_unique_tokens: Annotated[float | None, quantity("--teacher-unique-tokens", kind=Quantity.TOKENS)] = option(
        None, help="with --unique-tokens: the unique tokens a teacher trained for the plan (a scenario's, or one given "
                   "by --teacher-params and --teacher-tokens) reads, when not the student's pool (default); a measured "
                   "teacher (--teacher-loss, --teacher-model) keeps its measured loss")
    generations: int | None = option(
        None, help="with --unique-tokens: compare self-distillation for this many generations (each the student of "
                   "the one before, on the same pool) and an ensemble of as many distilled into one with training "
                   "alone at equal compute (default: the best of 1-4)")
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
    gpu: str | None = option(None, help=GPU_HELP)
    gpus: Annotated[int, BeforeValidator(whole_gpus)] = option(1, help=GPUS_HELP)
    mfu: Annotated[float | None, BeforeValidator(mfu_fraction)] = option(None, help=MFU_HELP)
    price_per_gpu_hour: Annotated[float | None, BeforeValidator(gpu_price)] = option(None, help=PRICE_HELP)
    throughput_table: Path | None = option(None, help=TABLE_HELP)
    hyperparameter_law: str = option(DEFAULT_HYPERPARAMETER_LAW, help=HYPERPARAMETER_LAW_HELP)
    batch_tokens: Annotated[float | None, quantity("--batch-tokens", kind=Quantity.TOKENS)] = option(
        None, help="a batch you fix for every run, in tokens (e.g. 4M, to fill many GPUs): each run's lr at "
                   "that batch and, above the law's B*, the loss penalty and the tokens that recover it "
                   "(the law's batch exponent and ridge; default: each run at the law's B*)")
    downstream_law: Path | None = option(None, help=DOWNSTREAM_LAW_HELP)
    no_bias_correction: bool = option(False, help=NO_BIAS_CORRECTION_HELP)
    as_json: bool = option(False, flag="--json", help="print JSON")
    explain: bool = option(False, help="print the plan in full: the FLOPs of each phase, the teacher's loss "
                                       "interval, peak rates with their intervals, warmup, and every note (what "
                                       "each assumption is, where a run lies outside a law's data, the targets)")
    plot: Path | None = option(None, help="write a figure (.png or .svg)")
    overwrite: bool = option(False, help="replace the figure file if distillscale drew it")

    # The options a plan from Python does not take: they say how the command prints.
    OUTPUT: ClassVar[frozenset[str]] = frozenset({"as_json", "explain", "plot", "overwrite"})

    @field_validator("student_init")
    @classmethod
    def _student_init(cls, value: str) -> str:
        if value not in STUDENT_INITS:
            raise ParameterError("student_init", "unknown {} {value!r}: use one of " + ", ".join(STUDENT_INITS),
                                 value=value)
        return value

    @field_validator("max_penalty", mode="before")
    @classmethod
    def _fraction(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ParameterError("max_penalty", "{} must be a fraction between 0 and 1 (e.g. 0.01 for 1%), "
                                 "got {value!r}", value=value)
        return float(value)

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, value: str | None) -> str | None:
        if value not in (None, "all", *SCENARIOS):
            raise ParameterError("scenario", "unknown scenario {scenario!r} for {}: use one of "
                                             f"{', '.join(SCENARIOS)}, or all", scenario=value)
        return None if value == "all" else value  # all: every scenario, as when none is given

    @field_validator("flops")
    @classmethod
    def _flops(cls, value: str) -> str:
        if value not in FLOP_METHODS:
            raise ParameterError("flops", "unknown FLOP method {method!r} for {}: use one of "
                                          f"{', '.join(FLOP_METHODS)}", method=value)
        return value

    @model_validator(mode="after")
    def _plot_draws_scenario_plans(self) -> "PlanSettings":
        if self.plot is not None and self.compares_modes:
            raise UserError("--plot draws scenario plans: leave it out of the mode comparison "
                            "(--on-policy, --logit-cache, --teacher-remote)")
        return self

    @model_validator(mode="after")
    def _served_teacher_limits(self) -> "PlanSettings":
        for name in ("teacher_timeout", "teacher_retries"):
            if getattr(self, name) is not None and self.teacher_model is not None and misspelled_url(self.teacher_model):
                raise ParameterError("teacher_model", "{} {value!r} " + path_kind(str(self.teacher_model)),
                                     value=redacted_url(str(self.teacher_model)))   # the URL is what is wrong
            if getattr(self, name) is not None and not is_url(self.teacher_model or ""):
                raise ParameterError((name, "teacher_model"), "{} is for a served teacher: give {} as its URL, or "
                                                              "leave it out")
        return self

    def request_limits(self) -> RequestLimits:
        """How long a served --teacher-model is waited for (--teacher-timeout, --teacher-retries)."""
        return RequestLimits.given(self.teacher_timeout, self.teacher_retries)

    @model_validator(mode="after")
    def _gpu_options(self) -> "PlanSettings":
        check_options(self.gpu, self.gpus, self.mfu, self.price_per_gpu_hour, self.throughput_table)
        return self

    @model_validator(mode="after")
    def _combinations(self) -> "PlanSettings":
        """How the options combine (the checks that need the law are the planner's)."""
        if self.max_penalty != DEFAULT_MAX_PENALTY and self.unique_tokens is None:
            raise ParameterError(("max_penalty", "unique_tokens"), "{} needs {} (the corpus whose repetition "
                                 "it bounds): give both or neither")
        if self.teacher_unique_tokens is not None:
            self._teacher_pool_combinations()
        if self.generations is not None:
            self._generations_combinations()
        if self.teacher_compute is not None and not self.teacher_remote:
            raise ParameterError(("teacher_compute", "teacher_remote"), "{} is a remote teacher's own "
                                 "budget: add {} (otherwise the teacher shares the student's budget)")
        if self.compares_modes:
            return self._mode_comparison_combinations()
        if self.students is not None or any(getattr(self, name) != PlanSettings.model_fields[name].default
                                            for name in FAMILY_OPTIONS):
            return self._family_combinations()
        given = self.search.given()
        if self.student_model is not None and self.student_params is not None:
            raise ParameterError(("student_params", "student_model"), "give {} or {}, not both")
        if self.teacher_model is not None and self.teacher is not None:
            given = [name for name in TEACHER_FIELDS if getattr(self, name) is not None]
            raise ParameterError(("teacher_model", given[0]), "give {} or {}, not both: the model gives the teacher's "
                                 "size and its measured loss")
        if self.teacher_model is not None and self.student_params is None and self.student_model is None:
            raise ParameterError("student_params", "planning with an existing teacher (--teacher-model) needs {}")
        if self.teacher is not None and self.student_params is None and self.student_model is None:
            raise ParameterError("student_params", "planning with an existing teacher (or a mixture) needs {}")
        if given and (self.student_params is not None or self.student_model is not None):
            raise ParameterError((*given, "student_params"), f"the student-size search options "
                                 f"({', '.join(['{}'] * len(given))}) do not combine with {{}}: drop one "
                                 "or the other")
        if (self.teacher is not None or self.teacher_model is not None) and self.scenario not in (None, "teacher-inference"):
            raise ParameterError(("scenario", "scenario"), "an existing teacher is planned under "
                                 "teacher-inference cost: leave out {} or set {} to teacher-inference")
        return self

    def _generations_combinations(self) -> None:
        """--generations: a chain of self-distillation on the pool (`planning.data_limited`)."""
        if self.unique_tokens is None:
            raise ParameterError(("generations", "unique_tokens"), "{} plans self-distillation on a pool of unique "
                                 "tokens: give {} too")
        if self.generations < 1:
            raise ParameterError("generations", f"{{}} must be at least 1 (one student of a model trained alone), "
                                                f"got {self.generations}")
        if self.compares_modes or self.students is not None:
            raise ParameterError("generations", "{} plans one student: leave out the mode comparison and --students")
        if self.student_params is None and self.student_model is None:
            raise ParameterError(("generations", "student_params"), "{} compares ways to train one student size: give {}")

    def _teacher_pool_combinations(self) -> None:
        """--teacher-unique-tokens: a teacher trained on a pool beside the student's, its loss from the law."""
        if self.unique_tokens is None:
            raise ParameterError(("teacher_unique_tokens", "unique_tokens"), "{} is the teacher's pool beside the "
                                 "student's: give {} too (the student's unique tokens; at least its tokens for a "
                                 "student that reads fresh data)")
        measured = [name for name in ("teacher_loss", "teacher_mixture", "teacher_model")
                    if getattr(self, name) is not None]
        if measured:
            raise ParameterError(("teacher_unique_tokens", measured[0]), "{} is the pool of a teacher whose loss the "
                                 "law predicts; a teacher given by {} keeps its measured loss: leave one out")

    def _family_combinations(self) -> "PlanSettings":
        """A family of students: an existing teacher, each student smaller than it, shares and cache options
        that fit (a storage limit below one student's cache is the planner's to refuse: it needs the law)."""
        if self.students is None:
            given = [name for name in FAMILY_OPTIONS if getattr(self, name) != PlanSettings.model_fields[name].default]
            raise ParameterError((given[0], "students"), "{} plans a family of students: give {} (their sizes)")
        if self.student_params is not None or self.student_model is not None:
            raise ParameterError(("students", "student_params"), "give {} (a family) or {} (one student), not both")
        if self.teacher is None and self.teacher_model is None:
            raise ParameterError(("students", "teacher_params", "teacher_model"), "{} shares one existing teacher: "
                                 "give {} (with its tokens or loss) or {}")
        if self.teacher_mixture is not None or self.student_init != "scratch" or self.search.given():
            raise ParameterError("students", "{} plans students from scratch with one teacher: leave out the "
                                 "mixture, the student init and the size search")
        if self.scenario not in (None, "teacher-inference"):
            raise ParameterError("scenario", "a family's teacher is priced by --targets and --teacher-trained: "
                                 "leave out {}")
        if self.shares is not None and len(self.shares) != len(self.students):
            raise ParameterError(("shares", "students"), f"{{}} gives {len(self.shares)} shares for "
                                 f"{len(self.students)} students ({{}}): give one share per student")
        if self.targets not in TARGETS:
            raise ParameterError("targets", "unknown {} {value!r}: use " + " or ".join(TARGETS), value=self.targets)
        if self.targets == "online" and self.cache_storage is not None:
            raise ParameterError(("cache_storage", "targets"), "{} limits a logit cache, and {} online keeps none: "
                                 "leave it out, or plan cached targets")
        if self.targets == "online" and self.cache_top_k != DEFAULT_TOP_K:
            raise ParameterError(("cache_top_k", "targets"), "{} prices a logit cache, and {} online keeps none: "
                                 "leave it out, or plan cached targets")
        if self.teacher_trained and self.teacher_tokens is None:
            raise ParameterError(("teacher_trained", "teacher_tokens"), "{} prices the teacher's training: give "
                                 "{} (what it trains on)")
        if self.teacher_params is not None:
            larger = [size for size in self.students if size >= self.teacher_params]
            if larger:
                raise ParameterError(("students", "teacher_params"), f"{{}} has a student of "
                                     f"{format_quantity(larger[0])} parameters, not smaller than its teacher ({{}} "
                                     f"{format_quantity(self.teacher_params)}): a family is distilled from a larger "
                                     "teacher")
        return self

    def _mode_comparison_combinations(self) -> "PlanSettings":
        if self.teacher_model is not None:
            raise ParameterError(("teacher_model", "teacher.params", "teacher.loss"), "the mode comparison (--on-policy, "
                                 "--logit-cache, --teacher-remote) prices the teacher by its size: instead of {} give "
                                 "{} and {} (its `distillscale loss`)")
        if self.student_init != "scratch":
            raise ParameterError("student_init", "{} " + self.student_init + " is planned against the "
                                 "distillation law's scenarios only: leave out the mode comparison (--on-policy, "
                                 "--logit-cache, --teacher-remote)")
        if self.student_model is not None:
            raise ParameterError(("student_params", "student_model"), "the mode comparison counts FLOPs from "
                                 "the student's size: give {} (its non-embedding parameters) instead of {}")
        if self.student_params is None:
            raise ParameterError((*ASKS_FOR_MODES, "student_params"), "the mode comparison (asked for by {}, {} "
                                 "or {}) needs the student's size: give {}")
        if self.teacher is None:
            raise ParameterError((*ASKS_FOR_MODES, "teacher.params"), "the mode comparison (asked for by {}, "
                                 "{} or {}) needs an existing teacher, its size to price its logits and scoring: "
                                 "give {} and its tokens or loss")
        if self.teacher_mixture is not None:
            raise ParameterError("teacher.mixture", "the mode comparison (--on-policy, --logit-cache, "
                                 "--teacher-remote) prices one teacher: leave out {}, or compare modes with one "
                                 "teacher's --teacher-params")
        given = self.search.given()
        if given:
            raise ParameterError(given, f"the student-size search options ({', '.join(['{}'] * len(given))}) "
                                 "do not combine with the mode comparison: the student's size is given")
        if self.scenario not in (None, "teacher-inference"):
            raise ParameterError("scenario", "the mode comparison prices the existing teacher itself (live, "
                                 "cached or remote): leave out {}")
        return self

    @classmethod
    @checked
    def from_flags(cls, flags: dict[str, Any]) -> "PlanSettings":
        try:
            return super().from_flags(flags)
        except ParameterError as exc:  # named as the flag (the on-policy ones are named apart)
            raise UserError(exc.for_cli(ON_POLICY_FLAGS)) from None

    @classmethod
    @checked
    def from_python(cls, law: str, *, teacher: "ExistingTeacher | None" = None, on_policy: OnPolicy | None = None,
                    **options: Any) -> "PlanSettings":
        """The settings of `ds.plan(law, teacher=..., on_policy=..., **options)`: `law` as `--law`
        takes it, the teacher and on-policy records as their flags, the other options by field name.
        A bad option raises ParameterError naming it."""
        unknown = sorted(set(options) - set(cls.model_fields) | (set(options) & (cls.OUTPUT | {"law"})))
        if unknown:
            raise UserError(f"plan(): unknown option {unknown[0]!r}: the options are law, teacher, on_policy, "
                            + ", ".join(name for name in cls.model_fields if name not in cls.OUTPUT | {"law", "on_policy"}))
        for record, value, fields in (("teacher", teacher, TEACHER_FIELDS), ("on_policy", on_policy, ON_POLICY_FIELDS)):
            given = [name for name in fields if name in options]
            if value is not None and given:
                raise ParameterError((record, given[0]), "give {} or {}, not both")
        if teacher is not None:
            options.update(teacher_params=teacher.params, teacher_tokens=teacher.tokens,
                           teacher_loss=teacher.loss, teacher_mixture=teacher.mixture)
        if on_policy is not None:  # as its flags: those that differ from the defaults
            checked, defaults = on_policy.checked(), OnPolicy()
            options.update(on_policy=on_policy.fraction is None,
                           on_policy_fraction=None if on_policy.fraction is None else checked.fractions,
                           **{flag: getattr(checked, name) for name, flag in (
                               ("prompt_tokens", "prompt_tokens"), ("continuation_tokens", "continuation_tokens"),
                               ("efficiency", "on_policy_efficiency"))
                              if getattr(checked, name) != getattr(defaults, name)})
        options = {name: str(value) if name in ("student_model", "teacher_model") and value is not None else value
                   for name, value in options.items()}
        try:
            return cls.model_validate({"law": law, **options})
        except ValidationError as exc:
            raise _python_error(exc, options) from None

    def redacted(self) -> "PlanSettings":
        """These settings as a plan keeps and shows them (its repr, `as_cli_command`, its JSON): a served
        teacher's URL without its user name and password, which were used to measure it and are kept
        nowhere."""
        from distillscale.urls import redacted_value

        shown = redacted_value(str(self.teacher_model))   # a URL's, or one taken for a path (ws:/me:pw@host)
        if self.teacher_model is None or shown == str(self.teacher_model):
            return self
        return self.model_copy(update={"teacher_model": shown})

    @property
    def teacher(self) -> "ExistingTeacher | None":
        """The existing teacher given (None: the planner chooses the teacher)."""
        if not (self.teacher_params or self.teacher_tokens or self.teacher_loss is not None
                or self.teacher_mixture is not None):
            return None
        return ExistingTeacher(self.teacher_params, self.teacher_tokens, self.teacher_loss, self.teacher_mixture)

    @property
    def search(self) -> "StudentSearch":
        return StudentSearch(self.min_params, self.max_params, self.min_tokens_per_param, self.max_tokens_per_param)

    @property
    def compares_modes(self) -> bool:
        """Whether the options ask for the mode comparison (supervised, off- and on-policy)."""
        return (self.on_policy_settings() is not None or self.logit_cache or self.teacher_remote
                or self.teacher_compute is not None)

    def command(self, json_output: bool = False, scenario: bool = True) -> str:
        """The `distillscale plan` command with these settings (`scenario`: with its --scenario)."""
        update: dict[str, Any] = {"as_json": json_output}
        if not scenario:
            update["scenario"] = None
        if self.unique_tokens is None:  # it means nothing without them
            update["max_penalty"] = DEFAULT_MAX_PENALTY
        return command_line(self.model_copy(update=update))

    def on_policy_settings(self) -> OnPolicy | None:
        """The on-policy settings to compare (None: no on-policy option given)."""
        given = {"prompt_tokens": self.prompt_tokens, "continuation_tokens": self.continuation_tokens,
                 "efficiency": self.on_policy_efficiency}
        if not (self.on_policy or self.on_policy_fraction is not None
                or any(value is not None for value in given.values())):
            return None
        return OnPolicy(fraction=self.on_policy_fraction,
                        **{name: value for name, value in given.items() if value is not None})


# The options of a family of students (`planning.family`), beside --students.
FAMILY_OPTIONS = ("shares", "targets", "teacher_trained", "cache_top_k", "cache_storage")

# The options that ask `plan` for the mode comparison.
ASKS_FOR_MODES = ("on_policy", "logit_cache", "teacher_remote")

# The settings an ExistingTeacher and an OnPolicy stand for, from Python.
TEACHER_FIELDS = ("teacher_params", "teacher_tokens", "teacher_loss", "teacher_mixture")
ON_POLICY_FIELDS = ("on_policy_fraction", "prompt_tokens", "continuation_tokens", "on_policy_efficiency")

# The flags of the on-policy settings, named apart from their fields (on_policy.prompt_tokens).
ON_POLICY_FLAGS = {"on_policy.prompt_tokens": "--prompt-tokens",
                   "on_policy.continuation_tokens": "--continuation-tokens"}


def _python_error(exc: ValidationError, options: dict[str, Any]) -> UserError:
    """A validation error of `from_python`, naming the option as Python does."""
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ParameterError):
        return cause
    name = str(error["loc"][0]) if error["loc"] else "options"
    if error["type"] == "missing":
        return ParameterError(name, "give {}, the plan's " + ("FLOP budget (e.g. 1e21)" if name == "compute" else "value"))
    if isinstance(cause, UserError):  # a quantity's check, which names the flag
        flag = "--" + name.replace("_", "-")
        return ParameterError.about(name, str(cause).replace(flag, ParameterError.NAME))
    message = error["msg"].removeprefix("Value error, ")
    return ParameterError(name, "{} " + message.replace("{", "{{").replace("}", "}}") + ", got {value!r}",
                          value=options.get(name))


@dataclass(frozen=True)
class ExistingTeacher:
    """A teacher that exists already: its size (its logits cost F(N_T) per student token) and
    either its pre-training tokens (its loss then comes from the law) or its measured loss."""

    params: float | None = None
    tokens: float | None = None
    loss: float | None = None
    mixture: tuple[float, ...] | None = None  # several teachers' sizes (`loss` then the mixture's measured loss)

    def checked(self, laws: LawSet) -> "ExistingTeacher":
        if self.mixture is not None:
            return self._checked_mixture(laws)
        if self.params is None:
            raise ParameterError("teacher.params", "give the existing teacher's size with {} "
                                 "(its inference cost depends on it)")
        if (self.tokens is None) == (self.loss is None):
            raise ParameterError(("teacher.tokens", "teacher.loss", "teacher.params"),
                                 "give exactly one of {} or {} with {}")
        for name, value, kind in (("params", self.params, Quantity.PARAMS), ("tokens", self.tokens, Quantity.TOKENS),
                                  ("loss", self.loss, None)):
            positive(f"teacher.{name}", value, kind)
        if self.loss is not None:
            _check_teacher_loss(laws, self.loss)
        return self

    def _checked_mixture(self, laws: LawSet) -> "ExistingTeacher":
        if self.params is not None:
            raise ParameterError(("teacher.params", "teacher.mixture"), "give {} (one teacher) or {} (several), "
                                 "not both")
        if len(self.mixture) < 2:
            raise ParameterError("teacher.mixture", "{} takes the sizes of two teachers or more, comma-separated "
                                 "(e.g. 1B,300M); one teacher is --teacher-params")
        if self.loss is None or self.tokens is not None:
            raise ParameterError(("teacher.mixture", "teacher.loss", "teacher.tokens"),
                                 "{} needs {}, the mixture's measured cross-entropy (result.json's "
                                 "teacher.teacher_val_loss of a run distilled from it), not {}: the law cannot "
                                 "predict a mixture's loss from its teachers' sizes")
        for size in self.mixture:
            positive("teacher.mixture", size, Quantity.PARAMS)
        positive("teacher.loss", self.loss, None)
        _check_teacher_loss(laws, self.loss)  # the law's own check of L_T, as for one teacher
        return self


def _check_teacher_loss(laws: LawSet, loss: float) -> None:
    try:  # the law's own check, its message naming the parameter
        laws.check_teacher_loss(loss, flag=ParameterError.NAME)
    except UserError as exc:
        raise ParameterError.about("teacher.loss", str(exc)) from None


@dataclass(frozen=True)
class StudentSearch:
    """The limits of the student-size search; None takes the law's data range (sizes and tokens
    per parameter), or the planner's bounds when the law records none."""

    min_params: float | None = None
    max_params: float | None = None
    min_tokens_per_param: float | None = None
    max_tokens_per_param: float | None = None

    def given(self) -> list[str]:
        return [name for name, value in vars(self).items() if value is not None]


def positive(param: str, value: float | None, kind: Quantity | None) -> float | None:
    """`value` as a positive finite number inside the limits of what it counts, or ParameterError."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(param, "{} must be a number, got {value!r}", value=value) from None
    if not (math.isfinite(number) and number > 0):
        raise ParameterError(param, f"{{}} must be a positive finite number, got {number:g}")
    return check_parameter(number, param, kind=kind)  # inside the limits of what it counts
