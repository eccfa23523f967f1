"""The planner page's JSON API: the page's controls in, the plan and the data of its figures out.

Every number comes from `planning.plan` (the call behind `distillscale plan`) and the planner it
used; the page only draws them. A bad control comes back as a message for that control:
`ParameterError` names the parameter, and CONTROLS maps it to the control (and its label).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from distillscale.errors import ParameterError, UserError
from distillscale.laws.extrapolation import data_range
from distillscale.laws.lawset import PRESETS, LawSet, load_laws
from distillscale.planning.flops import SCENARIOS
from distillscale.cli_options import command_line
from distillscale.planning.options import PlanSettings
from distillscale.planning.options import ExistingTeacher
from distillscale.planning.plan import Plan, plan_from_settings
from distillscale.planning.recipes import DEFAULT_HYPERPARAMETER_LAW
from distillscale.units import Quantity, parse_quantity

# The page's controls: the planner parameter each one sets, and how a message names it.
CONTROLS = {
    "law": ("law", "the law"),
    "compute": ("compute", "the budget"),
    "student_params": ("student", "the student size"),
    "scenario": ("scenario", "the scenario"),
    "teacher.params": ("teacher-params", "the teacher size"),
    "teacher.tokens": ("teacher-tokens", "the teacher tokens"),
    "teacher.loss": ("teacher-loss", "the teacher loss"),
    "teacher_model": ("teacher-model", "the teacher model"),
    "student_init": ("student-init", "the student's start"),
    "hyperparameter_law": ("hyperparameter-law", "the hyperparameter law"),
    "batch_tokens": ("batch-tokens", "the batch"),
    "gpu": ("gpu", "the GPU"),
    "gpus": ("gpus", "the GPUs per run"),
    "price_per_gpu_hour": ("price", "the price per GPU-hour"),
    "students": ("students", "the family's students"),
    "targets": ("targets", "the family's targets"),
    "unique_tokens": ("unique-tokens", "the pool of unique tokens"),
    "generations": ("generations", "the generations"),
}
CURVE_POINTS = 17     # budgets of the loss-vs-compute figure, C/100 to 100 C
U_CURVE_POINTS = 160  # teacher losses of the U-curve
REMEMBERED = 256      # answers kept: a slider moved back to where it was answers at once
TEACHER_MODES = ("none", "tokens", "loss", "model")


@dataclass(frozen=True)
class PlanQuery:
    """What the page's controls say, as typed by the user (quantities as text: "546M", "1e21")."""

    law: str
    compute: str
    student: str = "best"            # "best" or a size
    scenario: str = "best-case"
    teacher: str = "none"            # none, tokens (size and tokens), loss (size and loss) or model
    teacher_model: str = ""          # with teacher "model": one of the directories `serve --teacher-model` gave
    teacher_params: str = ""
    teacher_tokens: str = ""
    teacher_loss: str = ""
    student_init: str = "scratch"    # scratch or pruned (`plan --student-init`)
    hyperparameter_law: str = DEFAULT_HYPERPARAMETER_LAW  # each run's lr and batch (`plan --hyperparameter-law`)
    batch_tokens: str = ""           # a batch fixed for every run ("": each at the law's B*)
    gpu: str = "none"                # price the runs in GPU-hours on this GPU (`plan --gpu`), or none
    gpus: str = "1"                  # GPUs per run (`plan --gpus`)
    price_per_gpu_hour: str = ""     # `plan --price-per-gpu-hour` ("": no cost)
    students: str = ""               # a family's student sizes, comma-separated (`plan --students`; "": one student)
    targets: str = "cached"          # a family's teacher targets (`plan --targets`)
    unique_tokens: str = ""          # the pool every run reads (`plan --unique-tokens`; "": fresh data)
    generations: str = ""            # the chain and ensemble size compared on it (`plan --generations`; "": 1-4)

    @classmethod
    def from_json(cls, data: dict, extra: tuple[str, ...] = (), default_law: str = "busbridge2025") -> "PlanQuery":
        """The query from a request's JSON object: each control a string or a number; a key that
        is no control (nor in `extra`) or a value of another type raises UserError naming it."""
        if not isinstance(data, dict):
            raise UserError(f"the request must be a JSON object of controls, got a JSON {_json_type(data)}")
        fields = cls.__dataclass_fields__
        unknown = [key for key in data if key not in fields and key not in extra]
        if unknown:
            raise UserError(f"unknown control {unknown[0]!r}: the controls are {', '.join(fields)}")
        for key, value in data.items():
            if key in fields and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
                raise UserError(f"control {key!r} must be a string or a number, got a JSON {_json_type(value)}")
        if "law" not in data:
            data = {**data, "law": default_law}
        if "compute" not in data:
            data = {**data, "compute": ""}
        return cls(**{key: value if isinstance(value, str) else repr(value)
                      for key, value in data.items() if key in fields})


class Planner:
    """The laws a page can plan with (the presets and the files given to `serve`), loaded once; with
    `downstream_law` (`serve --downstream-law FILE`), each plan's models carry their predicted
    downstream error under it (`plan --downstream-law`); `hyperparameter_laws` (`serve
    --hyperparameter-law FILE`): fitted hyperparameter laws offered beside the presets, the first
    selected."""

    def __init__(self, law_specs: list[str] | None = None, downstream_law: str | Path | None = None,
                 hyperparameter_laws: list[str] | None = None, bias_correction: bool = True,
                 teacher_models: list[str | Path] | None = None, trust_remote_code: bool = False) -> None:
        from distillscale.laws.downstream import load_downstream_law
        from distillscale.laws.hyperparameters import HYPERPARAMETER_PRESETS, load_hyperparameter_law

        self.laws: dict[str, LawSet] = {}
        for spec in [*PRESETS, *(law_specs or [])]:
            self.laws[spec] = load_laws(spec, bias_correction=bias_correction)  # laws.crossladder
        # each offered by its path as given, loaded (and refused in one line) now, not by a request
        self.hyperparameter_laws = {**HYPERPARAMETER_PRESETS,
                                    **{str(spec): load_hyperparameter_law(str(spec)) for spec in hyperparameter_laws or []}}
        self.default_hyperparameter_law = str((hyperparameter_laws or [DEFAULT_HYPERPARAMETER_LAW])[0])
        self.downstream_path = None if downstream_law is None else str(downstream_law)
        self.downstream = None if downstream_law is None else load_downstream_law(downstream_law)
        # the teachers `serve --teacher-model` gave, each counted now (a bad directory is refused at start)
        self.teacher_models = _teacher_models(teacher_models or [], trust_remote_code)
        self.trust_remote_code = trust_remote_code
        self.default = (law_specs or ["busbridge2025"])[0]
        self._answers: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # the server answers each request on its own thread
        # The first plan imports SciPy and compiles its paths (about a second): done now, not on
        # the page's first update.
        self._update(PlanQuery(law="busbridge2025", compute="1e21", student="546M",
                               scenario="teacher-pretraining"))

    def laws_info(self) -> dict:
        """The law menu: each law's name and what it can plan."""
        return {"default": self.default, "scenarios": {name: s.description for name, s in SCENARIOS.items()},
                "hyperparameter_laws": {"default": self.default_hyperparameter_law,
                                        "presets": list(self.hyperparameter_laws)},
                "gpus": _gpus(), "teacher_models": list(self.teacher_models),
                "laws": [{"id": spec, "name": laws.name, "file": spec not in PRESETS,
                          "distillation": laws.distillation is not None,
                          "data_range": _range(laws), "bias_correction": laws.bias_note()}
                         for spec, laws in self.laws.items()]}

    def update(self, query: PlanQuery) -> dict:
        """The plan for the controls, its text and command, and its figures' data; or the messages
        for the controls that are wrong. `elapsed_ms` is the server's time for it."""
        return self._remembered(("plan", query), lambda: self._update(query))

    def compute_curve(self, query: PlanQuery, student_params: float) -> dict:
        """Student loss against budget (C/100 to 100 C) for one student size, distilled in the
        query's scenario (or from its teacher) and trained alone, with intervals; and the budgets
        where the verdict flips."""
        return self._remembered(("curve", query, student_params),
                                lambda: self._compute_curve(query, student_params))

    def _remembered(self, key: tuple, answer) -> dict:
        """The answer for `key`, computed once: the same controls give the same plan, so the
        REMEMBERED most recent answers are kept (marked `remembered`, with the time to find them)."""
        start = time.perf_counter()
        with self._lock:
            found = self._answers.get(key)
            if found is not None:
                self._answers.move_to_end(key)
                return {**found, "elapsed_ms": _ms(start), "remembered": True}
        found = answer()
        with self._lock:
            self._answers[key] = found
            while len(self._answers) > REMEMBERED:
                self._answers.popitem(last=False)
        return found

    def _update(self, query: PlanQuery) -> dict:
        start = time.perf_counter()
        try:
            result = self.plan(query)
        except ParameterError as exc:
            param = exc.param if exc.param in CONTROLS else "compute"
            labels = {name: label for name, (_, label) in CONTROLS.items()}
            return {"ok": False, "errors": {CONTROLS[param][0]: _sentence(exc.for_cli(labels))},
                    "elapsed_ms": _ms(start)}
        except UserError as exc:
            return {"ok": False, "errors": {"plan": _sentence(str(exc))}, "elapsed_ms": _ms(start)}
        response = {"ok": True, "plan": result.to_dict(), "summary": _summary(result),
                    "data_limited": _data_limited(result),
                    "text": result.as_text(width=110), "cli": command_line(self.settings(query)),
                    "warnings": result.warnings, "u_curve": _u_curve(result), "teachers": self._teachers(query, result),
                    # only where the law's correction moved one of the plan's losses (`planning.correction`)
                    "bias_correction": None if result.correction is None else result.correction.describe()}
        response["elapsed_ms"] = _ms(start)
        return response

    def _teachers(self, query: PlanQuery, result: Plan) -> dict | None:
        """The teacher models `serve --teacher-model` offers, ranked for the plan's student at the plan's
        budget as `distillscale teacher --compute` ranks them (each teacher's logits paid at its own
        FLOPs per token), or why they cannot be (a teacher in another tokenizer than the law's)."""
        if not self.teacher_models or result.kind == "supervised":
            return None
        from distillscale.planning.teacher_plan import rank_teachers_for

        try:   # each offered model by the name the page shows (its path as `serve` was given it)
            ranking = rank_teachers_for(self.laws[query.law], student_params=result.headline.student_params,
                                        compute=result.compute, candidates=list(self.teacher_models))
        except UserError as exc:
            return {"error": _sentence(str(exc))}
        return ranking.to_dict()

    def plan(self, query: PlanQuery) -> Plan:
        """`planning.plan` for the controls, as `distillscale plan` makes it from the same settings; a
        malformed control raises ParameterError naming it."""
        settings = self.settings(query)   # the hyperparameter law as loaded when the page started
        return plan_from_settings(settings, self.laws[query.law], self.hyperparameter_laws[query.hyperparameter_law],
                                  downstream=self.downstream)

    def settings(self, query: PlanQuery) -> PlanSettings:
        """The controls as the settings of `distillscale plan` (validated by the same class)."""
        if query.law not in self.laws:
            raise ParameterError("law", "{} {law!r} is not loaded: restart serve with --law {law}",
                                 law=query.law)
        if query.scenario not in SCENARIOS:  # the page plans one scenario at a time (not "all")
            raise ParameterError("scenario", "{} {scenario!r} cannot be planned here: the page plans one "
                                             "scenario at a time, one of " + ", ".join(SCENARIOS),
                                 scenario=query.scenario)
        if query.hyperparameter_law not in self.hyperparameter_laws:  # the page reads no file a request names
            raise ParameterError("hyperparameter_law", "{} {law!r} is not one the page offers: use one of "
                                 + ", ".join(self.hyperparameter_laws), law=query.hyperparameter_law)
        if query.teacher not in TEACHER_MODES:
            raise ParameterError("teacher.params", "unknown teacher mode {mode!r} (the teacher control): use "
                                 "one of " + ", ".join(TEACHER_MODES), mode=query.teacher)
        given = {name: _quantity(name, text, kind) for name, text, kind in (
            ("compute", query.compute, Quantity.FLOPS),
            ("student_params", "" if query.student.strip() == "best" else query.student, Quantity.PARAMS),
            ("teacher.params", query.teacher_params if query.teacher in ("tokens", "loss") else "", Quantity.PARAMS),
            ("teacher.tokens", query.teacher_tokens if query.teacher == "tokens" else "", Quantity.TOKENS),
            ("teacher.loss", query.teacher_loss if query.teacher == "loss" else "", None),
            ("batch_tokens", query.batch_tokens, Quantity.TOKENS),
            ("unique_tokens", query.unique_tokens, Quantity.TOKENS))}
        if given["compute"] is None:
            raise ParameterError("compute", "give {}, e.g. 1e21")
        if query.teacher in ("tokens", "loss") and given["teacher.params"] is None:  # a teacher chosen, no size
            ExistingTeacher(None, given["teacher.tokens"], given["teacher.loss"]).checked(self.laws[query.law])
        gpu = _gpu_options(query)
        if query.teacher == "model":  # planned as `plan --teacher-model` plans it
            gpu |= {"teacher_model": self._teacher_model(query.teacher_model), "trust_remote_code": self.trust_remote_code}
        if given["unique_tokens"] is not None:   # a pool: every loss after repeating it, the data-limited comparison
            gpu |= {"unique_tokens": given["unique_tokens"]}
            if query.generations.strip():
                gpu |= {"generations": _whole("generations", query.generations)}
        elif query.generations.strip():
            raise ParameterError("generations", "{} compares chains on a pool: give the pool of unique tokens too")
        if query.students.strip():   # a family (`plan --students`): its own scenario, no single student
            gpu |= {"students": query.students, "targets": query.targets}
            given["student_params"], scenario = None, None
        else:
            scenario = query.scenario
        return PlanSettings.from_python(query.law, compute=given["compute"], student_params=given["student_params"],
                                        scenario=scenario, teacher_params=given["teacher.params"],
                                        teacher_tokens=given["teacher.tokens"], teacher_loss=given["teacher.loss"],
                                        student_init=query.student_init,
                                        hyperparameter_law=query.hyperparameter_law,
                                        batch_tokens=given["batch_tokens"], downstream_law=self.downstream_path, **gpu)

    def _teacher_model(self, name: str) -> str:
        """The directory of an offered teacher model (the page reads no directory a request names)."""
        if name not in self.teacher_models:
            offered = ", ".join(self.teacher_models) or "none: start serve with --teacher-model DIR"
            raise ParameterError("teacher_model", "{} {name!r} is not one the page offers: use one of " + offered,
                                 name=name)
        return self.teacher_models[name]

    def _compute_curve(self, query: PlanQuery, student_params: float) -> dict:
        start = time.perf_counter()
        try:
            result = self.plan(replace(query, student=str(student_params)))
        except UserError as exc:
            return {"ok": False, "errors": {"plan": _sentence(str(exc))}, "elapsed_ms": _ms(start)}
        budgets = np.geomspace(result.compute / 100, result.compute * 100, CURVE_POINTS)
        distilled, supervised, verdicts = [], [], []
        for budget in budgets:
            plan = _solved(lambda: _distilled_at(result, budget))
            distilled.append(_loss_point(plan))
            supervised.append(_loss_point(_solved(lambda: result.planner.supervised(student_params, budget))))
            verdicts.append(None if plan is None else plan.verdict)   # read off Delta's interval, as every plan's
        return {"ok": True, "student_params": student_params, "budget": result.compute,
                "budgets": budgets.tolist(), "distilled": distilled, "supervised": supervised,
                "verdicts": verdicts, "flips": _verdict_changes(budgets, verdicts), "elapsed_ms": _ms(start)}


# -- internals ------------------------------------------------------------------------------------

def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1e3, 2)


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _sentence(message: str) -> str:
    return " ".join(message.split())


def _quantity(param: str, text: str, kind: Quantity | None) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return parse_quantity(text, param, kind=kind)
    except UserError:
        raise ParameterError(param, "{} must be a positive number such as 1e21, 546M, 7.75B or 2T, "
                                    "got {text!r}", text=text) from None


def _teacher_models(paths: list[str | Path], trust_remote_code: bool) -> dict[str, str]:
    """name -> directory of each teacher model offered, checked to be a model now (`model.sizes`)."""
    from distillscale.model.sizes import model_size

    models = {}
    for path in paths:
        model_size(path, trust_remote_code, given_as="--teacher-model")
        models[str(path)] = str(Path(path).expanduser())
    return models


def _gpus() -> list[dict]:
    """The GPUs the page prices plans on: the shipped throughput table's devices (`planning.gpu_hours`)."""
    from distillscale.planning.gpu_hours import ThroughputTable

    return [{"id": device.id, "name": device.name, "measured": bool(device.figures)}
            for device in ThroughputTable.load().devices.values()]


def _gpu_options(query: PlanQuery) -> dict:
    """The GPU, GPUs per run and price per GPU-hour of the controls, checked as `plan --gpu`, `--gpus`
    and `--price-per-gpu-hour` are (`planning.gpu_hours.check_options`: one check for the CLI, Python
    and the page); an empty GPUs control is 1, an empty price no cost."""
    from distillscale.planning.gpu_hours import check_options

    gpu = None if query.gpu.strip() in ("", "none") else query.gpu.strip()
    setting = check_options(gpu, query.gpus if query.gpus.strip() else 1, None, query.price_per_gpu_hour)
    if setting is None:
        return {}
    return {"gpu": gpu, "gpus": setting.gpus, "price_per_gpu_hour": setting.price_per_gpu_hour}


def _whole(param: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ParameterError(param, "{} must be a whole number such as 3, got {text!r}", text=text) from None
    return value


def _data_limited(result: Plan) -> dict | None:
    """A plan on a pool, as the page draws it: each option (its loss, interval, Δ against training alone and
    verdict), the best by the verdict rule, where the chain stops paying, and the chain by generation and the
    ensemble's student by k with intervals (`planning.data_limited.view`: what `plan --plot` draws)."""
    plan = getattr(result, "data_limited", None)
    if plan is None:
        return None
    from distillscale.planning.data_limited import answer_line, view

    return {"answer": answer_line(plan), "best": plan.best.to_dict(), "chain_k": plan.chain_k,
            "stops_paying": plan.chain.stops_paying, "unique_tokens": plan.unique_tokens,
            "beyond_measured": plan.beyond or None, "measured": plan.constants.measured.describe(),
            "options": [{"label": o.label, "loss": o.final.value, "interval": o.final.to_dict()["loss_interval"],
                         "tokens_per_run": o.tokens, "trainings": o.trainings, "verdict": o.verdict,
                         "not_priced": o.not_priced,
                         **({} if o.difference is None else o.difference.to_dict())} for o in plan.options],
            "view": view(result.laws, plan).to_dict()}


def _range(laws: LawSet) -> dict | None:
    known = data_range(laws, students=laws.distillation is not None)
    return None if known is None else {"params": list(known.params), "tokens": list(known.tokens)}


def _interval(prediction) -> list[float] | None:
    if prediction is None or not prediction.has_interval:
        return None
    return [float(prediction.low), float(prediction.high)]


def _summary(result: Plan) -> dict:
    """The numbers the page shows beside its figures, one plan's worth."""
    if result.kind == "supervised":
        s = result.supervised
        return {"kind": "supervised", "student_params": s.student_params, "student_tokens": s.tokens,
                "student_loss": s.loss, "student_interval": _interval(s.interval), "budget": s.budget,
                "verdict": "pretrain", "flops": {"student": s.budget, "teacher_inference": 0.0,
                                                 "teacher_pretraining": 0.0},
                "recipe": _recipe(result, "supervised"), "downstream": _downstream(result, "supervised"),
                "gpu_hours": _gpu_hours(result, "supervised")}
    if result.kind == "family":   # the family's answer, a row per student; the figures are the first student's
        p, verdict, family = result.headline, result.verdict, _family(result)
    else:
        p, verdict, family = result.headline, result.verdict, None
    baseline = result.sweeps[0].supervised_best if result.kind == "sweep" else p.supervised
    return {"kind": result.kind, "scenario": p.scenario.name, "budget": p.budget,
            "student_params": p.student_params, "student_tokens": p.student_tokens,
            "teacher_params": p.teacher_params, "teacher_tokens": p.teacher_tokens,
            "teacher_loss": p.teacher_loss, "student_loss": p.student_loss,
            "student_interval": _interval(p.student_interval),
            "supervised_params": baseline.student_params, "supervised_tokens": baseline.tokens,
            "supervised_loss": baseline.loss, "supervised_interval": _interval(baseline.interval),
            "verdict": verdict, **(result.sweeps[0].difference if result.kind == "sweep" else p.difference).to_dict(),
            "flops": p.flops.to_dict() if family is None else family["flops"], "converged": p.convergence.success,
            "recipe": _recipe(result, p.scenario.name), "downstream": _downstream(result, p.scenario.name),
            "gpu_hours": _family_gpu_hours(result) if family else _gpu_hours(result, p.scenario.name), "family": family}


def _family_gpu_hours(result: Plan) -> dict | None:
    """A family's GPU time as answered (`FamilyPlans.answered_gpu_hours`): its students' together."""
    spent = result.answered_gpu_hours()
    if not spent:
        return None
    estimate, costs = result.gpu_hours, [cost for _, _, cost in spent.values()]
    return {"device": estimate.device_name, "gpus": estimate.gpus,
            "gpu_hours": sum(hours for hours, _, _ in spent.values()),
            "wall_hours": max(wall for _, wall, _ in spent.values()),
            "cost": None if None in costs else sum(costs), "price_per_gpu_hour": estimate.price_per_gpu_hour}


def _family(result: Plan) -> dict:
    """A family's view: its answer (the students that distil sharing the teacher), what each verdict assumes,
    a row per student, and its compute as answered (the FLOP split the page draws)."""
    from distillscale.planning.family_view import family_answer, family_assumes

    totals = result.totals()
    return {"targets": result.targets, "verdict": result.verdict, "answer": family_answer(result),
            "assumes": family_assumes(result), "distilling": list(result.sharing), "totals": totals,
            "flops": {"student": totals["students"], "teacher_inference": totals["teacher_forward"],
                      "teacher_pretraining": totals["teacher_training"]},
            "first_student": result.headline.scenario.name,
            "cache": None if result.cache is None else {**result.cache.to_dict(), "describe": result.cache.describe()},
            "rows": [{"name": q.scenario.name, "share": q.budget / result.compute, "distils": q.scenario.name in
                      result.sharing, "student_params": q.student_params, "student_tokens": q.student_tokens,
                      "student_loss": q.student_loss, "student_interval": _interval(q.student_interval),
                      "supervised_loss": q.supervised.loss, "verdict": q.verdict, **q.difference.to_dict()}
                     for q in result.plans]}


def _recipe(result: Plan, name: str) -> dict | None:
    """How to run the plan's student (or its model): `planning.recipes.RunRecipe.to_dict`."""
    recipe = result.recipes.get(name)
    return None if recipe is None else recipe.to_dict()


def _gpu_hours(result: Plan, group: str) -> dict | None:
    """The plan's runs in GPU-hours (`plan --gpu`, `planning.gpu_hours`): the device and the group's
    (scenario's) total, GPU-hours, wall-clock and cost; None without a GPU."""
    estimate = result.gpu_hours
    if estimate is None:
        return None
    totals = estimate.totals()
    if group not in totals:
        return None
    hours, wall, cost = totals[group]
    return {"device": estimate.device_name, "gpus": estimate.gpus, "gpu_hours": hours, "wall_hours": wall,
            "cost": cost, "price_per_gpu_hour": estimate.price_per_gpu_hour}


def _downstream(result: Plan, name: str) -> dict | None:
    """The student's (or the model's) predicted downstream error: `planning.downstream.DownstreamPrediction`."""
    if result.downstream is None or name not in result.downstream.predictions:
        return None
    return result.downstream.predictions[name].to_dict()


def _u_curve(result: Plan) -> dict | None:
    """Student loss against teacher loss for the plan's student and tokens: the curve (with its
    interval), the optimal teacher loss L_T*, the capacity-gap switch and the plan's teacher."""
    if result.kind == "supervised":
        return None
    from distillscale.planning.teacher import TeacherCandidate, rank_teachers, teacher_loss_range

    p, planner = result.headline, result.planner
    ranking = rank_teachers(planner, p.student_params, p.student_tokens,
                            [TeacherCandidate("plan", p.teacher_loss)])
    teacher_losses = teacher_loss_range(planner, U_CURVE_POINTS)
    from distillscale.laws.difference import used_interval

    # each point's band as a verdict's Δ would use it (`laws.difference.used_interval`), as the plan shows it
    curve = used_interval(planner.distillation.prediction(p.student_params, p.student_tokens, teacher_losses),
                          "distilled")
    band = curve.has_interval
    return {"teacher_loss": teacher_losses.tolist(),
            "student_loss": np.asarray(curve.value, dtype=float).tolist(),
            "low": np.asarray(curve.low, dtype=float).tolist() if band else None,
            "high": np.asarray(curve.high, dtype=float).tolist() if band else None,
            "optimal_teacher_loss": ranking.optimal_teacher_loss,
            "optimal_student_loss": ranking.optimal_student_loss,
            "capacity_gap_teacher_loss": ranking.capacity_gap_teacher_loss, "d1": ranking.d1,
            "supervised_loss": ranking.supervised_loss,
            "plan": {"teacher_loss": p.teacher_loss, "student_loss": p.student_loss},
            "student_params": p.student_params, "student_tokens": p.student_tokens}


def _distilled_at(result: Plan, budget: float):
    """The plan's student at another budget: from the same given teacher (its size, tokens or loss, a
    model's own FLOPs per token), or in the same scenario (`ScenarioPlans.student_at`)."""
    first = result.headline
    if first is None:  # a supervised-only law
        return None
    if hasattr(result, "student_at"):
        return result.student_at(budget, first)
    return result.planner.plan(first.student_params, budget, first.scenario)


def _solved(solve):
    """What `solve` returns; None where the budget cannot be planned."""
    try:
        return solve()
    except UserError:
        return None


def _loss_point(found) -> dict | None:
    """{loss, interval} of a plan or supervised plan; None where there is none."""
    if found is None:
        return None
    if hasattr(found, "student_loss"):
        return {"loss": found.student_loss, "interval": _interval(found.student_interval)}
    return {"loss": found.loss, "interval": _interval(found.interval)}


def _verdict_changes(budgets: np.ndarray, verdicts: list[str | None]) -> list[dict]:
    """Where the verdict (each budget's plan's, read off its Delta's interval: distill, too close to
    call, cannot tell, pretrain) changes along the budgets: between two planned budgets (`between`),
    shown at their geometric mean (`budget`)."""
    flips, last = [], None
    for i, verdict in enumerate(verdicts):
        if verdict is None:
            continue
        if last is not None and verdicts[last] != verdict:
            low, high = float(budgets[last]), float(budgets[i])
            flips.append({"budget": math.sqrt(low * high), "between": [low, high], "from": verdicts[last],
                          "to": verdict})
        last = i
    return flips


def static_dir() -> Path:
    return Path(__file__).resolve().parent / "static"
