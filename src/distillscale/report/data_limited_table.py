"""The table of `demo --data-limited` (80 columns; data_limited.md holds the same lines): per pool,
the runs trained alone and each distilled student against them, then the law's constants."""

from __future__ import annotations

import textwrap

from distillscale.report.data_limited_records import DataLimitedResult, Measured, PoolResult
from distillscale.units import format_quantity

CONSTANTS_FILE = "data_limited_constants.json"

LABEL = 36


def table_lines(result: DataLimitedResult) -> list[str]:
    design = result.design
    lines = [f"Distillation when data is the limit, on {result.corpus}:",
             f"depth {design.depth} (aspect ratio {design.aspect_ratio}), {design.tokens} tokens per run "
             f"({design.count(design.tokens) // (design.batch_size * design.seq_len)} steps).",
             "Validation loss, nats/token: the corpus's validation split in the runs'",
             f"{design.vocab_size}-id tokenizer trained on it; Delta against the same size",
             "trained alone on the same pool (the mean of its seeds)."]
    for pool in result.pools:
        lines += ["", *_pool_lines(pool)]
    lines += ["", *_law_lines(result)]
    unfinished = sorted(run_id for run_id, status in result.statuses.items() if status != "completed")
    if unfinished:
        lines += ["", f"{len(unfinished)} runs did not complete (their rows are blank): {', '.join(unfinished)}"]
    return lines


def _weight_decay_lines(pool: PoolResult) -> list[str]:
    choice = pool.weight_decay
    if choice is None:
        return ["  weight decay: the pool's grid did not complete, so no other run of it ran"]
    grid = ", ".join(f"{wd:g} {loss:.4f}" for wd, loss in choice.losses.items())
    lines = [f"  weight decay {choice.best:g}, the best of ({grid})"]
    if not choice.inside:
        lines.append("  warning: the best lies at the grid's end; a value beyond it may be better")
    return lines


def _pool_lines(pool: PoolResult) -> list[str]:
    read = "once" if pool.epochs == 1 else f"{pool.epochs:g} times"
    lines = [f"pool of {format_quantity(pool.unique_tokens)} unique tokens of the teacher split, read {read}:",
             *_weight_decay_lines(pool),
             f"{'':<{LABEL}}{'loss':>10}  Delta vs alone"]
    if pool.alone_mean is None:
        lines.append(f"{'  trained alone':<{LABEL}}{'-':>10}")
    else:
        spread = f" +/- {pool.alone_spread:.4f} (seeds)" if pool.alone_spread is not None else ""
        lines.append(f"{'  trained alone, mean of ' + str(len(pool.alone_seeds)):<{LABEL}}{pool.alone_mean:>10.4f}"
                     f"{spread}")
    for row in (*pool.generations, pool.larger, pool.from_larger, pool.ensemble, pool.ensemble_student):
        lines.append(_row(row))
    return lines


def _row(row: Measured) -> str:
    label = f"  {row.label}"
    if row.loss is None:
        return f"{label:<{LABEL}}{'-':>10}  (did not complete)"
    delta = "" if row.delta is None else f"  {row.delta:+.4f} ({row.delta_percent:+.2f}%)"
    return f"{label:<{LABEL}}{row.loss:>10.4f}{delta}"


MEANINGS = {"kappa": "of its teacher's penalty a student inherits",
            "lambda": "of its size's own penalty alone it pays",
            "eta": "of a member's loss many members remove",
            "gamma": "how fast an ensemble nears that, in k",
            "theta": "of its ensemble's gain its student keeps"}


def _law_lines(result: DataLimitedResult) -> list[str]:
    law = result.law
    lines = ["The shipped data-limited law, fitted on these runs (90% bootstrap",
             "intervals over the pools; F = the same run on the 1-epoch pool):",
             "  L_S = F_S + kappa (L_T - F_T) + lambda (L_alone - F_alone)",
             "  L_k = L_1 (1 - eta (1 - k^-gamma)); its student: one member's",
             "  student less theta (L_1 - L_k)"]
    if law.shares is None:
        return lines + [f"  not fitted: {law.note}"]
    lines.append(f"  {'':<7}{'these runs':<22}{'shipped':<20}")
    for name, c in law.shares.items():
        ours = f"{c.value:.3f}" + (f" [{c.interval[0]:.3f}, {c.interval[1]:.3f}]" if c.interval else "")
        theirs = f"{c.shipped:.3f} [{c.shipped_interval[0]:.3f}, {c.shipped_interval[1]:.3f}]"
        said = "" if c.agrees else " outside" if c.interval is None else " differ"
        lines.append(f"  {name:<7}{ours:<22}{theirs:<20}{said}")
        lines.append(f"         {MEANINGS[name]}")
    for note in [*(law.notes or []), *([law.note] if law.note else [])]:
        lines += textwrap.wrap(f"note: {note}", 78, initial_indent="  ", subsequent_indent="    ")
    if any(not c.agrees for c in law.shares.values()):
        lines.append("  where they differ, your text may not behave like the measured corpora:")
        lines.append(f"  trust these ({CONSTANTS_FILE} in the sweep directory; Python:")
        lines.append("  DataLimitedLaw(laws, load_constants(path))) over the shipped ones")
    return lines
