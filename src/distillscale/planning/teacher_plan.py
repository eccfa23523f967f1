"""`distillscale teacher` as one call: which of the candidate teachers gives the best student, from
Python (`ds.rank_teachers_for`). The candidates are read here (model directories measured, servers
asked, tables read); `planning.teacher` ranks them against the distillation law."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from distillscale.errors import ParameterError
from distillscale.laws.extrapolation import extrapolation_warnings
from distillscale.laws.lawset import LawSet
from distillscale.planning.options import positive
from distillscale.planning.plan import _load, planner_for
from distillscale.units import Quantity
from distillscale.urls import is_url

if TYPE_CHECKING:  # the solver imports SciPy: loaded on the first ranking, keeping the CLI's start fast
    from distillscale.planning.teacher import TeacherCandidate, TeacherRanking


def rank_teachers_for(law, *, student_params: float, student_tokens: float | None = None,
                      candidates: str | Path | list[TeacherCandidate | str | Path] | None = None,
                      compute: float | None = None, progress=lambda message: None) -> TeacherRanking:
    """Rank teachers for a student of `student_params` trained on `student_tokens`: the candidates
    (TeacherCandidates; model directories, each counted from its config and its loss measured on the
    law's text in the law's tokenizer as `plan --teacher-model` measures it; CSV/JSONL files with
    teacher_loss, or teacher_params and teacher_tokens; mixed as given; default a ladder of 1x..128x
    the student's size), the optimal teacher loss L_T* and the capacity gap; at `student_tokens`, or
    at a `compute` budget that pays each teacher's logits (`rank_teachers`). `progress(message)` is
    told before a model is measured."""
    from distillscale.planning.teacher import rank_teachers, teacher_ladder

    laws, _ = _load(law)
    student_params = positive("student_params", student_params, Quantity.PARAMS)
    if (student_tokens is None) == (compute is None):
        raise ParameterError(("student_tokens", "compute"), "give exactly one of {} and {}: the student's tokens, or "
                             "a budget that pays each teacher's logits")
    if compute is not None:
        compute = positive("compute", compute, Quantity.FLOPS)
    else:
        student_tokens = positive("student_tokens", student_tokens, Quantity.TOKENS)
    planner = planner_for(laws)
    if candidates is None:
        candidates = teacher_ladder(planner, student_params)
    else:
        candidates = _teacher_candidates(candidates if isinstance(candidates, list) else [candidates], laws,
                                         planner, progress)
    ranking = rank_teachers(planner, student_params, student_tokens, candidates, compute=compute)
    warnings = extrapolation_warnings(laws, {"the student": student_params, **{
        f"teacher {c.name!r}": c.params for c in candidates}}, {"the student's tokens": ranking.student_tokens})
    return replace(ranking, law=laws.name, warnings=warnings)


def _teacher_candidates(items: list, laws: LawSet, planner, progress) -> list[TeacherCandidate]:
    """Each item as candidates: a TeacherCandidate as it is, a model directory measured (`teacher_model`),
    a server's URL measured through it (`served_teacher`), a table file read (`read_candidates`)."""
    from distillscale.planning.teacher import TeacherCandidate, read_candidates
    from distillscale.planning.teacher_model import ServedAs, served_teacher, teacher_model

    out = []
    for item in items:
        if isinstance(item, TeacherCandidate):
            out.append(item)
        elif is_url(item):
            served = served_teacher(str(item), laws, laws.compute.n_ctx, progress=progress,
                                    given_as=ServedAs.CANDIDATES)
            out.append(TeacherCandidate(served.url, float(served.loss.nats_per_token), served.params,
                                        flops_per_token=served.flops_per_token))
        elif Path(item).expanduser().is_dir():
            model = teacher_model(item, laws, laws.compute.n_ctx, progress=progress, given_as="--candidates")
            out.append(TeacherCandidate(str(item), float(model.loss.nats_per_token), model.params,
                                        flops_per_token=model.flops_per_token))
        else:
            out.extend(read_candidates(item, planner))
    return out
