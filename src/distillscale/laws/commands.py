"""`distillscale predict ...`: what loss will this model reach under a law?"""

from __future__ import annotations

import typer
from rich.table import Table

from distillscale.console import console, print_json
from distillscale.errors import UserError
from distillscale.laws.lawset import load_laws
from distillscale.units import format_quantity, parse_quantity

predict_app = typer.Typer(help="Predict validation loss (nats/token) from a law.",
                          no_args_is_help=True)

LAW_HELP = "a preset (busbridge2025, chinchilla2022, epoch2024) or a law JSON file"


@predict_app.command("supervised")
def predict_supervised(
    law: str = typer.Option("busbridge2025", "--law", help=LAW_HELP),
    params: str = typer.Option(..., "--params", help="non-embedding parameters, e.g. 546M"),
    tokens: str = typer.Option(..., "--tokens", help="training tokens, e.g. 11B"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Loss of a model trained directly on the data: L(N, D)."""
    laws = load_laws(law)
    N = parse_quantity(params, "--params")
    D = parse_quantity(tokens, "--tokens")
    loss = laws.require_supervised().predict(N, D)
    if as_json:
        print_json({"law": laws.name, "params": N, "tokens": D, "loss": loss})
        return
    console.print(f"L({format_quantity(N)} parameters, {format_quantity(D)} tokens) = "
                  f"[bold]{loss:.4f}[/bold] nats/token  (law: {laws.name})")


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
    laws = load_laws(law)
    distillation = laws.require_distillation()
    N_S = parse_quantity(student_params, "--student-params")
    D_S = parse_quantity(student_tokens, "--student-tokens")
    if teacher_loss is not None:
        if teacher_params or teacher_tokens:
            raise UserError("give either --teacher-loss or --teacher-params with --teacher-tokens, not both")
        L_T = parse_quantity(teacher_loss, "--teacher-loss")
    elif teacher_params and teacher_tokens:
        L_T = distillation.student_law.predict(parse_quantity(teacher_params, "--teacher-params"),
                                               parse_quantity(teacher_tokens, "--teacher-tokens"))
    else:
        raise UserError("the teacher is missing: give --teacher-loss L, "
                        "or --teacher-params N with --teacher-tokens D")
    student_loss = distillation.predict(N_S, D_S, L_T)
    supervised_loss = distillation.student_law.predict(N_S, D_S)
    record = {"law": laws.name, "student_params": N_S, "student_tokens": D_S,
              "teacher_loss": L_T, "student_loss": student_loss,
              "student_supervised_loss": supervised_loss,
              "capacity_gap_ratio": L_T / supervised_loss, "d1": distillation.d1}
    if as_json:
        print_json(record)
        return
    table = Table(title=f"Distillation prediction (law: {laws.name})", show_header=False)
    table.add_row("student", f"{format_quantity(N_S)} parameters, {format_quantity(D_S)} tokens")
    table.add_row("teacher loss L_T", f"{L_T:.4f} nats/token")
    table.add_row("distilled student loss L_S", f"[bold]{student_loss:.4f}[/bold] nats/token")
    table.add_row("supervised student loss", f"{supervised_loss:.4f} nats/token")
    verdict = "helps" if student_loss < supervised_loss else "does not help"
    table.add_row("distillation", f"{verdict} ({supervised_loss - student_loss:+.4f} nats/token)")
    table.add_row("L_T / Ltilde_S", f"{L_T / supervised_loss:.3f} (capacity gap near d1 = "
                                    f"{distillation.d1:.3f})")
    console.print(table)
