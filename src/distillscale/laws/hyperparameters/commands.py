"""`distillscale fit hyperparameters RUNS` (lr* and B* laws from an lr x batch grid of runs) and
`distillscale predict hyperparameters --law FILE|PRESET --params N --tokens D` (the recommended peak
lr and batch): each parses its flags, makes one library call and prints the result. `cli.py`
registers them under `fit` and `predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from distillscale.cli_options import CommandSettings, argument, command, option
from distillscale.console import console, print_json, warn
from distillscale.errors import UserError
from distillscale.io import check_output_file
from distillscale.laws.hyperparameters.rates import LR_UNIT_HELP
from distillscale.model.config import ModelConfig, family_width
from distillscale.settings import quantity
from distillscale.units import Quantity, format_quantity

LAW_HELP = ("hyperparameter law: a preset (steplaw2025: Li et al. 2025; deepseek2024: DeepSeek LLM 2024, C = 6ND) "
            "or a file `distillscale fit hyperparameters --out` wrote")


class FitHyperparametersSettings(CommandSettings):
    """`distillscale fit hyperparameters`."""

    command_path: ClassVar[str] = "fit hyperparameters"

    file: Path = argument(help="runs of an lr x batch grid: a CSV file with a header row, or JSONL (one JSON "
                               "object per run); each (params, tokens) cell at 3 or more learning rates")
    params_col: str = option("params", help="column of non-embedding parameters N")
    tokens_col: str = option("tokens", help="column of training tokens D (counts of one model size within 5% of "
                                            "each other are one cell: D = steps x batch rounds each batch its own way)")
    lr_col: str = option("lr", help="column of the peak learning rate (a rate above 1 is refused: other units?)")
    lr_unit: str | None = option(None, help=LR_UNIT_HELP + " (default: that column, else 'peak')")
    batch_col: str = option("batch_tokens", help="column of the batch size in tokens (one value throughout: "
                                                 "only the lr law is fitted)")
    loss_col: str = option("loss", help="column of validation loss (nats/token)")
    beta2_col: str | None = option(None, help="column of AdamW's beta2, if the runs record it: a cell whose runs "
                                              "vary it is fitted at its best run's beta2, the law carries the value "
                                              "most cells chose (or the one every run used)")
    warmup_col: str | None = option(None, help="column of the warmup in optimizer steps, if the runs record it: "
                                               "treated as --beta2-col")
    bootstrap: int = option(200, min=0, help="bootstrap resamples of each cell's runs (0: no intervals)")
    level: float = option(0.9, help="interval level")
    backtest: bool = option(True, help="hold out the cells of the largest model size and score the law on them")
    seed: int = option(0, help="seed of the bootstrap resampling")
    drop_invalid: bool = option(False, help="skip runs with missing, NaN or non-positive values (they are "
                                            "counted) instead of failing")
    where: str | None = option(None, help="fit only the runs matching this filter, e.g. \"kind == 'baseline'\" "
                                          "(a students' grid: its baselines and its students apart); names: the "
                                          "file's columns; operators < <= > >= == != and, or, not, parentheses")
    name: str | None = option(None, help="name of the fitted law (default: file name)")
    out: Path | None = option(None, help="save the law as JSON, usable as --law FILE")
    overwrite: bool = option(False, help="replace the --out file if it is a hyperparameter law distillscale "
                                         "wrote (never another file)")
    as_json: bool = option(False, flag="--json", help="print JSON")


def fit_hyperparameters_command_run(s: FitHyperparametersSettings) -> None:
    """Fit lr*(N, D) and B*(N, D) to an lr x batch grid: each (N, D) cell's loss surface in
    (ln lr, ln B), then power laws across cells, backtested on the largest size."""
    from distillscale.laws.hyperparameters.fit import fit_hyperparameters
    from distillscale.laws.hyperparameters.law import is_hyperparameter_law_file
    from distillscale.laws.hyperparameters.rates import table_lr_unit

    if not 0 < s.level < 1:
        raise UserError(f"--level must be between 0 and 1 (e.g. 0.9), got {s.level:g}")
    if s.out:
        check_output_file(s.out, overwrite=s.overwrite, is_ours=is_hyperparameter_law_file, inputs=[s.file],
                          what="distillscale hyperparameter law")
    table, rows = _grid_rows(s)
    unit = table_lr_unit({"lr_unit": table.values("lr_unit")} if "lr_unit" in table.columns else None, s.lr_unit)
    fit = fit_hyperparameters(rows.columns, lr_unit=unit, params=s.params_col, tokens=s.tokens_col, lr=s.lr_col, batch=s.batch_col,
                              loss=s.loss_col, beta2=s.beta2_col, warmup=s.warmup_col, backtest=s.backtest, bootstrap=s.bootstrap, level=s.level, seed=s.seed,
                              name=s.name or s.file.stem, source=f"fitted to {s.file}" + (f" where {s.where}" if s.where else ""))
    if s.out:
        fit.save(s.out)
    if s.as_json:
        print_json({"law": fit.law.model_dump(mode="json"), "n_dropped": rows.n_dropped,
                    "out": str(s.out) if s.out else None})
        return
    _print_fit(fit, s, rows.n_dropped)


def _grid_rows(s: FitHyperparametersSettings):
    """(the table, its checked numeric rows): the rows --where keeps, with the columns the flags name."""
    from distillscale.laws.hyperparameters.conditions import RULES
    from distillscale.tables import read_table

    table = read_table(s.file)
    if s.where is not None:
        table = table.where(s.where)
    for flag, column, what in (("--lr-col", s.lr_col, "learning rate"), ("--batch-col", s.batch_col, "batch size")):
        if column not in table.columns:
            raise UserError(f"{s.file} has no {what} column {column!r} (columns: {', '.join(map(repr, table.columns))}): "
                            f"a hyperparameter law needs runs at several {what}s; name the column with {flag}")
    for flag, column in (("--beta2-col", s.beta2_col), ("--warmup-col", s.warmup_col)):
        if column is not None and column not in table.columns:
            raise UserError(f"{flag} {column!r} is not a column of {s.file} (columns: "
                            f"{', '.join(map(repr, table.columns))}): name one of them, or leave {flag} out")
    settings = {"beta2": s.beta2_col, "warmup": s.warmup_col}
    columns = [s.params_col, s.tokens_col, s.lr_col, s.batch_col, s.loss_col, *filter(None, settings.values())]
    flags = ["--params-col", "--tokens-col", "--lr-col", "--batch-col", "--loss-col",
             *(f"--{key}-col" for key, column in settings.items() if column is not None)]
    return table, table.numeric(columns, drop_invalid=s.drop_invalid, flags=flags,  # one column in two roles: named
                                rules={column: RULES[key] for key, column in settings.items() if column is not None})


def _print_fit(fit, s: FitHyperparametersSettings, n_dropped: int) -> None:
    from distillscale.laws.hyperparameters.across import METHOD_TEXT

    law = fit.law
    for note in fit.notes:
        warn(note)
    console.print(f"Hyperparameter law fitted to {s.file.name}: {len(fit.cells)} cells"
                  + (f" ({n_dropped} runs dropped)" if n_dropped else ""))
    window = law.fit.window
    console.print(f"surface: convex quadratic in (ln lr, ln B) fitted to runs within "
                  f"{'every run' if window is None else f'{window:.1%} of each cell' + chr(39) + 's best'} "
                  f"({fit.selection.reason})")
    console.print(f"laws across cells: {METHOD_TEXT.get(law.fit.method, law.fit.method)}")
    console.print(f"lr* = {law.lr.coefficient:.4g} N^{law.lr.exponents[0]:.3f} D^{law.lr.exponents[1]:.3f}  "
                  f"(lr unit: {law.lr_unit.describe()}"
                  + (", as the lr column said" if s.lr_unit is None and law.lr_unit.kind != "peak" else
                     "; --lr-unit mup-base if the column is muP's base --lr" if s.lr_unit is None else "") + ")")
    if law.batch is not None:
        console.print(f"B*  = {law.batch.coefficient:.4g} N^{law.batch.exponents[0]:.3f} "
                      f"D^{law.batch.exponents[1]:.3f} tokens")
    for what, power in (("lr*", law.lr), ("B*", law.batch)):
        if power is not None and power.not_identified:
            console.print(f"{what}'s exponent of {' and '.join(power.not_identified)} not identified (the cells do "
                          "not vary it beyond the others): held at 0 with a prior spread, its interval widening "
                          "away from the data")
    for cell in fit.cells:   # what the grid did not locate, cell by cell
        bound = cell.describe()
        if bound is not None:
            console.print(f"cell N={format_quantity(cell.params)} D={format_quantity(cell.tokens)}: {bound}"
                          + ("" if cell.located else "; left out of the law"))
    if law.conditions:
        sliced = any(cell.settings > 1 for cell in fit.cells)
        console.print("settings: " + "; ".join(law.conditions)
                      + ("; each cell's surface fitted at its best run's setting" if sliced else ""))
    if law.lr_batch_exponent is not None:
        console.print(f"batch exponent of the optimal lr (d ln lr*/d ln B): {law.lr_batch_exponent:.2f}, the median "
                      f"over cells (sqrt rule: 0.5)" + (f"; sqrt scaling at 4x B* costs {law.fit.sqrt_penalty:.3%}"
                                                        if law.fit.sqrt_penalty is not None else ""))
    for score in fit.backtest or []:
        setting = ", ".join(f"{k} {v:g}" for k, v in (("beta2", score.beta2), ("warmup", score.warmup)) if v is not None)
        console.print(f"backtest N={format_quantity(score.params)} D={format_quantity(score.tokens)}: "
                      f"lr x{score.lr_ratio:.2f}, batch x{score.batch_ratio:.2f} of the cell's optimum; nearest run "
                      f"{score.penalty:.3%} above the cell's best" + (f" (run at {setting})" if setting else "")
                      + ("" if score.optimum_located else "; the cell's optimum lies beyond its grid (the ratios are "
                                                          "to the grid's edge)"))
    if s.out:
        console.print(f"saved to {s.out}: use it with --law {s.out}")


class PredictHyperparametersSettings(CommandSettings):
    """`distillscale predict hyperparameters`."""

    command_path: ClassVar[str] = "predict hyperparameters"

    law: str = option("steplaw2025", help=LAW_HELP)
    params: Annotated[float, quantity("--params", kind=Quantity.PARAMS)] = option(
        ..., help="non-embedding parameters, e.g. 1B")
    tokens: Annotated[float, quantity("--tokens", kind=Quantity.TOKENS)] = option(..., help="training tokens, e.g. 20B")
    batch_tokens: Annotated[float | None, quantity("--batch-tokens", kind=Quantity.TOKENS)] = option(
        None, help="a batch size (tokens) you fixed: the lr to use at it, its loss penalty against B* and the tokens "
                   "that recover it (the law's batch exponent, not a fixed square root)")
    d_model: int | None = option(None, min=1, help="the model's width, for its --lr under muP (the hidden matrices "
                                                     "train at --lr x 256 / d_model; default: the family's width at "
                                                     "--params, aspect ratio 128)")
    as_json: bool = option(False, flag="--json", help="print JSON")


def predict_hyperparameters_command_run(s: PredictHyperparametersSettings) -> None:
    """The recommended peak learning rate (the hidden matrices' rate, and the --lr that trains them
    there) and batch size (tokens) at N parameters and D tokens."""
    from distillscale.errors import ParameterError
    from distillscale.laws.hyperparameters.presets import load_hyperparameter_law
    from distillscale.laws.hyperparameters.rates import recipe_problems, run_rate

    law = load_hyperparameter_law(s.law)
    try:
        rec = law.recommend(s.params, s.tokens, s.batch_tokens)
    except ParameterError as exc:
        raise UserError(exc.for_cli()) from None
    rate = run_rate(rec.lr, rec.lr_interval, rec.lr_unit, s.d_model or family_width(rec.params, FAMILY_ASPECT_RATIO))
    problems = recipe_problems(rate.peak, rate.train_lr, rec.batch_tokens, rec.tokens)
    if s.as_json:
        print_json({**rec.to_dict(), "peak_lr": rate.peak, "peak_lr_interval": list(rate.interval),
                    "train_lr": rate.train_lr, "d_model": rate.d_model, "mup_base_width": rate.mup_base_width,
                    "problems": problems})
        return
    _print_recommendation(rec, law, rate, s.d_model is None, problems)


FAMILY_ASPECT_RATIO = ModelConfig.model_fields["aspect_ratio"].default   # the family's width at N, for its --lr


def _print_recommendation(rec, law, rate, family: bool, problems: list[str]) -> None:
    """The recommendation in a few lines: rate (the hidden matrices' peak and the --lr for it at the
    width: the family's at N when `family`), batch, the settings the law's runs used, and at a fixed
    batch how the rate adapts and what the batch costs; `problems`, why it is no run to train."""
    for note in rec.notes:
        warn(note)
    for problem in problems:
        warn(f"not a run to train: {problem}")
    level = f"{rec.level:.0%}"
    console.print(f"N = {format_quantity(rec.params)} parameters, D = {format_quantity(rec.tokens)} tokens "
                  f"(law: {rec.law}, its rate {rec.lr_unit.describe()})")
    width = (f"d_model {rate.d_model:,.0f}" + (f", the family's at N (aspect ratio {FAMILY_ASPECT_RATIO:g}; "
                                               "--d-model sets it)" if family else ""))
    console.print(f"peak lr      {rate.peak:.3g}  ({level} interval {rate.interval[0]:.3g}-{rate.interval[1]:.3g}): "
                  f"the hidden matrices' rate" + ("" if rec.lr_unit.kind == "peak" else f" at {width}"))
    console.print(f"--lr         {rate.train_lr:.4g}  what `train`/`distill --lr` takes for it (muP: the hidden matrices "
                  f"train at --lr x {rate.mup_base_width} / d_model" + (f"; {width})" if rec.lr_unit.kind == "peak" else ")"))
    batch = f"batch        {format_quantity(rec.batch_tokens)} tokens"
    if rec.batch_interval is not None:
        batch += f"  ({level} interval {format_quantity(rec.batch_interval[0])}-{format_quantity(rec.batch_interval[1])})"
    console.print(batch)
    for key, value, choice in (("beta2", rec.beta2, law.beta2), ("warmup", rec.warmup, law.warmup)):
        if value is not None:
            console.print(f"{key:<13}{value:g}{' steps' if key == 'warmup' else ''}  ("
                          + ("every run of the law's used it: the law holds at it" if not choice.varied else
                             f"the best in {choice.cells} of {choice.of_cells} of the law's cells") + ")")
    adaptation = rec.adaptation
    if adaptation is not None:
        console.print(f"at this batch ({adaptation.batch_tokens / adaptation.optimal_batch_tokens:.2g}x B* = "
                      f"{format_quantity(adaptation.optimal_batch_tokens)}): lr scaled by (B/B*)^"
                      f"{adaptation.lr_batch_exponent:.2f}")
        if adaptation.loss_penalty is not None:
            console.print(f"loss penalty {adaptation.loss_penalty:.3%} at the same tokens" + (
                f"; {adaptation.extra_tokens_factor:.3g}x the tokens ({format_quantity(adaptation.extra_tokens)} more) "
                "recover it" if adaptation.extra_tokens_factor is not None else ""))


fit_hyperparameters_command = command(FitHyperparametersSettings)(fit_hyperparameters_command_run)
predict_hyperparameters_command = command(PredictHyperparametersSettings)(predict_hyperparameters_command_run)
