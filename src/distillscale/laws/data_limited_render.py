"""The data-limited answers at fixed tokens per model as text (`predict distillation --unique-tokens U
--generations K --members k`): lines under 80 columns, every number whole, a long chain on one screen."""

from __future__ import annotations

import textwrap

from distillscale.console import console, print_json
from distillscale.laws.data_limited import FixedTokens, ModelState
from distillscale.laws.extrapolation import CANNOT_TELL
from distillscale.units import format_quantity

# A Delta's verdict against training alone, in a narrow column.
VERDICTS = {"distill": "beats alone", "pretrain": "worse", "too close to call": "too close", CANNOT_TELL: "can't tell"}
# The chain's generations listed one by one, at most (the rest in one line; the last always shown).
SHOWN = 8


def print_fixed_tokens(laws, params: float, tokens: float, unique_tokens: float, generations: int | None,
                       members: int | None, as_json: bool = False) -> None:
    """`predict distillation --unique-tokens U --generations K --members k`: the fixed-tokens answers, as text
    or JSON (`laws.predict.predict_data_limited`)."""
    from distillscale.laws.predict import predict_data_limited

    answer = predict_data_limited(laws, params, tokens, unique_tokens, generations=generations, members=members)
    if as_json:
        print_json({"law": laws.name, **answer.to_dict()})
        return
    for line in fixed_tokens_lines(answer):
        console.print(line, highlight=False, soft_wrap=True)


def data_limited_rows(table, states) -> None:
    """The data-limited law's part: each model's loss on its pool and with fresh data, the share of
    the teacher's repetition penalty the student inherits, and the constants."""
    teacher, student, constants = states.teacher, states.student, states.constants
    table.add_row("teacher on its pool L_T", f"{teacher.value:.4f}{_span(teacher.loss)} nats/token")
    table.add_row("teacher, fresh data F_T", f"{float(teacher.fresh.value):.4f}{_span(teacher.fresh)} nats/token")
    table.add_row("student, fresh data F_S", f"{float(student.fresh.value):.4f}{_span(student.fresh)} nats/token "
                                             "(its teacher's too)")
    table.add_row("inherited", f"kappa x (L_T - F_T) = {constants.kappa.value:.3g} x {teacher.penalty:.4f} = "
                               f"{states.inherited:.4f} nats/token in L_S")
    table.add_row("own repetition", f"lambda x its size's penalty alone = {constants.lam.value:.3g} x "
                                    f"{states.size_penalty:.4f} = {states.own:.4f} nats/token in L_S")
    table.add_row("constants", constants.describe())


def _span(prediction) -> str:
    """' [low, high]' of a loss with an interval, '' without one."""
    return f" [{float(prediction.low):.4f}, {float(prediction.high):.4f}]" if prediction.has_interval else ""


def fixed_tokens_lines(answer: FixedTokens) -> list[str]:
    """The chain by generation and the ensembles by size: each loss and Delta against the model trained
    alone with its interval and verdict, the FLOPs, where another generation (member) stops paying, and
    where the constants were measured."""
    lines = [f"At fixed tokens per model: {format_quantity(answer.params)} parameters, "
             f"{format_quantity(answer.tokens)} tokens each",
             f"from {format_quantity(answer.unique_tokens)} unique ({answer.epochs:.3g} epochs); losses in nats/token, "
             "90% intervals",
             f"{'':<11}{'loss':>6} {'[90%]':<16}{'Δ vs alone':>10} {'[90%]':<17}{'':<11}{'FLOPs':>7}",
             _row("alone", answer.alone, None, answer.chain_flops(0))]
    if answer.chain is not None:
        generations = answer.chain.generations
        shown = _shown(len(generations) - 1, answer.chain.stops_paying)
        for g in range(1, len(generations)):
            if g not in shown:
                if g - 1 in shown:
                    last = min(h for h in shown if h > g) - 1
                    lines.append(f"  ... generations {g}-{last} the same way: --json lists each")
                continue
            lines.append(_row(f"gen {g}", generations[g], answer.against_alone(generations[g]), answer.chain_flops(g)))
        lines += _wrapped(_stops(answer))
    for e in answer.ensembles:
        lines.append(_row(f"ens {e.members}", e.ensemble, answer.against_alone(e.ensemble), None))
        lines.append(_row("student", e.student, answer.against_alone(e.student), e.flops))
    if answer.ensembles:
        stop = answer.ensemble_stops_paying
        lines += _wrapped("Every larger ensemble's student still gains beyond its interval" if stop is None else
                          f"Another member stops paying at k = {stop}: its student's gain over the next smaller "
                          f"ensemble's lies within its interval")
    lines += _wrapped("FLOPs: 6N per token trained, 2N per token a teacher reads (each generation's: the chain up "
                      "to it). At equal compute instead: plan --unique-tokens U --generations K")
    beyond = answer.beyond
    if beyond:
        far = ", ".join(f"{name.replace('_', ' ')} {ratio:,.0f}x" if ratio >= 10 else
                        f"{name.replace('_', ' ')} {ratio:.3g}x" for name, ratio in beyond.items())
        lines += _wrapped(f"Outside where the constants were measured ({far}): each interval spans every admissible "
                          f"constant, and a Δ across 0 reads \"{CANNOT_TELL}\"")
    return lines


def _row(name: str, state: ModelState, delta, flops: float | None) -> str:
    loss = state.loss
    span = f"[{float(loss.low):.4f}, {float(loss.high):.4f}]" if loss.has_interval else ""
    cost = "" if flops is None else f"{flops:.1e}"
    if delta is None:
        return f"  {name:<9}{state.value:>6.4f} {span:<16}{'':>8} {'':<19}{'':<11}{cost:>7}".rstrip()
    ends = f"[{delta.low:+.4f}, {delta.high:+.4f}]" if delta.has_interval else ""
    return (f"  {name:<9}{state.value:>6.4f} {span:<16}{delta.value:>+8.4f} {ends:<19}"
            f"{VERDICTS.get(delta.verdict, delta.verdict):<11}{cost:>7}").rstrip()


def _shown(generations: int, stops: int | None) -> set[int]:
    """The generations listed: the first ones up to where another stops paying (and one after), and the
    last; at most SHOWN."""
    upto = min(generations, max(SHOWN - 1, (stops or 0) + 1))
    return set(range(1, min(upto, SHOWN - 1) + 1)) | {generations}


def _stops(answer: FixedTokens) -> str:
    chain = answer.chain
    paying, gaining = chain.stops_paying, chain.stops_gaining
    if paying is None:
        return f"Every generation up to {len(chain.gains)} gains over the one before beyond its interval"
    said = (f"Another generation stops paying at generation {paying}: its gain over generation {paying - 1} lies "
            f"within its interval")
    return said + (f"; generation {gaining} gains nothing" if gaining is not None else "")


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(text, 80, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
