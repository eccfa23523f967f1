"""`distillscale predict ...` (what loss will this model reach under a law?) and `distillscale fit ...`
(fit the laws to your runs): each parses its flags, makes one library call (`laws.predict`,
`laws.calibrate`) and prints the result (`laws.render`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import typer
from pydantic import AfterValidator, BeforeValidator, model_validator

from distillscale.cli_options import CommandSettings, argument, command, option
from distillscale.console import Table, console, print_json, progress_printer, styled, warn
from distillscale.errors import ParameterError, UserError
from distillscale.io import check_output_file
from distillscale.laws.lawset import (BIAS_CORRECTION_HELP, FORM_HELP, LAW_HELP, NO_BIAS_CORRECTION_HELP, ComputeSettings,
                                     is_law_file, load_laws)
from distillscale.laws.repetition import DEFAULT_MAX_PENALTY
from distillscale.settings import quantity
from distillscale.units import Quantity, format_quantity, parse_quantity

predict_app = typer.Typer(help="Predict validation loss (nats/token) from a law.",
                          no_args_is_help=True)


class PredictSupervisedSettings(CommandSettings):
    """`distillscale predict supervised`."""

    command_path: ClassVar[str] = "predict supervised"

    law: str = option("busbridge2025", help=LAW_HELP)
    params: Annotated[float, quantity("--params", kind=Quantity.PARAMS)] = option(
        ..., help="non-embedding parameters, e.g. 546M")
    tokens: Annotated[float, quantity("--tokens", kind=Quantity.TOKENS)] = option(..., help="training tokens, e.g. 11B")
    unique_tokens: Annotated[float | None, quantity("--unique-tokens", kind=Quantity.TOKENS)] = option(
        None, help="unique tokens U behind --tokens, e.g. 2B: the data repeats tokens / U times and the loss "
                   "accounts for it (Muennighoff et al. 2023)")
    max_penalty: float | None = option(
        None, help=f"with --unique-tokens: the loss penalty from repetition (fraction) the unique data needed "
                   f"should keep within (default: {DEFAULT_MAX_PENALTY:g})")
    no_bias_correction: bool = option(False, help=NO_BIAS_CORRECTION_HELP)
    as_json: bool = option(False, flag="--json", help="print JSON")

    @model_validator(mode="before")
    @classmethod
    def _penalty_needs_repetition(cls, given: dict) -> dict:
        """Before the values: without repetition --max-penalty is the first thing to fix."""
        if given.get("max_penalty") is not None and given.get("unique_tokens") is None:
            raise UserError("--max-penalty needs --unique-tokens: without repetition there is no penalty to keep "
                            "within; leave it out, or add --unique-tokens")
        return given

    @model_validator(mode="after")
    def _penalty_fraction(self) -> "PredictSupervisedSettings":
        if self.max_penalty is not None and not 0 < self.max_penalty < 1:
            raise UserError(f"--max-penalty must be a fraction between 0 and 1 (e.g. 0.01 for 1%), got "
                            f"{self.max_penalty:g}")
        return self


@predict_app.command("supervised")
@command(PredictSupervisedSettings)
def predict_supervised(s: PredictSupervisedSettings) -> None:
    """Loss of a model trained directly on the data: L(N, D)."""
    from distillscale.laws.predict import predict_supervised as predict

    max_penalty = DEFAULT_MAX_PENALTY if s.max_penalty is None else s.max_penalty
    laws = load_laws(s.law, bias_correction=not s.no_bias_correction)
    result = predict(laws, s.params, s.tokens, s.unique_tokens, max_penalty)
    for message in result.warnings:
        warn(message)
    if s.as_json:
        print_json({**result.to_dict(), "bias_correction": laws.bias_note(), "interval_note": laws.interval_note(),
                    "losses": laws.losses.units_record({"loss": _triple(result.prediction)})})
        return
    if laws.bias_note() is not None:
        console.print(laws.bias_note(), soft_wrap=True, highlight=False)
    console.print(styled(f"L({format_quantity(result.params)} parameters, {format_quantity(result.tokens)} tokens) = ",
                         (f"{result.prediction.value:.4f}", "bold"),
                         f" nats/token{result.prediction.describe()}  (law: {result.law})"))
    if laws.interval_note() is not None:
        console.print(laws.interval_note(), highlight=False)
    if result.repetition is not None:
        for line in result.repetition.describe(format_quantity):
            console.print(line)


def _positive_loss(value: float | None) -> float | None:
    return value if value is None else parse_quantity(value, "--teacher-loss", kind=None)


class PredictDistillationSettings(CommandSettings):
    """`distillscale predict distillation`."""

    command_path: ClassVar[str] = "predict distillation"

    law: str = option("busbridge2025", help=LAW_HELP)
    student_params: Annotated[float, quantity("--student-params", kind=Quantity.PARAMS)] = option(
        ..., help="student non-embedding parameters")
    student_tokens: Annotated[float, quantity("--student-tokens", kind=Quantity.TOKENS)] = option(
        ..., help="distillation tokens")
    teacher_loss: Annotated[float | None, AfterValidator(_positive_loss)] = option(
        None, help="teacher validation loss (nats/token)")
    teacher_params: Annotated[float | None, quantity("--teacher-params", kind=Quantity.PARAMS)] = option(
        None, help="teacher non-embedding parameters")
    teacher_tokens: Annotated[float | None, quantity("--teacher-tokens", kind=Quantity.TOKENS)] = option(
        None, help="teacher pre-training tokens")
    unique_tokens: Annotated[float | None, quantity("--unique-tokens", kind=Quantity.TOKENS)] = option(
        None, help="unique tokens U behind --student-tokens, e.g. 50M: the student (and the same student trained "
                   "alone) repeats them student tokens / U times, and a teacher given by --teacher-params and "
                   "--teacher-tokens was trained on them too (unless --teacher-unique-tokens)")
    teacher_unique_tokens: Annotated[float | None, quantity("--teacher-unique-tokens", kind=Quantity.TOKENS)] = option(
        None, help="unique tokens behind --teacher-tokens, when the teacher's pool is not the student's: its loss is "
                   "then `predict supervised --unique-tokens`'s; with --teacher-loss, --teacher-params and "
                   "--teacher-tokens, the measured teacher's pool (its loss kept as given; its loss with fresh data is "
                   "that less its pool's penalty)")
    generations: int | None = option(
        None, min=1, help="with --unique-tokens and no teacher: a chain of self-distillation at fixed tokens per model "
                          "(each generation the student of the one before, --student-params on --student-tokens of "
                          "the pool): each generation's loss and Δ against the model trained alone, with intervals, "
                          "where another generation stops paying, and the FLOPs")
    members: int | None = option(
        None, min=2, help="with --unique-tokens and no teacher: ensembles of 2, 4, ... up to this many models trained "
                          "alone at fixed tokens per model, and the student of each: losses, Δ against the model "
                          "trained alone, where another member stops paying, and the FLOPs")
    no_bias_correction: bool = option(False, help=NO_BIAS_CORRECTION_HELP)
    as_json: bool = option(False, flag="--json", help="print JSON")

    @model_validator(mode="before")
    @classmethod
    def _law_has_distillation(cls, given: dict) -> dict:
        """Before the values: a law without a distillation law is the first thing to fix."""
        load_laws(given.get("law", cls.model_fields["law"].default)).require_distillation()
        return given

    @model_validator(mode="after")
    def _fixed_tokens(self) -> "PredictDistillationSettings":
        """--generations and --members answer on a pool, from the student trained alone: no teacher."""
        asked = [flag for flag, value in (("--generations", self.generations), ("--members", self.members))
                 if value is not None]
        if not asked:
            return self
        if self.unique_tokens is None:
            raise UserError(f"{asked[0]} answers on a pool of unique tokens: give --unique-tokens")
        teacher = [flag for flag, value in (("--teacher-loss", self.teacher_loss), ("--teacher-params", self.teacher_params),
                                            ("--teacher-tokens", self.teacher_tokens),
                                            ("--teacher-unique-tokens", self.teacher_unique_tokens)) if value is not None]
        if teacher:
            raise UserError(f"{asked[0]} starts from the student trained alone (generation 0, each ensemble's members): "
                            f"leave out {', '.join(teacher)}")
        return self


@predict_app.command("distillation")
@command(PredictDistillationSettings)
def predict_distillation(s: PredictDistillationSettings) -> None:
    """Loss of a student distilled from a teacher: L_S(N_S, D_S, L_T). With --unique-tokens and --generations or
    --members: a chain and ensembles on the pool at fixed tokens per model (no teacher: generation 0 trained alone)."""
    from distillscale.laws.predict import predict_distillation as predict

    laws = load_laws(s.law, bias_correction=not s.no_bias_correction)
    if s.generations is not None or s.members is not None:   # at fixed tokens per model, no teacher
        return _print_fixed_tokens(laws, s)
    result = predict(laws, s.student_params, s.student_tokens, teacher_loss=s.teacher_loss,
                     teacher_params=s.teacher_params, teacher_tokens=s.teacher_tokens,
                     unique_tokens=s.unique_tokens, teacher_unique_tokens=s.teacher_unique_tokens)
    for message in result.warnings:
        warn(message)
    if s.as_json:
        print_json({**result.to_dict(), "bias_correction": laws.bias_note(), "interval_note": laws.interval_note(),
                    "losses": laws.losses.units_record({"student_loss": _triple(result.prediction),
                                                        "teacher_loss": (result.teacher_loss, None, None)})})
    else:
        console.print(_distillation_table(result))
        if laws.bias_note() is not None:
            console.print(laws.bias_note(), soft_wrap=True, highlight=False)
        if laws.interval_note() is not None:
            console.print(laws.interval_note(), highlight=False)


def _print_fixed_tokens(laws, s: PredictDistillationSettings) -> None:
    from distillscale.laws.data_limited_render import print_fixed_tokens

    print_fixed_tokens(laws, s.student_params, s.student_tokens, s.unique_tokens, s.generations, s.members, s.as_json)


def _triple(prediction) -> tuple[float, float | None, float | None]:
    """(value, low, high) of a prediction, the interval's ends None without one."""
    return float(prediction.value), *((float(prediction.low), float(prediction.high)) if prediction.has_interval
                                      else (None, None))


def _distillation_table(result) -> Table:
    table = Table(title=f"Distillation prediction (law: {result.law})", show_header=False)
    table.add_row("student", f"{format_quantity(result.student_params)} parameters, "
                             f"{format_quantity(result.student_tokens)} tokens")
    table.add_row("teacher loss L_T", f"{result.teacher_loss:.4f} nats/token")
    table.add_row("distilled student loss L_S", styled((f"{result.prediction.value:.4f}", "bold"),
                                                       " nats/token" + result.prediction.describe()))
    table.add_row("supervised student loss", f"{result.supervised_loss:.4f} nats/token")
    difference = result.difference
    verdict = {"distill": "helps", "pretrain": "does not help"}.get(difference.verdict, difference.verdict)
    table.add_row("distillation", f"{verdict}: Δ = distilled - alone {difference.describe()}")
    table.add_row("L_T / Ltilde_S", f"{result.capacity_gap_ratio:.3f} (capacity gap near d1 = {result.d1:.3f})")
    for name, check in (("student's data", result.repetition), ("teacher's data", result.teacher_repetition)):
        if check is not None:
            table.add_row(name, f"{format_quantity(check.unique_tokens)} unique tokens read {check.epochs:.3g} times "
                                f"({format_quantity(check.tokens)} tokens), {check.penalty:+.2%} loss over fresh data")
    pool = result.pools.get("teacher", {}).get("unique_tokens")
    if result.teacher_measured and pool is None:
        table.add_row("teacher's data", "measured: its loss as given (--teacher-loss), its own data")
    elif result.teacher_measured:
        table.add_row("teacher's data", f"measured: its loss as given (--teacher-loss); {format_quantity(pool)} unique "
                                        f"tokens read {result.pools['teacher']['epochs']:.3g} times: its loss with "
                                        "fresh data is that less its pool's penalty")
    if result.data_limited is not None:
        from distillscale.laws.data_limited_render import data_limited_rows

        data_limited_rows(table, result.data_limited)
    return table


# --- distillscale fit ... -------------------------------------------------------------------------

fit_app = typer.Typer(help="Fit a scaling law to your runs (CSV or JSONL), with bootstrap intervals.",
                      no_args_is_help=True)

FILE_HELP = "runs: a CSV file with a header row, or JSONL (one JSON object per run)"
FIT_WHERE_HELP = ("hold-out mode: fit only on runs matching this filter and report the relative error "
                  "on the others, e.g. \"loss > 2.3\" or \"N >= 1e8 and loss < 3\". Names: any column "
                  "(`Model Size` in backquotes when it has spaces) and N, D, L for parameters, tokens, "
                  "loss; operators < <= > >= == != and, or, not, parentheses")
GRID_HELP = ("replace one parameter's start values, e.g. --grid alpha=0.3,0.5 (repeatable; parameters "
             "are named as in the saved fit record: log_E, log_A, alpha, ...)")
OVERWRITE_HELP = "replace the --out file if it is a law file distillscale wrote (never another file)"
DROP_HELP = "skip runs with missing, NaN or non-positive values (they are counted) instead of failing"
LOSS_TOKENIZER_HELP = ("the tokenizer the runs' losses were measured with (a tokenizer.json, or a tokenizer or model "
                       "directory), recorded in the law: a teacher's loss must be on it to plan with the law")
LOSS_TEXT_HELP = ("the text the runs' losses were measured on, recorded in the law: a prepared corpus directory "
                  "(its validation split; its tokenizer too), or the name of a public set (e.g. \"C4 en validation\")")
N_CTX_HELP = ("the runs' context length in tokens: the law prices each student's attention at it (default 4096); "
              "the vocabulary priced is --tokenizer's")
NOT_GIVEN_NOTE = ("the runs' losses are recorded as nats/token of a tokenizer and text not given: pass --tokenizer "
                  "and --text to record them (a teacher's measured loss can then be checked against the law)")


def _loss_identity(tokenizer: Path | None, text: str | None):
    """What the runs' losses are, from --tokenizer and --text (checked before the runs are read)."""
    from distillscale.data.loss_identity import loss_identity

    try:
        return loss_identity(tokenizer, text)
    except UserError as exc:  # named by the flag whose value it refuses
        raise UserError(f"{'--text' if str(exc).startswith('text ') else '--tokenizer'}: {exc}") from None


def _say_unnamed(identity, tokenizer: Path | None, text: str | None) -> None:
    """Said once, after the fit (bad input is one line without it), when the losses' units are not named."""
    if not identity.given:
        warn(NOT_GIVEN_NOTE if tokenizer is None and text is None else
             f"the runs' losses are recorded as {identity.describe()}: give both --tokenizer and --text")


def _parse_grid(specs: list[str] | None) -> dict[str, tuple[float, ...]]:
    """`["alpha=0.3,0.5", "log_E=0"]` -> {"alpha": (0.3, 0.5), "log_E": (0.0,)}."""
    grid = {}
    for spec in specs or []:
        name, _, values = spec.partition("=")
        try:
            grid[name.strip()] = tuple(float(v) for v in values.split(","))
        except ValueError:
            raise UserError(f"malformed --grid {spec!r}: write NAME=V1,V2,... such as alpha=0.3,0.5") from None
        if not name.strip() or not values.strip():
            raise UserError(f"malformed --grid {spec!r}: write NAME=V1,V2,... such as alpha=0.3,0.5")
    return grid


def _fit_rows(runs, names: dict[str, np.ndarray], fit_where: str | None) -> np.ndarray | None:
    """--fit-where as a mask of the runs to fit on (None without it); names are N, D, L (and L_T)
    besides the file's own columns."""
    if fit_where is None:
        return None
    from distillscale.tables import parse_filter

    table_columns = dict.fromkeys(c for row in runs.rows for c in row)  # ordered, unique
    columns = {**names, **{c: [row.get(c) for row in runs.rows] for c in table_columns}}
    mask = parse_filter(fit_where).mask(columns)
    if not mask.any():
        raise UserError(f"--fit-where {fit_where!r} matches none of the {len(runs)} runs: "
                        "loosen the filter")
    return mask


def _supervised_columns(table, params_col: str, loss_col: str, tokens_col: str | None,
                        flops_col: str | None, drop_invalid: bool, total_params_col: str | None = None,
                        unique_tokens_col: str | None = None):
    """(the table's checked rows, the runs as the library maps them, names for filters): the file's
    rows are checked here (line numbers, --drop-invalid), the columns mapped by `supervised_runs`,
    as from Python (tokens from a column or C / 6N)."""
    from distillscale.laws.selection import supervised_runs

    if tokens_col and flops_col:
        raise UserError("give either --tokens-col or --flops-col, not both")
    amount_col = flops_col or tokens_col or "tokens"
    optional = {"total_params": total_params_col, "unique_tokens": unique_tokens_col}
    flags = ["--params-col", "--flops-col" if flops_col else "--tokens-col", "--loss-col",
             *(f"--{name.replace('_', '-')}-col" for name, column in optional.items() if column)]
    rows = table.numeric([params_col, amount_col, loss_col, *filter(None, optional.values())],
                         drop_invalid=drop_invalid, flags=flags)
    runs = supervised_runs(rows.columns, params=params_col, loss=loss_col, **(
        {"flops": flops_col} if flops_col else {"tokens": amount_col}),
        **{name: column for name, column in optional.items() if column})
    names = {"N": runs["params"], "D": runs["tokens"], "L": runs["loss"], **({"C": rows[flops_col]} if flops_col else {})}
    return rows, runs, names


def _distillation_columns(table, columns: list[str], teacher_loss_col: str, with_supervised: bool,
                          drop_invalid: bool):
    """(student rows, supervised rows or None, lines, the table's columns) of both kinds of rows
    together, the supervised rows (empty teacher loss) first with a NaN teacher loss; `columns` are
    N, D, L. The file's rows are checked here; `calibrate` maps the columns, as from Python."""
    from distillscale.tables import RunTable

    table.require(*columns, teacher_loss_col)
    is_supervised = [v is None or str(v).strip() == "" for v in table.values(teacher_loss_col)]

    def subset(keep) -> RunTable:
        return RunTable(table.source, table.columns, tuple(r for r, k in zip(table.rows, keep) if k),
                        tuple(line for line, k in zip(table.lines, keep) if k))

    flags = ["--student-params-col", "--student-tokens-col", "--loss-col", "--teacher-loss-col"]
    students = subset([not s for s in is_supervised]).numeric(columns + [teacher_loss_col], drop_invalid=drop_invalid,
                                                              flags=flags)
    supervised = subset(is_supervised).numeric(columns, drop_invalid=drop_invalid) if with_supervised else None
    parts = [supervised, students] if supervised is not None else [students]
    lines = np.concatenate([part.lines for part in parts])
    joined = {c: np.concatenate([part[c] for part in parts]) for c in columns}
    joined[teacher_loss_col] = np.concatenate([np.full(len(parts[0]), np.nan)] * (len(parts) - 1)
                                              + [students[teacher_loss_col]])
    return students, supervised, lines, joined


def _parse_prior(text: object) -> tuple[float, float] | None:
    """`"1.7,0.1"` -> (1.7, 0.1)."""
    if text is None or isinstance(text, (tuple, list)):
        return text
    try:
        mean, sd = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"malformed --irreducible-loss-prior {text!r}: write MEAN,SD such as 1.7,0.1") from None
    return mean, sd


class FitSupervisedSettings(CommandSettings):
    """`distillscale fit supervised`."""

    command_path: ClassVar[str] = "fit supervised"

    file: Path = argument(help=FILE_HELP)
    params_col: str = option("params", help="column of non-embedding parameters N")
    loss_col: str = option("loss", help="column of validation loss (nats/token)")
    tokens_col: str | None = option(None, help="column of training tokens D (default: tokens)")
    flops_col: str | None = option(None, help="column of training FLOPs C instead; D = C / (6N)")
    total_params_col: str | None = option(
        None, help="column of total parameters (with embeddings): with --form auto, fits on total "
                   "parameters are candidates too (refused with another --form)")
    form: str = option("auto", help=FORM_HELP)
    irreducible_loss: float | None = option(
        None, help="hold E at this loss (nats/token); with --form auto, a candidate beside E fitted")
    irreducible_loss_prior: Annotated[tuple[float, float] | None, BeforeValidator(_parse_prior)] = option(
        None, help="MEAN,SD: a Gaussian prior on E (nats/token); with --form auto, a candidate beside E fitted")
    min_tokens_per_param: float | None = option(
        None, help="fit only runs with at least this many tokens per parameter (drops warm-up-dominated "
                   "runs); with --form auto, a candidate beside every run")
    unique_tokens_col: str | None = option(
        None, help="column of unique tokens U behind each run's tokens: when runs repeat data (D > U), "
                   "the data-constrained form (Muennighoff et al. 2023, R_D*) is a candidate")
    backtest: bool = option(True, help="backtest extrapolation: fit on smaller sizes, predict larger ones")
    bias_correction: bool = option(False, help=BIAS_CORRECTION_HELP)
    no_bias_correction: bool = option(False, help="the law's raw predictions, without the cross-ladder correction "
                                                  "(the default; accepted so that scripts which asked for it run)")
    huber_delta: float | None = option(
        None, help="Huber delta of the fits to the runs, on log-loss residuals (default: 1e-3 for "
                   "chinchilla and tied, 1e-4 for busbridge); with --form auto, each form's (the "
                   "median's refit is a least-squares fit to their predictions)")
    bootstrap: int = option(1000, help="bootstrap resamples (0: no intervals)")
    level: float = option(0.9, help="interval level")
    grid: list[str] | None = option(None, help=GRID_HELP + "; a grid replaces variable projection by the "
                                               "multi-start grid search")
    fit_where: str | None = option(None, help=FIT_WHERE_HELP)
    drop_invalid: bool = option(False, help=DROP_HELP)
    seed: int = option(0, help="seed of the bootstrap resampling")
    name: str | None = option(None, help="name of the fitted law (default: file name)")
    tokenizer: Path | None = option(None, help=LOSS_TOKENIZER_HELP)
    text: str | None = option(None, help=LOSS_TEXT_HELP)
    n_ctx: int | None = option(None, min=1, help=N_CTX_HELP)
    out: Path | None = option(None, help="save the law as JSON, usable as --law FILE")
    overwrite: bool = option(False, help=OVERWRITE_HELP)
    as_json: bool = option(False, flag="--json", help="print JSON")


@fit_app.command("supervised")
@command(FitSupervisedSettings)
def fit_supervised(s: FitSupervisedSettings) -> None:
    """Fit L(N, D) = E + (A/N^alpha + B/D^beta)^gamma; with --form auto, the median of the chinchilla,
    tied and busbridge forms refitted into one law (each form backtested on extrapolation)."""
    import distillscale.laws.calibrate  # noqa: F401  (the fit extra's torch, asked for before any input is read)
    from distillscale.tables import read_table

    if s.out:
        check_output_file(s.out, overwrite=s.overwrite, is_ours=is_law_file, inputs=[s.file],
                          what="distillscale law file")
    losses = _loss_identity(s.tokenizer, s.text)
    rows, runs, names = _supervised_columns(read_table(s.file), s.params_col, s.loss_col, s.tokens_col,
                                            s.flops_col, s.drop_invalid, s.total_params_col, s.unique_tokens_col)
    calibration = _calibrate_supervised(s, rows, runs, names)
    _say_unnamed(losses, s.tokenizer, s.text)
    _report_supervised(s, calibration.laws(s.name or s.file.stem, source=f"fitted to {s.file}", losses=losses,
                                          compute=ComputeSettings.of(losses, s.n_ctx)),
                       calibration, rows)


def _calibrate_supervised(s: FitSupervisedSettings, rows, runs, names):
    """`laws.calibrate` on the checked columns, with the command's options; errors named by flag."""
    from distillscale.laws.calibrate import calibrate

    try:
        return calibrate(
            runs, total_params="total_params" if s.total_params_col else None, form=s.form,
            unique_tokens="unique_tokens" if s.unique_tokens_col else None,
            holdout=_fit_rows(rows, names, s.fit_where), source=_supervised_source(s, rows.n_dropped),
            progress=progress_printer("fit"), supervised_options=dict(
                irreducible_loss=s.irreducible_loss, irreducible_loss_prior=s.irreducible_loss_prior,
                min_tokens_per_param=s.min_tokens_per_param, backtest=s.backtest, huber_delta=s.huber_delta,
                bootstrap=s.bootstrap, level=s.level, grid=_parse_grid(s.grid) or None, seed=s.seed,
                bias_correction=s.bias_correction and not s.no_bias_correction))
    except ParameterError as exc:  # the columns' flags
        raise UserError(exc.for_cli({"total_params": "--total-params-col",
                                     "unique_tokens": "--unique-tokens-col"})) from None


def _supervised_source(s: FitSupervisedSettings, n_dropped: int) -> dict:
    """What the supervised fit was made from, for its record."""
    source = {"file": str(s.file), "params_col": s.params_col, "loss_col": s.loss_col,
              "tokens_col": None if s.flops_col else (s.tokens_col or "tokens"), "flops_col": s.flops_col,
              "total_params_col": s.total_params_col, "fit_where": s.fit_where, "n_dropped": n_dropped}
    return {**source, "unique_tokens_col": s.unique_tokens_col} if s.unique_tokens_col else source


def _report_supervised(s: FitSupervisedSettings, laws, calibration, rows) -> None:
    from distillscale.laws.render import fit_json, print_fit

    if s.out:
        laws.save(s.out, overwrite=s.overwrite, inputs=[s.file], flag="--out", overwrite_flag="--overwrite")
    holdout = calibration.holdout.get("supervised")
    repetition = _repetition_summary(calibration.supervised) if s.unique_tokens_col else None
    if s.as_json:
        record = {**fit_json(laws.name, calibration.supervised, rows.n_dropped, holdout, s.fit_where, rows.lines, s.out),
                  "losses": laws.losses.to_json()}
        print_json({**record, "repetition": repetition} if s.unique_tokens_col else record)
        return
    print_fit(f"Supervised law fitted to {s.file.name}", calibration.supervised, rows.n_dropped, holdout, s.fit_where)
    if repetition is not None:
        console.print(repetition["text"])
    if s.out:
        console.print(f"saved to {s.out}: use it with --law {s.out}")


def _repetition_summary(fit) -> dict:
    """The data-constrained candidate's outcome, for `fit supervised --unique-tokens-col`."""
    record, law = fit.repetition_record, fit.law
    if record is None:
        return {"text": "Repetition: no run repeats its data (tokens <= unique tokens): the law assumes fresh data",
                "record": None}
    text = f"Repetition: {record['repeated_runs']} runs repeat data (up to {record['max_epochs']:.3g} epochs); "
    scored = record.get("backtest")
    if scored is None:
        text += record["chosen"]
    else:
        text += (f"mean |error| of the runs beyond {scored['fitted_up_to_epochs']:.3g} epochs predicted from the others: "
                 f"data-constrained {scored['mean_abs_error_data_constrained']:.2%}, repeats counted as new "
                 f"{scored['mean_abs_error_plain']:.2%} -> {record['chosen']}")
    if law.repetition is not None and law.repetition.source.startswith("repeats counted as new"):
        text += "; predict and plan --unique-tokens will count repeats as new"
    elif law.repetition is not None:
        low_high = law.repetition.interval
        text += f"; R_D* = {law.repetition.R_D_star:.3g}" + (
            f" ({fit.law.fit.level or 0.9:.0%} interval {low_high[0]:.3g}-{low_high[1]:.3g})" if low_high else "") + (
            f", {law.repetition.source}" if law.repetition.source else "")
    return {"text": text, "record": record,
            "R_D_star": law.repetition.R_D_star if law.repetition else None,
            "R_D_star_interval": list(law.repetition.interval) if law.repetition and law.repetition.interval else None}


class FitDistillationSettings(CommandSettings):
    """`distillscale fit distillation`."""

    command_path: ClassVar[str] = "fit distillation"

    file: Path = argument(help=FILE_HELP + ". Rows with an empty teacher loss are supervised runs of "
                          "students (no teacher): they fit the student's supervised law unless "
                          "--supervised-law is given")
    student_params_col: str = option("student_params", help="column of student non-embedding parameters N_S")
    student_tokens_col: str = option("student_tokens", help="column of student training tokens D_S")
    teacher_loss_col: str = option("teacher_loss", help="column of teacher loss L_T (empty: a supervised run)")
    loss_col: str = option("loss", help="column of student validation loss")
    supervised_law: str | None = option(
        None, help="law giving Ltilde_S (" + LAW_HELP + ") (default: fitted to the supervised rows of FILE)")
    supervised_form: str = option("auto", help="form of the supervised law fitted to supervised rows: " + FORM_HELP)
    form: str = option("auto", help="auto (the better of the two in the backtest), free (all 9 "
                                    "coefficients) or tied (alpha', beta' held at the supervised law's)")
    backtest: bool = option(True, help="backtest extrapolation: fit on the students of weaker teachers, "
                                       "predict those of stronger ones (coarse start grid for the refits)")
    huber_delta: float = option(1e-4, help="Huber delta")
    bootstrap: int = option(200, help="bootstrap resamples (0: no intervals)")
    level: float = option(0.9, help="interval level")
    grid: list[str] | None = option(None, help=GRID_HELP)
    fit_where: str | None = option(None, help=FIT_WHERE_HELP.replace(
        "N, D, L for parameters, tokens, loss", "N, D, L, L_T for student parameters, tokens, loss and "
        "teacher loss"))
    drop_invalid: bool = option(False, help=DROP_HELP)
    seed: int = option(0, help="seed of the bootstrap resampling")
    name: str | None = option(None, help="name of the fitted laws (default: file name)")
    tokenizer: Path | None = option(None, help=LOSS_TOKENIZER_HELP)
    text: str | None = option(None, help=LOSS_TEXT_HELP)
    n_ctx: int | None = option(None, min=1, help=N_CTX_HELP)
    out: Path | None = option(None, help="save the laws as JSON, usable as --law FILE")
    overwrite: bool = option(False, help=OVERWRITE_HELP)
    as_json: bool = option(False, flag="--json", help="print JSON")


@fit_app.command("distillation")
@command(FitDistillationSettings)
def fit_distillation(s: FitDistillationSettings) -> None:
    """Fit the distillation law L_S(N_S, D_S, L_T) (Busbridge Eq. 8) on the 108,000-start grid."""
    from distillscale.tables import read_table

    if s.out:
        check_output_file(s.out, overwrite=s.overwrite, is_ours=is_law_file, inputs=[s.file, s.supervised_law],
                          what="distillscale law file")
    losses = _loss_identity(s.tokenizer, s.text)
    student_law, columns = _supervised_law(s.supervised_law), [s.student_params_col, s.student_tokens_col, s.loss_col]
    students, supervised, lines, table = _distillation_columns(read_table(s.file), columns, s.teacher_loss_col,
                                                               student_law is None, s.drop_invalid)
    holdout = _distillation_holdout(s, students, supervised, table, [*columns, s.teacher_loss_col])
    calibration = _calibrate_distillation(s, table, student_law, students.n_dropped, holdout)
    _say_unnamed(losses, s.tokenizer, s.text)
    _report_distillation(s, calibration.laws(s.name or s.file.stem, source=f"fitted to {s.file}", losses=losses,
                                          compute=ComputeSettings.of(losses, s.n_ctx)),
                         calibration, students, lines)


def _calibrate_distillation(s: FitDistillationSettings, table, student_law, n_dropped: int, holdout):
    """`laws.calibrate` on the checked rows, with the command's options; errors named by flag."""
    from distillscale.laws.calibrate import calibrate

    try:
        return calibrate(
            table, params=s.student_params_col, tokens=s.student_tokens_col, loss=s.loss_col,
            teacher_loss=s.teacher_loss_col, supervised_law=student_law, form=s.supervised_form,
            distillation_form=s.form, supervised_options={"bootstrap": 0}, progress=progress_printer("fit"),
            source={"file": str(s.file), "fit_where": s.fit_where, "n_dropped": n_dropped,
                    "supervised_law": s.supervised_law or "fitted to the supervised rows"},
            holdout=holdout, distillation_options=dict(backtest=s.backtest, huber_delta=s.huber_delta,
                                                       bootstrap=s.bootstrap, level=s.level, grid=_parse_grid(s.grid),
                                                       seed=s.seed))
    except ParameterError as exc:  # this command's flags for the two laws' forms
        raise UserError(exc.for_cli({"form": "--supervised-form", "distillation_form": "--form"})) from None


def _distillation_holdout(s: FitDistillationSettings, students, supervised, table, columns: list[str]):
    """--fit-where over the students (N, D, L, L_T), every supervised row fitted; None without it."""
    n_supervised = len(supervised) if supervised is not None else 0
    fit_rows = _fit_rows(students, {name: table[column][n_supervised:] for name, column in zip(
        ("N", "D", "L", "L_T"), columns)}, s.fit_where)
    return None if fit_rows is None else np.concatenate([np.ones(n_supervised, bool), fit_rows])


def _supervised_law(spec: str | None):
    """--supervised-law's law (None: fit one to the supervised rows)."""
    try:
        return load_laws(spec).require_supervised() if spec is not None else None
    except UserError as exc:  # the message says "law": this command has two
        raise UserError(f"--supervised-law: {exc}") from None


def _report_distillation(s: FitDistillationSettings, laws, calibration, students, lines) -> None:
    from distillscale.laws.render import fit_json, print_fit

    if s.out:
        laws.save(s.out, overwrite=s.overwrite, inputs=[s.file], flag="--out", overwrite_flag="--overwrite")
    fit, holdout = calibration.distillation, calibration.holdout.get("distillation")
    if s.as_json:
        record = fit_json(laws.name, fit, students.n_dropped, holdout, s.fit_where, lines, s.out)
        print_json({**record, "supervised_coefficients": laws.supervised.coefficients(), "losses": laws.losses.to_json()})
        return
    print_fit(f"Distillation law fitted to {s.file.name}", fit, students.n_dropped, holdout, s.fit_where)
    console.print("student supervised law: " + ", ".join(
        f"{k}={v:.4g}" for k, v in laws.supervised.coefficients().items()))
    if s.out:
        console.print(f"saved to {s.out}: use it with --law {s.out}")


class PredictDownstreamSettings(CommandSettings):
    """`distillscale predict downstream`."""

    command_path: ClassVar[str] = "predict downstream"

    law: Path = option(..., help="a law file written by `fit downstream --out`")
    loss: float = option(..., help="validation loss (nats/token), e.g. the loss `predict supervised` gives")
    as_json: bool = option(False, flag="--json", help="print JSON")


def _downstream_error(s: PredictDownstreamSettings, law) -> float:
    """The law's error at --loss; a loss so far outside its runs' that the error leaves 0-1 is refused."""
    error = float(law.error(s.loss))
    if law.far_outside(s.loss) and not 0 <= error <= 1:  # as `plan --downstream-law` (planning.downstream)
        raise UserError(f"--loss {s.loss:g} is far outside the losses the law {s.law} was fitted to "
                        f"({law.loss_range[0]:.4g} to {law.loss_range[1]:.4g} nats/token), where it gives an error "
                        f"of {error:.3g}, outside 0-1: the loss is on another scale than the law's (another "
                        f"tokenizer or corpus, or other units); give a loss of the law's runs' data")
    return error


@predict_app.command("downstream")
@command(PredictDownstreamSettings)
def predict_downstream_command(s: PredictDownstreamSettings) -> None:
    """Predict a task set's average top-1 error at a validation loss, with its bootstrap interval."""
    from distillscale.laws.downstream import load_downstream_law

    if not (math.isfinite(s.loss) and s.loss > 0):
        raise UserError(f"--loss must be a positive number of nats/token, got {s.loss:g}")
    law = load_downstream_law(s.law)
    error = _downstream_error(s, law)
    low, high = law.interval(s.loss)
    outside = not law.loss_range[0] <= s.loss <= law.loss_range[1]
    if s.as_json:
        print_json({"task_set": law.task_set, "loss": s.loss, "error": error, "interval": [low, high],
                    "level": law.level, "extrapolated": outside})
        return
    if outside:
        warn(f"--loss {s.loss:g} is outside the losses the law was fitted to ({law.loss_range[0]:.4g} to "
             f"{law.loss_range[1]:.4g}): an extrapolation")
    console.print(f"error {error:.4f}  [{low:.4f}, {high:.4f}] ({law.level:.0%})"
                  + (f" on {law.task_set}" if law.task_set else ""))
