"""report.html: one self-contained page (figures embedded as base64 PNG, styles inline, no
scripts, nothing fetched) showing the numbers of report.json."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from distillscale.io import SIGNATURE
from distillscale.laws.difference import LossDifference
from distillscale.laws.repetition import describe_r_star
from distillscale.report.held_out import verdict_clause
from distillscale.report.runs import short_runs_message
from distillscale.units import format_interval, format_quantity

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; background: #fff; }
h1 { border-bottom: 2px solid #444; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; }
td.text, th.text { text-align: left; }
.warning { background: #fff3cd; border: 1px solid #e0b000; padding: 0.6em 1em; margin: 0.8em 0; }
.skipped { background: #f0f0f0; border-left: 4px solid #888; padding: 0.4em 1em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
.answer { border-left: 5px solid #2b7a4b; background: #f2f8f4; padding: 0.3em 1em; margin: 1em 0; }
.answer td { background: #fff; }
.answer .note, .interval { color: #555; font-size: 0.85em; }
@media (max-width: 600px) {
  body { margin: 0.5em auto; font-size: 15px; }
  th, td { padding: 0.2em 0.35em; }
  table { display: block; max-width: 100%; overflow-x: auto; }  /* wide tables scroll, the page does not */
}
"""


def figure_png(figure) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    from distillscale.planning.plots import pyplot

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(figure)
    return buffer.getvalue()


def render_page(report: dict[str, Any], figures: dict[str, tuple[str, bytes]]) -> str:
    """The page for `report` (report.json's content); `figures` maps an id to (caption, PNG)."""
    parts = ["<h1>Distillation scaling-law calibration</h1>", _answer(report),
             f"<p>Runs from <code>{_e(report['source'])}</code>: {report['runs']['supervised']} supervised "
             f"(teachers and baselines), {report['runs']['students']} distilled students"
             + (f" and {report['runs']['on_policy_students']} on-policy students (outside the distillation "
                f"law's fit: see <a href=\"#on-policy\">On-policy students</a>)"
                if report["runs"].get("on_policy_students") else "")
             + (f" and {report['runs']['started_students']} students with a start (pruned or pretrained, "
                f"outside the law's fit: see <a href=\"#started\">Students that started from somewhere</a>)"
                if report["runs"].get("started_students") else "")
             + f"{_not_usable(report['runs']['not_usable'])}. Losses are validation cross-entropy in "
             f"nats/token; N counts non-embedding parameters, D training tokens.</p>"]
    if report.get("losses"):  # what the losses are: the tokenizer and text, and bits per byte
        parts.append(_losses(report["losses"]))
    repeated = report["runs"].get("repeated_data") or []
    if repeated and report.get("repetition"):
        parts.append(f'<p class="skipped">{len(repeated)} runs repeated their data (up to '
                     f'{repeated[0]["epochs"]:.3g} epochs, in {_e(repeated[0]["run_id"])}), on fixed subsets by '
                     f'design: see <a href="#repeated-data">Repeated data</a>.</p>')
    elif repeated:
        parts.append(f'<p class="skipped">{len(repeated)} runs repeated their data (more than one epoch of '
                     f'their split; up to {repeated[0]["epochs"]:.3g} epochs, in {_e(repeated[0]["run_id"])}): '
                     f'their losses need not follow the laws: use a larger corpus.</p>')
    if report["runs"].get("off_optimum"):
        parts.append(f'<p class="skipped">An lr x batch grid: the laws are fitted on each (size, tokens) cell\'s '
                     f'best grid point; {report["runs"]["off_optimum"]} runs at other rates or batches are left '
                     f'out of the fits (a law fitted on rates off the optimum is biased).</p>')
    if report["runs"].get("short"):
        parts.append(f'<p class="skipped">{_e(short_runs_message(report["runs"]["short"]))}.</p>')
    for step, reason in report["skipped"].items():
        parts.append(f'<p class="skipped">{_e(step)} fit skipped: {_e(reason)}</p>')
    parts.append(_coefficients(report))
    if report.get("bias_correction"):  # laws.crossladder: the one line saying the law is corrected
        parts.append(f"<p>{_e(report['bias_correction'])}</p>")
    parts.append(_extrapolation(report["extrapolation_check"]))
    parts.append(_plan(report["plan"]))
    if report.get("teacher"):  # `demo --teacher`: the user's teacher against the laws
        from distillscale.report.teacher import teacher_html

        parts.append(teacher_html(report["teacher"]))
    parts.append(_capacity_gap(report["capacity_gap"]))
    if report.get("on_policy"):
        parts.append(_on_policy(report["on_policy"]))
    if report.get("started"):
        parts.append(_started(report["started"]))
    if report.get("capacity_gap_pruned"):
        parts.append(_capacity_gap_pruned(report["capacity_gap_pruned"]))
    if report.get("repetition"):
        parts.append(_repetition(report["repetition"]))
    if report.get("downstream"):
        parts.append(_downstream(report["downstream"]))
    for figure_id, (caption, png) in figures.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<figure id="{_e(figure_id)}"><img alt="{_e(caption)}" '
                     f'src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption></figure>')
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"generator\" content=\"{SIGNATURE}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>distillscale report</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def _answer(report: dict[str, Any]) -> str:
    """The page's first screen: the verdict at the target for each scenario with the losses behind
    it, and how far each law held on runs left out of its fit; the details follow below it."""
    plan, parts = report["plan"], ['<div class="answer" id="answer">']
    if "skipped" in plan:
        parts.append(f"<p><strong>No plan:</strong> {_e(plan['skipped'])}</p>")
    else:
        parts.append(f"<p><strong>Distil or pretrain?</strong> A {format_quantity(plan['target_params'])}-parameter "
                     f"student on {plan['target_compute']:.3g} FLOPs; losses in nats/token:</p>")
        rows = "".join(f'<tr><td class="text"><strong>{_e(p["verdict"])}</strong><br>'
                       f'<span class="interval">{_e(name)}</span></td><td>{_stacked(p["student_loss"], p["student_loss_interval"])}</td>'
                       f'<td>{_stacked(p["supervised_loss"], p["supervised_loss_interval"])}</td>'
                       f'<td>{_e(LossDifference.from_dict(p).describe())}</td></tr>'
                       for name, p in plan["plans"].items())
        parts.append('<table id="answer-plan"><tr><th class="text">verdict (scenario)</th><th>distilled student</th>'
                     f"<th>trained alone</th><th>Δ = distilled − alone</th></tr>{rows}</table>")
        parts.append(_failed_checks_note(plan))
        if "chosen_by" in plan.get("target", {}):
            parts.append(f'<p class="note">The target: {_e(plan["target"]["chosen_by"])}.</p>')
    checks = [_check_sentence(name, c) for name, c in report["extrapolation_check"].items() if "skipped" not in c]
    if checks:
        parts.append("<p><strong>How far to trust it:</strong> " + _e("; ".join(checks))
                     + ' (<a href="#extrapolation-check">extrapolation check</a>).</p>')
    return "\n".join(parts + ["</div>"])


def _failed_checks_note(plan: dict[str, Any]) -> str:
    """Below a table of verdicts: which law behind them failed its held-out check, as the text's
    verdict lines say it ('' when none did)."""
    clause = verdict_clause(plan.get("failed_checks", {}))
    return f'<p class="note">Every verdict above: {_e(clause.removeprefix("; "))}.</p>' if clause else ""


def _stacked(value: float, record: dict) -> str:
    """A loss over its interval, the interval on a second, smaller line."""
    interval = record.get("interval")
    return f"{value:.4f}" + ('<br><span class="interval">{:.4f}–{:.4f}</span>'.format(*interval) if interval else "")


def _check_sentence(name: str, check: dict[str, Any]) -> str:
    """'the supervised law, fitted up to 187K parameters, predicts the 6 runs of the 443K size within ...'."""
    held_out, n = format_quantity(check["held_out_params"]), check["n_held_out"]
    runs = (f"{n} student{'s' * (n != 1)} of the {held_out} teacher" if check["held_out_by"] == "teacher_params"
            else f"{n} run{'s' * (n != 1)} of the {held_out} size")
    coverage = (f", {check['coverage']:.0%} inside their {check['level']:.0%} intervals"
                if check["coverage"] is not None else "")
    if check.get("in_sample"):  # a design's own correction learned on these very runs' corpus
        coverage += " (in sample: its correction was learned on this corpus)"
    return (f"the {name} law, fitted up to {format_quantity(check['fitted_up_to_params'])} parameters, predicts the "
            f"{runs} within {check['mean_abs_relative_error']:.2%} on average (max "
            f"{check['max_abs_relative_error']:.2%}){coverage}")


def _losses(losses: dict[str, Any]) -> str:
    bits = losses.get("bits_per_byte") or {}
    shown = "; ".join(f"{_e(name)} student {value:.4f}" for name, value in bits.items() if value is not None)
    return (f'<p id="loss-units">The losses are {_e(losses["described"])}'
            + (f", {losses['bytes_per_token']:.3f} bytes per token: in bits per byte (nats/token x tokens/bytes / "
               f"ln 2), the target plan's {shown}" if shown else "") + ".</p>")


def _downstream(scores: list[dict[str, Any]]) -> str:
    """Each scored run's validation loss and its value on each task's metric (report.json's
    `downstream`), one row per run, lowest loss first; a run not scored on a metric shows a dash."""
    columns = [(score["task"], score["metric"]) for score in scores]
    rows: dict[str, dict[str, Any]] = {}
    for score in scores:
        for run in score["runs"]:
            row = rows.setdefault(run["run_id"], {"kind": run["kind"], "val_loss": run["val_loss"]})
            row[score["task"], score["metric"]] = run["value"]
    header = "".join(f"<th>{_e(task)} ({_e(metric)})</th>" for task, metric in columns)
    body = "".join(
        f"<tr><td>{_e(run_id)}</td><td>{_e(row['kind'])}</td><td>{row['val_loss']:.4f}</td>"
        + "".join(f"<td>{row[column]:.4g}</td>" if column in row else "<td>-</td>" for column in columns)
        + "</tr>" for run_id, row in sorted(rows.items(), key=lambda item: item[1]["val_loss"]))
    return (f'<h2 id="benchmark-scores">Benchmark scores</h2><p>Each run\'s lm-eval-harness scores (its '
            f'eval.json) beside its validation loss (nats/token).</p><table><tr><th>run</th><th>kind</th>'
            f'<th>val loss</th>{header}</tr>{body}</table>')


def _e(value: Any) -> str:
    return html.escape(str(value))


def _not_usable(counts: dict[str, int]) -> str:
    if not counts:
        return ""
    return "; not used: " + ", ".join(f"{n} {status}" for status, n in counts.items())


def _table(headers: list[str], rows: list[list[Any]], table_id: str = "") -> str:
    head = "".join(f'<th class="text">{_e(h)}</th>' if i == 0 else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="text">{_e(c)}</td>' if i == 0 else f"<td>{_e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    identifier = f' id="{table_id}"' if table_id else ""
    return f"<table{identifier}><tr>{head}</tr>{body}</table>"


def _coefficients(report: dict[str, Any]) -> str:
    parts = ["<h2>Fitted coefficients</h2>"]
    for name, title in (("supervised", "Supervised law L(N, D) = E + (A/N^alpha + B/D^beta)^gamma"),
                        ("distillation", "Distillation law L_S(N_S, D_S, L_T) (Busbridge et al. 2025, Eq. 8)")):
        fit = report[name]
        if fit is None:
            continue
        level = f"{fit['level']:.0%} interval" if fit["level"] else "interval"
        rows = []
        for coefficient, value in fit["coefficients"].items():
            low_high = fit["intervals"].get(coefficient)
            shown = ("not identified: " + fit["not_identified"][coefficient]
                     if coefficient in fit["not_identified"] else
                     " to ".join(format_interval(*low_high, digits=4)) if low_high else "held fixed by the form")
            rows.append([coefficient, f"{value:.4g}", shown])
        diagnostics, convergence = fit["record"]["diagnostics"], fit["record"]["convergence"]
        parts.append(f"<h3>{_e(title)}</h3>")
        parts.append(f"<p>Form: <b>{_e(fit['form'])}</b> ({_e(fit['reason'])}).</p>")
        if name == "distillation":  # cross-tokenizer runs are a mode the law was not fitted on
            parts.append("<p>Fitted on students that share their teacher's vocabulary; for a student "
                         "distilled across tokenizers (result.json: distillation.mode = cross-tokenizer) "
                         "its predictions are an extrapolation.</p>")
        parts.append(_table(["coefficient", "value", level], rows, table_id=f"coefficients-{name}"))
        parts.append(f"<p>{fit['record']['n_runs']} runs; RMSE of log loss {diagnostics['rmse_log_loss']:.3g}, "
                     f"max relative error {diagnostics['max_relative_error']:.2%}; {_e(fit['record']['solver'])}, "
                     f"best of {convergence['n_starts']} starts: {_e(convergence['message'])} after "
                     f"{convergence['nit']} iterations; bootstrap: "
                     f"{fit['bootstrap_resamples']} resamples"
                     + (f"; on a bound: {', '.join(diagnostics['on_bound'])}" if diagnostics["on_bound"] else "")
                     + "</p>")
        parts.append(_candidates(name, fit))
    return "\n".join(parts)


def _candidates(name: str, fit: dict[str, Any]) -> str:
    """The candidate forms and their backtest errors by distance band."""
    candidates = [c for c in fit["candidates"] if c["bands"]]
    if not candidates:
        return f'<p class="skipped">No extrapolation backtest: {_e(fit["reason"])}</p>'
    labels = [b["label"] for b in max((c["bands"] for c in candidates), key=len)]
    rows = []
    for candidate in fit["candidates"]:
        bands = {b["label"]: b for b in candidate["bands"]}
        rows.append([candidate["name"] + (" (chosen)" if candidate["name"] == fit["form"] else ""),
                     candidate["n_parameters"],
                     f"{candidate['score']:.2%}" if candidate["score"] is not None else candidate["note"],
                     *(f"{bands[l]['mean_abs_error']:.2%} ({bands[l]['worst_error']:+.1%})" if l in bands else ""
                       for l in labels)])
    extrapolation = fit["record"].get("extrapolation_error")
    note = ""
    if extrapolation:
        note = (f"<p>Intervals add the chosen form's extrapolation error: ±{extrapolation['q']:.2%} × "
                f"(1 + t / S) at {extrapolation['level']:.0%} (t doublings beyond the largest fitted "
                f"scale, S doublings fitted), from {extrapolation['n_points']} backtest predictions"
                + (", or more in a distance band whose own backtest errors are larger (by band: "
                   + ", ".join(f"±{q:.2%}" for q in extrapolation["band_q"]) + " × (1 + t / S) up to 2x, 4x, 8x, beyond)"
                   if any(q > extrapolation["q"] for q in extrapolation.get("band_q", ())) else "")
                + (f"; each run's seed noise, ±{extrapolation['seed_noise']:.2%} (1 sd), measured on "
                   f"{extrapolation['seed_settings']} settings run with several seeds, is added in quadrature"
                   if extrapolation.get("seed_noise") else "") + ".</p>")
    return ("<p>Candidate forms, each fitted on the smaller runs and scored on the larger (mean |relative "
            "error| (worst) by distance beyond the fitted runs; score: the bands' mean within 8x):</p>"
            + _table(["candidate", "coefficients", "score", *labels], rows, table_id=f"candidates-{name}") + note)


def _extrapolation(checks: dict[str, Any]) -> str:
    parts = ['<h2 id="extrapolation-check">Extrapolation check</h2>',
             "<p>Each law refitted (form selection and backtest included) without the runs of its largest "
             "model, then asked to predict them with its intervals: the supervised law without its largest "
             "size, the distillation law without the students of the strongest teacher.</p>"]
    rows = []
    for name, check in checks.items():
        if "skipped" in check:
            parts.append(f'<p class="skipped">{_e(name)}: skipped, {_e(check["skipped"])}</p>')
            continue
        held_out = "teacher N" if check["held_out_by"] == "teacher_params" else "N"
        coverage = (f"{check['coverage']:.0%} at {check['level']:.0%}" if check["coverage"] is not None
                    else "no interval")
        rows.append([name, held_out, check["form"], format_quantity(check["fitted_up_to_params"]),
                     format_quantity(check["held_out_params"]),
                     check["n_held_out"], f"{check['mean_abs_relative_error']:.2%}",
                     f"{check['max_abs_relative_error']:.2%}",
                     "-" if check.get("n_over_predicted") is None else str(check["n_over_predicted"]), coverage])
        if check.get("bias"):
            parts.append(f'<p class="warning">{_e(name)}: {_e(check["bias"])}</p>')
        if check.get("in_sample"):  # a design's family term learned on this very check
            parts.append(f'<p class="warning">{_e(name)}: {_e(check["in_sample"])}</p>')
        if check.get("bias_corrected"):  # laws.crossladder: the raw law's errors beside the corrected
            raw = check["raw"]
            parts.append(f"<p>{_e(name)}, bias-corrected: signed mean {check['mean_relative_error']:+.2%}; the raw "
                         f"law: mean |error| {raw['mean_abs_relative_error']:.2%}, signed "
                         f"{raw['mean_relative_error']:+.2%}, {raw['n_over_predicted']} of {check['n_held_out']} "
                         "over-predicted</p>")
    if rows:
        parts.append(_table(["law", "held out by", "form", "fitted up to", "held out", "held-out runs",
                             "mean |error|", "max |error|", "over-predicted", "interval coverage"], rows,
                            table_id="extrapolation"))
    return "\n".join(parts)


def _plan(plan: dict[str, Any]) -> str:
    parts = ["<h2>Plan at the target scale (fitted laws)</h2>"]
    if "skipped" in plan:
        return "\n".join(parts + [f'<p class="skipped">{_e(plan["skipped"])}</p>'])
    extrapolation = plan["extrapolation"]
    tokens_ratio = (f" and {extrapolation['tokens_ratio']:.3g}x the most tokens"
                    if extrapolation["tokens_ratio"] else "")
    if extrapolation["params_ratio"] > 1 or extrapolation["warnings"]:
        parts.append(f'<div class="warning"><strong>Extrapolation:</strong> the target student has '
                     f"{extrapolation['params_ratio']:.3g}x the parameters of the largest fitted run "
                     f"({format_quantity(extrapolation['largest_fitted_params'])}){_e(tokens_ratio)}. "
                     "Laws fitted on small runs are least reliable far beyond them; compare with the "
                     "extrapolation check above."
                     + "".join(f"<br>{_e(w)}" for w in extrapolation["warnings"]) + "</div>")
    target = plan.get("target", {})
    chosen = (f" The target: {target['chosen_by']} ({target['backtest_reach']:.3g}x the largest fitted size)."
              if "backtest_reach" in target else "")
    parts.append(f"<p>Student {format_quantity(plan['target_params'])} parameters, budget "
                 f"{plan['target_compute']:.3g} FLOPs.{_e(chosen)} Losses with their intervals (bootstrap, "
                 "E's profile when the runs do not pin E down, and the extrapolation error); each verdict reads "
                 "the interval of the difference Δ = distilled − alone, calibrated on students trained both "
                 "ways: distil below 0, pretrain above, too close to call across it.</p>")

    def loss(value: float, record: dict) -> str:
        interval = record.get("interval")
        return f"{value:.4f}" + (" [{:.4f}–{:.4f}]".format(*interval) if interval else "")

    rows = [[name, format_quantity(p["student_tokens"]),
             format_quantity(p["teacher_params"]) if p["teacher_params"] else "-",
             format_quantity(p["teacher_tokens"]) if p["teacher_tokens"] else "-",
             loss(p["teacher_loss"], p.get("teacher_loss_interval") or {}),
             loss(p["student_loss"], p["student_loss_interval"]),
             loss(p["supervised_loss"], p["supervised_loss_interval"]),
             p["verdict"]] for name, p in plan["plans"].items()]
    parts.append(_table(["scenario", "D_S", "N_T", "D_T", "L_T", "L_S", "supervised", "verdict"], rows,
                        table_id="plan"))
    parts.append(_failed_checks_note(plan))
    for name, reason in plan["failed"].items():
        parts.append(f'<p class="skipped">{_e(name)}: {_e(reason)}</p>')
    return "\n".join(parts)


def _capacity_gap(gap: dict[str, Any]) -> str:
    parts = ["<h2>Best teacher per student (capacity gap)</h2>"]
    rows = [[f"{format_quantity(b['student_params'])} on {format_quantity(b['student_tokens'])}",
             b["teachers_tried"], format_quantity(b["best_teacher_params"]), f"{b['best_teacher_loss']:.4f}",
             f"{b['student_loss']:.4f}", "yes" if b["best_is_largest_teacher"] else "no"]
            for b in gap["best_teachers"]]
    if rows:
        parts.append(_table(["student", "teachers", "best teacher N_T", "its L_T", "student L_S",
                             "largest teacher?"], rows, table_id="best-teachers"))
    for ratio, law in gap["linear_law_by_tokens_per_param"].items():
        interval = ("no interval: every size's best teacher is the same multiple of it, so the ratios do not "
                    "scatter (not identified)" if law["ratio_interval"] is None else
                    "{:.0%} interval {:.3g} to {:.3g}".format(law["confidence"], *law["ratio_interval"]))
        parts.append(f"<p>Students at {_e(ratio)} tokens/parameter: N_T* = k N_S with k = {law['ratio']:.3g} "
                     f"({interval}).</p>")
    if gap["note"]:
        parts.append(f'<p class="skipped">{_e(gap["note"])}</p>')
    return "\n".join(parts)


def _started(started: dict[str, Any]) -> str:
    """Students with a start beside from-scratch ones of the same size and teacher (outside the law's fit)."""
    def loss(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    rows = [[r["run_id"], r["student_init"], format_quantity(r["student_params"]), format_quantity(r["student_tokens"]),
             loss(r["measured_loss"]), loss(r["scratch_loss_same_tokens"]),
             "-" if r["token_multiplier"] is None else f"{r['token_multiplier']:.3g}x", r["token_multiplier_note"]]
            for r in started["runs"]]
    return "\n".join(['<h2 id="started">Students that started from somewhere (outside the law\'s fit)</h2>',
                      f"<p>{_e(started['note'])}</p>",
                      _table(["run", "start", "N", "D (tokens)", "measured L_S", "from scratch, same D",
                              "token multiplier", "how"], rows, table_id="started-students"),
                      "<p>Losses in nats/token.</p>"])


def _capacity_gap_pruned(gap: dict[str, Any]) -> str:
    """MiniMA's capacity-gap experiment: the optimal teacher per student size and start, and k."""
    rows = []
    for group in gap["groups"]:
        for o in group["optima"]:
            low, high = o["interval"]
            rows.append([group["init"], f"{group['tokens_per_param']:g}", format_quantity(o["student_params"]),
                         o["teachers"], format_quantity(o["best_observed_params"]), f"{o['best_observed_loss']:.4f}",
                         format_quantity(o["teacher_params"]) + (" (edge: a bound)" if o["method"] == "edge" else ""),
                         f"{format_quantity(low)} to {format_quantity(high)}", f"{o['ratio']:.3g}"])
    parts = ['<h2 id="capacity-gap-pruned">Capacity gap of pruned and from-scratch students (MiniMA\'s way)</h2>',
             f"<p>{_e(gap['note'])}</p>",
             _table(["start", "D/N", "student N_S", "teachers", "best teacher tried", "its L_S", "N_T*",
                     "interval", "N_T* / N_S"], rows, table_id="capacity-gap-pruned-optima")]
    parts += [f"<p><strong>{_e(verdict)}.</strong></p>" for verdict in gap["verdicts"]]
    parts += [f'<p class="skipped">{_e(g["init"])} students at {g["tokens_per_param"]:g} tokens/parameter: '
              f'{_e(g["skipped"])}</p>' for g in gap["groups"] if g["skipped"]]
    return "\n".join(parts)


def _on_policy(on_policy: dict[str, Any]) -> str:
    """On-policy students beside the off-policy distillation law's prediction (outside its fit)."""
    parts = ['<h2 id="on-policy">On-policy students (outside the distillation law\'s fit)</h2>',
             f"<p>{_e(on_policy['note'])}</p>"]
    if on_policy["skipped"]:
        parts.append(f'<p class="skipped">{_e(on_policy["skipped"])}</p>')

    def loss(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    rows = [[r["run_id"], format_quantity(r["student_params"]), format_quantity(r["student_tokens"]),
             f"{r['on_policy_fraction']:.3g}", loss(r["measured_loss"]), loss(r["off_policy_prediction"]),
             "-" if r["low"] is None else f"{r['low']:.4f} to {r['high']:.4f}",
             "-" if r["difference"] is None else f"{r['difference']:+.4f}"] for r in on_policy["runs"]]
    parts.append(_table(["run", "N", "D (tokens)", "fraction", "measured L_S", "off-policy law's L_S",
                         "its interval", "measured - law"], rows, table_id="on-policy-students"))
    parts.append("<p>Losses in nats/token.</p>")
    return "\n".join(parts)


def _repetition(curves: list[dict[str, Any]]) -> str:
    """Per group and size: R_D* with its interval, the loss at one epoch and at the most, the penalty,
    and the backtest's error on the runs beyond its fitted epochs."""
    parts = ['<h2 id="repeated-data">Repeated data</h2>',
             "<p>Runs of one token budget D per size, drawn from U = D / epochs unique tokens (a fixed "
             "subset), fitted by the data-constrained law (Muennighoff et al. 2023): effective data "
             "D' = U + U R_D* (1 - exp(-(D/U - 1) / R_D*)); a larger R_D* means repeated tokens keep "
             "more of their value. Each group's law and R_D* are fitted on its runs alone; per size, R_D* "
             "with that law held. Backtest: law and R_D* refitted on the runs of at most "
             f"{curves[0]['backtest']['fitted_up_to_epochs']:g} epochs, predicting those beyond.</p>"]
    rows = []
    for curve in curves:
        level = f"{curve['level']:.0%}"
        backtest = {(run["params"], run["epochs"]): run for run in curve["backtest"]["runs"]}
        for size in [None, *curve["sizes"]]:
            star, interval = (curve["R_D_star"], curve["R_D_star_interval"]) if size is None else \
                (size["R_D_star"], size["R_D_star_interval"])
            shown = describe_r_star(star, interval)
            if size is None:
                error = curve["backtest"]["mean_abs_error"]
                spread = curve.get("seed_spread")
                rows.append([curve["name"], "all", shown, "", "", "", "",
                             "" if spread is None else f"seed spread {spread:.2%}",
                             "" if error is None else f"{error:.2%} mean"])
                continue
            run = backtest.get((size["params"], size["max_epochs"]))
            one = size["loss_one_epoch"]
            rows.append([curve["name"], format_quantity(size["params"]), shown,
                         "" if one is None else f"{one:.4f}", f"{size['max_epochs']:.3g}",
                         f"{size['loss_max_epochs']:.4f}",
                         "" if size["penalty_measured"] is None else f"{size['penalty_measured']:+.2%}",
                         f"{size['penalty_fitted']:+.2%}", "" if run is None else f"{run['error']:+.2%}"])
    parts.append(_table(["group", "N", f"R_D* ({level} interval)", "loss, 1 epoch", "most epochs",
                         "loss there", "penalty", "penalty (fit)", "backtest error there"], rows,
                        table_id="repetition"))
    return "\n".join(parts)
