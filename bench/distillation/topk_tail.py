"""Top-k teachers with and without their tail (issue 39), side by side in one run.

For each teacher (tiny, trained here on the teacher half of a corpus) students with the same init
and settings (1 layer, --student-tokens tokens, --kd-weight 1 unless stated) are distilled from:

- the full distribution (a live teacher), a sampled cache (20 draws per position, unbiased);
- top-k targets for k in --ks, through each path: in process (`--teacher --top-k k`), a top-k
  logit cache (`cache-logits --top-k`), and a served teacher (`serve-teacher` in a thread, `distill
  --teacher-url --top-k k`); each with the tail in the loss ("after", the default) and without it
  ("before": `--no-top-k-tail`, the renormalised target of the code before issue 39);
- in process with a CE share (`--kd-weight 0.5`), the evidence for the top-k default (0.5 since
  issue 39; the other top-k rows pass --kd-weight 1);
- and a supervised student on the same tokens (no teacher).

The caches hold 2 x --student-tokens tokens of the student split (a student drawing windows from
them sees about as many distinct windows as it reads); the live and served students read random
windows of the whole split, so cache rows differ from in-process ones by the data seen as well.

Printed: one markdown table per teacher (student validation loss in nats/token, its ratio to the
full-distribution student and to the supervised one), the teacher's top-k masses (result.json's
`top_k_targets`), the largest |served - in process| difference, and the uniform guess log V.
Runs are kept in --work and skipped when their result.json exists, so an interrupted bench resumes.

Usage: nice -n 5 python bench/distillation/topk_tail.py --work /tmp/topk-bench [--student-tokens 200k]
       [--ks 5,20,64] [--teachers plain-2L,stdlib-2L,plain-1L] [--paths in-process,cache,served]
       [--before in-process,cache,served] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path

import torch

from distillscale.units import Quantity, parse_quantity

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.corpora import plain_corpus  # noqa: E402
from bench.common.runs import run_here  # noqa: E402

SEQ = ["--seq-len", "64", "--device", "cpu"]
CORPUS = ["--max-bytes", "2M", "--vocab-size", "512"]
STUDENT = ["--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "32", "--batch-size", "8",
           "--eval-tokens", "16k", "--eval-every", "0", "--save-every", "100000", "--log-every", "100000"]
TEACHER = ["--head-dim", "32", "--batch-size", "16", "--eval-tokens", "16k", "--eval-every", "0"]
# name -> (corpus, model flags, training tokens)
TEACHERS = {
    "plain-2L": ("plain", ["--n-layers", "2", "--aspect-ratio", "32"], "400k"),
    "stdlib-2L": ("stdlib", ["--n-layers", "2", "--aspect-ratio", "32"], "200k"),
    "plain-1L": ("plain", ["--n-layers", "1", "--aspect-ratio", "64"], "200k"),
}
SAMPLES = 20


def result(path: Path) -> dict | None:
    try:
        return json.loads((path / "result.json").read_text())
    except FileNotFoundError:
        return None


def once(out: Path, *args) -> dict:
    """Run `distillscale ARGS --out out` unless it has finished before; its result.json."""
    if result(out) is None:
        run_here(*args, "--out", out, "--overwrite")
    return result(out)


def serve(teacher: Path, top_k: int):
    from distillscale.serve.teacher import TeacherService, make_teacher_server

    server = make_teacher_server(TeacherService(teacher, top_k=top_k))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def bench_teacher(name: str, work: Path, corpus_flags: list[str], args) -> dict:
    corpus, model, tokens = TEACHERS[name]
    root = work / name
    teacher = root / "teacher"
    once(teacher, "train", *model, "--tokens", tokens, *TEACHER, *corpus_flags, *SEQ)
    tokenizer = teacher / "tokenizer.json"
    data = [*corpus_flags[:-2]] if corpus_flags[-2] == "--vocab-size" else corpus_flags  # the teacher's tokenizer
    student = [*STUDENT, "--tokens", args.student_tokens, *data, *SEQ]
    rows: dict[str, dict] = {}
    rows["supervised"] = once(root / "supervised", "train", "--split", "student", "--tokenizer", tokenizer, *student)
    rows["full distribution, in process"] = once(root / "full", "distill", "--teacher", teacher, *student)
    cache_tokens = str(2 * int(parse_quantity(args.student_tokens, "tokens", kind=Quantity.TOKENS)))  # the student reads ~63% of them
    ks = [int(k) for k in args.ks.split(",")]
    sampled, top = root / "cache-sampled", root / f"cache-top{max(ks)}"
    for out, flags in ((sampled, ["--targets", "sampled", "--samples", SAMPLES]), (top, ["--top-k", max(ks)])):
        if not (out / "cache.json").is_file():
            run_here("cache-logits", "--teacher", teacher, "--out", out, *flags, "--tokens", cache_tokens,
                "--batch-size", "32", "--eval-tokens", "16k", "--overwrite", *SEQ)
    rows[f"sampled cache, {SAMPLES} draws"] = once(root / "sampled", "distill", "--teacher-cache", sampled, *student)
    paths = args.paths.split(",")
    before = args.before.split(",") if args.before else []
    server = url = None
    if "served" in paths:
        server, url = serve(teacher, max(ks))
    try:
        for k in ks:
            sources = {"in process": ["--teacher", teacher], "cache": ["--teacher-cache", top],
                       "served": ["--teacher-url", url, "--tokenizer", tokenizer]}
            for path, source in sources.items():
                if path.replace(" ", "-") not in paths:
                    continue
                tag = path.replace(" ", "-")
                if tag in before:
                    rows[f"top-{k}, {path}, before (renormalised)"] = once(
                        root / f"top{k}-{tag}-before", "distill", *source, "--top-k", k, "--no-top-k-tail",
                        "--kd-weight", "1", *student)
                rows[f"top-{k}, {path}, after (tail kept)"] = once(
                    root / f"top{k}-{tag}", "distill", *source, "--top-k", k, "--kd-weight", "1", *student)
            rows[f"top-{k}, in process, after, --kd-weight 0.5 (the top-k default)"] = once(
                root / f"top{k}-in-process-kd05", "distill", "--teacher", teacher, "--top-k", k, "--kd-weight", "0.5",
                *student)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    teacher_result = result(teacher)
    return {"teacher": {"name": name, "corpus": corpus, "non_embedding_params": teacher_result["non_embedding_params"],
                        "val_loss": teacher_result["val_loss"], "tokens": teacher_result["tokens"]},
            "vocab": json.loads((teacher / "model_config.json").read_text())["vocab_size"],
            "rows": {label: {"val_loss": r["val_loss"],
                             "top_k_mass": (r.get("top_k_targets") or {}).get("mean_top_k_mass"),
                             "tail": (r.get("top_k_targets") or {}).get("tail")}
                     for label, r in rows.items()}}


def print_table(report: dict, student_tokens: str) -> None:
    teacher, rows = report["teacher"], report["rows"]
    full, supervised = rows["full distribution, in process"]["val_loss"], rows["supervised"]["val_loss"]
    print(f"\n### {teacher['name']}: teacher {teacher['non_embedding_params']:,} non-embedding parameters, "
          f"{teacher['tokens']:,} tokens of the {teacher['corpus']} corpus, validation loss {teacher['val_loss']:.3f}; "
          f"students 1 layer, {student_tokens} tokens; uniform guess log V = {math.log(report['vocab']):.3f}\n")
    print("| teacher targets | student val loss | vs full | vs supervised | teacher's top-k mass |")
    print("|---|---|---|---|---|")
    for label, row in rows.items():
        mass = "" if row["top_k_mass"] is None else f"{row['top_k_mass']:.3f} ({row['tail']})"
        print(f"| {label} | {row['val_loss']:.3f} | {row['val_loss'] / full - 1:+.1%} | "
              f"{row['val_loss'] / supervised - 1:+.1%} | {mass} |")
    served = [(label, row) for label, row in rows.items() if ", served, after (tail kept)" in label]
    gaps = [abs(row["val_loss"] - rows[label.replace("served", "in process")]["val_loss"]) for label, row in served]
    if gaps:
        print(f"\nlargest |served - in process| student validation loss: {max(gaps):.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--plain", type=Path, default=None, help="plain-text corpus directory (default: built in --work)")
    parser.add_argument("--student-tokens", default="200k")
    parser.add_argument("--ks", default="5,20,64")
    parser.add_argument("--teachers", default=",".join(TEACHERS))
    parser.add_argument("--paths", default="in-process,cache,served")
    parser.add_argument("--before", default="in-process,cache,served")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    plain = plain_corpus(args.plain or args.work / "plain")
    corpora = {"plain": ["--data", f"{plain}/*.txt", *CORPUS], "stdlib": CORPUS}
    reports = []
    for name in args.teachers.split(","):
        reports.append(bench_teacher(name, args.work, corpora[TEACHERS[name][0]], args))
        (args.work / "topk_tail.json").write_text(json.dumps(reports, indent=1))
        print_table(reports[-1], args.student_tokens)
    print(f"\ntotal wall {time.perf_counter() - started:.0f} s (2 shared CPU cores)")


if __name__ == "__main__":
    main()
