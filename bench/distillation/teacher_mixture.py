"""Does a mixture of a code teacher and a prose teacher beat each one alone on a mixed validation set
(issue 37)?

Setting (micro scale, no download): two corpora of whole documents, code (this interpreter's standard
library, .py files) and English prose (/usr/share/doc's READMEs, NEWS, *.txt/*.md/*.rst and the common
licenses, as `bench/demo/demo_corpora.py doc-en` reads them), cut at line ends into pieces of ~4 KB (so
that the 5% validation split holds both kinds), each capped at --cap bytes. Every other piece of each
goes to the teachers, the rest to the student, so that no document a teacher trained
on is in the student's data or its validation set:
- one byte-level BPE (--vocab-size) trained on all of it, shared by every model;
- a code teacher trained on the code teachers' documents, a prose teacher on the prose ones (2 x 64,
  --teacher-tokens each);
- on the mixed student documents (code and prose, jsonl with a `source` field), a 1 x 32 student
  distilled (--student-tokens, forward KL, kd weight 0.5) from the code teacher, from the prose
  teacher, from their 50/50 mixture, and trained without a teacher, for each seed;
- every run's validation loss is on the same mixed validation split (the student data's val half),
  as is each teacher's L_T (result.json's teacher.teacher_val_loss) and the mixture's.

Usage: python bench/distillation/teacher_mixture.py [--out DIR] [--cap 1.5M] [--teacher-tokens 600K]
       [--student-tokens 150K] [--seeds 0,1,2] [--vocab-size 512]
Prints a markdown table; writes DIR/summary.json. About 5 minutes on 2 free CPU cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.runs import run_once  # noqa: E402 (bench scripts beside this one)
from bench.demo.demo_corpora import doc_en, read_text, walk  # noqa: E402

TEACHER_SHAPE = ["--n-layers", "2", "--aspect-ratio", "32", "--head-dim", "16"]
STUDENT_SHAPE = ["--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16"]
CHUNK_BYTES = 4096
COMMON = ["--seq-len", "64", "--batch-size", "16", "--eval-every", "0", "--eval-tokens", "64K", "--device", "cpu"]


def parse_size(text: str) -> int:
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1].upper(), 1)
    return int(float(text.rstrip("KkMm")) * scale)


def code_documents():
    root = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    for path in walk(str(root), keep=lambda p: p.suffix == ".py" and "site-packages" not in p.parts):
        if (text := read_text(path)) is not None and text.strip():
            yield text


def prose_documents():
    for _, text in doc_en():
        if text.strip():
            yield text


def pieces(text: str, size: int = CHUNK_BYTES):
    """A document cut at line ends into pieces of about `size` characters: many small documents, so that
    the validation split holds both kinds."""
    piece: list[str] = []
    length = 0
    for line in text.splitlines(keepends=True):
        piece.append(line)
        length += len(line)
        if length >= size:
            yield "".join(piece)
            piece, length = [], 0
    if "".join(piece).strip():
        yield "".join(piece)


def capped(documents, cap: int) -> list[str]:
    taken, size, seen = [], 0, set()
    for document in documents:
        for text in pieces(document):
            if text in seen or not text.strip():
                continue
            seen.add(text)
            taken.append(text)
            size += len(text.encode("utf-8"))
            if size >= cap:
                return taken
    return taken


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def build_corpora(out: Path, cap: int) -> dict[str, Path]:
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    code, prose = capped(code_documents(), cap), capped(prose_documents(), cap)
    files = {"code_teacher": corpus / "code_teacher.jsonl", "prose_teacher": corpus / "prose_teacher.jsonl",
             "student": corpus / "student.jsonl", "all": corpus / "all.jsonl"}
    write_jsonl(files["code_teacher"], [{"text": t, "source": "code"} for t in code[0::2]])
    write_jsonl(files["prose_teacher"], [{"text": t, "source": "prose"} for t in prose[0::2]])
    write_jsonl(files["student"], [{"text": t, "source": "code"} for t in code[1::2]]
                + [{"text": t, "source": "prose"} for t in prose[1::2]])
    write_jsonl(files["all"], [{"text": t} for t in code + prose])
    print(f"corpora: {len(code)} code pieces, {len(prose)} prose pieces (each half to the teachers)",
          flush=True)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/teacher_mixture"))
    parser.add_argument("--cap", default="1.5M", help="bytes of each corpus (code, prose)")
    parser.add_argument("--vocab-size", default="512")
    parser.add_argument("--teacher-tokens", default="600K")
    parser.add_argument("--student-tokens", default="150K")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    started = time.time()
    files = build_corpora(args.out, parse_size(args.cap))

    from distillscale.data import DataConfig, prepare_data

    data = prepare_data(DataConfig(path=str(files["all"]), vocab_size=int(args.vocab_size),
                                   cache_dir=str(args.out / "cache")), progress=False)
    tokenizer = data.directory / "tokenizer.json"
    teachers = {}
    for name in ("code", "prose"):
        teachers[name] = args.out / f"teacher_{name}"
        run_once(teachers[name], "train", "--data", files[f"{name}_teacher"], "--tokenizer", tokenizer,
                 "--split", "teacher", "--tokens", args.teacher_tokens, *TEACHER_SHAPE, *COMMON)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    student = ["--data", files["student"], "--tokenizer", tokenizer, "--tokens", args.student_tokens,
               *STUDENT_SHAPE, *COMMON]
    arms = {"code teacher": ["--teacher", teachers["code"]],
            "prose teacher": ["--teacher", teachers["prose"]],
            "50/50 mixture": ["--teacher", teachers["code"], "--teacher", teachers["prose"]]}
    results: dict[str, list[dict]] = {name: [] for name in [*arms, "no teacher"]}
    for seed in seeds:
        for name, teacher_args in arms.items():
            slug = name.split()[0].replace("/", "_")
            results[name].append(run_once(args.out / f"student_{slug}_s{seed}", "distill", *teacher_args,
                                          *student, "--seed", str(seed)))
        results["no teacher"].append(run_once(args.out / f"student_supervised_s{seed}", "train", "--split",
                                              "student", *student, "--seed", str(seed)))

    summary = {}
    print(f"\nmixed validation set: the student data's val split ({args.student_tokens} student tokens, "
          f"teachers {args.teacher_tokens} tokens each, seeds {args.seeds})\n")
    print("| student distilled from | teacher L_T (mixed val) | student val loss (mean) | per seed |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        losses = [run["val_loss"] for run in runs]
        teacher_loss = runs[0]["teacher"]["teacher_val_loss"] if "teacher" in runs[0] else None
        summary[name] = {"val_loss": statistics.fmean(losses), "per_seed": losses, "teacher_val_loss": teacher_loss}
        if name == "50/50 mixture":
            summary[name]["teachers"] = [{key: t[key] for key in ("path", "weight", "teacher_val_loss", "flops")}
                                         for t in runs[0]["teacher"]["teachers"]]
        shown = "-" if teacher_loss is None else f"{teacher_loss:.4f}"
        print(f"| {name} | {shown} | {statistics.fmean(losses):.4f} | "
              f"{', '.join(f'{loss:.4f}' for loss in losses)} |")
    mixture = summary["50/50 mixture"]["val_loss"]
    best_single = min(summary["code teacher"]["val_loss"], summary["prose teacher"]["val_loss"])
    summary["mixture_beats_each"] = mixture < best_single
    summary["margin_to_best_single"] = best_single - mixture
    summary["wall_seconds"] = time.time() - started
    print(f"\nmixture beats each teacher alone: {summary['mixture_beats_each']} (best single - mixture = "
          f"{summary['margin_to_best_single']:+.4f} nats/token); wall {summary['wall_seconds']:.0f} s")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
