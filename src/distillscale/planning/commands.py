"""`distillscale plan`, `teacher`, `capacity-gap` and `distill-map`: the planner on the command line.
Each command parses its flags, makes one call to the planner (`planning.plan`, `planning.teacher`)
and prints the answer (`planning.render`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
from pydantic import BeforeValidator, field_validator, model_validator

from distillscale.cli_options import CommandSettings, command, option
from distillscale.console import Table, console, print_json, progress_printer, styled, warn
from distillscale.errors import ParameterError, UserError, path_kind
from distillscale.io import check_output_file
from distillscale.laws.lawset import LAW_HELP, load_laws
from distillscale.model.teacher_limits import RequestLimits, retries_option, timeout_option
from distillscale.planning.flops import SCENARIOS, get_scenario
from distillscale.planning.options import FLOPS_HELP, ON_POLICY_FLAGS, PlanSettings
from distillscale.settings import quantity
from distillscale.units import Quantity, format_quantity, parse_quantity
from distillscale.urls import is_url, misspelled_url, redacted_url



def _check_figure(path: Path | None, overwrite: bool, law: str, flag: str | None = "--plot",
                  inputs: tuple = ()) -> None:
    """A figure file to write: a .png or .svg that is not an input (the law, and `inputs`), and a
    figure of ours to replace."""
    from distillscale.planning import plots

    if path is not None:
        plots.check_figure_path(path)
        check_output_file(path, overwrite=overwrite, is_ours=plots.is_figure_file, inputs=[law, *inputs], flag=flag,
                          what="figure distillscale drew")


@command(PlanSettings)
def plan_command(settings: PlanSettings) -> None:
    """Compute-optimal distillation for a budget: teacher, tokens, loss, and distil or pretrain?

    Without --student-params, finds the best student size per scenario, searched inside the
    law's data (sizes and tokens per parameter) unless --min-params and the like widen it.
    With --on-policy (or the options after it: --on-policy-fraction, --logit-cache, --teacher-remote ...), compares
    supervised, off-policy and on-policy distillation of the given student from the given teacher."""
    from distillscale.planning import plots
    from distillscale.planning.plan import plan_from_settings

    _check_figure(settings.plot, settings.overwrite, settings.law,
                  inputs=tuple(str(p) for p in (settings.hyperparameter_law, settings.student_model,
                                                settings.downstream_law) if p is not None))
    try:
        result = plan_from_settings(settings)
    except ParameterError as exc:  # the on-policy settings' flags are named apart from their fields
        raise UserError(exc.for_cli(ON_POLICY_FLAGS)) from None
    _print_plan(result, settings)
    if settings.plot is not None and result.kind != "supervised":
        plots.save_figure(plots.plot_plan(result), settings.plot)


def _print_plan(result, settings: PlanSettings) -> None:
    """The plan's text (or its JSON), then its warnings on stderr (`warning_lines`: the list `--json`
    holds, a class of them in one line unless --explain or --json)."""
    from distillscale.planning.brief import brief_renderables, can_brief
    from distillscale.planning.render import plan_renderables
    from distillscale.planning.repetition import pools_line
    from distillscale.planning.warnings import warning_lines

    # only where the correction moved the plan's numbers (`planning.correction`)
    note = result.correction.describe() if result.correction is not None else None
    if settings.as_json:  # the plan's record says it too (`bias_correction`)
        print_json(result.to_dict())
    else:
        brief = not settings.explain and can_brief(result)
        for item in brief_renderables(result) if brief else plan_renderables(result):
            console.print(item)
        for line in _loss_units_lines(result):  # prose: wrapped at spaces to the terminal, never cut
            console.print(line, highlight=False)
        if note is not None:
            console.print(note, soft_wrap=True, highlight=False)
        pools = pools_line(result, full=not brief)   # which pool each model reads, how many times
        if pools is not None:
            console.print(pools, highlight=False)
        if not brief:
            _print_repetition(result)
        if result.data_limited is not None:   # training alone, self-distillation, an ensemble, at equal compute
            from distillscale.planning.data_limited import plan_lines, summary_lines

            for line in (summary_lines if brief else plan_lines)(result.data_limited):
                console.print(line, highlight=False, soft_wrap=True)
    from distillscale.planning.brief import said_in_brief

    said = said_in_brief(result) if not (settings.as_json or settings.explain) and can_brief(result) else set()
    for message in warning_lines([w for w in result.warnings if w not in said], settings.explain or settings.as_json):
        warn(message)   # --json: each, as its list


def _print_repetition(result) -> None:
    """Each run's repetition check, runs of one check (the model without a teacher of each scenario) in one
    paragraph."""
    checks = result.repetition
    paragraphs: dict[str, list[str]] = {}
    for name, check in checks.items():
        paragraphs.setdefault("; ".join(check.describe(format_quantity)), []).append(name)
    for text, names in paragraphs.items():
        console.print(f"Repetition ({', '.join(names)}): {text}")
    if checks and result.kind != "supervised" and result.laws.distillation is not None:
        from distillscale.laws.data_limited import DataLimitedLaw

        constants = DataLimitedLaw(result.laws).constants
        console.print(f"(a distilled student pays lambda = {constants.lam.value:.3g} of its size's penalty trained alone "
                      f"and kappa = {constants.kappa.value:.3g} of a teacher's trained on a pool: the data-limited "
                      f"law, measured at micro scale)")


def _loss_units_lines(result) -> list[str]:
    """What the plan's losses are (nats/token of the law's tokenizer on its text, and the headline
    student's loss in bits per byte of that text), and the teacher model's measured loss."""
    units, lines = result.laws.losses, []
    if result.teacher_model is not None:
        lines.append(result.teacher_model.describe())
    headline = result.headline
    bits = None if headline is None else units.bits_per_byte(headline.student_loss)
    lines.append(f"Losses are {units.describe()}" + ("" if bits is None else
                 f"; the student's {headline.student_loss:.4f} nats/token is {bits:.4f} bits/byte of that text"))
    return lines


class DistillMapSettings(CommandSettings):
    """`distillscale distill-map`."""

    command_path: ClassVar[str] = "distill-map"

    out: Path = option(..., help="figure file (.png or .svg)")
    overwrite: bool = option(False, help="replace the figure file if distillscale drew it")
    scenario: str = option("teacher-inference", help=", ".join(SCENARIOS))
    law: str = option("busbridge2025", help=LAW_HELP)
    resolution: int = option(16, min=2, max=64, help="grid points per axis (each is one plan)")
    flops: str = option("corrected", help=FLOPS_HELP)
    as_json: bool = option(False, flag="--json", help="print the grid as JSON")


@command(DistillMapSettings)
def distill_map_command(s: DistillMapSettings) -> None:
    """Map where distillation beats supervised training at equal compute (Busbridge Fig. 6)."""
    from distillscale.planning import plots
    from distillscale.planning.plan import planner_for

    laws = load_laws(s.law)
    name = get_scenario(s.scenario).name
    _check_figure(s.out, s.overwrite, s.law, flag=None)
    planner = planner_for(laws, s.flops)
    student_params = np.geomspace(1e8, 1e11, s.resolution)
    tokens = np.geomspace(1e9, 1e14, s.resolution)
    advantage, verdicts = planner.verdict_map(name, student_params, tokens)
    plots.save_figure(plots.plot_distill_map(planner, name, student_params, tokens, verdicts), s.out)
    flat = [verdict for row in verdicts for verdict in row]
    if s.as_json:
        print_json({"law": laws.name, "scenario": name, "student_params": student_params,
                    "supervised_tokens": tokens,
                    # Delta = distilled - supervised (point values), as every plan's (negative: distil)
                    "distilled_minus_alone": np.where(np.isnan(advantage), None, -advantage).tolist(),
                    "verdicts": verdicts, "figure": str(s.out)})
        return
    console.print(f"of {advantage.size} cells (scenario {name}, law {laws.name}), each read off its Δ's interval: "
                  f"{_verdict_counts(flat)}; the map of these verdicts written to {s.out}")


def _verdict_counts(verdicts: list) -> str:
    """'distill in 3, pretrain in 5, ...' over a map's cells, and how many cannot be planned (None)."""
    counts = ", ".join(f"{verdict} in {verdicts.count(verdict)}" for verdict in
                       ("distill", "pretrain", "too close to call", "cannot tell at this distance") if verdict in verdicts)
    return counts + (f"; {verdicts.count(None)} cannot be planned" if None in verdicts else "")


class TeacherRankingSettings(CommandSettings):
    """`distillscale teacher`."""

    command_path: ClassVar[str] = "teacher"

    student_params: Annotated[float, quantity("--student-params", kind=Quantity.PARAMS)] = option(
        ..., help="student non-embedding parameters, e.g. 546M")
    student_tokens: Annotated[float | None, quantity("--student-tokens", kind=Quantity.TOKENS)] = option(
        None, help="distillation tokens, e.g. 11B (or --compute)")
    compute: Annotated[float | None, quantity("--compute", kind=Quantity.FLOPS)] = option(
        None, help="a FLOP budget instead of --student-tokens: each teacher's logits paid at its own FLOPs per "
                   "token, so a larger teacher buys fewer student tokens, against the student alone on all of it")
    candidates: list[str] | None = option(
        None, help="a teacher (repeatable): a model directory (a run, or a Hugging Face causal LM with its "
                 "tokenizer: N from its config, L_T measured on the law's text in the law's tokenizer, kept "
                 "and reused), a served teacher's URL (`distillscale serve-teacher`: N and FLOPs as it states "
                 "them, L_T measured through it), or a CSV/JSONL of teachers (teacher_loss, or teacher_params "
                 "and teacher_tokens; optional name); default: a ladder of sizes")
    teacher_unique_tokens: Annotated[float | None, quantity("--teacher-unique-tokens", kind=Quantity.TOKENS)] = option(
        None, help="the unique tokens a teacher given by its size and tokens (the default ladder, a table's row "
                   "without a loss) was trained on: its loss is `predict supervised --unique-tokens`'s, and its "
                   "student inherits part of its repetition penalty (the data-limited law); measured teachers "
                   "keep theirs")
    unique_tokens: Annotated[float | None, quantity("--unique-tokens", kind=Quantity.TOKENS)] = option(
        None, help="the unique tokens the student's tokens are drawn from (default: fresh data): its own "
                   "repetition penalty under the data-limited law, as `plan` and `predict distillation` price it")
    other_corpus: bool = option(False, help="with --candidates runs: the law's corpus shares no text with the "
                                            "corpora they trained on; measure them there without the check that "
                                            "keeps their training text out of the law's validation split")
    law: str = option("busbridge2025", help=LAW_HELP)
    as_json: bool = option(False, flag="--json", help="print JSON")
    plot: Path | None = option(None, help="write the U-curve (.png or .svg)")
    overwrite: bool = option(False, help="replace the figure file if distillscale drew it")
    teacher_timeout: float | None = timeout_option()
    teacher_retries: int | None = retries_option()

    @field_validator("candidates", mode="before")
    @classmethod
    def _no_empty_candidate(cls, values: object) -> object:
        """--candidates "" (an unset variable) would read as the current directory: refused as a path is."""
        if isinstance(values, (list, tuple)) and any(isinstance(value, str) and not value.strip() for value in values):
            raise ValueError("is empty: give a path or a URL (write . for the current directory)")
        return values

    @model_validator(mode="after")
    def _served_candidate_limits(self) -> "TeacherRankingSettings":
        wrong = next((item for item in self.candidates or [] if misspelled_url(item)), None)
        limited = self.teacher_timeout is not None or self.teacher_retries is not None
        if wrong is not None and limited:   # the URL is what is wrong, not the limits beside it
            raise ParameterError("candidates", "{} {value!r} " + path_kind(wrong), value=redacted_url(wrong))
        for name in ("teacher_timeout", "teacher_retries"):
            if getattr(self, name) is not None and not any(is_url(item) for item in self.candidates or []):
                raise ParameterError((name, "candidates"), "{} is for a served teacher: give one in {} as its URL, "
                                                           "or leave it out")
        return self


@command(TeacherRankingSettings)
def teacher_command(s: TeacherRankingSettings) -> None:
    """Rank teachers for a student: predicted student loss each, the optimal teacher loss L_T*,
    and where the capacity gap begins (L_T / Ltilde_S = d1)."""
    from distillscale.planning import plots
    from distillscale.planning.render import teacher_renderables
    from distillscale.planning.teacher_plan import pools_line, rank_teachers_for
    from distillscale.planning.warnings import warning_lines

    _check_figure(s.plot, s.overwrite, s.law)
    ranking = rank_teachers_for(s.law, student_params=s.student_params, student_tokens=s.student_tokens,
                                compute=s.compute, candidates=list(s.candidates or []) or None,
                                teacher_unique_tokens=s.teacher_unique_tokens, unique_tokens=s.unique_tokens,
                                progress=progress_printer("teacher"),
                                limits=RequestLimits.given(s.teacher_timeout, s.teacher_retries),
                                other_corpus=s.other_corpus)
    if s.plot is not None:
        plots.save_figure(plots.plot_teacher_u_curve(ranking), s.plot)
    if s.as_json:
        print_json({"law": ranking.law, **ranking.to_dict()})
    for item in [] if s.as_json else [*teacher_renderables(ranking.law, ranking), pools_line(ranking)]:
        if item is not None:
            console.print(item, highlight=False)
    for message in warning_lines(ranking.warnings, s.as_json, "--json lists each"):  # after the answer, as `plan`
        warn(message)


def _sizes(text: object) -> object:
    """--students: sizes, comma-separated."""
    if not isinstance(text, str):
        return text
    return [parse_quantity(part.strip(), "--students", kind=Quantity.PARAMS) for part in text.split(",")]


class CapacityGapSettings(CommandSettings):
    """`distillscale capacity-gap`."""

    command_path: ClassVar[str] = "capacity-gap"

    runs: Path | None = option(None, help="CSV/JSONL of distillation runs with student_params, teacher_params "
                                          "and student_loss")
    students: Annotated[list[float], BeforeValidator(_sizes)] = option(
        "143M,546M,1.82B,7.75B", help="student sizes for the law's relation (comma-separated)")
    tokens_per_param: float = option(20.0, min=1e-3, help="student tokens per parameter for the law's relation")
    confidence: float = option(0.9, min=0.5, max=0.999, help="coverage of the interval on k")
    drop_invalid: bool = option(False, help="skip rows with bad values")
    law: str = option("busbridge2025", help=LAW_HELP)
    as_json: bool = option(False, flag="--json", help="print JSON")


@command(CapacityGapSettings)
def capacity_gap_command(s: CapacityGapSettings) -> None:
    """The linear law of capacity gap N_T* = k N_S: fitted to runs, and as the distillation law
    predicts it for compute-optimal teachers."""
    from distillscale.planning.plan import planner_for
    from distillscale.planning.teacher import LinearCapacityGap
    from distillscale.tables import read_table

    laws, sizes, fits = load_laws(s.law), s.students, {}
    if s.runs is not None:
        columns = ["student_params", "teacher_params", "student_loss"]
        table = read_table(s.runs).numeric(columns, drop_invalid=s.drop_invalid)
        fits["runs"] = LinearCapacityGap(s.confidence).fit(*(table[c] for c in columns))
        sizes = fits["runs"].student_params_.tolist()
    if laws.distillation is not None:
        try:
            fits["law"] = LinearCapacityGap.from_law(planner_for(laws), sizes, s.tokens_per_param, s.confidence)
        except ParameterError as exc:
            raise UserError(exc.for_cli({"student_params": "--students"})) from None
    elif s.runs is None:
        laws.require_distillation()
    if s.as_json:
        print_json({"law": laws.name, **{name: fit.to_dict() for name, fit in fits.items()}})
    else:
        _print_capacity_gaps(s, laws.name, fits)


def _print_capacity_gaps(s: CapacityGapSettings, law: str, fits: dict) -> None:
    sources = {"runs": f"best observed teachers in {s.runs}",
               "law": f"law {law}, compute-optimal teachers, students at {s.tokens_per_param:g} tokens/parameter"}
    confidence = s.confidence
    for name, fit in fits.items():
        table = Table(title=f"Capacity gap from {sources[name]}")
        table.add_column("student N_S", justify="right")
        table.add_column("best teacher N_T*", justify="right")
        table.add_column("N_T* / N_S", justify="right")
        for student, teacher in zip(fit.student_params_, fit.teacher_params_):
            table.add_row(format_quantity(student), format_quantity(teacher), f"{teacher / student:.2f}")
        console.print(table)
        interval = (f"{confidence:.0%} interval not identified: every size gives the same ratio"
                    if fit.ratio_interval_ is None else
                    f"{confidence:.0%} interval {fit.ratio_interval_[0]:.3g} to {fit.ratio_interval_[1]:.3g}")
        slope = ("" if fit.exponent_ is None else
                 f"; free log-log slope {fit.exponent_:.2f} " + (
                     "(its error not identified: the sizes lie on a line)" if fit.exponent_stderr_ is None
                     else f"+/- {fit.exponent_stderr_:.2g} (1 is linear)"))
        console.print(styled("N_T* = k N_S with k = ", (f"{fit.ratio_:.3g}", "bold"), f" ({interval}){slope}"))
