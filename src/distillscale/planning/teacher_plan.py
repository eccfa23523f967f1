"""`distillscale teacher` as one call: which of the candidate teachers gives the best student, from
Python (`ds.rank_teachers_for`). The candidates are read here (model directories measured, servers
asked, tables read); `planning.teacher` ranks them against the distillation law."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from distillscale.errors import ParameterError, UserError, path_kind
from distillscale.laws.lawset import LawSet
from distillscale.planning.options import positive
from distillscale.planning.law_inputs import load_law
from distillscale.planning.plan import planner_for
from distillscale.planning.warnings import distillation_warnings, measured_teacher_notes
from distillscale.laws.extrapolation import check_losses, check_pool, smaller_teacher_warning
from distillscale.units import Quantity, format_quantity
from distillscale.model.teacher_limits import RequestLimits
from distillscale.urls import is_url

if TYPE_CHECKING:  # the solver imports SciPy: loaded on the first ranking, keeping the CLI's start fast
    from distillscale.planning.teacher import TeacherCandidate, TeacherRanking


def rank_teachers_for(law, *, student_params: float, student_tokens: float | None = None,
                      candidates: str | Path | list[TeacherCandidate | str | Path] | None = None,
                      compute: float | None = None, teacher_unique_tokens: float | None = None,
                      unique_tokens: float | None = None,
                      progress=lambda message: None, limits: RequestLimits = RequestLimits(),
                      other_corpus: bool = False) -> TeacherRanking:
    """Rank teachers for a student of `student_params` trained on `student_tokens`: the candidates
    (TeacherCandidates; model directories, each counted from its config and its loss measured on the
    law's text in the law's tokenizer as `plan --teacher-model` measures it; CSV/JSONL files with
    teacher_loss, or teacher_params and teacher_tokens; mixed as given; default a ladder of 1x..128x
    the student's size), the optimal teacher loss L_T* and the capacity gap; at `student_tokens`, or
    at a `compute` budget that pays each teacher's logits (`rank_teachers`). With
    `teacher_unique_tokens`, a teacher given by its size and tokens (the ladder, a table's row without
    a loss) was trained on that pool: its loss is `predict supervised --unique-tokens`'s; a measured
    teacher keeps its loss. `unique_tokens`: the student's own pool. With either pool, each student is the
    data-limited law's (`laws.data_limited`: kappa of a pool-trained teacher's penalty, lambda of its own
    size's), as `plan` and `predict distillation` give it. `progress(message)` is told before a model is measured; `limits`: how long a
    served candidate is waited for. `other_corpus`: the law's corpus shares no text with a candidate
    run's (its split is not checked)."""
    from distillscale.planning.teacher import rank_teachers, teacher_ladder

    laws, _ = load_law(law)
    student_params = positive("student_params", student_params, Quantity.PARAMS)
    if (student_tokens is None) == (compute is None):
        raise ParameterError(("student_tokens", "compute"), "give exactly one of {} and {}: the student's tokens, or "
                             "a budget that pays each teacher's logits")
    if compute is not None:
        compute = positive("compute", compute, Quantity.FLOPS)
    else:
        student_tokens = positive("student_tokens", student_tokens, Quantity.TOKENS)
    pool = positive("teacher_unique_tokens", teacher_unique_tokens, Quantity.TOKENS)
    own_pool = positive("unique_tokens", unique_tokens, Quantity.TOKENS)
    check_pool(laws, "teacher_unique_tokens", pool)
    check_pool(laws, "unique_tokens", own_pool)
    planner = planner_for(laws)
    notes: list[str] = []
    if candidates is None:
        candidates = teacher_ladder(planner, student_params, unique_tokens=pool)
    else:
        candidates, notes = _teacher_candidates(candidates if isinstance(candidates, list) else [candidates], laws,
                                                planner, progress, limits, pool, other_corpus)
    ranking = rank_teachers(planner, student_params, student_tokens, candidates, compute=compute,
                            student_unique_tokens=own_pool)
    alone = ranking.alone_each if ranking.alone_each is not None else [ranking.supervised_loss]
    check_losses(laws, {"the student's loss trained alone": max(alone), **{
        f"teacher {c.name!r}'s loss": c.loss for c in ranking.candidates}, **{
        f"the student's loss with teacher {c.name!r}": float(loss) for c, loss in zip(ranking.candidates,
                                                                                    ranking.student_losses)}},
                 "rank teachers for a larger student, or on more tokens, nearer the law's runs")
    return replace(ranking, law=laws.name, warnings=list(dict.fromkeys(notes + ranking_warnings(laws, ranking))))


def ranking_warnings(laws: LawSet, ranking: TeacherRanking) -> list[str]:
    """What `plan` warns of for the same student and teacher (`warnings.distillation_warnings`), for each
    candidate at the student tokens it is ranked at; and a teacher smaller than its student."""
    student, messages = ("the student", ranking.student_params), []
    for index, (c, loss) in enumerate(zip(ranking.candidates, ranking.student_losses)):
        tokens = (("the student's tokens", ranking.student_tokens) if ranking.tokens_each is None else
                  (f"the student's tokens with teacher {c.name!r}", float(ranking.tokens_each[index])))
        alone = ranking.supervised_loss if ranking.alone_each is None else float(ranking.alone_each[index])
        messages += distillation_warnings(laws, student, tokens, (f"teacher {c.name!r}", c.params, c.tokens), {
            f"the student's predicted loss with teacher {c.name!r}": float(loss),
            "the student's loss trained alone": alone})
        messages += smaller_teacher_warning(f"teacher {c.name!r}", c.params, ranking.student_params)
    return list(dict.fromkeys(messages))


def _teacher_candidates(items: list, laws: LawSet, planner, progress,
                        limits: RequestLimits, pool: float | None = None, other_corpus: bool = False
                        ) -> tuple[list[TeacherCandidate], list[str]]:
    """(the candidates, what was said of them): a TeacherCandidate as it is, a model directory measured
    (`teacher_model`), a server's URL measured through it (`served_teacher`), a table file read
    (`read_candidates`); each loss checked as `plan` checks a teacher's (`LawSet.check_teacher_loss`), a
    measured teacher's notes (`measured_teacher_notes`), and a candidate given twice ranked once."""
    from distillscale.planning.teacher import TeacherCandidate, read_candidates
    from distillscale.planning.served_teacher import ServedAs, served_teacher
    from distillscale.planning.teacher_model import teacher_model

    out, notes, context = [], [], laws.compute.n_ctx
    for item in _distinct(items, notes):
        if isinstance(item, TeacherCandidate):
            out.append(item)
            continue
        if is_url(item):
            model = served_teacher(str(item), laws, context, progress=progress, given_as=ServedAs.CANDIDATES,
                                   limits=limits)
            name = model.url
        elif Path(item).expanduser().is_dir():
            model = teacher_model(item, laws, context, progress=progress, given_as="--candidates",
                                  other_corpus=other_corpus)
            name = str(item)
        elif not os.path.lexists(Path(item).expanduser()):
            raise UserError(f"--candidates {item} {path_kind(item)}: give a model directory, a CSV or JSONL of "
                            "teachers, or a served teacher's URL (http://HOST:PORT/v1)")
        else:
            with _read_once(Path(item)) as table:   # a pipe (`<(cat c.csv)`) is read once, then from a copy
                _refuse_json_document(table, shown=item)
                for candidate in read_candidates(table, planner, pool):
                    if candidate.tokens is None:  # a loss the table gives, not one the law predicts
                        laws.check_teacher_loss(candidate.loss, flag=f"the teacher_loss of {candidate.name} in {item}:")
                    out.append(candidate)
            continue
        laws.check_teacher_loss(model.loss.nats_per_token, measured=f"--candidates {name}")
        notes += measured_teacher_notes(laws, model, context, f"teacher {name!r}")
        out.append(TeacherCandidate(name, float(model.loss.nats_per_token), model.params,
                                    flops_per_token=model.flops_per_token))
    merged = list(dict.fromkeys(out))
    if len(merged) < len(out):
        twice = [c.name for c in dict.fromkeys(c for c in out if out.count(c) > 1)]
        notes.append(f"{', '.join(repr(name) for name in twice)} given more than once with the same numbers: ranked once")
    names = [c.name for c in merged]
    clash = next((name for name in names if names.count(name) > 1), None)
    if clash is not None:
        raise UserError(f"--candidates names {names.count(clash)} different teachers {clash!r}: the ranking could not "
                        "tell them apart; give each a name of its own")
    return merged, notes


@contextmanager
def _read_once(path: Path):
    """`path` as a file that can be read more than once: itself, or for a pipe or other stream (a shell's
    `<(...)`), a temporary copy of what it held."""
    if path.is_file() or not path.exists():
        yield path
        return
    import tempfile

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"--candidates {path}: cannot read it ({exc.strerror or exc})") from None
    with tempfile.TemporaryDirectory(prefix="distillscale-candidates-") as scratch:
        copy = Path(scratch) / (path.name + (".csv" if not path.suffix else ""))
        copy.write_bytes(data)
        yield copy


def _distinct(items: list, notes: list[str]) -> list:
    """The items with a model directory or URL given twice (the same path, or URL) measured once, said in
    `notes`."""
    seen: dict[object, object] = {}
    for item in items:
        key = item if not isinstance(item, (str, Path)) or is_url(item) else str(Path(item).expanduser().resolve())
        if key in seen:
            notes.append(f"--candidates {item} is given more than once: ranked once")
        else:
            seen[key] = item
    return list(seen.values())


def _refuse_json_document(path: Path, shown: object = None) -> None:
    """A JSON document (an array, or an object over several lines) is not a table of candidates: refused
    in one line saying what a candidates file is (`shown`: the file as the user named it)."""
    import json

    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError):
        return   # not a JSON document: read as a table (which says what is wrong with it)
    if isinstance(document, dict) and len(text.strip().splitlines()) == 1:
        return   # one JSON object on one line: a JSONL table of one row
    raise UserError(f"--candidates {shown or path} is a JSON document, not a table of candidate teachers: give a CSV with a "
                    "header row or a JSONL file with one JSON object per line (teacher_loss, or teacher_params and "
                    "teacher_tokens; an optional name)")


def pools_line(ranking: TeacherRanking) -> str | None:
    """Which pool each teacher given by its size read and how many times, and the student's, in one line (None:
    none did); with a pool, each student is the data-limited law's."""
    pooled = [c for c in ranking.candidates if c.unique_tokens is not None]
    own = ranking.student_unique_tokens
    if not pooled and own is None:
        return None
    measured = len(ranking.candidates) - len(pooled)
    parts = []
    if pooled:
        parts.append(f"the teachers given by size read {format_quantity(pooled[0].unique_tokens)} unique tokens: "
                     + ", ".join(f"{c.name} {c.epochs:.3g}x" for c in pooled)
                     + ("" if not measured else f"; {measured} measured keep their loss (their own data)"))
    if own is not None:
        parts.append(f"the student reads {format_quantity(own)} unique tokens {ranking.student_tokens / own:.3g} times")
    return ("Data: " + "; ".join(parts) + " (each student the data-limited law's: kappa of a teacher's repetition "
            "penalty, lambda of its own size's)")
