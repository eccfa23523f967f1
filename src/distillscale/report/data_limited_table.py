"""The table of `demo --data-limited` (80 columns; data_limited.md holds the same lines): per pool,
the runs trained alone and each distilled student against them, then the law's constants."""

from __future__ import annotations

from distillscale.report.data_limited_records import DataLimitedResult, Measured, PoolResult
from distillscale.units import format_quantity

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


def _law_lines(result: DataLimitedResult) -> list[str]:
    law = result.law
    lines = ["Data-limited law fitted on these runs (90% bootstrap interval over",
             f"{law.pairs} student-teacher pairs; F = the same run on the 1-epoch pool):",
             "  L_S - F_S = kappa (L_T - F_T) + lambda (L_alone - F_alone)"]
    if law.kappa is not None:
        lines += [f"  kappa  {law.kappa:.3f} [{law.kappa_interval[0]:.3f}, {law.kappa_interval[1]:.3f}]: the "
                  f"share of its teacher's",
                  "         repetition penalty a student inherits",
                  f"  lambda {law.lam:.3f} [{law.lambda_interval[0]:.3f}, {law.lambda_interval[1]:.3f}]: the share "
                  "of its own size's",
                  "         penalty it keeps",
                  f"  residual RMS {law.residual_rms:.4f} nats/token"]
    else:
        lines.append(f"  not fitted: {law.note}")
    if law.eta is not None:
        lines += [f"  eta    {law.eta:.3f}: the share of the penalty an ensemble removes,",
                  "         L_k = L_1 - eta (1 - 1/k) (L_1 - F_1); one ensemble, so no interval"]
    return lines
