"""The planner as one call: what `distillscale plan` answers, from Python.

    import distillscale as ds
    p = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case")
    p.plans[0].student_loss, p.plans[0].verdict, p.warnings
    p.recipes["best-case"].lr, .batch_tokens, .steps    # how to run each model (planning.recipes)
    print(p.as_text()); p.to_json(); p.as_cli_command()
    ds.plan_supervised("epoch2024", compute=1e21)     # the compute-optimal N and D, no teacher

`plan`'s options are declared once, in `planning.options.PlanSettings` (which the CLI's flags, the
planner page and `plan`'s keywords all build); its answers are the kinds of `Plan` in
`planning.plans`; with `unique_tokens`, `planning.repetition` puts each model's repetition penalty
in its losses. Bad arguments raise `ParameterError` naming the Python parameter (`teacher.loss`);
the CLI prints the same message with the flag (`--teacher-loss`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from distillscale.errors import ParameterError, UserError
from distillscale.laws.extrapolation import check_losses, check_pool, extrapolation_warnings, uniform_guess_warnings
from distillscale.laws.lawset import LawSet, load_laws
from distillscale.laws.student_init import start_multiplier
from distillscale.planning.correction import correction_shift
from distillscale.planning.data_limited import plan_data_limited
from distillscale.planning.data_limited import with_gpu_hours as data_limited_gpu_hours
from distillscale.planning.flops import SCENARIOS, ForwardFlops
from distillscale.planning.law_inputs import given_laws, load_law, settings_law
from distillscale.planning.gpu_hours import setting_of, with_gpu_hours
from distillscale.planning.modes import OnPolicy
from distillscale.planning.options import ExistingTeacher, PlanSettings, positive
from distillscale.planning.recipes import DEFAULT_HYPERPARAMETER_LAW
from distillscale.planning.region import planner_bounds, student_region
from distillscale.planning.plans import (ModeComparison, Plan, ScenarioPlans, StudentSizePlans,
                                        SupervisedOnlyPlan)
from distillscale.planning.repetition import (given_teacher_loss, given_teacher_state, is_distilled, model_penalty, repetition_check,
                                              with_repetition)
from distillscale.planning.warnings import (corpus_size_warnings, known_pool_note, loss_units_notes, mode_warnings,
                                           plan_warnings, student_model_notes, vocabulary_notes)
from distillscale.urls import is_url, redacted_url

if TYPE_CHECKING:  # the solver imports SciPy: loaded on the first plan, keeping the CLI's start fast
    from distillscale.model.sizes import ModelSize
    from distillscale.planning.solver import DistillationPlanner

# Importable from here, where `plan` is: the records it takes and returns.
__all__ = ["ExistingTeacher", "ModeComparison", "OnPolicy", "Plan", "PlanSettings", "ScenarioPlans",
           "StudentSizePlans", "SupervisedOnlyPlan", "plan", "plan_from_settings", "plan_supervised",
           "planner_for", "repetition_check"]


def plan(law, *, teacher: ExistingTeacher | None = None, on_policy: OnPolicy | None = None, **options) -> Plan:
    """Compute-optimal distillation for a budget: teacher, tokens, loss, and distil or pretrain?

    law : a preset name, a law file saved by `fit`, a LawSet, or a fitted law (a LawFit from
        `ds.fit_supervised` / `ds.fit_distillation`, or its `.law`).
    teacher : an ExistingTeacher to distil from (teacher-inference cost; needs the student's size),
        or a mixture of teachers (`ExistingTeacher(mixture=..., loss=...)`).
    on_policy : an OnPolicy: compare supervised, off-policy and on-policy distillation of the given
        student from the given teacher instead (a `ModeComparison`); so do `logit_cache`,
        `teacher_remote` and `teacher_compute`.
    options : the options of `distillscale plan` by field name (`planning.options.PlanSettings`,
        where each is declared and documented): compute (required), student_params (None: search
        the best size per scenario) or student_model (a model directory: exact N_S and F(N_S) at the
        plan's context), scenario (None or "all": every one), min_params, max_params,
        min_tokens_per_param, max_tokens_per_param (the search's limits), flops, n_ctx, vocab_size,
        aspect_ratio (the FLOP accounting), logit_cache, teacher_remote, teacher_compute,
        unique_tokens and max_penalty (a limited corpus: every loss and verdict after repetition,
        `plan.repetition`), student_init ("scratch" or "pruned"), hyperparameter_law (a preset, a
        file or a HyperparameterLaw: each run's peak lr, batch, steps and warmup, `plan.recipes`;
        default steplaw2025) and
        batch_tokens (a batch fixed for every run: its lr and, above B*, its loss penalty).
    """
    laws, spec = load_law(law)
    options, given = given_laws(options)
    settings = PlanSettings.from_python(spec, teacher=teacher, on_policy=on_policy, **options)
    return plan_from_settings(settings, laws, *given)


def plan_from_settings(settings: PlanSettings, laws: LawSet | None = None, hyperparameters=None,
                       downstream=None, *, supervised: bool = False) -> Plan:
    """The plan `distillscale plan` prints for `settings` (its output options aside), the one
    pipeline every plan takes: the solver's plan (`supervised`: training without a teacher only,
    `plan_supervised`), repetition, each run's recipe (and a fixed batch's penalties), downstream
    errors and GPU-hours. `laws`: the law set already loaded for `settings.law` (the planner page's,
    a Python caller's law object); `hyperparameters`, `downstream`: the law objects for
    `settings.hyperparameter_law` and `settings.downstream_law`, likewise."""
    laws = laws if laws is not None else load_laws(settings.law)
    for field in ("unique_tokens", "teacher_unique_tokens"):   # a pool the law can price
        check_pool(laws, field, getattr(settings, field))
    if settings.no_bias_correction:  # the supervised law's raw predictions (`laws.crossladder`)
        laws = laws.without_bias_correction()
    # a law that cannot be read is refused before the plan is made
    hyperparameters = hyperparameters or settings_law(settings, "hyperparameter_law")
    downstream = downstream or settings_law(settings, "downstream_law")
    def judge(family: Plan) -> dict[str, str]:   # a family's verdicts as printed: after repetition, at the batch
        return _with_recipes(with_repetition(family), hyperparameters).verdicts()

    solved = _supervised_plan(laws, settings) if supervised else _plan(laws, settings, judge)
    if laws.bias_correction is not None:  # the same optimum under the raw law (`planning.correction`)
        raw = _supervised_plan(laws.without_bias_correction(), settings) if supervised else _plan(
            laws.without_bias_correction(), settings, judge)
        solved = replace(solved, correction=correction_shift(solved, raw, laws.bias_correction))
    planned = with_gpu_hours(_with_downstream(_with_recipes(with_repetition(solved), hyperparameters), downstream))
    forward = _forward_flops(laws, settings.flops, settings.n_ctx, settings.vocab_size, settings.aspect_ratio)
    data_limited = plan_data_limited(planned, forward)   # None on fresh data
    if data_limited is not None and setting_of(settings) is not None:   # --gpu: each option's GPU time too
        data_limited = data_limited_gpu_hours(data_limited, setting_of(settings), planned.planner.flops)
    planned = replace(planned, data_limited=data_limited)
    larger = corpus_size_warnings(laws, planned.runs(), settings.unique_tokens)
    if larger:   # the plan knows the pool its runs would repeat: priced on it, said in one line
        pooled = _on_known_pool(laws, settings, larger)
        if pooled is not None:
            again = plan_from_settings(pooled, laws, hyperparameters, downstream, supervised=supervised)
            return replace(again, warnings=list(dict.fromkeys([known_pool_note(laws, larger)] + again.warnings)))
    check_losses(laws, printed_losses(planned), "plan larger models or larger budgets, nearer the law's runs")
    return replace(planned, settings=planned.settings.redacted(),   # a served teacher's credentials kept nowhere
                   warnings=list(dict.fromkeys(planned.warnings + larger)))


def _on_known_pool(laws: LawSet, settings: PlanSettings, larger: list) -> PlanSettings | None:
    """`settings` with the pool of the corpus the law was calibrated on (`warnings.calibration_pool`), the
    split whose data the plan's runs (`larger`) would repeat; None where no pool can be priced there (a
    pool below what the law can price: the runs' warnings stay)."""
    pool = larger[0].split_tokens
    try:
        check_pool(laws, "unique_tokens", pool)
    except UserError:
        return None
    return settings.model_copy(update={"unique_tokens": pool})


def printed_losses(result: Plan) -> dict[str, float]:
    """Every loss a plan prints, by what it is: each run's (after repetition, `Plan.loss_predictions`),
    each scenario's teacher's and the data-limited options' runs (their teachers too)."""
    losses = {f"the {name} model's loss": loss for name, (loss, _) in result.loss_predictions().items()}
    losses |= {f"the {name} teacher's loss": p.teacher_loss for name, p in result.scenario_plans().items()}
    for option in result.data_limited.options if result.data_limited is not None else []:
        losses |= {f"the data-limited {option.label} option's {run.name} loss": run.state.value for run in option.runs}
        if option.teacher is not None:
            losses[f"the data-limited {option.label} option's teacher's loss"] = option.teacher.value
    return losses


def _plan(laws: LawSet, settings: PlanSettings, judge=None) -> Plan:
    """The plan for settings whose options combine (`PlanSettings` checked them), under `laws`; a family's
    students decided on the verdicts `judge` reads off a plan (default: after repetition)."""
    compute, teacher, search, compare = settings.compute, settings.teacher, settings.search, settings.compares_modes
    forward = _forward_flops(laws, settings.flops, settings.n_ctx, settings.vocab_size, settings.aspect_ratio)
    start = start_multiplier(settings.student_init)
    if laws.distillation is None:
        if compare or start is not None or teacher is not None or settings.teacher_model is not None:
            # options only a distillation law plans
            laws.require_distillation()
        return _supervised_plan(laws, settings)
    from distillscale.planning.solver import DistillationPlanner

    planner = DistillationPlanner(laws, forward, start=start, bounds=planner_bounds(laws))
    if compare:
        return _mode_comparison(laws, planner, settings)
    if settings.students is not None:
        model = _teacher_model(laws, settings, forward.n_ctx)
        teacher = teacher if model is None else ExistingTeacher(model.params, loss=model.loss.nats_per_token)
        from distillscale.planning.family_plan import plan_family

        return plan_family(laws, planner, settings, teacher.checked(laws), model, forward, judge or _judge)
    N_S, F_S, size = _student(settings.student_params, settings.student_model, forward, settings.n_ctx,
                              settings.trust_remote_code)
    names = list(SCENARIOS) if settings.scenario is None else [settings.scenario]
    if N_S is None:
        warnings, (size_range, tokens_per_param) = student_region(laws, planner, search)
        penalties = (model_penalty(laws, settings.unique_tokens, distilled=True),  # None: fresh data
                     model_penalty(laws, settings.unique_tokens, distilled=False))
        sweeps = [planner.sweep(compute, name, size_range, tokens_per_param,
                                penalties=penalties if settings.unique_tokens is not None else None)
                  for name in names]
        warnings += plan_warnings(laws, [s.best for s in sweeps], sweep=True) + vocabulary_notes(laws, forward.n_vocab, {})
        return StudentSizePlans(law=laws.name, laws=laws, settings=settings, sweeps=sweeps, warnings=warnings,
                                planner=planner)
    model = _teacher_model(laws, settings, forward.n_ctx)
    teacher = teacher if model is None else ExistingTeacher(model.params, loss=model.loss.nats_per_token)
    if teacher is not None:
        teacher = teacher.checked(laws)
        plans = [planner.plan_with_teacher(N_S, compute, teacher.params, teacher.tokens, teacher.loss, F_S,
                                           mixture=teacher.mixture,
                                           teacher_flops_per_token=None if model is None else model.flops_per_token)]
    else:
        plans = [planner.plan(N_S, compute, name, F_S) for name in names]
    warnings = plan_warnings(laws, plans, sweep=False, given_teacher=teacher is not None)
    return ScenarioPlans(law=laws.name, laws=laws, settings=settings, plans=plans, planner=planner,
                         warnings=loss_units_notes(laws, settings, model, forward.n_ctx) + student_model_notes(size) + vocabulary_notes(
                             laws, forward.n_vocab, {"--student-model": size and size.output_rows,
                                                     "--teacher-model": model and model.output_rows})
                         + warnings, teacher_model=model)


def plan_supervised(law, *, compute: float, params: float | None = None,
                    min_params: float | None = None, max_params: float | None = None,
                    flops: str = "corrected", hyperparameter_law=None, batch_tokens: float | None = None,
                    downstream_law=None) -> Plan:
    """Training without a teacher under the law's supervised law: the compute-optimal model size N
    and tokens D for the budget (searched in min_params..max_params, by default the planner's
    bounds), or with `params` that size trained on the whole budget; the loss with its interval,
    and how to run it (`plan.recipes`, under `hyperparameter_law` at `batch_tokens`, as `plan`);
    with `downstream_law`, its predicted downstream error (`plan.downstream`, as `plan`)."""
    laws, spec = load_law(law)
    laws.require_supervised()
    options, given = given_laws({"hyperparameter_law": hyperparameter_law, "downstream_law": downstream_law})
    try:
        settings = PlanSettings.from_python(spec, compute=compute, student_params=params, min_params=min_params,
                                            max_params=max_params, flops=flops, batch_tokens=batch_tokens,
                                            **{name: value for name, value in options.items() if value is not None})
    except ParameterError as exc:
        raise exc.renamed({"student_params": "params"}) from None
    return plan_from_settings(settings, laws, *given, supervised=True)


def planner_for(laws: LawSet, flops: str = "corrected", n_ctx: int | None = None,
                vocab_size: int | None = None, aspect_ratio: float | None = None) -> DistillationPlanner:
    """The distillation planner of a law set under a FLOP accounting (default: the law's setting)."""
    from distillscale.planning.solver import DistillationPlanner

    return DistillationPlanner(laws, _forward_flops(laws, flops, n_ctx, vocab_size, aspect_ratio))


# -- internals ------------------------------------------------------------------------------------

def _with_downstream(result: Plan, law) -> Plan:
    """The plan with each run's predicted downstream error under the loss-to-error `law`
    (`planning.downstream`); unchanged without one."""
    from distillscale.planning.downstream import plan_downstream

    if law is None:
        return result
    return replace(result, downstream=plan_downstream(result.loss_predictions(), law,
                                                      str(result.settings.downstream_law)))


def _with_recipes(result: Plan, law) -> Plan:
    """The plan with how to run each of its runs under the hyperparameter `law` (`planning.recipes`),
    at the plan's context and aspect ratio; a given student model at its own width and context."""
    from distillscale.planning.batch_penalty import factors as penalty_factors
    from distillscale.planning.recipes import plan_recipes

    settings, forward = result.settings, result.planner.flops
    model = None
    if settings.student_model is not None:  # its runs at its own context and width, as `_student` prices it
        from distillscale.model.config import ModelConfig
        from distillscale.model.sizes import model_size

        count = model_size(settings.student_model, settings.trust_remote_code, given_as="--student-model").count
        model = count if isinstance(count, ModelConfig) else None  # a generic model: the family's width at N
    recipe = _sweep_recipe(result, settings)
    if recipe is not None:   # a law fitted on a sweep: its runs as the sweep ran its own (`planning.sweep_recipes`)
        from distillscale.planning.sweep_recipes import sweep_recipes

        recipes = sweep_recipes(result.runs(), recipe, forward.n_ctx, forward.aspect_ratio, model)
    else:
        recipes = plan_recipes(result.runs(), law, forward.n_ctx, forward.aspect_ratio, settings.batch_tokens, model)
    if settings.student_init != "scratch":  # the students start from a model, not from scratch
        note = (f"the student starts {settings.student_init} (--student-init): the law's rates are for training "
                "from scratch; a start may want a lower peak rate (unmeasured here)")
        recipes = {name: replace(recipe, notes=(*recipe.notes, note)) if is_distilled(name) else recipe
                   for name, recipe in recipes.items()}
    result = replace(result, recipes=recipes)
    if settings.batch_tokens is None:
        return result
    # every penalty the recipes print is in the losses and verdicts (`planning.batch_penalty`)
    baselines = plan_recipes(getattr(result, "baselines", dict)(), law, forward.n_ctx, forward.aspect_ratio,
                             settings.batch_tokens, model)
    return result.with_batch_penalties(penalty_factors({**recipes, **baselines}))


def _sweep_recipe(result: Plan, settings: PlanSettings):
    """The recipe of the sweep the plan's law was fitted on (`LawSet.recipe`), which its runs follow unless
    told otherwise (another --hyperparameter-law, a --batch-tokens); None: the hyperparameter law's."""
    laws = getattr(result, "laws", None)
    if laws is None or settings.batch_tokens is not None:
        return None
    if str(settings.hyperparameter_law) != DEFAULT_HYPERPARAMETER_LAW:
        return None
    return laws.recipe


def _forward_flops(laws: LawSet, method: str, n_ctx: int | None, vocab_size: int | None,
                   aspect_ratio: float | None) -> ForwardFlops:
    if method not in ForwardFlops.METHODS:  # planner_for's callers (a PlanSettings checked it already)
        raise ParameterError("flops", "unknown FLOP method {method!r} for {}: use one of "
                                      f"{', '.join(ForwardFlops.METHODS)}", method=method)
    for name, value in (("n_ctx", n_ctx), ("vocab_size", vocab_size), ("aspect_ratio", aspect_ratio)):
        positive(name, value, None)
    settings = laws.compute
    return ForwardFlops(method, n_ctx or settings.n_ctx, vocab_size or settings.n_vocab,
                        aspect_ratio or settings.aspect_ratio)


def _student(student_params: float | None, student_model: str | Path | None, forward: ForwardFlops,
             n_ctx: int | None, trust_remote_code: bool = False) -> tuple[float | None, float | None, ModelSize | None]:
    """(N_S, exact F(N_S) or None) from the size or from a model directory (a run, a prune output or a
    Hugging Face causal LM: `model.sizes`). A model is priced at the plan's context (`n_ctx` when given,
    else the law's), the sequence length it trains at, not at the longest its config allows (an
    imported Qwen3 keeps 40,960); at most at that longest. The third: the model's size (None: a size given)."""
    if student_model is None:
        return student_params, None, None
    from distillscale.planning.student_model import student_size

    return student_size(student_model, n_ctx, forward.n_ctx, trust_remote_code)


def _teacher_model(laws: LawSet, settings: PlanSettings, context: int):
    """The `--teacher-model` at the plan's context (`planning.teacher_model`: a directory, or a server's
    URL), or None."""
    if settings.teacher_model is None:
        return None
    from distillscale.planning.served_teacher import ServedAs, served_teacher
    from distillscale.planning.teacher_model import teacher_model

    if is_url(settings.teacher_model):
        model = served_teacher(str(settings.teacher_model), laws, context, _say, ServedAs.TEACHER_MODEL,
                               settings.request_limits())
        shown = redacted_url(model.url)   # a password in the URL is never echoed
    else:
        model = teacher_model(settings.teacher_model, laws, context, settings.trust_remote_code, _say,
                              other_corpus=settings.other_corpus)
        shown = model.path
    laws.check_teacher_loss(model.loss.nats_per_token, measured=f"--teacher-model {shown}")  # named as measured
    return model


def _say(message: str) -> None:
    from distillscale.console import err_console

    err_console.print(f"plan: {message}", highlight=False, soft_wrap=True)


def _judge(family: Plan) -> dict[str, str]:
    """A family's verdicts after repetition (what `plan_from_settings` reads with its recipes too)."""
    return with_repetition(family).verdicts()


def _mode_comparison(laws: LawSet, planner: DistillationPlanner, settings: PlanSettings) -> ModeComparison:
    """Supervised, off-policy and on-policy distillation of the given student from the given teacher."""
    from distillscale.planning.modes import compare_modes

    on_policy = (settings.on_policy_settings() or OnPolicy()).checked()
    teacher = settings.teacher.checked(laws)
    teacher_loss = given_teacher_loss(laws, teacher, settings)   # on its pool, when it reads one
    modes = compare_modes(planner, settings.student_params, settings.compute, teacher.params, teacher_loss,
                          on_policy, logit_cache=settings.logit_cache,
                          teacher_remote=settings.teacher_remote, teacher_compute=settings.teacher_compute,
                          unique_tokens=settings.unique_tokens, max_penalty=settings.max_penalty,
                          teacher_state=given_teacher_state(laws, teacher, settings))
    return ModeComparison(law=laws.name, laws=laws, settings=settings, student_params=settings.student_params,
                          teacher_params=teacher.params, teacher_loss=teacher_loss, on_policy=on_policy, modes=modes,
                          warnings=mode_warnings(laws, settings.student_params, modes, teacher), planner=planner)


def _supervised_plan(laws: LawSet, settings: PlanSettings) -> SupervisedOnlyPlan:
    from distillscale.planning.solver import SupervisedPlanner

    forward = _forward_flops(laws, settings.flops, settings.n_ctx, settings.vocab_size, settings.aspect_ratio)
    planner = SupervisedPlanner(laws.require_supervised(), forward)
    compute, search = settings.compute, settings.search
    N, F, size = _student(settings.student_params, settings.student_model, forward, settings.n_ctx,
                          settings.trust_remote_code)
    if N is not None:  # the size given, or the --student-model's own (its exact FLOPs per token)
        result = planner.supervised(N, compute, F)
    else:
        size_range = (search.min_params or planner.bounds[0], search.max_params or planner.bounds[1])
        result = planner.supervised_optimal(compute, size_range,
                                            penalty=model_penalty(laws, settings.unique_tokens, distilled=False))
    warnings = (student_model_notes(size)
                + extrapolation_warnings(laws, {"the model": result.student_params}, {"the model": result.tokens},
                                         {"the model": result.tokens / result.student_params})
                + uniform_guess_warnings(laws, {"the model's predicted loss": result.loss}))
    return SupervisedOnlyPlan(law=laws.name, laws=laws, settings=settings, supervised=result, warnings=warnings,
                              planner=planner)
