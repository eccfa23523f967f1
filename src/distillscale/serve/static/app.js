// The planner page: read the controls, ask the server for the plan (/api/plan) and for loss against
// compute (/api/curve), and draw what comes back. The server does every computation.
"use strict";

const $ = id => document.getElementById(id);
const CONTROLS = ["law", "compute", "student", "scenario", "student-init", "teacher-params", "teacher-tokens",
                  "teacher-loss", "teacher-model", "hyperparameter-law", "batch-tokens", "gpu", "gpus", "price",
                  "students", "targets", "unique-tokens", "generations"];
const COLORS = { distilled: "#2f6fd6", supervised: "#1d2330", optimum: "#c0392b", gap: "#8a94a6",
                 plan: "#e08a00", student: "#2f6fd6", logits: "#7b5cd6", pretraining: "#d65c8a" };
// What the browser measured, read by the tests and the latency bench.
window.planner = { updates: 0, shown: null, lastUpdateMs: null, serverMs: null, curveMs: null };
let sequence = 0, timer = null;

// 5.46e8 -> "546M", as distillscale.units.format_quantity does.
function quantity(v) {
  if (v === null || v === undefined) return "–";
  const r = Number(v.toPrecision(3));
  for (const [s, k] of [["P", 1e15], ["T", 1e12], ["B", 1e9], ["M", 1e6], ["K", 1e3]])
    if (Math.abs(r) >= k) return `${Number((r / k).toPrecision(3))}${s}`;
  return `${r}`;
}
const flops = v => (v === 0 ? "0" : v.toExponential(2).replace("e+", "e"));
const tick = v => Number(v.toPrecision(2)).toExponential().replace("e+", "e");
const budgetText = v => Number(v.toPrecision(3)).toExponential().replace(/e\+?/, "e");
const loss = v => v.toFixed(4);

function query() {
  return {
    law: $("law").value, compute: $("compute").value, scenario: $("scenario").value,
    student: $("student-mode").value === "best" ? "best" : $("student").value,
    teacher: $("teacher").value, teacher_params: $("teacher-params").value,
    teacher_tokens: $("teacher-tokens").value, teacher_loss: $("teacher-loss").value,
    teacher_model: $("teacher-model").value,
    student_init: $("student-init").value,
    hyperparameter_law: $("hyperparameter-law").value, batch_tokens: $("batch-tokens").value,
    gpu: $("gpu").value, gpus: $("gpus").value, price_per_gpu_hour: $("price").value,
    students: $("students").value, targets: $("targets").value,
    unique_tokens: $("unique-tokens").value, generations: $("generations").value,
  };
}

async function post(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                       body: JSON.stringify(body) });
  return response.json();
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(update, 80);
}

async function update() {
  const id = ++sequence, start = performance.now(), q = query();
  document.body.dataset.state = "busy";
  let result;
  try {
    result = await post("/api/plan", q);
  } catch (error) {
    if (id === sequence) showErrors({ plan: `the planner server did not answer (${error.message}); is it still running?` });
    return;
  }
  if (id !== sequence) return;  // a newer update is under way
  showErrors(result.errors || {});
  if (!result.ok) {
    document.body.dataset.state = "error";
    $("status").textContent = "fix the highlighted control";
    return;
  }
  render(result);
  window.planner.lastUpdateMs = performance.now() - start;
  window.planner.serverMs = result.elapsed_ms;
  const curveStart = performance.now();
  const curve = await post("/api/curve", Object.assign({ student_params: result.summary.student_params }, q));
  if (id !== sequence) return;
  drawComputeCurve(curve, result.summary);
  window.planner.curveMs = performance.now() - curveStart;
  window.planner.updates += 1;
  window.planner.shown = q;  // the controls behind what the page shows
  document.body.dataset.state = "ready";
  $("status").textContent = `plan updated in ${window.planner.lastUpdateMs.toFixed(0)} ms ` +
    `(server ${result.elapsed_ms.toFixed(0)} ms); compute figure ${window.planner.curveMs.toFixed(0)} ms`;
}

function showErrors(errors) {
  for (const name of CONTROLS) {
    $(`${name}-error`).textContent = errors[name] || "";
    $(name).classList.toggle("invalid", Boolean(errors[name]));
  }
  $("plan-error").textContent = errors.plan || "";
}

// A family of students (`plan --students`): a row per student, the family's compute and its cache.
function familyCard(f) {
  const signed = x => `${x >= 0 ? "+" : ""}${loss(x)}`;
  const rows = f.rows.map(r => `<tr><td>${r.name.replace("student ", "")}</td><td>${(100 * r.share).toFixed(0)}%</td>` +
    `<td>${quantity(r.student_tokens)}</td><td>${loss(r.student_loss)}</td><td>${loss(r.supervised_loss)}</td>` +
    `<td>${signed(r.distilled_minus_alone)}${r.distilled_minus_alone_interval ? ` [${signed(r.distilled_minus_alone_interval[0])}, ` +
    `${signed(r.distilled_minus_alone_interval[1])}]` : ""}</td><td>${r.verdict}</td></tr>`).join("");
  const t = f.totals;
  const detail = `students ${flops(t.students)}, teacher forward ${flops(t.teacher_forward)}` +
    (t.teacher_training ? `, teacher training ${flops(t.teacher_training)}` : "") + " FLOPs" +
    (f.cache ? `; ${f.cache.describe}` : "");
  return `<div class="card wide" id="family"><div class="label">family, ${f.targets} targets: ${f.answer}</div>` +
    `<table><tr><th>student</th><th>share</th><th>D_S</th><th>L_S</th><th>alone</th><th>Δ</th><th>verdict</th></tr>` +
    `${rows}</table><div class="detail">${f.assumes}; ${detail}</div></div>`;
}

function card(label, value, detail, extraClass) {
  return `<div class="card ${extraClass || ""}"><div class="label">${label}</div>` +
         `<div class="value">${value}</div><div class="detail">${detail || ""}</div></div>`;
}

const interval = pair => (pair ? `${loss(pair[0])}–${loss(pair[1])}` : "no interval");

function render(result) {
  const s = result.summary;
  const verdictClass = `verdict-${s.verdict.replaceAll(" ", "-")}`;
  const cards = [];
  if (s.kind === "supervised") {
    cards.push(card("plan", "train without a teacher", "this law has no distillation law"));
    cards.push(card("model N, tokens D", `${quantity(s.student_params)} · ${quantity(s.student_tokens)}`,
                    `${(s.student_tokens / s.student_params).toPrecision(3)} tokens per parameter`));
    cards.push(card("loss, nats/token", loss(s.student_loss), interval(s.student_interval)));
  } else {
    const signed = x => `${x >= 0 ? "+" : ""}${loss(x)}`;
    const band = s.distilled_minus_alone_interval
      ? ` [${signed(s.distilled_minus_alone_interval[0])}, ${signed(s.distilled_minus_alone_interval[1])}]` : "";
    const margin = `Δ = distilled − alone ${signed(s.distilled_minus_alone)} nats/token ` +
                   `(${(100 * s.distilled_minus_alone_relative).toFixed(1)}%)${band}`;
    // a family's answer is its own; the figures beside it are its first student's, labelled so
    const first = s.family ? ` (${s.family.first_student}, the first)` : "";
    if (s.family) cards.push(card("family's answer", s.verdict, s.family.answer, verdictClass));
    else cards.push(card("verdict", s.verdict, margin, verdictClass));
    cards.push(card(`student loss L_S${first}, nats/token`, loss(s.student_loss), interval(s.student_interval)));
    cards.push(card(s.kind === "sweep" ? "best supervised loss, nats/token" : `supervised loss${first}, nats/token`, loss(s.supervised_loss),
                    interval(s.supervised_interval)));
    cards.push(card(s.kind === "sweep" ? "best student N_S, D_S" : `student N_S, D_S${first}`,
                    `${quantity(s.student_params)} · ${quantity(s.student_tokens)}`,
                    `${(s.student_tokens / s.student_params).toPrecision(3)} tokens per parameter`));
    cards.push(card("teacher N_T, D_T", `${quantity(s.teacher_params)} · ${quantity(s.teacher_tokens)}`,
                    `teacher loss L_T ${loss(s.teacher_loss)}`));
  }
  if (s.family) cards.push(familyCard(s.family));
  if (s.downstream) cards.push(downstreamCard(s.downstream));
  if (s.gpu_hours) cards.push(gpuCard(s.gpu_hours));
  $("cards").innerHTML = cards.join("");
  $("run-sheet").innerHTML = runSheet(result.plan.run_sheet || []);
  $("teachers").innerHTML = teacherList(result.teachers);
  $("warnings").replaceChildren(...result.warnings.map(text => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
  $("bias-note").textContent = result.bias_correction || "";  // the law's cross-ladder bias correction
  drawUCurve(result.u_curve);
  drawDataLimited(result.data_limited);
  const f = s.flops, total = f.student + f.teacher_inference + f.teacher_pretraining;
  stackedBar($("flop-split"), [
    { label: "student training", value: f.student, color: COLORS.student },
    { label: "teacher logits", value: f.teacher_inference, color: COLORS.logits },
    { label: "teacher pre-training", value: f.teacher_pretraining, color: COLORS.pretraining },
  ], total, flops);
  $("plan-text").textContent = result.text;
  $("cli").textContent = result.cli;
  $("plan-json").textContent = JSON.stringify(result.plan);
}

// The plan's run sheet (`planning.run_sheet`): a row per distinct run, the rows `plan --json` carries
// as "run_sheet" and the text prints, so the three agree row by row.
const ROLES = { student: "student", teacher: "teacher", alone: "no teacher" };
function runSheet(rows) {
  if (!rows.length) return "";
  const lr = v => Number(v.toPrecision(3)).toString();
  const gpu = rows.some(r => r.gpu_hours !== null);
  const head = ["run", "for", "N", "D", "peak lr (90%)", "batch", "steps", "warmup", "--lr"].concat(gpu ? ["GPU-h"] : []);
  const cell = text => `<td>${text}</td>`;
  const flagged = rows.some(r => r.problems.length);
  const body = rows.map(r => `<tr${r.problems.length ? ` title="no run to train: ${r.problems.join("; ")}"` : ""}>` + [
    ROLES[r.role] + (r.beyond_law_data ? "*" : "") + (r.problems.length ? "!" : ""), r.uses.join(", "),
    quantity(r.params), quantity(r.tokens),
    `${lr(r.lr)} (${lr(r.lr_interval[0])}–${lr(r.lr_interval[1])})`,
    `${quantity(r.batch_tokens)} (${r.batch_sequences.toLocaleString("en")} seq)`,
    r.steps.toLocaleString("en"), r.warmup_steps.toLocaleString("en"), Number(r.train_lr.toPrecision(4)).toString(),
  ].concat(gpu ? [r.gpu_hours === null ? "" : Number(r.gpu_hours.toPrecision(3)).toString()] : []).map(cell).join("") + "</tr>");
  return `<caption>Run sheet: how to run each run (*: N or D outside the hyperparameter law's data` +
         `${flagged ? "; !: no run to train, the plan's text says why" : ""})</caption>` +
         `<thead><tr>${head.map(h => `<th>${h}</th>`).join("")}</tr></thead><tbody>${body.join("")}</tbody>`;
}

// The teachers `serve --teacher-model` offers, ranked for the plan's student at its budget as
// `distillscale teacher --compute` ranks them (`planning.teacher`): the best marked *, those too close
// to call with it ≈, those that cannot be told from it at this distance ?; or why they cannot be ranked.
const escaped = text => String(text).replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
function teacherList(t) {
  if (!t) return "";
  if (t.error) return `<caption>Your teachers: ${escaped(t.error)}</caption>`;
  const close = new Set(t.too_close_to_call), unknown = new Set(t.cannot_tell_from_best || []);
  const head = ["teacher", "N_T", "L_T", "student tokens", "L_T / Ltilde_S", "student L_S", "interval"];
  const body = t.candidates.map(c => "<tr>" + [
    (c.name === t.best ? "*" : close.has(c.name) ? "≈" : unknown.has(c.name) ? "?" : "") + escaped(c.name),
    c.teacher_params ? quantity(c.teacher_params) : "-", loss(c.teacher_loss), quantity(c.student_tokens),
    c.gap_ratio.toFixed(3) + (c.past_capacity_gap ? " past" : ""), loss(c.student_loss),
    c.interval ? `${loss(c.interval[0])}–${loss(c.interval[1])}` : "",
  ].map(text => `<td>${text}</td>`).join("") + "</tr>");
  return `<caption>Your teachers for a ${quantity(t.student_params)}-parameter student at C = ${t.compute.toPrecision(3)} ` +
         `FLOPs, each teacher's logits paid (losses in nats/token; * the best; ≈ too close to call with it; ` +
         `? cannot be told from it at this distance; ` +
         `past: stronger than L_T*, past the capacity gap; ` +
         `without a teacher ${loss(t.supervised_loss)} on the whole budget)</caption>` +
         `<thead><tr>${head.map(h => `<th>${h}</th>`).join("")}</tr></thead><tbody>${body.join("")}</tbody>`;
}

// The student's predicted downstream error under `serve --downstream-law` (`planning.downstream`).
function downstreamCard(d) {
  const range = d.interval ? `${(100 * d.level).toFixed(0)}%: ${d.interval[0].toFixed(3)} to ${d.interval[1].toFixed(3)}`
    : "no interval";
  return card(`downstream error (${d.task_set || "task set"})`, d.error.toFixed(3),
              `${range}${d.loss_interval ? ", the loss's interval carried through" : ""}` +
              (d.beyond_law_data ? "; the loss is outside the law's data" : ""));
}

// The plan's runs on a GPU (`plan --gpu`, `planning.gpu_hours`): an estimate from measured throughput.
function gpuCard(g) {
  const hours = h => (h < 1 ? `${(h * 60).toPrecision(3)} min` : h < 48 ? `${h.toPrecision(3)} h`
                      : `${(h / 24).toPrecision(3)} days`);
  const cost = g.cost === null ? "" : ` · cost ${g.cost.toLocaleString("en", { maximumFractionDigits: 0 })}`;
  const gpuHours = g.gpu_hours >= 100 ? g.gpu_hours.toLocaleString("en", { maximumFractionDigits: 0 })
                                       : Number(g.gpu_hours.toPrecision(3)).toString();
  return card(`GPU time on ${g.gpus} × ${g.device} (estimate)`, `${hours(g.wall_hours)} wall-clock`,
              `${gpuHours} GPU-hours${cost}; every run in the plan text below`);
}

function drawUCurve(u) {
  const svg = $("u-curve");
  if (!u) {
    lineChart(svg, { series: [], x: {}, y: {}, empty: "the U-curve needs a distillation law" });
    return;
  }
  // Show the teachers from half the optimal teacher loss (or the strongest reachable) up to well past
  // the supervised student's loss, where the curve has become L_S ~ L_T.
  const xMin = Math.max(Math.min(...u.teacher_loss), u.optimal_teacher_loss / 2);
  const xMax = Math.min(Math.max(...u.teacher_loss), u.supervised_loss * 1.5);
  const inView = u.student_loss.filter((_, i) => u.teacher_loss[i] >= xMin && u.teacher_loss[i] <= xMax);
  const yMin = Math.min(...inView), yMax = Math.min(Math.max(...inView), u.supervised_loss + 2.5 * (u.supervised_loss - yMin) + 0.02);
  lineChart(svg, {
    x: { log: true, label: "teacher loss L_T (nats/token)", format: v => v.toFixed(2), domain: [xMin, xMax] },
    y: { label: "student loss L_S (nats/token)", format: v => v.toFixed(2), domain: [yMin, yMax] },
    series: [{ x: u.teacher_loss, y: u.student_loss, color: COLORS.distilled, label: "distilled student",
               band: u.low ? { low: u.low, high: u.high } : null }],
    hlines: [{ y: u.supervised_loss, color: COLORS.supervised, dash: "5 4", label: "student alone, same tokens" }],
    vlines: [{ x: u.optimal_teacher_loss, color: COLORS.optimum, dash: "2 3", label: `optimal teacher L_T* ${loss(u.optimal_teacher_loss)}` },
             { x: u.capacity_gap_teacher_loss, color: COLORS.gap, dash: "6 3",
               label: `capacity-gap switch ${loss(u.capacity_gap_teacher_loss)}` }],
    points: [{ x: u.plan.teacher_loss, y: u.plan.student_loss, color: COLORS.plan, label: "this plan's teacher" }],
  });
}

// A plan on a pool (`plan --unique-tokens`, `planning.data_limited`): its options at equal compute, each
// with its Δ against training alone and the verdict read off its interval; the best by that rule; and the
// chain by generation and the ensemble's student by k with their intervals, as `plan --plot` draws them.
const VERDICT_WORDS = { distill: "beats alone", pretrain: "worse than alone" };
function drawDataLimited(d) {
  $("data-limited-figure").hidden = !d;
  if (!d) { $("data-limited-options").innerHTML = ""; return; }
  const signed = x => `${x >= 0 ? "+" : ""}${loss(x)}`;
  const body = d.options.map(o => "<tr>" + [
    escaped(o.label), `${o.trainings} × ${quantity(o.tokens_per_run)}`, loss(o.loss),
    o.interval ? `${loss(o.interval[0])}–${loss(o.interval[1])}` : "",
    o.distilled_minus_alone === undefined ? "" : signed(o.distilled_minus_alone) +
      (o.distilled_minus_alone_interval ? ` [${signed(o.distilled_minus_alone_interval[0])}, ` +
       `${signed(o.distilled_minus_alone_interval[1])}]` : ""),
    o.not_priced ? "not priced" : o.verdict === null ? "" : (VERDICT_WORDS[o.verdict] || o.verdict),
  ].map(text => `<td>${text}</td>`).join("") + "</tr>");
  $("data-limited-options").innerHTML =
    `<caption>On the ${quantity(d.unique_tokens)} pool at equal compute: ${escaped(d.best.said)}` +
    (d.beyond_measured ? `; constants measured at ${escaped(d.measured)}, far from here: a Δ across 0 cannot tell` : "") +
    `</caption><thead><tr>${["option", "runs × tokens", "loss", "90%", "Δ vs alone [90%]", "verdict"]
      .map(h => `<th>${h}</th>`).join("")}</tr></thead><tbody>${body.join("")}</tbody>`;
  const chain = d.view.chain, students = d.view.ensemble_students;
  const band = points => ({ low: points.map(p => (p.interval ? p.interval[0] : p.loss)),
                            high: points.map(p => (p.interval ? p.interval[1] : p.loss)) });
  lineChart($("data-limited"), {
    x: { log: false, label: "generation (chain) · members k (ensemble)", format: v => v.toFixed(0) },
    y: { label: "loss (nats/token)", format: v => v.toFixed(2) },
    series: [{ x: chain.map((_, g) => g), y: chain.map(p => p.loss), color: COLORS.distilled,
               label: "chain, by generation", band: band(chain) },
             { x: students.map(p => p.members), y: students.map(p => p.loss), color: COLORS.logits,
               label: "ensemble's student, by k", band: band(students) }],
    hlines: [{ y: chain[0].loss, color: COLORS.supervised, dash: "5 4", label: "trained alone" }],
  });
}

function drawComputeCurve(curve, summary) {
  const svg = $("compute-curve");
  if (!curve.ok) {
    lineChart(svg, { series: [], x: {}, y: {}, empty: "cannot draw: " + Object.values(curve.errors)[0] });
    return;
  }
  const pick = (points, key) => points.map(p => (p ? (key === "loss" ? p.loss : p.interval && p.interval[key]) : null));
  const band = points => (points.some(p => p && p.interval)
    ? { low: pick(points, 0), high: pick(points, 1) } : null);
  const series = [];
  if (curve.distilled.some(p => p)) series.push({ x: curve.budgets, y: pick(curve.distilled, "loss"),
    color: COLORS.distilled, label: "distilled", band: band(curve.distilled) });
  series.push({ x: curve.budgets, y: pick(curve.supervised, "loss"), color: COLORS.supervised,
                label: "supervised (no teacher)", band: band(curve.supervised) });
  lineChart(svg, {
    x: { log: true, label: `compute C (FLOPs), student N_S = ${quantity(curve.student_params)}`, format: tick },
    y: { label: "student loss (nats/token)", format: v => v.toFixed(2) },
    series,
    vlines: [{ x: curve.budget, color: COLORS.gap, dash: "2 3", label: "this budget" },
             ...curve.flips.map(f => ({ x: f.budget, color: COLORS.optimum, dash: "6 3",
                                       label: `${f.to} between ${tick(f.between[0])} and ${tick(f.between[1])}` }))],
    empty: "no budget in range can be planned",
  });
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) {  // no clipboard permission: select the text for Ctrl-C instead
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const label = button.textContent;
  button.textContent = "copied";
  setTimeout(() => { button.textContent = label; }, 1200);
}

function showTeacherFields() {
  const mode = $("teacher").value;
  $("teacher-fields").hidden = mode === "none" || mode === "model";
  $("teacher-model-field").hidden = mode !== "model";
  $("teacher-tokens-field").hidden = mode !== "tokens";
  $("teacher-loss-field").hidden = mode !== "loss";
}

async function init() {
  const info = await (await fetch("/api/laws")).json();
  for (const law of info.laws) {
    const option = new Option(law.file ? `${law.name} (${law.id})` : law.name, law.id);
    option.title = law.distillation ? "supervised and distillation laws" : "supervised law only";
    $("law").add(option);
  }
  $("law").value = info.default;
  for (const [name, description] of Object.entries(info.scenarios)) {
    const option = new Option(name, name);
    option.title = description;
    $("scenario").add(option);
  }
  for (const name of info.hyperparameter_laws.presets) $("hyperparameter-law").add(new Option(name, name));
  for (const name of info.teacher_models || []) $("teacher-model").add(new Option(name, name));
  $("teacher-model-option").hidden = !(info.teacher_models || []).length;
  $("hyperparameter-law").value = info.hyperparameter_laws.default;
  for (const gpu of info.gpus)
    $("gpu").add(new Option(gpu.measured ? gpu.name : `${gpu.name} (not measured: another GPU's MFU)`, gpu.id));
  const hint = () => { $("scenario-hint").textContent = info.scenarios[$("scenario").value]; };
  hint();

  $("compute-slider").addEventListener("input", () => {
    $("compute").value = budgetText(Math.pow(10, Number($("compute-slider").value)));
    schedule();
  });
  $("compute").addEventListener("input", () => {
    const value = Number($("compute").value);
    if (value > 0) $("compute-slider").value = Math.log10(value);
    schedule();
  });
  $("student-mode").addEventListener("change", () => {
    $("student").disabled = $("student-mode").value === "best";
    schedule();
  });
  $("scenario").addEventListener("change", () => { hint(); schedule(); });
  $("student-init").addEventListener("change", schedule);
  $("hyperparameter-law").addEventListener("change", schedule);
  $("gpu").addEventListener("change", schedule);
  $("teacher-model").addEventListener("change", schedule);
  $("teacher").addEventListener("change", () => {
    showTeacherFields();
    if ($("teacher").value !== "none") { $("scenario").value = "teacher-inference"; hint(); }
    schedule();
  });
  for (const id of ["law", "student", "teacher-params", "teacher-tokens", "teacher-loss", "batch-tokens", "gpus", "price",
                    "students", "unique-tokens", "generations"])
    $(id).addEventListener("input", schedule);
  $("targets").addEventListener("change", schedule);
  $("copy-plan").addEventListener("click", event => copy($("plan-text").textContent, event.target));
  $("copy-cli").addEventListener("click", event => copy($("cli").textContent, event.target));
  showTeacherFields();
  update();
}

init();
