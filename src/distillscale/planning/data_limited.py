"""A plan on a pool of unique tokens, the data-limited way (`laws.data_limited`): at the plan's compute
and its student's size, train alone (more epochs on the pool), self-distil for k generations, distil
an ensemble of k into one, or distil from the given teacher; each with Delta against training alone
and its interval, the verdict read off by the one rule (`planning.results.verdict_difference`).

Compute (`planning.flops`): training costs 3 F(N) per token, a teacher's forward pass F(N_T) per
student token. Self-distilling for k generations trains generation 0 alone and k students, each
reading its teacher's logits: k + 1 trainings and k forward passes over D tokens; an ensemble of k
distilled into one trains k members and one student reading all k: the same. Each option's D per
run is what spends the plan's compute.

    plan = data_limited_plan(laws, forward, compute=1.5e19, params=1.5e9, unique_tokens=50e6)
    plan.best, plan.options[0].difference.verdict, plan.chain.stops_paying
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from distillscale.laws.data_limited import Chain, DataLimitedConstants, DataLimitedLaw, ModelState
from distillscale.laws.difference import LossDifference
from distillscale.laws.lawset import LawSet
from distillscale.planning.flops import SCENARIOS, ForwardFlops, distillation_flops
from distillscale.planning.results import verdict_difference
from distillscale.planning.run_sheet import generation_commands
from distillscale.units import format_quantity

# Without --generations: the chain lengths and ensemble sizes compared.
DEFAULT_KS = (1, 2, 3, 4)


@dataclass(frozen=True)
class PoolRun:
    """One training run of an option: what it is, the pool it reads and how many times, its loss."""

    name: str
    tokens: float
    unique_tokens: float
    state: ModelState

    @property
    def epochs(self) -> float:
        return self.tokens / self.unique_tokens

    def to_dict(self) -> dict:
        return {"name": self.name, "tokens": self.tokens, "unique_tokens": self.unique_tokens, "epochs": self.epochs,
                **{k: v for k, v in self.state.to_dict().items() if k in ("loss", "loss_interval", "loss_fresh")}}


@dataclass(frozen=True)
class DataLimitedOption:
    """One way to spend the compute: its kind (alone, chain, ensemble, teacher), k, the tokens each
    run reads, its runs and final model, and Delta = its loss - training alone's (None for alone)."""

    kind: str
    k: int
    tokens: float
    flops: float
    runs: list[PoolRun]
    difference: LossDifference | None
    teacher: ModelState | None = None   # the given teacher (not trained here: its loss as given or predicted)

    @property
    def final(self) -> ModelState:
        return self.runs[-1].state

    @property
    def label(self) -> str:
        return {"alone": "train alone", "teacher": "distil from the teacher",
                "chain": f"self-distil, {self.k} gen" + ("s" if self.k > 1 else ""),
                "ensemble": f"ensemble of {self.k}, distilled"}[self.kind]

    @property
    def verdict(self) -> str | None:
        return None if self.difference is None else self.difference.verdict

    def to_dict(self) -> dict:
        return {"kind": self.kind, "k": self.k, "label": self.label, "tokens_per_run": self.tokens, "flops": self.flops,
                "loss": self.final.value, "loss_interval": self.final.to_dict()["loss_interval"],
                "runs": [run.to_dict() for run in self.runs], "verdict": self.verdict,
                **({} if self.teacher is None else {"teacher": self.teacher.to_dict()}),
                **({} if self.difference is None else self.difference.to_dict())}


@dataclass(frozen=True)
class DataLimitedPlan:
    """The options at one compute and student size on a pool, and the chain of the requested (or
    best) length: where another generation stops paying."""

    compute: float
    params: float
    unique_tokens: float
    generations: int | None          # --generations; None: the best k of DEFAULT_KS
    options: list[DataLimitedOption]
    chain: Chain                     # the chain of `chain_k` generations at its option's tokens
    chain_k: int
    constants: DataLimitedConstants

    @property
    def best(self) -> DataLimitedOption:
        """The option of lowest loss."""
        return min(self.options, key=lambda o: o.final.value)

    def best_of(self, kind: str) -> DataLimitedOption | None:
        return min((o for o in self.options if o.kind == kind), key=lambda o: o.final.value, default=None)

    def commands(self) -> list[str]:
        """The chain's runs as commands (`planning.run_sheet.generation_commands`)."""
        return generation_commands(self.chain.generations[0].tokens, self.unique_tokens, self.chain_k)

    def to_dict(self) -> dict:
        return {"compute": self.compute, "commands": self.commands(), "params": self.params,
                "unique_tokens": self.unique_tokens,
                "generations": self.generations, "options": [o.to_dict() for o in self.options],
                "best": self.best.label, "best_chain_k": self.best_of("chain").k, "chain_generations": self.chain_k,
                "chain": self.chain.to_dict(), "stops_paying": self.chain.stops_paying,
                "stops_gaining": self.chain.stops_gaining, "constants": self.constants.to_dict(),
                "units": "nats/token"}


def flops_per_token(F: float, alone: int, students: int, teacher_F: float) -> float:
    """FLOPs per token of D for `alone` runs trained without a teacher and `students` runs each paying
    its teachers' forward passes (`teacher_F`: their F(N_T) summed) on every token, each run of F(N)
    per forward token (Busbridge Eq. 9, `distillation_flops`, teacher-inference scenario)."""
    scenario = SCENARIOS["teacher-inference"]
    return (alone * distillation_flops(scenario, F, 1.0).total
            + students * distillation_flops(scenario, F, 1.0, teacher_F).total)


def data_limited_plan(laws: LawSet, forward: ForwardFlops, compute: float, params: float, unique_tokens: float, *,
                      generations: int | None = None, teacher: ModelState | None = None,
                      teacher_params: float | None = None, constants: DataLimitedConstants | None = None
                      ) -> DataLimitedPlan:
    """The data-limited options at `compute` for a student of `params` on `unique_tokens`: alone,
    self-distillation for k generations and an ensemble of k distilled into one (k = `generations`,
    or each of DEFAULT_KS), and from `teacher` (of `teacher_params`, its logits paid) when given."""
    law, U, N = DataLimitedLaw(laws, constants), unique_tokens, params
    F = float(forward(N))
    D = compute / flops_per_token(F, 1, 0, 0.0)
    alone_state = law.alone(N, D, U)
    options = [DataLimitedOption("alone", 1, D, compute, [PoolRun("alone", D, U, alone_state)], None)]

    def versus(state: ModelState) -> LossDifference:
        return verdict_difference(state.value, state.loss, alone_state.value, alone_state.loss)

    chains = {}
    for k in (DEFAULT_KS if generations is None else (generations,)):
        D_k = compute / flops_per_token(F, 1, k, F)   # = k members and a student reading k: the same cost
        chains[k] = law.chain(N, D_k, U, k)
        runs = [PoolRun(f"generation {g}", D_k, U, s) for g, s in enumerate(chains[k].generations)]
        options.append(DataLimitedOption("chain", k, D_k, compute, runs, versus(runs[-1].state)))
        if k < 2:   # an ensemble of one is self-distillation for one generation
            continue
        members = law.ensemble(N, D_k, U, k)
        student = law.student(N, D_k, U, members)
        options.append(DataLimitedOption("ensemble", k, D_k, compute,
                                         [PoolRun(f"{k} members (each)", D_k, U, law.alone(N, D_k, U)),
                                          PoolRun("ensemble", D_k, U, members), PoolRun("student", D_k, U, student)],
                                         versus(student)))
    if teacher is not None and teacher_params is not None:
        D_t = compute / flops_per_token(F, 0, 1, float(forward(teacher_params)))
        student = law.student(N, D_t, U, teacher)
        options.append(DataLimitedOption("teacher", 1, D_t, compute, [PoolRun("student", D_t, U, student)],
                                         versus(student), teacher))
    chain_k = generations if generations is not None else min(
        chains, key=lambda k: chains[k].generations[-1].value)
    return DataLimitedPlan(compute, N, U, generations, options, chains[chain_k], chain_k, law.constants)


def plan_lines(plan: DataLimitedPlan) -> list[str]:
    """The comparison as text lines under 80 columns, every number whole: each option's runs (the
    pool each reads and how many times), its loss with its interval, Delta against training alone with
    its interval and the verdict; then the best option and where another generation stops paying."""
    pool = format_quantity(plan.unique_tokens)
    lines = [f"Data-limited ({pool} unique tokens, {format_quantity(plan.params)} student, "
             f"C = {plan.compute:.3g} FLOPs):",
             "losses in nats/token with 90% intervals; Δ = option - train alone"]
    for option in plan.options:
        final = option.final
        span = f" [{float(final.loss.low):.4f}, {float(final.loss.high):.4f}]" if final.loss.has_interval else ""
        runs = len(option.runs) if option.kind != "ensemble" else option.k + 1
        lines.append(f"  {option.label:<24} {final.value:.4f}{span}")
        lines.append(f"    {runs} run{'s' if runs > 1 else ''} of {format_quantity(option.tokens)} tokens, each "
                     f"reading the {pool} pool {option.tokens / plan.unique_tokens:.3g} times")
        if option.teacher is not None:
            lines.append("    " + _teacher_text(option.teacher))
        if option.difference is not None:
            lines.append(f"    Δ {option.difference.describe()}: {option.difference.verdict}")
    best, chain = plan.best_of("chain"), plan.chain
    which = (f"--generations {plan.generations}" if plan.generations is not None
             else f"the best k of {DEFAULT_KS[0]}-{DEFAULT_KS[-1]} is {best.k}")
    lines.append(f"Best: {plan.best.label}; self-distillation: {which}")
    lines.append(_stops_line(chain, plan.chain_k))
    lines.append(f"Run sheet, {plan.chain_k} generations (one by one, or the whole chain at once):")
    for command in plan.commands():   # wrapped at spaces, a shell's continuation at each break
        command = command.replace(" --", "\n--").replace(" ", "\xa0").replace("\n", " ")   # a flag and its value
        parts = textwrap.wrap(command, 72, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)
        lines += [f"  {part}".replace("\xa0", " ") + (" \\" if n < len(parts) - 1 else "")
                  for n, part in enumerate(parts)]
    return lines


def summary_lines(plan: DataLimitedPlan) -> list[str]:
    """The comparison in three lines (a plan's one screen): the best option, its loss with its interval,
    the pool it reads and how many times, and Δ against training alone with its verdict."""
    best, pool = plan.best, format_quantity(plan.unique_tokens)
    final = best.final
    span = f" [{float(final.loss.low):.4f}, {float(final.loss.high):.4f}]" if final.loss.has_interval else ""
    runs = len(best.runs) if best.kind != "ensemble" else best.k + 1
    lines = [f"Data-limited ({pool} unique tokens, equal compute): best {best.label}",
             f"  {final.value:.4f}{span} nats/token, {runs} run{'s' if runs > 1 else ''} x "
             f"{best.tokens / plan.unique_tokens:.3g} epochs"]
    for part in ("; --explain: each option", "; --explain: all"):   # the longest that fits
        if len(lines[1] + part) <= 80:
            lines[1] += part
            break
    if best.difference is None:
        said = "  no other option beats training alone"
    else:
        d = best.difference
        said = (f"  Δ vs alone {d.value:+.4f}" + (f" [{d.low:+.4f}, {d.high:+.4f}]" if d.has_interval else "")
                + f": {d.verdict}")
    k = plan.best_of("chain").k
    for part in (f"; self-distillation's best k: {k}", f"; best chain: k = {k}"):
        if len(said + part) <= 80:
            said += part
            break
    return lines + [said]


def _teacher_text(teacher: ModelState) -> str:
    """The given teacher's loss on its pool and with fresh data, and the pool it read."""
    if teacher.unique_tokens is None:
        return f"its teacher: {teacher.value:.4f} as measured (its data unknown: as fresh)"
    return (f"its teacher: {teacher.value:.4f} on {format_quantity(teacher.unique_tokens)} tokens read "
            f"{teacher.epochs:.3g} times, {float(teacher.fresh.value):.4f} fresh")


def _stops_line(chain: Chain, k: int) -> str:
    """Where another generation stops paying in the chain of k generations."""
    paying, gaining = chain.stops_paying, chain.stops_gaining
    if paying is None:
        return f"In the chain of {k}, every generation gains beyond its interval"
    said = f"In the chain of {k}, generation {paying}'s gain over {paying - 1} is within its interval"
    return said + (f"; generation {gaining} gains nothing" if gaining is not None else "")


def plan_data_limited(result, forward: ForwardFlops) -> DataLimitedPlan | None:
    """The data-limited comparison of a plan of one student size (`planning.plans.ScenarioPlans`) with a
    pool and a distillation law, at its compute and that size; the given teacher's option when it has one
    (given by its size and tokens: trained on its pool, `planning.repetition.teacher_pool`; measured:
    its loss as measured, its pool unknown). None on fresh data, or for a plan of another kind."""
    settings = result.settings
    if settings.generations is not None:   # asked for: a law without distillation cannot answer it
        result.laws.require_distillation()
    if settings.unique_tokens is None or result.laws.distillation is None or result.kind != "plans":
        return None
    students = list(result.scenario_plans().values())
    if not students:
        return None
    law = DataLimitedLaw(result.laws)
    teacher, teacher_params = _given_teacher(law, settings, result.teacher_model)
    return data_limited_plan(result.laws, forward, settings.compute, students[0].student_params,
                             settings.unique_tokens, generations=settings.generations, teacher=teacher,
                             teacher_params=teacher_params, constants=law.constants)


def _given_teacher(law: DataLimitedLaw, settings, model) -> tuple[ModelState | None, float | None]:
    """The plan's existing teacher as a state, with its size (None, None without one, or for a mixture)."""
    from distillscale.planning.repetition import teacher_pool

    if model is not None:
        return law.measured_teacher(model.loss.nats_per_token), model.params
    teacher = settings.teacher
    if teacher is None or teacher.mixture is not None or teacher.params is None:
        return None, None
    if teacher.loss is not None:
        return law.measured_teacher(teacher.loss), teacher.params
    return law.alone(teacher.params, teacher.tokens, teacher_pool(settings)), teacher.params
