"""A plan on a pool of unique tokens, the data-limited way (`laws.data_limited`), at equal compute: at the
plan's compute and its student's size, train alone (more epochs on the pool), self-distil for k
generations, distil an ensemble of k into one, or distil from the given teacher; each with Delta against
training alone and its interval, the verdict read off by the one rule (`laws.data_limited.difference`,
through `laws.difference.decide`). The best option and the best k are read by that rule too, never by a
point value (`best_choice`). For a fixed number of tokens per model instead (compute to spare), `predict
distillation --unique-tokens U --generations K --members k` answers (`laws.data_limited.at_fixed_tokens`).

Compute (`planning.flops`): training costs 3 F(N) per token, a teacher's forward pass F(N_T) per
student token. Self-distilling for k generations trains generation 0 alone and k students, each
reading its teacher's logits: k + 1 trainings and k forward passes over D tokens; an ensemble of k
distilled into one trains k members and one student reading all k: the same. Each option's D per
run is what spends the plan's compute.

    plan = data_limited_plan(laws, forward, compute=1.5e19, params=1.5e9, unique_tokens=50e6)
    plan.best.said, plan.options[0].difference.verdict, plan.chain.stops_paying
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, replace

from distillscale.laws.data_limited import Chain, DataLimitedConstants, DataLimitedLaw, ModelState, difference
from distillscale.laws.difference import LossDifference
from distillscale.laws.extrapolation import CANNOT_TELL
from distillscale.laws.lawset import LawSet
from distillscale.planning.flops import SCENARIOS, ForwardFlops, distillation_flops
from distillscale.planning.run_sheet import generation_commands
from distillscale.units import format_quantity

# Without --generations: the chain lengths and ensemble sizes compared.
DEFAULT_KS = (1, 2, 3, 4)
QUESTION = "equal compute: the plan's C spread over every run of each option"
FIXED_TOKENS = "at fixed tokens per model instead: predict distillation --generations K"


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
    def trainings(self) -> int:
        return {"alone": 1, "teacher": 1}.get(self.kind, self.k + 1)

    @property
    def not_priced(self) -> str | None:
        """Why the law cannot price this option (its runs lie where its interval means nothing), or None."""
        return None if self.difference is None else self.difference.outside

    @property
    def verdict(self) -> str | None:
        """The verdict of Delta against training alone (None for alone, and for an option not priced)."""
        if self.difference is None or self.not_priced is not None:
            return None
        return self.difference.verdict

    def to_dict(self) -> dict:
        return {"kind": self.kind, "k": self.k, "label": self.label, "tokens_per_run": self.tokens, "flops": self.flops,
                "trainings": self.trainings, "loss": self.final.value,
                "loss_interval": self.final.to_dict()["loss_interval"],
                "runs": [run.to_dict() for run in self.runs], "verdict": self.verdict, "not_priced": self.not_priced,
                **({} if self.teacher is None else {"teacher": self.teacher.to_dict()}),
                **({} if self.difference is None else self.difference.to_dict())}


@dataclass(frozen=True)
class BestChoice:
    """The best of a plan's options by the verdict rule: `options` the ones no other option beats beyond
    its interval, among those that beat training alone beyond theirs (training alone when none does);
    `said` the answer in words."""

    options: list[DataLimitedOption]
    said: str

    @property
    def option(self) -> DataLimitedOption:
        """The one named first (the lowest loss among those the rule cannot tell apart)."""
        return self.options[0]

    @property
    def decided(self) -> bool:
        """Whether the rule names one option."""
        return len(self.options) == 1

    def to_dict(self) -> dict:
        return {"options": [o.label for o in self.options], "said": self.said, "decided": self.decided}


def beaten(option: DataLimitedOption, others: list[DataLimitedOption]) -> bool:
    """Whether another of `others` is lower than `option` beyond Delta's interval (the verdict rule)."""
    return any(difference(other.final, option.final).verdict == "distill" for other in others if other is not option)


def best_choice(options: list[DataLimitedOption]) -> BestChoice:
    """The best option by the verdict rule (never by a point value or a sign): of those whose Delta
    against training alone lies below 0 beyond its interval, the ones no other of them beats beyond its
    interval; training alone when every other option loses beyond its interval, and said so when none is
    told apart from it."""
    alone = options[0]
    priced = [o for o in options[1:] if o.not_priced is None]
    winners = [o for o in priced if o.verdict == "distill"]
    if winners:
        best = sorted((o for o in winners if not beaten(o, winners)), key=lambda o: o.final.value)
        if len(best) == 1:
            return BestChoice(best, f"{best[0].label} (beats training alone beyond its interval)")
        return BestChoice(best, " or ".join(o.label for o in best) + " (each beats training alone; too close to "
                                                                      "call between them)")
    if priced and all(o.verdict == "pretrain" for o in priced):
        return BestChoice([alone], f"train alone ({compared(options)} loses beyond its interval)")
    unsure = sorted({o.verdict for o in priced if o.verdict != "pretrain"})
    return BestChoice([alone], f"train alone: no {compared(options, every=False)} beats it beyond its interval "
                               f"({', '.join(unsure) or 'none priced'})")


def compared(options: list[DataLimitedOption], every: bool = True) -> str:
    """What the options other than training alone are, in words ("every self-distillation chain and
    ensemble"): what an answer of training alone was weighed against (the scenarios' teachers are not)."""
    kinds = [kind for kind in ("chain", "ensemble", "teacher") if any(o.kind == kind for o in options)]
    words = {"chain": "self-distillation chain", "ensemble": "ensemble", "teacher": "the given teacher"}
    named = [words[kind] for kind in kinds] or ["other option"]
    text = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]
    return ("every " + text.replace(" or ", " and ")) if every else text


def best_k(options: list[DataLimitedOption], kind: str) -> int | None:
    """The smallest k of `kind` (chain or ensemble) that no other k beats beyond Delta's interval (fewer
    runs for the same loss); None without such options."""
    of_kind = [o for o in options if o.kind == kind and o.not_priced is None]
    unbeaten = [o for o in of_kind if not beaten(o, of_kind)]
    return min(o.k for o in unbeaten) if unbeaten else None


@dataclass(frozen=True)
class DataLimitedPlan:
    """The options at one compute and student size on a pool, the best by the verdict rule, and the chain
    of the requested (or best) length: where another generation stops paying."""

    compute: float
    params: float
    unique_tokens: float
    generations: int | None          # --generations; None: the best k of DEFAULT_KS
    options: list[DataLimitedOption]
    chain: Chain                     # the chain of `chain_k` generations at its option's tokens
    chain_k: int
    constants: DataLimitedConstants
    best: BestChoice
    gpu_hours: object = None   # --gpu: each option's GPU time (`planning.gpu_hours.GpuHoursEstimate`, grouped by label)
    teacher_params: float | None = None   # the given teacher's size (its logits priced at it)

    def option_hours(self, option: DataLimitedOption) -> tuple[float, float, float | None] | None:
        """--gpu: an option's (GPU-hours, wall-clock hours, cost) in all, its runs one after another."""
        if self.gpu_hours is None:
            return None
        rows = [run for run in self.gpu_hours.runs if run.group == option.label]
        costs = [run.cost for run in rows]
        return (sum(run.gpu_hours for run in rows), sum(run.wall_hours for run in rows),
                None if None in costs else sum(costs))

    def best_of(self, kind: str) -> DataLimitedOption | None:
        """The option of `kind` of the best k by the verdict rule (`best_k`)."""
        k = best_k(self.options, kind)
        return next((o for o in self.options if o.kind == kind and o.k == k), None)

    @property
    def beyond(self) -> dict:
        """How far outside the constants' measured range the plan's students lie (empty: inside)."""
        out: dict = {}
        for option in self.options:
            for run in option.runs:
                out |= run.state.distance
        return out

    def commands(self) -> list[str]:
        """The chain's runs as commands (`planning.run_sheet.generation_commands`)."""
        return generation_commands(self.chain.generations[0].tokens, self.unique_tokens, self.chain_k)

    def to_dict(self) -> dict:
        chain = self.best_of("chain")
        return {"question": QUESTION, "compute": self.compute, "commands": self.commands(), "params": self.params,
                "unique_tokens": self.unique_tokens, "generations": self.generations,
                "options": [o.to_dict() for o in self.options], "best": self.best.option.label,
                "best_choice": self.best.to_dict(), "best_chain_k": None if chain is None else chain.k,
                "chain_generations": self.chain_k, "chain": self.chain.to_dict(), "stops_paying": self.chain.stops_paying,
                "stops_gaining": self.chain.stops_gaining, "constants": self.constants.to_dict() | {"draws": None},
                "beyond_measured": self.beyond or None, "units": "nats/token",
                **({} if self.gpu_hours is None else {"gpu_hours": self.gpu_hours.to_dict() | {"per_option": {
                    o.label: dict(zip(("gpu_hours", "wall_hours", "cost"), self.option_hours(o)))
                    for o in self.options}}})}


@dataclass(frozen=True)
class DataLimitedView:
    """What a figure of a plan on a pool draws (`plan --plot`, the planner page): at the printed chain's tokens
    per run, the chain by generation (at least `VIEW_GENERATIONS`) and the student of an ensemble by its size
    (1 to `VIEW_MEMBERS`: one member's student at 1), each with its 90% interval."""

    tokens: float
    chain: list[ModelState]
    ensemble_students: list[tuple[int, ModelState]]

    def to_dict(self) -> dict:
        def point(state: ModelState) -> dict:
            return {"loss": state.value, "interval": state.to_dict()["loss_interval"]}
        return {"tokens_per_run": self.tokens, "chain": [point(s) for s in self.chain],
                "ensemble_students": [{"members": k, **point(s)} for k, s in self.ensemble_students]}


VIEW_GENERATIONS, VIEW_MEMBERS = 6, 8


def view(laws: LawSet, plan: DataLimitedPlan) -> DataLimitedView:
    """The chain by generation and the ensemble's student by k at the printed chain's tokens (see the class)."""
    law = DataLimitedLaw(laws, plan.constants)
    D = plan.chain.generations[0].tokens
    chain = law.chain(plan.params, D, plan.unique_tokens, max(plan.chain_k, VIEW_GENERATIONS)).generations
    students = [(k, law.student(plan.params, D, plan.unique_tokens, law.ensemble(plan.params, D, plan.unique_tokens, k)))
                for k in range(1, VIEW_MEMBERS + 1)]
    return DataLimitedView(D, chain, students)


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
    chains = {}
    for k in (DEFAULT_KS if generations is None else (generations,)):
        D_k = compute / flops_per_token(F, 1, k, F)   # = k members and a student reading k: the same cost
        chains[k] = law.chain(N, D_k, U, k)
        runs = [PoolRun(f"generation {g}", D_k, U, s) for g, s in enumerate(chains[k].generations)]
        options.append(DataLimitedOption("chain", k, D_k, compute, runs, difference(runs[-1].state, alone_state)))
        if k < 2:   # an ensemble of one is self-distillation for one generation
            continue
        members = law.ensemble(N, D_k, U, k)
        student = law.student(N, D_k, U, members)
        options.append(DataLimitedOption("ensemble", k, D_k, compute,
                                         [PoolRun(f"{k} members (each)", D_k, U, members.member),
                                          PoolRun("ensemble", D_k, U, members), PoolRun("student", D_k, U, student)],
                                         difference(student, alone_state)))
    if teacher is not None and teacher_params is not None:
        D_t = compute / flops_per_token(F, 0, 1, float(forward(teacher_params)))
        student = law.student(N, D_t, U, teacher)
        options.append(DataLimitedOption("teacher", 1, D_t, compute, [PoolRun("student", D_t, U, student)],
                                         difference(student, alone_state), teacher))
    chain_k = generations if generations is not None else (best_k(options, "chain") or DEFAULT_KS[0])
    return DataLimitedPlan(compute, N, U, generations, options, chains[chain_k], chain_k, law.constants,
                           best_choice(options), teacher_params=teacher_params if teacher is not None else None)


def with_gpu_hours(plan: DataLimitedPlan, setting, forward: ForwardFlops) -> DataLimitedPlan:
    """`plan` with each option's GPU time on `setting`'s GPUs (`planning.gpu_hours.estimate`, at the engine's
    FLOPs): its trainings (3 F(N) per token each) and the teachers' forward passes its students read (a chain's
    and an ensemble's: F(N) per token per teacher; the given teacher's: F(N_T))."""
    from distillscale.planning.gpu_hours import RunFlops, engine_forward, estimate

    engine = engine_forward(forward)
    F = float(engine(plan.params))
    runs = []
    for option in plan.options:
        D = option.tokens
        runs.append(RunFlops(option.label, f"{option.trainings} training{'s' if option.trainings > 1 else ''}",
                             plan.params, option.trainings * 3 * F * D))
        teachers = {"chain": option.k, "ensemble": option.k}.get(option.kind, 0)
        if teachers:
            runs.append(RunFlops(option.label, "teachers' logits", plan.params, teachers * F * D))
        if option.kind == "teacher" and plan.teacher_params is not None:
            runs.append(RunFlops(option.label, "teacher logits", plan.teacher_params,
                                 float(engine(plan.teacher_params)) * D))
    return replace(plan, gpu_hours=estimate(runs, setting, (int(engine.n_vocab), int(engine.n_ctx))))


# --- text -------------------------------------------------------------------------------------------

# The chain's generation commands shown one by one; the rest said in a line (the whole chain's command is
# always there).
SHOWN_GENERATIONS = 3


def plan_lines(plan: DataLimitedPlan) -> list[str]:
    """The comparison as text lines under 80 columns, every number whole: which question it answers, each
    option's runs (the pool each reads and how many times), its loss with its interval, Delta against
    training alone with its interval and the verdict; the best option by the verdict rule, where another
    generation stops paying, and the chain's commands (a long chain's middle in one line)."""
    pool = format_quantity(plan.unique_tokens)
    lines = [f"Data-limited ({pool} unique tokens, {format_quantity(plan.params)} student, "
             f"C = {plan.compute:.3g} FLOPs),",
             *_wrapped(f"at {QUESTION} ({FIXED_TOKENS}):", ""),
             "losses in nats/token with 90% intervals; Δ = option - train alone"]
    for option in plan.options:
        final = option.final
        span = f" [{float(final.loss.low):.4f}, {float(final.loss.high):.4f}]" if final.loss.has_interval else ""
        runs = option.trainings
        lines.append(f"  {option.label:<24} {final.value:.4f}{span}")
        lines.append(f"    {runs} run{'s' if runs > 1 else ''} of {format_quantity(option.tokens)} tokens, each "
                     f"reading the {pool} pool {option.tokens / plan.unique_tokens:.3g} times")
        if option.teacher is not None:
            lines.append("    " + _teacher_text(option.teacher))
        hours = plan.option_hours(option)
        if hours is not None:
            lines.append("    " + _hours_text(plan, hours))
        if option.not_priced is not None:
            lines += _wrapped(f"not priced: {option.not_priced}", "    ")
        elif option.difference is not None:
            lines += _wrapped(f"Δ {option.difference.describe()}: {option.difference.verdict}", "    ")
    lines += _wrapped(f"Best: {plan.best.said}", "")
    lines += _k_lines(plan)
    lines += _beyond_lines(plan)
    lines += _wrapped(_stops_line(plan.chain, plan.chain_k), "")
    lines.append(f"Run sheet, {plan.chain_k} generation{'s' if plan.chain_k > 1 else ''} (one by one, or the whole "
                 f"chain at once):")
    commands = plan.commands()
    if plan.chain_k > SHOWN_GENERATIONS:   # gen0, the first generations, a line for the rest, the whole chain
        commands = commands[:SHOWN_GENERATIONS + 1] + [f"# generations {SHOWN_GENERATIONS + 1}-{plan.chain_k}: the "
                                                      f"same, --teacher genG-1 --out genG"] + commands[-1:]
    for command in commands:   # wrapped at spaces, a shell's continuation at each break
        if command.startswith("#"):
            lines.append(f"  {command}")
            continue
        command = command.replace(" --", "\n--").replace(" ", "\xa0").replace("\n", " ")   # a flag and its value
        parts = textwrap.wrap(command, 72, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)
        lines += [f"  {part}".replace("\xa0", " ") + (" \\" if n < len(parts) - 1 else "")
                  for n, part in enumerate(parts)]
    return lines


def summary_lines(plan: DataLimitedPlan) -> list[str]:
    """The comparison in three lines (a plan's one screen): the best option by the verdict rule, its loss
    with its interval, the pool it reads and how many times, and Δ against training alone with its
    verdict (training alone: two, the plan's answer line saying why); with --generations, where the chain
    stops paying."""
    best, pool = plan.best.option, format_quantity(plan.unique_tokens)
    final = best.final
    span = f" [{float(final.loss.low):.4f}, {float(final.loss.high):.4f}]" if final.loss.has_interval else ""
    head = f"Data-limited ({pool} unique tokens, equal compute): best "
    name = best.label if plan.best.decided else " or ".join(o.label for o in plan.best.options)
    lines = [head + name if len(head + name) <= 80 else head + best.label + " (or others: --explain)",
             f"  {final.value:.4f}{span} nats/token, {best.trainings} run{'s' if best.trainings > 1 else ''} x "
             f"{best.tokens / plan.unique_tokens:.3g} epochs"]
    for part in ("; --explain: each option", "; --explain: all"):   # the longest that fits
        if len(lines[1] + part) <= 80:
            lines[1] += part
            break
    if best.difference is None and plan.generations is None:   # training alone: the plan's answer line says why
        return lines
    if best.difference is None:
        said = "  " + plan.best.said
    else:
        d = best.difference
        said = (f"  Δ vs alone {d.value:+.4f}" + (f" [{d.low:+.4f}, {d.high:+.4f}]" if d.has_interval else "")
                + f": {d.verdict}")
    chain = plan.best_of("chain")
    if chain is not None and plan.generations is None:
        for part in (f"; self-distillation's best k: {chain.k}", f"; best chain: k = {chain.k}"):
            if len(said + part) <= 80:
                said += part
                break
    lines += _wrapped(said.strip(), "  ")
    if plan.generations is not None:   # the chain asked for: where it stops paying, in a line or two
        lines += _wrapped(_stops_line(plan.chain, plan.chain_k) + " (--explain: each option, its runs, the commands)",
                          "  ")
    return lines


SHORT = {"too close to call": "too close", CANNOT_TELL: "can't tell"}


def answer_line(plan: DataLimitedPlan) -> str:
    """The plan's one answer on its pool in one line, for the top of a plan (`planning.render.answer_lines`):
    what `Best:` says at the comparison's end."""
    given = any(o.kind == "teacher" for o in plan.options)   # else the scenarios below bring their teachers
    head = (f"on the {format_quantity(plan.unique_tokens)} pool at equal compute: " if given else
            f"with no teacher, {format_quantity(plan.unique_tokens)} pool: ")
    best = plan.best
    if best.option.kind != "alone":
        names = " or ".join(o.label for o in best.options)
        said = names + (" (too close between them)" if len(best.options) > 1 else
                        f", Δ {best.option.difference.relative:+.1%} (beats alone)")
        return head + (said if len(head + said) <= 80 else best.option.label + " (or others)")
    unsure = sorted({SHORT.get(o.verdict, o.verdict) for o in plan.options[1:] if o.verdict not in (None, "pretrain")})
    losing = " and ".join({"chain": "chains", "ensemble": "ensembles", "teacher": "the teacher"}[kind]
                          for kind in ("chain", "ensemble", "teacher") if any(o.kind == kind for o in plan.options))
    return head + (f"train alone ({losing or 'the others'} lose)" if not unsure else
                   f"train alone (none beats it: {', '.join(unsure)})")


def _hours_text(plan: DataLimitedPlan, hours: tuple[float, float, float | None]) -> str:
    """An option's GPU time in words (--gpu: an estimate from measured throughput)."""
    from distillscale.planning.gpu_hours import format_gpu_hours, format_hours

    gpu_hours, wall, cost = hours
    estimate = plan.gpu_hours
    return (f"GPU-hours on {estimate.device}: {format_gpu_hours(gpu_hours)}, {format_hours(wall)} on {estimate.gpus}"
            + ("" if cost is None else f", cost {cost:,.0f}"))


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, 80, initial_indent=indent, subsequent_indent=indent + "  ", break_long_words=False,
                         break_on_hyphens=False) or [indent]


def _k_lines(plan: DataLimitedPlan) -> list[str]:
    """The best chain length and ensemble size by the verdict rule (when --generations did not fix them)."""
    if plan.generations is not None:
        return [f"Compared: --generations {plan.generations}"]
    parts = []
    for kind, what in (("chain", "chain"), ("ensemble", "ensemble")):
        best = plan.best_of(kind)
        if best is not None:
            parts.append(f"{what} k = {best.k}")
    return _wrapped(f"Best k of {DEFAULT_KS[0]}-{DEFAULT_KS[-1]} (the fewest runs no other k beats beyond its "
                    f"interval): " + ", ".join(parts), "")


def _beyond_lines(plan: DataLimitedPlan) -> list[str]:
    """Where the plan lies against where the constants were measured, and what that means for its verdicts."""
    beyond = plan.beyond
    if not beyond:
        return _wrapped(f"Constants measured at {plan.constants.measured.describe()}: this plan lies inside", "")
    far = ", ".join(f"{name.replace('_', ' ')} " + (f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.3g}x")
                    for name, ratio in beyond.items())
    return _wrapped(f"Constants measured at {plan.constants.measured.describe()}; this plan lies outside ({far}): "
                    f"no measured rule widens them there, so each interval spans every admissible constant and a Δ "
                    f"across 0 reads \"{CANNOT_TELL}\"", "")


def _teacher_text(teacher: ModelState) -> str:
    """The given teacher's loss on its pool and with fresh data, and the pool it read."""
    if teacher.unique_tokens is None:
        return f"its teacher: {teacher.value:.4f} as measured (its data unknown: as fresh)"
    return (f"its teacher: {teacher.value:.4f} on {format_quantity(teacher.unique_tokens)} tokens read "
            f"{teacher.epochs:.3g} times, {float(teacher.fresh.value):.4f} fresh")


def _stops_line(chain: Chain, k: int) -> str:
    """Where another generation stops paying in the chain of k generations (the verdict rule on each
    generation's gain over the one before)."""
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
