"""Which of my teachers? The own-teacher guide's run, end to end, on one corpus: three teachers of
different sizes in one tokenizer, the laws calibrated on the corpus in that tokenizer (`demo
--teacher`), the teachers ranked for the demo's planned student (`teacher --candidates`), and a
student distilled from each, its measured loss beside the prediction.

Steps (each skipped when its output exists, so a second run only prints the table):

1. three teachers of the model family trained on --data (`distillscale train`): the smallest with
   its own 512-token BPE, the other two with that tokenizer; each exported as a Hugging Face
   directory (`export-hf`), as a user's checkpoints would be;
2. `distillscale demo --data DATA --teacher MODELS/teacher-m` (the full micro sweep in the
   teachers' tokenizer, both laws fitted, the middle teacher measured and planned for);
3. `distillscale teacher --law SWEEP/report.json --student-params N --compute C --candidates ...`
   for the demo's planned student at the demo's budget (each teacher's logits paid at its own FLOPs
   per token, so each buys its own student tokens);
4. that student distilled from each teacher on the tokens the budget buys it (`distill --config
   SWEEP/planned_student.toml --teacher MODEL --tokens D`), its validation loss from result.json;
   and the same student trained alone on the whole budget (`--kd-weight 0`); the markdown table of
   predicted against measured, with each teacher's verdict against training alone (its Delta and
   interval, as `teacher` prints them) beside the measured difference.

Usage:
    python bench/distillation/teacher_choice.py --data /tmp/guide/corpora/doc-en --root /tmp/guide
(the corpus: `python bench/demo/demo_corpora.py build doc-en --root /tmp/guide/corpora`)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.runs import cli  # noqa: E402

COMMON = ("--head-dim", "24", "--aspect-ratio", "24", "--seq-len", "128", "--batch-size", "16", "--lr", "0.003",
          "--schedule", "wsd", "--eval-tokens", "64K", "--eval-every", "0", "--device", "cpu")
# name: (layers, training tokens): d_model 48, 72, 96
TEACHERS = {"teacher-s": ("2", "1M"), "teacher-m": ("3", "2M"), "teacher-l": ("4", "3M")}


def train_teachers(data: Path, root: Path) -> dict[str, Path]:
    models, tokenizer = {}, None
    for name, (layers, tokens) in TEACHERS.items():
        run, model = root / "runs" / name, root / "models" / name
        if not (run / "result.json").is_file():
            vocab = ("--vocab-size", "512") if tokenizer is None else ("--tokenizer", str(tokenizer))
            cli("train", "--data", data, "--out", run, "--n-layers", layers, "--tokens", tokens, *vocab, *COMMON)
        if not model.is_dir():
            cli("export-hf", run, model)
        tokenizer = tokenizer or run / "tokenizer.json"
        models[name] = model
    return models


def rank(sweep: Path, models: dict[str, Path], root: Path) -> dict:
    """`teacher --candidates` for the demo's planned student, at the demo's budget: each teacher's
    logits paid at its own FLOPs per token (`--compute`), as --json prints it."""
    out = root / "ranking.json"
    if not out.is_file():
        section = json.loads((sweep / "report.json").read_text())["teacher"]
        compute = section["plan"]["compute"] if "compute" in section["plan"] else section["compute"]
        text = cli("teacher", "--law", sweep / "report.json", "--student-params", str(section["student_params"]),
                   "--compute", repr(float(compute)), *[arg for model in models.values() for arg in ("--candidates", model)],
                   "--json", capture=True)
        out.write_text(text)
        print(cli("teacher", "--law", sweep / "report.json", "--student-params", str(section["student_params"]),
                  "--compute", repr(float(compute)), *[arg for model in models.values() for arg in ("--candidates", model)],
                  capture=True))
    return json.loads(out.read_text())


def distil_each(sweep: Path, ranking: dict, root: Path) -> dict[str, float]:
    """The planned student distilled from each candidate on the tokens the budget buys it; its
    validation loss (nats/token, result.json)."""
    measured = {}
    for candidate in ranking["candidates"]:
        name = Path(candidate["name"]).name
        run = root / "students" / name
        if not (run / "result.json").is_file():
            cli("distill", "--config", sweep / "planned_student.toml", "--teacher", candidate["name"],
                "--tokens", str(round(candidate["student_tokens"])), "--out", run)
        measured[candidate["name"]] = json.loads((run / "result.json").read_text())["val_loss"]
    return measured


def alone(sweep: Path, root: Path) -> tuple[float, float, list[float]]:
    """The planned student trained without a teacher on the whole budget (`--kd-weight 0`: the same
    recipe, cross-entropy only): (its tokens, its measured loss, the predicted interval)."""
    plan = json.loads((sweep / "report.json").read_text())["teacher"]["plan"]
    run = root / "students" / "alone"
    if not (run / "result.json").is_file():
        cli("distill", "--config", sweep / "planned_student.toml", "--kd-weight", "0", "--tokens",
            str(round(plan["supervised_tokens"])), "--out", run)
    return (plan["supervised_tokens"], json.loads((run / "result.json").read_text())["val_loss"],
            plan["supervised_loss_interval"]["interval"])


def table(ranking: dict, measured: dict[str, float], without: tuple[float, float, list[float]]) -> str:
    """Each candidate's student, predicted against measured, and its verdict against the same student
    trained alone (`teacher`'s Delta = L(distilled) - L(alone), with its interval) against the
    measured difference."""
    tokens, alone_loss, (alone_low, alone_high) = without
    lines = ["| teacher | N_T | L_T (nats/token) | student tokens | predicted student L_S [90%] | measured L_S | "
             "measured - predicted | against alone: Delta predicted [90%] | verdict | measured Delta |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    close = set(ranking["too_close_to_call"])
    for c in ranking["candidates"]:
        mark = " (best)" if c["name"] == ranking["best"] else " (too close to call)" if c["name"] in close else ""
        low, high = c.get("interval") or (float("nan"), float("nan"))
        got = measured[c["name"]]
        delta_low, delta_high = c.get("loss_difference_interval") or (float("nan"), float("nan"))
        lines.append(f"| {Path(c['name']).name}{mark} | {c['teacher_params']:,.0f} | {c['teacher_loss']:.4f} | "
                     f"{c['student_tokens']:,.0f} | {c['student_loss']:.4f} [{low:.4f}, {high:.4f}] | {got:.4f} | "
                     f"{got / c['student_loss'] - 1:+.2%}{' inside' if low <= got <= high else ' OUTSIDE'} | "
                     f"{c['loss_difference']:+.4f} [{delta_low:+.4f}, {delta_high:+.4f}] | "
                     f"{c['verdict_against_alone']} | {got - alone_loss:+.4f} |")
    lines.append(f"| no teacher, the whole budget | - | - | {tokens:,.0f} | {ranking['supervised_loss']:.4f} "
                 f"[{alone_low:.4f}, {alone_high:.4f}] | {alone_loss:.4f} | "
                 f"{alone_loss / ranking['supervised_loss'] - 1:+.2%} | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--root", type=Path, default=Path("/tmp/guide"))
    args = parser.parse_args()
    root = args.root
    models = train_teachers(args.data, root)
    sweep = root / "sweep"
    started = time.perf_counter()
    if not (sweep / "planned_student.toml").is_file():
        cli("demo", "--data", args.data, "--teacher", models["teacher-m"], "--out", sweep)
        print(f"demo: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    ranking = rank(sweep, models, root)
    measured = distil_each(sweep, ranking, root)
    print(table(ranking, measured, alone(sweep, root)))


if __name__ == "__main__":
    main()
