"""Sweep specs: one TOML file that names every run of a calibration sweep, and its resolution into runs.

    name = "micro"
    [data]      the corpus, as for `train`: path, vocab_size, max_bytes, val_fraction, ..., seq_len
    [model]     the model family and its training: aspect_ratio, head_dim, lr, batch_size, warmup_steps
                (or warmup_tokens, warmup_tokens_per_param), adam_beta1, adam_beta2, adam_eps,
                schedule ("cosine" or "wsd"), cooldown_fraction, cooldown_shape, ...; each size's lr
                from a rule instead of one lr: lr_width_exponent and lr_reference_width (lr x (d_model /
                reference) ** exponent), or lr_law = "steplaw2025" or "hp.json" (a hyperparameter law,
                read at each run's N and D and the ladder's batch; under WSD, at the geometric mean of
                a size's budgets, which share one stable phase)
    [teachers]  n_layers = [2, 3, 4] and tokens_per_param = 20 (fixed M), or budgets = [1e15, 3e15] (IsoFLOP);
                seeds = 3 trains the smallest `seeded_sizes` depths (default 1) with seeds seed, seed + 1, ...
                (seeded = "largest": the largest depths instead)
    [students]  n_layers = [1, 2] and tokens_per_param = [20, 80], or budgets (optional section);
                student_init = ["scratch", "pruned"]: besides (or instead of) the students from scratch, a
                student of each size pruned from each teacher (see below)
    [prune]     importance, depth_by, calibration_tokens (as `prune`'s flags; optional, with pruned students)
    [distill]   kd, temperature, kd_weight, top_k; on_policy_fraction, on_policy_temperature,
                on_policy_start, on_policy_prompt_tokens, on_policy_continuation_tokens (as `distill`'s
                --on-policy-* flags); supervised_baselines = true; teach_from = "all"
                (every teacher run teaches every student) or "longest" (each teacher size's longest run)
    [repetition] epochs = [1, 2, 4, 8, 16] (optional): the students' data repeats. Each student size's
                ladder (baselines and students, WSD forks included) trains on a fixed subset of its
                split, the D unique tokens of its longest budget (`unique_tokens`): its longest run is
                the 1-epoch point and its shorter ones see part of it once. The longest budget D is
                trained again, as a baseline and as a student of each teacher, on the subset's first
                U = D / e tokens for each listed e above 1 (e passes over U)
    [eval]      tasks = ["arc_easy"], limit, batch_size, include_path (optional): each finished teacher, baseline
                and student scored by `distillscale eval` after it trains (eval.json in its run directory;
                a task scored as this [eval] asks, its limit and fingerprint, is not scored again, another is
                rescored into the file, other tasks' scores kept); `sweep export` carries each task's metrics
    [tune]      lr = [1e-3, 3e-3, 1e-2], batch_size = [4, 8, 16] (optional): an lr x batch grid, every teacher
                run once per (lr, batch_size) pair (ids tagged `-lr0.003-B16`), each pair's budgets
                forking its own longest run under WSD; ladder = "students" (with [students]): the
                baselines and the students from scratch instead, each student at its baseline's point.
                The export's lr and batch_tokens columns feed `distillscale fit hyperparameters`, whose
                rule a grid meets (`surface.grid_rule`): 3 or more rates per cell (else refused), and 3
                or more batch sizes to locate B* (2: planned with a warning)

Busbridge et al.'s three protocols (docs/science.md §5) are the three combinations of fixed-M and IsoFLOP ladders
that include a fixed-M side: fixed-M teachers x student IsoFLOP profiles, IsoFLOP teachers x fixed-M students,
and fixed-M x fixed-M. Every student is distilled from every teacher.

Pruned students (`student_init` lists "pruned"; MiniMA's capacity-gap experiment): for each student size
and each teaching run at least that size in every dimension (depth, width, heads, FFN; smaller teachers
are skipped), a `prune` run (kind "pruned", id `p-L<student>-T<teacher>-...`) cuts the teacher to the
student size's shape on calibration windows of the student's half of the corpus (`distillscale prune`),
and a student of that size starts from it (`distill --student-init`) and is distilled from the same
teacher on the size's budgets, like the student from scratch beside it. The pruned model is kept in
the sweep's runs/ like any run; the student's id hashes the prune run's id (its start). Under WSD a
pruned student has one budget per size (its forks are not built).

Token budgets: a fixed M gives D = M N; a FLOP budget C gives D = C / (6 N). N is the non-embedding
parameter count, and 6 N D is the compute convention of the laws the sweep calibrates; each result also
holds the engine's exact FLOP count.

With `schedule = "wsd"` the runs of one model (one depth, seed and, for a student, teacher) that differ
only in length are one stable-phase run and its cooldowns: the longest run is the parent, keeping its
state where each shorter one's cooldown starts (`fork_tokens`), and every shorter run is a fork of it
(`parent_id`; the runner passes `--fork-from`), so the sweep costs about its longest run per model
(training/fork.py). Their shared warmup is 10% of the shortest run's steps unless warmup_steps is given.

Each run's id is a hash of what it computes (its kind, its training settings and, for a student, its
teacher's id) behind a readable prefix, e.g. `t-L3-M20-1a2b3c4d`: the same spec always gives the same ids.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from distillscale.data.sources import BUILTIN_PREFIX
from distillscale.errors import UserError
from distillscale.io import read_text_file
from distillscale.laws.hyperparameters.law import FAR_FACTOR, HyperparameterLaw
from distillscale.laws.hyperparameters.presets import HYPERPARAMETER_PRESETS, load_hyperparameter_law
from distillscale.laws.hyperparameters.surface import MIN_VALUES, grid_rule
from distillscale.laws.hyperparameters.rates import LR_MAX, family_mup_multiplier, train_lr
from distillscale.model import ModelConfig
from distillscale.sweeps.spec_sections import (DATA_KEYS, DISTILL_KEYS, LATER_MODEL_KEYS, LR_RULE_KEYS,
                                               ON_POLICY_DISTILL_KEYS, DataSection, DistillSection, EvalSection,
                                               Ladder, ModelSection, PruneSection, RepetitionSection, RunKind,
                                               StudentLadder, TuneSection, _SpecShape, _validate)
from distillscale.training.config import (BOOKKEEPING_KEYS, DEFAULT_COOLDOWN_FRACTION, TEACHER_FIXED_KEYS, WARMUP_KEYS,
                                         WSD_KEYS, DistillConfig, TrainConfig)
from distillscale.units import Quantity, check_quantity, format_quantity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep, resolved: what to train and, for a student, which teacher to distil."""

    run_id: str
    kind: RunKind
    n_layers: int
    non_embedding_params: int
    tokens: int
    tokens_per_param: float | None  # the fixed M asked for (None on an IsoFLOP profile)
    budget: float | None            # the FLOP budget of an IsoFLOP run (None for fixed M)
    settings: dict[str, Any]        # `train`/`distill` settings, without --out, --teacher and --fork-from
    teacher_id: str | None = None
    parent_id: str | None = None    # a WSD fork: the longer run whose stable phase it continues
    epochs: float | None = None     # a repeated-data run: passes over its subset (settings' unique_tokens)
    # A student pruned from its teacher: the "pruned" run it starts from (`distill --student-init`).
    # Its settings keep the shape of its size (the pruned model's), which the runner replaces by the start.
    init_id: str | None = None

    @property
    def command(self) -> str:
        return {"student": "distill", "pruned": "prune"}.get(self.kind, "train")

    @property
    def depends_on(self) -> tuple[str, ...]:
        return tuple(run_id for run_id in (self.teacher_id, self.parent_id, self.init_id) if run_id)

    def to_config(self) -> dict[str, Any]:
        """The JSON the run store keeps for this run."""
        config = {"command": self.command, "n_layers": self.n_layers,
                  "non_embedding_params": self.non_embedding_params, "tokens": self.tokens,
                  "tokens_per_param": self.tokens_per_param, "budget": self.budget,
                  "teacher_id": self.teacher_id, "parent_id": self.parent_id, "settings": self.settings}
        if self.epochs is not None:
            config["epochs"] = self.epochs
        if self.init_id is not None:
            config["init_id"] = self.init_id
        return config


@dataclass(frozen=True)
class SweepSpec:
    """A validated spec: `runs` in dependency order (teachers first)."""

    name: str
    sections: dict[str, Any]   # the resolved spec, every default filled in (written as spec.toml)
    runs: tuple[PlannedRun, ...] = field(repr=False)
    notes: tuple[str, ...] = ()   # what the user should know before paying for the runs (said by plan and run)
    evaluation: EvalSection | None = None  # [eval]: each finished run scored on lm-eval tasks (no run id depends on it)

    def gpu_settings(self) -> tuple[tuple[str, ...], int]:
        """What the runs ask of a GPU: the settings made for one that some run sets (bf16, compile),
        and how many runs ask for device = cuda (`sweep run` refuses them without a GPU)."""
        asked = tuple(sorted({key for run in self.runs for key in ("bf16", "compile") if run.settings.get(key)}))
        return asked, sum(run.settings.get("device") == "cuda" for run in self.runs)

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(_without_none(self.sections))


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Read, validate and resolve a spec file; relative data and tokenizer paths are taken from the
    file's directory. Raises UserError naming the first bad key."""
    path = Path(path)
    text = read_text_file(path, "sweep spec")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"sweep spec {path} is not valid TOML: {exc}") from None
    return resolve_sweep_spec(table, source=str(path), base_dir=path.parent)


def resolve_sweep_spec(table: dict[str, Any], source: str = "the sweep spec",
                       base_dir: Path = Path(".")) -> SweepSpec:
    """Validate a spec given as a dict (a parsed TOML file) and expand it into its runs."""
    shape = _validate(_SpecShape, table, source, prefix="")
    data = _validate(DataSection, shape.data, source, prefix="data.")
    model = _validate(ModelSection, shape.model, source, prefix="model.")
    teachers = _validate(Ladder, shape.teachers, source, prefix="teachers.")
    students = None if shape.students is None else _validate(StudentLadder, shape.students, source, "students.")
    distill = _validate(DistillSection, shape.distill, source, prefix="distill.")
    repetition = (None if shape.repetition is None
                  else _validate(RepetitionSection, shape.repetition, source, prefix="repetition."))
    prune = _validate(PruneSection, shape.prune or {}, source, prefix="prune.")
    tune = None if shape.tune is None else _validate(TuneSection, shape.tune, source, prefix="tune.")
    evaluation = None if shape.eval is None else _validate(EvalSection, shape.eval, source, prefix="eval.")
    if evaluation is not None and evaluation.include_path is not None:
        evaluation = evaluation.model_copy(update={
            "include_path": str((base_dir / Path(evaluation.include_path).expanduser()).absolute())})
    tuned = None if tune is None else tune.ladder
    if tuned == "teachers" and students is not None:
        raise UserError(f"{source}: [tune] grids the [teachers] ladder, and [students] would distil every student "
                        f"from every grid point: add ladder = \"students\" to [tune] to grid the students instead, "
                        f"or tune the teachers in a sweep of their own")
    if tuned == "students" and (students is None or "pruned" in students.student_init or repetition is not None):
        raise UserError(f"{source}: [tune] ladder = \"students\" grids the students from scratch and their baselines: "
                        + ("add a [students] section" if students is None
                           else "run pruned students and [repetition] in a sweep of their own"))
    pruned_students = students is not None and "pruned" in students.student_init
    if shape.prune is not None and not pruned_students:
        raise UserError(f'{source}: [prune] sets how pruned students are cut from their teachers, and [students] '
                        f'has none: add student_init = ["scratch", "pruned"] to [students], or remove [prune]')
    if pruned_students and repetition is not None:
        raise UserError(f"{source}: [repetition] and pruned students (student_init) do not mix yet: run them as "
                        f"two sweeps")
    if pruned_students and model.schedule == "wsd" and len(students.tokens_per_param or students.budgets) > 1:
        raise UserError(f'{source}: pruned students under schedule = "wsd" take one budget per size (their WSD '
                        f'forks are not built): give [students] one tokens_per_param (or budget), or schedule = '
                        f'"cosine"')
    if repetition is not None and students is None:
        raise UserError(f"{source}: [repetition] repeats the students' data: add a [students] section")
    if teachers.protocol == "isoflop" and students is not None and students.protocol == "isoflop":
        raise UserError(f"{source}: teachers and students are both IsoFLOP profiles; Busbridge et al.'s "
                        "protocols fix M = D/N on at least one side: give tokens_per_param to one of them")

    _check_forked_on_policy(model, distill, students, source)

    data = data.model_copy(update={key: str((base_dir / Path(getattr(data, key)).expanduser()).absolute())
                                   for key in ("path", "tokenizer") if getattr(data, key) is not None
                                   and not str(getattr(data, key)).startswith(BUILTIN_PREFIX)})
    model_settings = model.model_dump(mode="json")
    if model.schedule == "cosine":  # as before WSD existed, so earlier sweeps keep their spec and run ids
        model_settings = {key: value for key, value in model_settings.items() if key not in WSD_KEYS}
    model_settings = {key: value for key, value in model_settings.items()
                      if key not in LATER_MODEL_KEYS or value != TrainConfig.model_fields[key].default}
    if (model.lr_width_exponent is None) != (model.lr_reference_width is None):
        raise UserError(f"{source}: [model] lr_width_exponent and lr_reference_width go together: give both "
                        "(lr x (d_model / lr_reference_width) ** lr_width_exponent) or neither")
    lr_law = _lr_law(model, tune, base_dir, source)
    if lr_law is not None:
        model_settings["lr_law"] = lr_law.source
    # left out while unset, so that earlier sweeps keep their spec and run ids
    model_settings = {key: value for key, value in model_settings.items() if key not in LR_RULE_KEYS or value is not None}
    base = {DATA_KEYS[key]: value for key, value in data.model_dump(mode="json").items()}
    base.update({key: value for key, value in model_settings.items() if key not in LR_RULE_KEYS})
    if model.lr_width_exponent is not None:
        base["lr_rule"] = (model.lr_width_exponent, model.lr_reference_width)
    if lr_law is not None:
        base["lr_rule"] = lr_law
    distill_settings = {key: getattr(distill, key) for key in DISTILL_KEYS}
    if distill.on_policy_fraction > 0:
        distill_settings |= {key: getattr(distill, key) for key in ON_POLICY_DISTILL_KEYS}

    teacher_runs = _ladder_runs("teacher", teachers, base, source, split="teacher",
                                tune=tune if tuned == "teachers" else None)
    runs = list(teacher_runs)
    if students is not None:
        student_tune = tune if tuned == "students" else None
        student_sizes = _ladder_runs("baseline", students, base, source, split="student",
                                     subset=repetition is not None, tune=student_tune)
        if distill.supervised_baselines:
            runs += student_sizes
        students_of = {}  # (baseline id, teacher id) -> the student in its place: a fork's parent
        pruned_of: dict[tuple[int, str], PlannedRun] = {}  # (student depth, teacher id) -> its prune run
        inits, checked = students.student_init, False
        for size in student_sizes:
            for teacher in _teaching(teacher_runs, distill.teach_from):
                settings = {key: value for key, value in size.settings.items()
                            if key not in TEACHER_FIXED_KEYS} | distill_settings
                if not checked:  # every [distill] key, so that one given with fraction 0 is refused
                    _check_distill_settings(settings | distill.model_dump(include=set(ON_POLICY_DISTILL_KEYS)),
                                            source)
                    checked = True
                if "scratch" in inits:
                    student = _planned("student", size.n_layers, size.non_embedding_params, size.tokens,
                                       size.tokens_per_param, size.budget, settings, teacher,
                                       students_of.get((size.parent_id, teacher.run_id)),
                                       tag=_grid_tag(settings, student_tune))
                    students_of[size.run_id, teacher.run_id] = student
                    runs.append(student)
                if "pruned" in inits and _fits_in(size, teacher, source):
                    key = (size.n_layers, teacher.run_id)
                    if key not in pruned_of:
                        pruned_of[key] = _prune_run(size, teacher, prune, source)
                        runs.append(pruned_of[key])
                    runs.append(_planned("student", size.n_layers, size.non_embedding_params, size.tokens,
                                         size.tokens_per_param, size.budget, settings, teacher,
                                         init=pruned_of[key]))
        if pruned_students:
            missing = sorted({size.n_layers for size in student_sizes} - {depth for depth, _ in pruned_of})
            if missing:
                raise UserError(f"{source}: [students] n_layers = {missing[0]} is larger than every teaching run, and "
                                f"a pruned student is cut from a teacher at least its size: add a larger teacher or "
                                f"a smaller student")
        if repetition is not None:
            runs += _repeated_runs(student_sizes, _teaching(teacher_runs, distill.teach_from), repetition.epochs,
                                   distill_settings, distill.supervised_baselines)

    sections = {"name": shape.name, "data": data.model_dump(mode="json"),
                "model": model_settings, "teachers": teachers.section(),
                "distill": distill.model_dump(  # "all" and off on-policy keys left out: earlier sweeps keep their spec
                    mode="json", exclude=({"teach_from"} if distill.teach_from == "all" else set())
                    | (set(ON_POLICY_DISTILL_KEYS) if distill.on_policy_fraction == 0 else set()))}
    if students is not None:
        sections["students"] = students.section()
    if repetition is not None:
        sections["repetition"] = repetition.model_dump(mode="json")
    if pruned_students:
        sections["prune"] = prune.model_dump(mode="json")
    if tune is not None:
        sections["tune"] = tune.section()
    if evaluation is not None:
        sections["eval"] = evaluation.model_dump(mode="json", exclude_none=True)
    notes = () if lr_law is None else lr_law.notes(runs)
    if tune is not None:
        notes += _check_tune(runs, tuned, source)
    return SweepSpec(name=shape.name, sections=sections, runs=tuple(runs), notes=notes, evaluation=evaluation)


def _check_tune(runs: list[PlannedRun], tuned: str, source: str) -> tuple[str, ...]:
    """Hold a [tune] grid to the rule `fit hyperparameters` fits it by (`surface.grid_rule`): each
    (size, tokens) cell of the tuned ladder (a student's: of each teacher) at fewer than 3 rates is
    refused in one line before anything runs; one that cannot locate B* (2 batch sizes) is a note."""
    kinds = ("teacher",) if tuned == "teachers" else ("baseline", "student")
    cells: dict[tuple, list[PlannedRun]] = {}
    for run in runs:
        if run.kind in kinds:
            cells.setdefault((run.kind, run.n_layers, run.tokens, run.teacher_id), []).append(run)
    notes: list[str] = []
    for cell in cells.values():
        verdict = grid_rule([run.settings["lr"] for run in cell], [run.settings["batch_size"] for run in cell])
        if verdict.refusal is not None:
            raise UserError(f"{source}: [tune] gives each (size, tokens) cell of [{tuned}] {verdict.refusal}, so "
                            f"`distillscale fit hyperparameters` would refuse the grid: list {MIN_VALUES} or more "
                            "rates, e.g. lr = [1e-3, 3e-3, 1e-2]")
        if verdict.batch_note is not None and not notes:
            notes.append(f"[tune] {verdict.batch_note}: `distillscale fit hyperparameters` will fit the rate at one "
                         f"batch and no B* law; list {MIN_VALUES} or more batch sizes that bracket B* to locate it")
    return tuple(notes)


def _teaching(teacher_runs: list[PlannedRun], teach_from: str) -> list[PlannedRun]:
    """The teacher runs that teach the students: all, or the longest run of each teacher size (with
    a WSD ladder, the parent whose stable phase the size's other budgets fork)."""
    if teach_from == "all":
        return teacher_runs
    longest: dict[int, PlannedRun] = {}
    for run in teacher_runs:
        if run.n_layers not in longest or run.tokens > longest[run.n_layers].tokens:
            longest[run.n_layers] = run
    return list(longest.values())


def _repeated_runs(student_sizes: list[PlannedRun], teachers: list[PlannedRun], epochs: list[float],
                   distill_settings: dict[str, Any], baselines: bool) -> list[PlannedRun]:
    """Each student size's longest budget D again, on a fixed subset of U = D / e unique tokens per
    listed epochs e above 1 (the ladder's longest run is the 1-epoch point; D the tokens its whole
    steps take, so result.json records e exactly): a baseline (when the sweep has baselines) and a
    student of each teacher, every one a run of its own (no forks), with the ladder's warmup."""
    longest: dict[tuple[int, int], PlannedRun] = {}
    for run in student_sizes:
        key = (run.n_layers, run.settings["seed"])
        if key not in longest or run.tokens > longest[key].tokens:
            longest[key] = run
    runs = []
    for size in longest.values():
        settings = {key: value for key, value in size.settings.items() if key != "fork_tokens"}
        for e in (e for e in epochs if e > 1):
            subset = {**settings, "unique_tokens": round(settings["unique_tokens"] / e)}
            args = (size.n_layers, size.non_embedding_params, size.tokens, size.tokens_per_param, size.budget)
            if baselines:
                runs.append(_planned("baseline", *args, subset, epochs=e))
            student_settings = {key: value for key, value in subset.items()
                                if key not in TEACHER_FIXED_KEYS} | distill_settings
            runs += [_planned("student", *args, student_settings, teacher, epochs=e) for teacher in teachers]
    return runs


def _ladder_runs(kind: RunKind, ladder: Ladder, base: dict[str, Any], source: str,
                 split: str, subset: bool = False, tune: TuneSection | None = None) -> list[PlannedRun]:
    """A ladder's runs, each size's budgets WSD forks of its longest under `schedule = "wsd"`; with
    `subset`, every run of a size trains on the fixed subset of its split that the longest run's
    whole steps read once (`unique_tokens`); with `tune`, all of them once per (lr, batch_size) pair
    of its grid (the lr before a width rule scales it), each pair's budgets forking its own longest."""
    section = "teachers" if kind == "teacher" else "students"
    runs = []
    for n_layers in ladder.n_layers:
        params = _non_embedding_params(n_layers, base, source, section)
        if ladder.budgets is not None:
            grid = [(None, budget, round(budget / (6 * params))) for budget in ladder.budgets]
        else:
            grid = [(m, None, round(m * params)) for m in ladder.tokens_per_param]
        grid = [point for point in grid if ladder.in_window(point[2])]
        if tune is not None:  # every grid point of a cell trains the same D: whole steps of each batch
            batches = tune.batch_size or [base["batch_size"]]
            step = math.lcm(*(batch * base["grad_accum"] * base["seq_len"] for batch in batches))
            grid = [(m, budget, -(-tokens // step) * step) for m, budget, tokens in grid]
        if not grid:
            raise UserError(f"{source}: [{section}] n_layers = {n_layers} ({params:,} parameters) has no "
                            f"run between min_tokens and max_tokens: widen the window or the budgets")
        size_batch = ladder.batch_for(min(point[2] for point in grid), base["batch_size"],
                                      base["grad_accum"] * base["seq_len"])
        points = tune.points(base["lr"], size_batch) if tune else [(base["lr"], size_batch)]
        seeds = range(base["seed"], base["seed"] + ladder.seeds_of(n_layers))
        for seed, (lr, batch_size) in ((seed, point) for seed in seeds for point in points):
            settings = {**base, "n_layers": n_layers, "split": split, "seed": seed, "lr": lr, "batch_size": batch_size}
            if subset:
                longest = TrainConfig.model_validate({**settings, "tokens": max(point[2] for point in grid), "out": "."})
                settings["unique_tokens"] = longest.steps_for(longest.tokens) * longest.tokens_per_step
            rule = settings.pop("lr_rule", None)
            batch_tokens = batch_size * base["grad_accum"] * base["seq_len"]
            width = (settings["aspect_ratio"] * n_layers, settings.get("mup", True))   # the rate's model
            wsd = base.get("schedule") == "wsd"
            if isinstance(rule, LadderLrLaw) and wsd:  # one stable phase: the rate at the budgets' geometric mean
                tokens = math.exp(sum(math.log(point[2]) for point in grid) / len(grid))
                settings["lr"] = rule.lr(params, tokens, batch_tokens, *width, f"{source}: [{section}]")
            elif rule is not None and not isinstance(rule, LadderLrLaw):
                settings["lr"] = lr_for_width(settings["lr"], settings["aspect_ratio"] * n_layers, *rule)
            tag = _grid_tag(settings, tune)
            if wsd:
                runs += _forked_runs(kind, n_layers, params, grid, settings, source, section, tag)
                continue
            for tokens_per_param, budget, tokens in grid:
                run_settings = {**settings, "tokens": tokens}
                if isinstance(rule, LadderLrLaw):  # a run of its own: the rate at its own budget
                    run_settings["lr"] = rule.lr(params, tokens, batch_tokens, *width, f"{source}: [{section}]")
                _check_settings(run_settings, source, section)
                runs.append(_planned(kind, n_layers, params, tokens, tokens_per_param, budget, run_settings, tag=tag))
    return runs


def _grid_tag(settings: dict[str, Any], tune: TuneSection | None) -> str:
    """A [tune] grid point in a run id (`-lr0.003-B16`), or nothing without a grid."""
    return "" if tune is None else f"-lr{settings['lr']:g}-B{settings['batch_size']}"


@dataclass(frozen=True)
class LadderLrLaw:
    """[model] lr_law: each run's peak lr from a hyperparameter law, read at its N and D and the
    ladder's batch. Under WSD a size's budgets share one stable phase, so one rate: the law's at the
    geometric mean of the budgets (under a power law in D, the rate whose mean squared distance in
    ln lr from each budget's optimum is least)."""

    law: HyperparameterLaw
    source: str   # the preset's name or the law file's absolute path, as the spec records it

    def notes(self, runs: list[PlannedRun]) -> tuple[str, ...]:
        """A line when the ladder's runs lie far outside the N and D the law was fitted on, and one when
        it gives a run a --lr above `rates.LR_MAX`, where training diverges."""
        if not runs:
            return ()
        factor, params, tokens = max((self.law.extrapolation(run.non_embedding_params, run.tokens)[0],
                                      run.non_embedding_params, run.tokens) for run in runs)
        lrs = sorted(run.settings["lr"] for run in runs)
        notes = []
        if factor > FAR_FACTOR:
            notes.append(f"lr_law {self.law.name} is read up to {factor:,.0f}x outside the N and D it was fitted on "
                         f"(N = {params:,}, D = {tokens:.3g}), giving --lr {lrs[0]:.3g}-{lrs[-1]:.3g}: a far "
                         f"extrapolation; check the rates (`sweep plan --json`) or fit a law on a small grid of your own")
        above = [lr for lr in lrs if lr > LR_MAX]
        if above:
            notes.append(f"lr_law {self.law.name} gives {len(above)} of the {len(runs)} runs a --lr above {LR_MAX:g} "
                         f"(up to {above[-1]:.4g}), where training diverges: those runs are no runs to train; set "
                         f"[model] lr, or fit a law on runs nearer these sizes and tokens")
        return tuple(notes)

    def lr(self, params: int, tokens: float, batch_tokens: int, d_model: int, mup: bool, where: str) -> float:
        """The `--lr` that trains a run's hidden matrices at the law's rate (`rates.train_lr`, the
        conversion `plan` makes: the run is `d_model` wide, with or without muP), to 4 significant
        digits (a readable config); a law fitted at one batch is refused at another in one line."""
        law = self.law
        try:  # a B* law: the rate at the ladder's batch (regime adaptation)
            recommendation = law.recommend(params, tokens, batch_tokens=None if law.batch is None else batch_tokens)
        except UserError as exc:
            raise UserError(f"{where}: lr_law {self.source}: {exc}") from None
        if law.batch is None and not math.isclose(recommendation.batch_tokens, batch_tokens, rel_tol=0.25):
            raise UserError(f"{where}: lr_law {self.source} was fitted at a batch of "
                            f"{recommendation.batch_tokens:,.0f} tokens and this ladder's is {batch_tokens:,} "
                            f"(batch_size x grad_accum x seq_len): the law cannot say the rate at another batch; "
                            f"set the ladder's batch to the law's, or fit the law on an lr x batch grid")
        return float(f"{train_lr(recommendation.lr, law.lr_unit, d_model, family_mup_multiplier(d_model, mup)):.4g}")


def _lr_law(model: BaseModel, tune: TuneSection | None, base_dir: Path, source: str) -> LadderLrLaw | None:
    """[model] lr_law, loaded (a preset name, or a file relative to the spec's directory), or None."""
    if model.lr_law is None:
        return None
    if model.lr_width_exponent is not None:
        raise UserError(f"{source}: [model] lr_law and lr_width_exponent both set each size's lr: give one")
    if tune is not None and tune.lr is not None:
        raise UserError(f"{source}: [model] lr_law sets each size's lr and [tune] lr grids it: give one "
                        f"(a grid to fit a law on, or a law to run the ladder at)")
    name = model.lr_law
    if name not in HYPERPARAMETER_PRESETS:
        name = str((base_dir / Path(name).expanduser()).absolute())
    return LadderLrLaw(law=load_hyperparameter_law(name), source=name)


def lr_for_width(lr: float, d_model: int, exponent: float, reference_width: int) -> float:
    """The learning rate of width `d_model` under the rule lr x (d_model / reference) ** exponent,
    to 4 significant digits (a readable config)."""
    return float(f"{lr * (d_model / reference_width) ** exponent:.4g}")


def _forked_runs(kind: RunKind, n_layers: int, params: int, grid: list[tuple], settings: dict[str, Any],
                 source: str, section: str, tag: str = "") -> list[PlannedRun]:
    """One model's budgets under WSD: the longest run first, keeping the state its forks start from,
    then each shorter run as a fork of it, all with the warmup of the shortest."""
    grid = sorted(grid, key=lambda point: point[2], reverse=True)
    if all(settings.get(key) is None for key in WARMUP_KEYS):  # tokens (per parameter): the same steps for all
        shortest = TrainConfig.model_validate({**settings, "tokens": grid[-1][2], "out": "."})
        settings = {**settings, "warmup_steps": shortest.resolved_warmup_steps(shortest.steps_for(grid[-1][2]))}
    (m, budget, tokens), *shorter = grid
    parent_settings = {**settings, "tokens": tokens, "fork_tokens": [point[2] for point in shorter] or None}
    _check_settings(parent_settings, source, section)
    parent = _planned(kind, n_layers, params, tokens, m, budget, parent_settings, tag=tag)
    runs = [parent]
    for m, budget, tokens in shorter:
        fork_settings = {**settings, "tokens": tokens}
        _check_settings(fork_settings, source, section)
        runs.append(_planned(kind, n_layers, params, tokens, m, budget, fork_settings, parent=parent, tag=tag))
    return runs


def _planned(kind: RunKind, n_layers: int, params: int, tokens: int, tokens_per_param: float | None,
             budget: float | None, settings: dict[str, Any], teacher: PlannedRun | None = None,
             parent: PlannedRun | None = None, epochs: float | None = None,
             init: PlannedRun | None = None, tag: str = "") -> PlannedRun:
    """One run; `tag` names a [tune] grid point in its id (e.g. `-lr0.003-B16`)."""
    teacher_id = teacher.run_id if teacher else None
    parent_id = parent.run_id if parent else None
    init_id = init.run_id if init else None
    identity = {"kind": kind, "teacher_id": teacher_id,
                "settings": {k: v for k, v in settings.items() if k not in BOOKKEEPING_KEYS}}
    if parent_id:  # left out otherwise, so that the ids of cosine sweeps stay as they were
        identity["parent_id"] = parent_id
    if init_id:  # likewise
        identity["init_id"] = init_id
    digest = _digest(identity)
    length = f"M{tokens_per_param:g}" if budget is None else f"C{format_quantity(budget)}"
    via = f"-T{teacher.n_layers}" if teacher else ""
    repeats = f"-E{epochs:g}" if epochs is not None else ""
    start = "-P" if init_id else ""
    run_id = f"{kind[0]}-L{n_layers}-{length}{tag}{repeats}{via}{start}-{digest}"
    check_quantity(tokens, f"the tokens of run {run_id}", kind=Quantity.TOKENS)  # M x N: each may be in range, not the product
    return PlannedRun(run_id=run_id, kind=kind, n_layers=n_layers, non_embedding_params=params,
                      tokens=tokens, tokens_per_param=tokens_per_param, budget=budget, settings=settings,
                      teacher_id=teacher_id, parent_id=parent_id, epochs=epochs, init_id=init_id)


def _digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]


def _student_shape(size: PlannedRun) -> ModelConfig:
    """The model of a student size (or a teacher run), as its settings give it."""
    settings = size.settings
    shape = {key: settings[key] for key in ("aspect_ratio", "head_dim", "tie_embeddings", "mup")
             if settings.get(key) is not None}
    return ModelConfig(n_layers=size.n_layers, vocab_size=settings.get("vocab_size") or 512, **shape)


def _fits_in(size: PlannedRun, teacher: PlannedRun, source: str) -> bool:
    """Whether the student size can be pruned from the teacher: no dimension larger, the same head
    size (pruning keeps whole heads) and the same tied or untied embeddings."""
    student, big = _student_shape(size), _student_shape(teacher)
    if (student.head_dim, student.tie_embeddings, student.mup) != (big.head_dim, big.tie_embeddings, big.mup):
        raise UserError(f"{source}: a pruned student keeps its teacher's head size, embeddings and muP, and "
                        f"[students] n_layers = {size.n_layers} differs from teacher n_layers = {teacher.n_layers}")
    return all(getattr(student, key) <= getattr(big, key) for key in ("n_layers", "d_model", "n_heads", "d_ff"))


def _prune_run(size: PlannedRun, teacher: PlannedRun, prune: BaseModel, source: str) -> PlannedRun:
    """The `prune` run cutting `teacher` to the shape of the student size `size`, calibrated on windows
    of the student's half of the corpus at the sweep's context (the teacher's corpus and tokenizer)."""
    shape = _student_shape(size)
    settings = {"n_layers": shape.n_layers, "d_model": shape.d_model, "n_heads": shape.n_heads,
                "d_ff": shape.d_ff, "seq_len": size.settings["seq_len"], "split": "student",
                **prune.model_dump(mode="json")}
    if size.settings.get("device") is not None:
        settings["device"] = size.settings["device"]
    digest = _digest({"kind": "pruned", "teacher_id": teacher.run_id, "settings": settings})
    run_id = f"p-L{size.n_layers}-T{teacher.n_layers}-{digest}"
    return PlannedRun(run_id=run_id, kind="pruned", n_layers=size.n_layers,
                      non_embedding_params=shape.non_embedding_params, tokens=prune.calibration_tokens,
                      tokens_per_param=None, budget=None, settings=settings, teacher_id=teacher.run_id)


def _non_embedding_params(n_layers: int, base: dict[str, Any], source: str, section: str) -> int:
    shape = {key: base[key] for key in ("aspect_ratio", "head_dim", "tie_embeddings", "mup")
             if base.get(key) is not None}
    try:  # the vocabulary does not change N; any valid size will do
        return ModelConfig(n_layers=n_layers, vocab_size=base.get("vocab_size") or 512, **shape).non_embedding_params
    except UserError as exc:
        raise UserError(f"{source}: {section}.n_layers = {n_layers}: {exc}") from None


def _check_settings(settings: dict[str, Any], source: str, section: str) -> None:
    """Rules between settings (e.g. eval_tokens >= seq_len) that only a whole run config can check."""
    try:
        TrainConfig.model_validate({**settings, "out": "."})
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise UserError(f"{source}: a run of [{section}] n_layers = {settings['n_layers']} is invalid: "
                        f"{message}") from None


def _check_forked_on_policy(model, distill, students, source: str) -> None:
    """Under WSD a student's shorter budgets are forks of its longest run. --on-policy-start is a share
    of each run's own steps, so a start before the cooldown puts a fork's first on-policy batch in the
    steps it shares with its parent, at another step than the parent's: each such fork would be
    refused when it starts (`distillation.on_policy_schedule`). Refuse the spec before any run."""
    if students is None or model.schedule != "wsd" or distill.on_policy_fraction <= 0:
        return
    cooldown = model.cooldown_fraction or DEFAULT_COOLDOWN_FRACTION
    if 0 < distill.on_policy_start < 1 - cooldown:
        raise UserError(f"{source}: [distill] on_policy_start = {distill.on_policy_start:g} with [model] schedule = "
                        f"\"wsd\": each student's shorter budgets fork its longest run, and a share of its own steps "
                        f"before the cooldown ({1 - cooldown:g} of them) would take its first on-policy batch where its "
                        f"parent took off-policy ones; set on_policy_start = 0, or at least {1 - cooldown:g} (on-policy "
                        f"in the cooldown only), or schedule = \"cosine\"")


def _check_distill_settings(settings: dict[str, Any], source: str) -> None:
    """The [distill] rules that need a whole `distill` config (e.g. on-policy lengths within seq_len)."""
    try:
        DistillConfig.model_validate({**settings, "out": ".", "teacher": "."})
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise UserError(f"{source}: [distill] is invalid: {message}") from None


def _without_none(value: Any) -> Any:
    """TOML has no null: leave unset (None) settings out."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value
