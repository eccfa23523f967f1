"""The user's own teacher against laws calibrated on their data in its tokenizer: what `demo --teacher
MODEL` adds to the report.

    section = teacher_section(calibration, "models/qwen", out_dir)   # report.json's "teacher"

The teacher is measured on the laws' validation split (`evaluation.loss`, at the sweep's context), set
beside the sweep's own teachers (the losses the laws were fitted on), and planned for: the report's
target student (a size the sweep distilled, on the tokens the fit supports for it) distilled from it
(`planning.plan` with `teacher_model`), on the budget that gives the student those tokens beside the
teacher's forward passes. The planned student's config (`planned_student.toml`, the sweep's own
student recipe) distils it: `distillscale distill --config planned_student.toml`.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from distillscale.data.loss_record import with_error
from distillscale.errors import UserError
from distillscale.laws.difference import LossDifference
from distillscale.report.held_out import failed_checks, verdict_clause

PLANNED_STUDENT = "planned_student.toml"
STUDENT_RUN = "planned-student"


def teacher_section(calibration, teacher: str | Path, out_dir: str | Path, trust_remote_code: bool = False,
                    progress=lambda message: None, law_file: str | Path = "report.json",
                    other_corpus: bool = False) -> dict[str, Any]:
    """report.json's "teacher": the teacher's measured loss against the laws and the plan for it (or
    why there is none); `law_file`: what `plan --law` reads these laws from (the report's JSON)."""
    from distillscale.evaluation.loss import evaluate_loss

    laws, runs = calibration.laws, calibration.runs
    if laws.losses.text is None or not laws.losses.text.directory:
        raise UserError("the sweep's runs record no prepared data to measure the teacher on: run the sweep again")
    progress(f"measuring the loss of {teacher} on the laws' validation split")
    record = evaluate_loss(teacher, laws.losses.text.directory, seq_len=laws.compute.n_ctx,
                           trust_remote_code=trust_remote_code, other_corpus=other_corpus)  # says its memory and time
    sweep_teachers = sorted({r["val_loss"] for r in runs.supervised if r["kind"] == "teacher"})
    section: dict[str, Any] = {
        "path": str(teacher), "loss": record.model_dump(mode="json"), "losses": laws.losses.describe(),
        "sweep_teacher_losses": [min(sweep_teachers), max(sweep_teachers)] if sweep_teachers else None,
        "sweep_student_teacher_losses": _range(r["teacher_loss"] for r in runs.students),
        "failed_checks": failed_checks(calibration.holdout)}
    if calibration.supervised is None or calibration.distillation is None:
        return {**section, "plan": None, "skipped": "planning needs both fitted laws"}
    try:
        section.update(_plan_for(calibration, teacher, record, out_dir, trust_remote_code, law_file, other_corpus))
    except UserError as exc:
        section.update(plan=None, skipped=str(exc))
    return section


def _range(values) -> list[float] | None:
    values = [float(v) for v in values]
    return [min(values), max(values)] if values else None


def _plan_for(calibration, teacher, record, out_dir, trust_remote_code: bool, law_file,
              other_corpus: bool = False) -> dict[str, Any]:
    """The report's target student distilled from the teacher, and its config."""
    from distillscale.planning.flops import ForwardFlops
    from distillscale.planning.plan import plan
    from distillscale.planning.teacher_model import teacher_model

    laws, target = calibration.laws, calibration.plan
    student = _student_run(calibration.runs.students, target.get("target_params"))
    N = float(student["non_embedding_params"])
    tokens = float((target.get("target") or {}).get("target_tokens") or student["tokens"])
    model = teacher_model(teacher, laws, laws.compute.n_ctx, trust_remote_code, other_corpus=other_corpus)
    compute = (3.0 * float(ForwardFlops.from_settings(laws.compute)(N)) + model.flops_per_token) * tokens
    compute = float(f"{compute:.4g}")   # as a user writes a budget: the plan command shown gives this very plan
    planned = plan(laws, compute=compute, student_params=N, teacher_model=str(teacher),
                   trust_remote_code=trust_remote_code, other_corpus=other_corpus)
    headline = planned.headline
    config = _write_student_config(student, teacher, headline.student_tokens, Path(out_dir), other_corpus, laws.recipe)
    epochs = headline.student_tokens / _train_tokens(laws)
    distillation = laws.distillation
    return {"plan": planned.to_dict(), "student_params": N, "student_tokens": headline.student_tokens,
            "compute": compute, "student_loss": headline.student_loss,
            "student_interval": None if headline.student_interval is None else
            [float(headline.student_interval.low), float(headline.student_interval.high)],
            "supervised_loss": headline.supervised.loss, "verdict": planned.verdict,
            "difference": headline.difference.to_dict(),
            "capacity_gap_ratio": record.nats_per_token / float(laws.supervised.predict(N, headline.student_tokens)),
            "d1": float(distillation.d1) if hasattr(distillation, "d1") else None,
            "student_config": str(config), "distill_command": f"distillscale distill --config {config}",
            "epochs": epochs,
            "plan_command": planned.settings.model_copy(update={"law": str(law_file)}).command()}


def _train_tokens(laws) -> float:
    """The tokens of the split the laws' students train on (the student split of their prepared
    corpus's manifest)."""
    from distillscale.data.prepared import open_prepared

    return float(open_prepared(laws.losses.text.directory).manifest["splits"]["student"]["tokens"])


def _student_run(students: list[dict], target: float | None) -> dict:
    """The sweep's student run of the size nearest the target (the longest of that size): its recipe
    is the planned student's."""
    if not students:
        raise UserError("the sweep has no distilled students to take the planned student's recipe from")
    sizes = np.array([float(r["non_embedding_params"]) for r in students])
    wanted = sizes.max() if not target else sizes[np.argmin(np.abs(np.log(sizes / float(target))))]
    return max((r for r in students if float(r["non_embedding_params"]) == wanted), key=lambda r: r["tokens"])


def _write_student_config(student: dict, teacher, tokens: float, out_dir: Path, other_corpus: bool = False,
                          recipe=None) -> Path:
    """planned_student.toml: the sweep student's own config, distilled from `teacher` on `tokens` (with
    `other_corpus`: saying, as the demo was told, that its data shares no text with the teacher run's);
    with the sweep's `recipe` (`laws.sweep_recipe`), its batch for those tokens by the sweep's rule, as
    the plan's run sheet gives it (`planning.sweep_recipes`)."""
    from distillscale.io import atomic_write_text
    from distillscale.settings import to_toml
    from distillscale.training.config import DistillConfig
    from distillscale.training.run_dir import RunDirectory

    stored = RunDirectory(Path(student["run_dir"])).stored_config(DistillConfig)
    # every path absolute: the config runs the same from any directory
    paths = {name: Path(value).expanduser().resolve() for name in ("data", "tokenizer", "student_init")
             if isinstance(value := getattr(stored, name, None), Path) and value.expanduser().exists()}
    config = stored.model_copy(update={"teacher": [Path(teacher).expanduser().resolve()], "tokens": float(round(tokens)),
                                       "tokens_per_param": None, "fork_from": None, "fork_tokens": None,
                                       "out": out_dir.expanduser().resolve() / STUDENT_RUN, "overwrite": False,
                                       "other_corpus": other_corpus, **paths, **_recipe_batch(recipe, tokens, stored)})
    path = out_dir / PLANNED_STUDENT
    atomic_write_text(path, to_toml(DistillConfig.model_validate(config.model_dump())))
    return path


def _recipe_batch(recipe, tokens: float, stored) -> dict:
    """The batch the sweep's recipe gives a student run of `tokens` (nothing without one)."""
    if recipe is None:
        return {}
    return {"batch_size": max(1, recipe.batch_sequences(tokens, stored.seq_len, "student") // stored.grad_accum)}


def next_step(section: dict[str, Any]) -> tuple[str, str]:
    """What to do with the plan, as its verdict says: distil it (the command), or, where training alone
    wins or the laws cannot tell, where the distillation's config is for a trial."""
    command = section["distill_command"]
    if section["verdict"] == "distill":
        return "distil it", command
    if section["verdict"] == "pretrain":
        return "train the student alone instead", f"the laws put it below the distilled one; to distil anyway: {command}"
    return "try both", f"the laws cannot decide; distil: {command}"


def teacher_lines(section: dict[str, Any]) -> list[str]:
    """The section in a few lines, for the terminal."""
    loss = section["loss"]
    bits = "" if loss["bits_per_byte"] is None else f" ({loss['bits_per_byte']:.4f} bits/byte)"
    lines = [f"your teacher {section['path']}: L_T = "
             f"{with_error(loss['nats_per_token'], loss['standard_error'], 'nats/token')}{bits} on the laws' "
             "validation split"]
    if section.get("sweep_teacher_losses"):
        low, high = section["sweep_teacher_losses"]
        lines.append(f"  the sweep's teachers, which the laws were fitted on: {low:.4f} to {high:.4f} nats/token")
    if section.get("plan") is None:
        lines.append(f"  no plan for it: {section.get('skipped')}")
        return lines
    interval = section["student_interval"]
    shown = "" if interval is None else f" [{interval[0]:.4f}, {interval[1]:.4f}]"
    difference = LossDifference.from_dict(section["difference"]).describe() if section.get("difference") else None
    lines.append(f"  {section['verdict']}" + (f" (Δ {difference})" if difference else "")
                 + f": a {section['student_params']:,.0f}-parameter student distilled from it on "
                 f"{section['student_tokens']:,.0f} tokens reaches {section['student_loss']:.4f}{shown} nats/token, "
                 f"{section['supervised_loss']:.4f} without a teacher{verdict_clause(section.get('failed_checks', {}))}; "
                 + ": ".join(next_step(section)))
    if (section.get("epochs") or 0) > 1:
        lines.append(f"  those tokens are {section['epochs']:.1f} epochs of this corpus's student split: both losses "
                     "are the laws' for fresh tokens, and a model trained without a teacher on repeated data does worse")
    lines.append(f"  plan for it at another budget or student: {section['plan_command']}")
    return lines


def teacher_html(section: dict[str, Any]) -> str:
    """The report page's section on the user's teacher."""
    loss = section["loss"]
    rows = [("measured loss L_T", with_error(loss["nats_per_token"], loss["standard_error"], "nats/token", plus="±")
             + ("" if loss["bits_per_byte"] is None else f" ({loss['bits_per_byte']:.4f} bits/byte)")),
            ("measured on", f"{section['losses']}; {loss['tokens']:,} tokens at context {loss['seq_len']}")]
    if section.get("sweep_teacher_losses"):
        rows.append(("the sweep's teachers (the laws' fit)", "{:.4f} to {:.4f} nats/token".format(
            *section["sweep_teacher_losses"])))
    if section.get("plan") is not None:
        interval = section["student_interval"]
        rows += [("planned student", f"{section['student_params']:,.0f} parameters on {section['student_tokens']:,.0f} "
                                     f"tokens ({section['compute']:.3g} FLOPs with the teacher's forward passes)"),
                 ("its predicted loss", f"{section['student_loss']:.4f}" + ("" if interval is None else
                                        f" [{interval[0]:.4f}, {interval[1]:.4f}]") + " nats/token"),
                 ("without a teacher", f"{section['supervised_loss']:.4f} nats/token: {section['verdict']}"
                  + (f", Δ {LossDifference.from_dict(section['difference']).describe()}" if section.get("difference")
                     else "")),
                 ("L_T / L̃_S", f"{section['capacity_gap_ratio']:.3f}" + ("" if section.get("d1") is None else
                                                                         f" (capacity gap near d1 = {section['d1']:.3f})")),
                 next_step(section)]
    else:
        rows.append(("plan", f"none: {section.get('skipped')}"))
    body = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>" for name, value in rows)
    return (f'<h2 id="your-teacher">Your teacher: {html.escape(section["path"])}</h2><p>Its loss measured on the '
            f"laws' validation split, beside the teachers the laws were fitted on, and the laws' plan for distilling "
            f'from it.</p><table id="your-teacher-table">{body}</table>')
