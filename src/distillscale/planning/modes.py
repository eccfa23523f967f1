"""Does on-policy distillation pay at a budget? Supervised, off-policy and on-policy compared.

For a given student, an existing teacher and a budget C, each mode gets the student training tokens
D_S the budget buys at its price per token (`flops.on_policy_flops`: on-policy adds the student's
KV-cache generation and the teacher's scoring of prompt and continuation; a remote teacher's FLOPs
are off the budget, or bounded by its own), and the distillation law's loss at those tokens.

The distillation law was fitted on off-policy runs (the student trains on corpus tokens). Applying it
to on-policy tokens needs an assumption, made explicit: an on-policy token counts as k = `efficiency`
off-policy tokens, D_eff = D_S (1 - lambda + lambda k), with k = 1 (no gain) by default. GKD (Agarwal et
al. 2024) and later post-training work report reaching a target with 9-30x less compute on-policy;
nothing like it is measured for pretraining-style distillation, which is what the law describes.
So on-policy losses are flagged as outside the law's fit and their intervals widened by the
literature's typical extrapolation error (`laws.uncertainty.literature_half_width`: 4% typical, 8.2% at 90%), and the
useful number is the break-even efficiency k*: the k at which on-policy ties the best of supervised
and off-policy. Against off-policy with the same teacher, k* is the ratio of the two modes' FLOPs
per token (the law's loss falls with D_eff alone), whatever lambda is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Real
from typing import TYPE_CHECKING

import numpy as np

from distillscale.errors import ParameterError
from distillscale.laws.difference import used_interval
from distillscale.laws.uncertainty import ON_POLICY_WIDENED, ExtrapolationError, Prediction, lower_end
from distillscale.laws.repetition import DEFAULT_MAX_PENALTY
from distillscale.planning.flops import FlopBreakdown, on_policy_flops
from distillscale.planning.repetition import assess_model
from distillscale.planning.results import ModePlan, interval_or_none
from distillscale.units import QUANTITY_LIMITS, Quantity, format_quantity

if TYPE_CHECKING:
    from distillscale.planning.solver import DistillationPlanner

# The fractions compared when none is given.
DEFAULT_FRACTIONS = (0.25, 0.5, 1.0)
# What the post-training literature claims (GKD, Agarwal et al. 2024; MiniLLM): the compute saved
# reaching a target on-policy. Quoted to the user, never assumed.
LITERATURE_CLAIM = "9-30x"


@dataclass(frozen=True)
class OnPolicy:
    """On-policy distillation to compare (GKD): the share of the student's training tokens it
    samples itself, and how.

    fraction : lambda in (0, 1], or several to compare; None compares 0.25, 0.5 and 1.
    prompt_tokens : P, the corpus prompt each continuation is sampled from.
    continuation_tokens : G, the tokens sampled per prompt (the student trains on these).
    efficiency : k, how many off-policy tokens one on-policy token is worth to the law; 1 (the
        default) assumes no gain. Not measured for pretraining-style distillation.
    """

    fraction: float | tuple[float, ...] | None = None
    prompt_tokens: int = 256
    continuation_tokens: int = 256
    efficiency: float = 1.0

    @property
    def fractions(self) -> tuple[float, ...]:
        if self.fraction is None:
            return DEFAULT_FRACTIONS
        if isinstance(self.fraction, (Real, str)):
            return (float(self.fraction),)
        return tuple(float(f) for f in self.fraction)

    def checked(self) -> "OnPolicy":
        """The same settings, validated (fractions as a sorted tuple); ParameterError naming the
        field otherwise."""
        try:
            fractions = self.fractions
        except (TypeError, ValueError):
            raise ParameterError("on_policy.fraction", "{} must be a number in (0, 1] or a list of them, "
                                 "got {value!r}", value=self.fraction) from None
        if not fractions:
            raise ParameterError("on_policy.fraction", "{} is empty: give a number in (0, 1], or none "
                                 "for 0.25, 0.5 and 1")
        for value in fractions:
            if not (math.isfinite(value) and 0.0 < value <= 1.0):
                raise ParameterError("on_policy.fraction", f"{{}} must be in (0, 1] (the share of the "
                                     f"student's tokens it samples itself; 0 is off-policy, compared "
                                     f"anyway), got {value:g}")
        for name in ("prompt_tokens", "continuation_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ParameterError(f"on_policy.{name}", "{} must be a whole number of tokens, at "
                                     "least 1, got {value!r}", value=value)
        try:
            efficiency = float(self.efficiency)
        except (TypeError, ValueError):
            raise ParameterError("on_policy.efficiency", "{} must be a number, got {value!r}",
                                 value=self.efficiency) from None
        if not (math.isfinite(efficiency) and efficiency > 0):
            raise ParameterError("on_policy.efficiency", f"{{}} must be a positive number (how many "
                                 f"off-policy tokens one on-policy token is worth; 1 assumes no gain), "
                                 f"got {efficiency:g}")
        return replace(self, fraction=tuple(sorted(set(fractions))), prompt_tokens=int(self.prompt_tokens),
                       continuation_tokens=int(self.continuation_tokens), efficiency=efficiency)


def compare_modes(planner: DistillationPlanner, student_params: float, budget: float,
                  teacher_params: float, teacher_loss: float, on_policy: OnPolicy, *,
                  logit_cache: bool = False, teacher_remote: bool = False,
                  teacher_compute: float | None = None, unique_tokens: float | None = None,
                  max_penalty: float = DEFAULT_MAX_PENALTY, teacher_state=None) -> list[ModePlan]:
    """Supervised, off-policy, then on-policy at each fraction, for one student and budget.

    logit_cache : the teacher's logits on the corpus tokens are cached already (paid before): the
        off-policy tokens cost the student's training only. On-policy scoring is always paid.
    teacher_remote : the teacher runs on its own GPUs: its FLOPs are off the budget.
    teacher_compute : with teacher_remote, the teacher's own FLOP budget (None: unlimited, free to you).
    unique_tokens : the corpus's unique tokens (None: unlimited): each mode's loss and intervals carry
        the penalty of repeating the corpus tokens it reads (on-policy reads only its off-policy share
        and its prompts), under the supervised law's decay of repeated data for the supervised mode and
        lambda of that penalty for the distilled ones (the data-limited law's one pricing), and so do the
        verdict and the break-even efficiencies (`planning.repetition.assess_model`, kept in each
        mode's `repetition` within `max_penalty`).
    teacher_state : with a pool, the teacher as the data-limited law's state (`laws.data_limited`: trained on a
        pool, or measured): each distilled mode is that law's student (its loss as if the teacher had seen
        fresh data, plus kappa of the teacher's penalty and lam of its size's on the corpus tokens it reads),
        off-policy exactly the student `plan` shows for the same teacher and pool.
    """
    pooled = unique_tokens is not None and teacher_state is not None and planner.laws.distillation is not None
    law = None
    if pooled:
        from distillscale.laws.data_limited import DataLimitedLaw

        law = DataLimitedLaw(planner.laws)
        teacher_loss = float(teacher_state.fresh.value)   # the law's G reads the teacher's fresh-data loss
    def with_repetition(mode: ModePlan) -> ModePlan:
        read = (mode.student_tokens - mode.generated_tokens
                + mode.generated_tokens * on_policy.prompt_tokens / on_policy.continuation_tokens)
        if unique_tokens is None:
            return replace(mode, corpus_tokens=read)
        check = assess_model(planner.laws, student_params, read, unique_tokens, max_penalty,
                             distilled=mode.name != "supervised", loss_fresh=mode.student_loss)
        if law is not None:   # the data-limited law's loss and interval (its one implementation)
            return _pooled_mode(law, mode, check, student_params, read, unique_tokens, teacher_state,
                                supervised.tokens)
        scaled = (lambda p: None if p is None else p.scaled(1.0 + check.penalty))
        return replace(mode, corpus_tokens=read, repetition_penalty=check.penalty, repetition=check,
                       student_loss=check.loss_repeated, interval=scaled(mode.interval),
                       law_interval=scaled(mode.law_interval))

    supervised = planner.supervised(student_params, budget)
    modes = [with_repetition(ModePlan("supervised", 0.0, supervised.tokens, supervised.tokens, supervised.loss,
                                      FlopBreakdown(budget, 0.0, 0.0), supervised.interval, supervised.interval))]

    def distilled(fraction: float, efficiency: float) -> ModePlan:
        def flops(tokens: float) -> FlopBreakdown:
            return on_policy_flops(planner.flops, student_params, teacher_params, tokens, fraction,
                                   on_policy.prompt_tokens, on_policy.continuation_tokens,
                                   teacher_logits_paid=not logit_cache, teacher_remote=teacher_remote)

        per_token = flops(1.0)
        tokens, limited_by = budget / per_token.total, "budget"
        if teacher_compute is not None and per_token.off_budget > 0:
            if teacher_compute / per_token.off_budget < tokens:
                tokens, limited_by = teacher_compute / per_token.off_budget, "teacher_compute"
        name = "off-policy" if fraction == 0 else f"on-policy λ={fraction:g}"
        if tokens < planner.bounds[0]:
            raise ParameterError(("compute", "teacher_compute")[limited_by == "teacher_compute"],
                                 f"{{}} ({budget if limited_by == 'budget' else teacher_compute:.3g} FLOPs) "
                                 f"buys {name} distillation only {format_quantity(tokens)} student tokens, "
                                 f"below the planner's minimum of {format_quantity(planner.bounds[0])}: raise it")
        effective = tokens * (1.0 - fraction + fraction * efficiency)
        most = QUANTITY_LIMITS[Quantity.TOKENS][1]
        if effective > most:  # the law is evaluated at D_eff: the efficiency is bounded where it is used
            shown = f"{effective:.3g}" if math.isfinite(effective) else "infinitely many"
            raise ParameterError("on_policy.efficiency", f"{{}} = {efficiency:g} counts the {name} student's "
                                 f"{format_quantity(tokens)} tokens as {shown} off-policy tokens, beyond "
                                 f"the {most:g} tokens any law here describes: give a smaller efficiency "
                                 f"(post-training reports {LITERATURE_CLAIM})")
        loss = float(planner.distillation.predict(student_params, effective, teacher_loss))
        # the law's interval as a verdict's Δ uses it (`laws.difference.used_interval`), shown so too
        interval = used_interval(planner.distillation.prediction(student_params, effective, teacher_loss), "distilled")
        return with_repetition(ModePlan(
            "off-policy" if fraction == 0 else "on-policy", fraction, tokens, effective, loss, flops(tokens),
            interval_or_none(interval) if fraction == 0 else outside_fit(interval, loss),
            interval_or_none(interval), efficiency, limited_by=limited_by))

    off_policy = distilled(0.0, 1.0)
    modes.append(off_policy)
    rival = min(modes, key=lambda m: m.student_loss)
    for fraction in on_policy.fractions:
        plan = distilled(fraction, on_policy.efficiency)
        k = break_even_efficiency(planner, student_params, teacher_loss, plan, rival, off_policy,
                                  additive=law is not None)
        modes.append(replace(plan, break_even_efficiency=k, break_even_against=rival.name))
    return modes


def _pooled_mode(law, mode: ModePlan, check, N: float, read: float, U: float, teacher, alone_tokens: float) -> ModePlan:
    """A mode on a pool under the data-limited law: trained alone, its state's loss and interval; off-policy,
    the law's student of `teacher` on the tokens it reads, and its Delta against the student trained alone
    on `alone_tokens` (`laws.data_limited.difference`); on-policy, the law's student's penalty (kappa of the
    teacher's, lam of its size's on the corpus tokens it reads) added to its loss with fresh data, its
    interval as on-policy widens it with the constants' spread and the residual beside."""
    from distillscale.laws.data_limited import difference
    from distillscale.planning.repetition import with_pool_penalty

    if mode.name == "supervised":
        state = law.alone(N, read, U)
        return replace(mode, corpus_tokens=read, repetition_penalty=check.penalty, repetition=check,
                       student_loss=state.value, interval=state.loss, law_interval=state.loss)
    penalty = law.inherited_penalty(teacher.penalty) + law.own_penalty(N, read, U)
    check = with_pool_penalty(check, penalty, law.inherited_penalty(teacher.penalty))
    state = law.student(N, read, U, teacher)
    if mode.fraction == 0:
        return replace(mode, corpus_tokens=read, repetition_penalty=check.penalty, repetition=check,
                       student_loss=state.value, interval=state.loss, law_interval=state.own,
                       pool_difference=difference(state, law.alone(N, alone_tokens, U)), beyond_measured=state.beyond)
    value = mode.student_loss + penalty

    def widened(p):   # moved by the penalty; the law's constants and residual parts beside the on-policy sides
        if p is None or not p.has_interval:
            return p
        v = state.value
        extra = [math.sqrt(max(0.0, (v - float(state.loss.low)) ** 2 - (v - float(state.own.low)) ** 2)),
                 math.sqrt(max(0.0, (float(state.loss.high) - v) ** 2 - (float(state.own.high) - v) ** 2))]
        return replace(p, value=value, low=value - math.hypot(float(p.value) - float(p.low), extra[0]),
                       high=value + math.hypot(float(p.high) - float(p.value), extra[1]))
    return replace(mode, corpus_tokens=read, repetition_penalty=check.penalty, repetition=check, student_loss=value,
                   interval=widened(mode.interval), law_interval=widened(mode.law_interval),
                   beyond_measured=state.beyond)


def break_even_efficiency(planner: DistillationPlanner, student_params: float, teacher_loss: float,
                          plan: ModePlan, rival: ModePlan, off_policy: ModePlan, additive: bool = False) -> float:
    """The efficiency k at which the on-policy `plan` predicts `rival`'s loss: D_eff* with
    L_S(N_S, D_eff*, L_T) (1 + p) = rival's loss, p the plan's repetition penalty (it does not depend
    on k; the law falls monotonically in D_eff; `additive`: the data-limited law's, added in nats/token), then
    k* = (D_eff* / D_S - (1 - lambda)) / lambda. inf when no amount of tokens reaches it."""
    if rival is off_policy and plan.repetition_penalty == rival.repetition_penalty == 0:
        target_tokens = off_policy.effective_tokens  # the same law and teacher: a tie is equal effective tokens
    else:   # the plan's loss with fresh data that ties the rival (its penalty does not move with k)
        fresh = plan.student_loss / (1.0 + plan.repetition_penalty)
        target = rival.student_loss - (plan.student_loss - fresh) if additive else rival.student_loss / (
            1.0 + plan.repetition_penalty)
        target_tokens = tokens_reaching_student_loss(planner, student_params, teacher_loss, target)
    lam = plan.fraction
    return max(0.0, (target_tokens / plan.student_tokens - (1.0 - lam)) / lam)


def tokens_reaching_student_loss(planner: DistillationPlanner, student_params: float, teacher_loss: float,
                                 loss: float) -> float:
    """D_S with L_S(N_S, D_S, L_T) = loss (inf when even unlimited tokens stay above it)."""
    from scipy.optimize import brentq

    def gap(log_tokens: float) -> float:
        return float(planner.distillation.predict(student_params, math.exp(log_tokens), teacher_loss)) - loss

    low, high = math.log(1.0), math.log(1e40)
    if gap(high) > 0:
        return math.inf
    if gap(low) <= 0:
        return 1.0
    return math.exp(brentq(gap, low, high, xtol=1e-12, rtol=1e-12))


def outside_fit(prediction: Prediction, value: float) -> Prediction:
    """An on-policy loss: the law's interval (if it has one) widened in quadrature by the
    literature's typical extrapolation error, since the law was fitted on off-policy runs; marked
    as beyond what any backtest measured, and labelled as such (`interval_source` "on-policy widened");
    where the law's interval means nothing (`outside`), neither does this one. Never zero-width."""
    level = prediction.level if prediction.has_interval else 0.9
    assumption = float(ExtrapolationError.unmeasured(level, "on-policy tokens", 1.0, 1.0).half_width(1.0)) * value
    low_side = value - float(prediction.low) if prediction.has_interval else 0.0
    high_side = float(prediction.high) - value if prediction.has_interval else 0.0
    law_extrapolation = float(prediction.extrapolation) if prediction.extrapolation is not None else 0.0
    return Prediction(value, lower_end(value, math.hypot(low_side, assumption)),
                      value + math.hypot(high_side, assumption),
                      level, prediction.noise, math.hypot(law_extrapolation, assumption),
                      prediction.distance if prediction.distance is not None else 1.0, beyond_backtest=True,
                      outside=prediction.outside, source=ON_POLICY_WIDENED)
