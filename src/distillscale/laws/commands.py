"""`distillscale predict ...` (what loss will this model reach under a law?) and `distillscale fit ...`
(fit the laws to your runs): each parses its flags, makes one library call (`laws.predict`,
`laws.calibrate`) and prints the result (`laws.render`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from distillscale.console import Table, console, print_json, progress_printer, styled, warn
from distillscale.errors import ParameterError, UserError
from distillscale.io import check_output_file
from distillscale.laws.lawset import LAW_HELP, is_law_file, load_laws
from distillscale.units import Quantity, format_quantity, parse_quantity

predict_app = typer.Typer(help="Predict validation loss (nats/token) from a law.",
                          no_args_is_help=True)


@predict_app.command("supervised")
def predict_supervised(
    law: str = typer.Option("busbridge2025", "--law", help=LAW_HELP),
    params: str = typer.Option(..., "--params", help="non-embedding parameters, e.g. 546M"),
    tokens: str = typer.Option(..., "--tokens", help="training tokens, e.g. 11B"),
    unique_tokens: str | None = typer.Option(
        None, "--unique-tokens", help="unique tokens U behind --tokens, e.g. 2B: the data repeats "
        "tokens / U times and the loss accounts for it (Muennighoff et al. 2023)"),
    max_penalty: float | None = typer.Option(None, "--max-penalty", help="with --unique-tokens: the loss penalty "
                                             "from repetition (fraction) the unique data needed should keep "
                                             "within (default: 0.01)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Loss of a model trained directly on the data: L(N, D)."""
    from distillscale.laws.predict import DEFAULT_MAX_PENALTY, predict_supervised as predict

    if max_penalty is not None and unique_tokens is None:
        raise UserError("--max-penalty needs --unique-tokens: without repetition there is no penalty to keep "
                        "within; leave it out, or add --unique-tokens")
    max_penalty = DEFAULT_MAX_PENALTY if max_penalty is None else max_penalty
    result = predict(load_laws(law), parse_quantity(params, "--params", kind=Quantity.PARAMS),
                     parse_quantity(tokens, "--tokens", kind=Quantity.TOKENS),
                     parse_quantity(unique_tokens, "--unique-tokens", kind=Quantity.TOKENS)
                     if unique_tokens is not None else None, _fraction(max_penalty, "--max-penalty"))
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json(result.to_dict())
        return
    console.print(styled(f"L({format_quantity(result.params)} parameters, {format_quantity(result.tokens)} tokens) = ",
                         (f"{result.prediction.value:.4f}", "bold"),
                         f" nats/token{result.prediction.describe()}  (law: {result.law})"))
    if result.repetition is not None:
        for line in result.repetition.describe(format_quantity):
            console.print(line)


def _fraction(value: float, flag: str) -> float:
    if not 0 < value < 1:
        raise UserError(f"{flag} must be a fraction between 0 and 1 (e.g. 0.01 for 1%), got {value:g}")
    return value


@predict_app.command("distillation")
def predict_distillation(
    law: str = typer.Option("busbridge2025", "--law", help=LAW_HELP),
    student_params: str = typer.Option(..., "--student-params", help="student non-embedding parameters"),
    student_tokens: str = typer.Option(..., "--student-tokens", help="distillation tokens"),
    teacher_loss: float | None = typer.Option(None, "--teacher-loss",
                                              help="teacher validation loss (nats/token)"),
    teacher_params: str | None = typer.Option(None, "--teacher-params",
                                              help="teacher non-embedding parameters"),
    teacher_tokens: str | None = typer.Option(None, "--teacher-tokens",
                                              help="teacher pre-training tokens"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Loss of a student distilled from a teacher: L_S(N_S, D_S, L_T)."""
    from distillscale.laws.extrapolation import CANNOT_TELL, far_beyond
    from distillscale.laws.predict import predict_distillation as predict

    laws = load_laws(law)
    laws.require_distillation()  # before the flags: a law without one is the first thing to fix
    result = predict(laws, parse_quantity(student_params, "--student-params", kind=Quantity.PARAMS),
                     parse_quantity(student_tokens, "--student-tokens", kind=Quantity.TOKENS),
                     teacher_loss=parse_quantity(teacher_loss, "--teacher-loss", kind=None)
                     if teacher_loss is not None else None,
                     teacher_params=parse_quantity(teacher_params, "--teacher-params", kind=Quantity.PARAMS)
                     if teacher_params else None,
                     teacher_tokens=parse_quantity(teacher_tokens, "--teacher-tokens", kind=Quantity.TOKENS)
                     if teacher_tokens else None)
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json(result.to_dict())
        return
    table = Table(title=f"Distillation prediction (law: {result.law})", show_header=False)
    table.add_row("student", f"{format_quantity(result.student_params)} parameters, "
                             f"{format_quantity(result.student_tokens)} tokens")
    table.add_row("teacher loss L_T", f"{result.teacher_loss:.4f} nats/token")
    table.add_row("distilled student loss L_S", styled((f"{result.prediction.value:.4f}", "bold"),
                                                       " nats/token" + result.prediction.describe()))
    table.add_row("supervised student loss", f"{result.supervised_loss:.4f} nats/token")
    verdict = "helps" if result.helps else "does not help"
    prediction = result.prediction
    if far_beyond(prediction) and prediction.low <= result.supervised_loss <= prediction.high:
        verdict = CANNOT_TELL  # beyond the backtest's reach, and the supervised loss inside the interval
    table.add_row("distillation", f"{verdict} ({result.gain:+.4f} nats/token)")
    table.add_row("L_T / Ltilde_S", f"{result.capacity_gap_ratio:.3f} (capacity gap near d1 = {result.d1:.3f})")
    console.print(table)


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
    rows = table.numeric([params_col, amount_col, loss_col, *filter(None, optional.values())],
                         drop_invalid=drop_invalid)
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

    students = subset([not s for s in is_supervised]).numeric(columns + [teacher_loss_col], drop_invalid=drop_invalid)
    supervised = subset(is_supervised).numeric(columns, drop_invalid=drop_invalid) if with_supervised else None
    parts = [supervised, students] if supervised is not None else [students]
    lines = np.concatenate([part.lines for part in parts])
    joined = {c: np.concatenate([part[c] for part in parts]) for c in columns}
    joined[teacher_loss_col] = np.concatenate([np.full(len(parts[0]), np.nan)] * (len(parts) - 1)
                                              + [students[teacher_loss_col]])
    return students, supervised, lines, joined


FORM_HELP = ("auto (the median of the three forms below, refitted into one law of the busbridge form; "
             "the forms alone are backtested and shown, not chosen), chinchilla (gamma = 1), tied "
             "(gamma = 1, alpha = beta) or busbridge (gamma fitted)")


def _parse_prior(text: str | None) -> tuple[float, float] | None:
    """`"1.7,0.1"` -> (1.7, 0.1)."""
    if text is None:
        return None
    try:
        mean, sd = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"malformed --irreducible-loss-prior {text!r}: write MEAN,SD such as 1.7,0.1") from None
    return mean, sd


@fit_app.command("supervised")
def fit_supervised(
    file: Path = typer.Argument(..., help=FILE_HELP),
    params_col: str = typer.Option("params", "--params-col", help="column of non-embedding parameters N"),
    loss_col: str = typer.Option("loss", "--loss-col", help="column of validation loss (nats/token)"),
    tokens_col: str | None = typer.Option(None, "--tokens-col",
                                          help="column of training tokens D (default: tokens)"),
    flops_col: str | None = typer.Option(None, "--flops-col",
                                         help="column of training FLOPs C instead; D = C / (6N)"),
    total_params_col: str | None = typer.Option(
        None, "--total-params-col", help="column of total parameters (with embeddings): with --form auto, "
        "fits on total parameters are candidates too"),
    form: str = typer.Option("auto", "--form", help=FORM_HELP),
    irreducible_loss: float | None = typer.Option(
        None, "--irreducible-loss", help="hold E at this loss (nats/token); with --form auto, a candidate "
        "beside E fitted"),
    irreducible_loss_prior: str | None = typer.Option(
        None, "--irreducible-loss-prior", help="MEAN,SD: a Gaussian prior on E (nats/token); with --form "
        "auto, a candidate beside E fitted"),
    min_tokens_per_param: float | None = typer.Option(
        None, "--min-tokens-per-param", help="fit only runs with at least this many tokens per parameter "
        "(drops warm-up-dominated runs); with --form auto, a candidate beside every run"),
    unique_tokens_col: str | None = typer.Option(
        None, "--unique-tokens-col", help="column of unique tokens U behind each run's tokens: when runs "
        "repeat data (D > U), the data-constrained form (Muennighoff et al. 2023, R_D*) is a candidate"),
    backtest: bool = typer.Option(True, "--backtest/--no-backtest",
                                  help="backtest extrapolation: fit on smaller sizes, predict larger ones"),
    huber_delta: float | None = typer.Option(None, "--huber-delta",
                                             help="Huber delta of the fits to the runs, on log-loss residuals "
                                             "(default: 1e-3 for chinchilla and tied, 1e-4 for busbridge); with "
                                             "--form auto, each form's (the median's refit is a least-squares fit "
                                             "to their predictions)"),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="bootstrap resamples (0: no intervals)"),
    level: float = typer.Option(0.9, "--level", help="interval level"),
    grid: list[str] | None = typer.Option(None, "--grid", help=GRID_HELP + "; a grid replaces "
                                          "variable projection by the multi-start grid search"),
    fit_where: str | None = typer.Option(None, "--fit-where", help=FIT_WHERE_HELP),
    drop_invalid: bool = typer.Option(False, "--drop-invalid", help=DROP_HELP),
    seed: int = typer.Option(0, "--seed", help="seed of the bootstrap resampling"),
    name: str | None = typer.Option(None, "--name", help="name of the fitted law (default: file name)"),
    out: Path | None = typer.Option(None, "--out", help="save the law as JSON, usable as --law FILE"),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Fit L(N, D) = E + (A/N^alpha + B/D^beta)^gamma, choosing the form by extrapolation backtest."""
    from distillscale.laws.calibrate import calibrate
    from distillscale.laws.render import fit_json, print_fit
    from distillscale.tables import read_table

    if out:
        check_output_file(out, overwrite=overwrite, is_ours=is_law_file, inputs=[file],
                          what="distillscale law file")
    rows, runs, names = _supervised_columns(read_table(file), params_col, loss_col, tokens_col, flops_col,
                                            drop_invalid, total_params_col, unique_tokens_col)
    fit_rows = _fit_rows(rows, names, fit_where)
    source = {"file": str(file), "params_col": params_col, "loss_col": loss_col,
              "tokens_col": None if flops_col else (tokens_col or "tokens"), "flops_col": flops_col,
              "total_params_col": total_params_col, "fit_where": fit_where, "n_dropped": rows.n_dropped}
    if unique_tokens_col:
        source["unique_tokens_col"] = unique_tokens_col
    calibration = calibrate(
        runs, total_params="total_params" if total_params_col else None, form=form,
        unique_tokens="unique_tokens" if unique_tokens_col else None, holdout=fit_rows, source=source,
        progress=progress_printer("fit"), supervised_options=dict(
            irreducible_loss=irreducible_loss, irreducible_loss_prior=_parse_prior(irreducible_loss_prior),
            min_tokens_per_param=min_tokens_per_param, backtest=backtest, huber_delta=huber_delta,
            bootstrap=bootstrap, level=level, grid=_parse_grid(grid) or None, seed=seed))
    laws = calibration.laws(name or file.stem, source=f"fitted to {file}")
    if out:
        laws.save(out, overwrite=overwrite, inputs=[file], flag="--out", overwrite_flag="--overwrite")
    holdout = calibration.holdout.get("supervised")
    repetition = _repetition_summary(calibration.supervised) if unique_tokens_col else None
    if as_json:
        record = fit_json(laws.name, calibration.supervised, rows.n_dropped, holdout, fit_where, rows.lines, out)
        print_json({**record, "repetition": repetition} if unique_tokens_col else record)
        return
    print_fit(f"Supervised law fitted to {file.name}", calibration.supervised, rows.n_dropped, holdout, fit_where)
    if repetition is not None:
        console.print(repetition["text"])
    if out:
        console.print(f"saved to {out}: use it with --law {out}")


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


@fit_app.command("distillation")
def fit_distillation(
    file: Path = typer.Argument(..., help=FILE_HELP + ". Rows with an empty teacher loss are "
                                "supervised runs of students (no teacher): they fit the student's "
                                "supervised law unless --supervised-law is given"),
    student_params_col: str = typer.Option("student_params", "--student-params-col",
                                           help="column of student non-embedding parameters N_S"),
    student_tokens_col: str = typer.Option("student_tokens", "--student-tokens-col",
                                           help="column of student training tokens D_S"),
    teacher_loss_col: str = typer.Option("teacher_loss", "--teacher-loss-col",
                                         help="column of teacher loss L_T (empty: a supervised run)"),
    loss_col: str = typer.Option("loss", "--loss-col", help="column of student validation loss"),
    supervised_law: str | None = typer.Option(
        None, "--supervised-law", help="law giving Ltilde_S (" + LAW_HELP + ") (default: fitted "
        "to the supervised rows of FILE)"),
    supervised_form: str = typer.Option("auto", "--supervised-form",
                                        help="form of the supervised law fitted to supervised rows: "
                                        + FORM_HELP),
    form: str = typer.Option("auto", "--form", help="auto (the better of the two in the backtest), free "
                             "(all 9 coefficients) or tied (alpha', beta' held at the supervised law's)"),
    backtest: bool = typer.Option(True, "--backtest/--no-backtest",
                                  help="backtest extrapolation: fit on the students of weaker teachers, "
                                       "predict those of stronger ones (coarse start grid for the refits)"),
    huber_delta: float = typer.Option(1e-4, "--huber-delta", help="Huber delta"),
    bootstrap: int = typer.Option(200, "--bootstrap", help="bootstrap resamples (0: no intervals)"),
    level: float = typer.Option(0.9, "--level", help="interval level"),
    grid: list[str] | None = typer.Option(None, "--grid", help=GRID_HELP),
    fit_where: str | None = typer.Option(None, "--fit-where", help=FIT_WHERE_HELP.replace(
        "N, D, L for parameters, tokens, loss", "N, D, L, L_T for student parameters, tokens, loss and "
        "teacher loss")),
    drop_invalid: bool = typer.Option(False, "--drop-invalid", help=DROP_HELP),
    seed: int = typer.Option(0, "--seed", help="seed of the bootstrap resampling"),
    name: str | None = typer.Option(None, "--name", help="name of the fitted laws (default: file name)"),
    out: Path | None = typer.Option(None, "--out", help="save the laws as JSON, usable as --law FILE"),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Fit the distillation law L_S(N_S, D_S, L_T) (Busbridge Eq. 8) on the 108,000-start grid."""
    from distillscale.laws.calibrate import calibrate
    from distillscale.laws.render import fit_json, print_fit
    from distillscale.tables import read_table

    if out:
        check_output_file(out, overwrite=overwrite, is_ours=is_law_file, inputs=[file, supervised_law],
                          what="distillscale law file")
    try:
        student_law = load_laws(supervised_law).require_supervised() if supervised_law is not None else None
    except UserError as exc:  # the message says "law": this command has two
        raise UserError(f"--supervised-law: {exc}") from None
    students, supervised, lines, columns = _distillation_columns(
        read_table(file), [student_params_col, student_tokens_col, loss_col], teacher_loss_col,
        with_supervised=student_law is None, drop_invalid=drop_invalid)
    n_supervised = len(supervised) if supervised is not None else 0
    fit_rows = _fit_rows(students, {name: columns[column][n_supervised:] for name, column in (
        ("N", student_params_col), ("D", student_tokens_col), ("L", loss_col), ("L_T", teacher_loss_col))}, fit_where)
    source = {"file": str(file), "fit_where": fit_where, "n_dropped": students.n_dropped,
              "supervised_law": supervised_law or "fitted to the supervised rows"}
    try:
        calibration = calibrate(
            columns, params=student_params_col, tokens=student_tokens_col, loss=loss_col, teacher_loss=teacher_loss_col,
            supervised_law=student_law, form=supervised_form,
            distillation_form=form, source=source, supervised_options={"bootstrap": 0},
            progress=progress_printer("fit"),
            holdout=None if fit_rows is None else np.concatenate([np.ones(n_supervised, bool), fit_rows]),
            distillation_options=dict(backtest=backtest, huber_delta=huber_delta, bootstrap=bootstrap,
                                      level=level, grid=_parse_grid(grid), seed=seed))
    except ParameterError as exc:  # this command's flags for the two laws' forms
        raise UserError(exc.for_cli({"form": "--supervised-form", "distillation_form": "--form"})) from None
    laws = calibration.laws(name or file.stem, source=f"fitted to {file}")
    if out:
        laws.save(out, overwrite=overwrite, inputs=[file], flag="--out", overwrite_flag="--overwrite")
    fit, holdout = calibration.distillation, calibration.holdout.get("distillation")
    if as_json:
        record = fit_json(laws.name, fit, students.n_dropped, holdout, fit_where, lines, out)
        print_json({**record, "supervised_coefficients": laws.supervised.coefficients()})
        return
    print_fit(f"Distillation law fitted to {file.name}", fit, students.n_dropped, holdout, fit_where)
    console.print("student supervised law: " + ", ".join(
        f"{k}={v:.4g}" for k, v in laws.supervised.coefficients().items()))
    if out:
        console.print(f"saved to {out}: use it with --law {out}")
