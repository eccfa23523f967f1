"""Teacher targets for distillation, side by side in one run: full logits (a live teacher), a top-k
logit cache and sampled caches (Anshumann et al. 2025), at equal bytes per token where it can be.

One tiny teacher is trained here on the teacher half of a corpus; its predictions on the student
half are cached as top-k (k = 32) and as samples (K = 12, the paper's order, and the largest K whose
records take no more bytes than top-32's). Students with the same init and settings are distilled
from each (forward KL, tau = 1, lambda = --kd-weight) and measured on the validation split:

- validation loss (cross-entropy against the data, nats/token);
- expected calibration error of the next-token prediction: the top-1 probability against whether
  the top-1 id is the next token, 15 equal-width bins, weighted by their token counts;
- bytes/token of the targets (the cache's records; for the live teacher, what float32 logits of
  the whole vocabulary would take) and read throughput (`LogitCache.teacher_predictions` on random
  batches of windows: memory-mapped reads and decoding, tokens/s).

The live teacher's students read random windows, the cached ones the cache's window grid; each
arm runs --seeds seeds (its spread is printed: differences inside it are noise).

Usage: python bench/distillation/cache_targets.py [--seeds 2] [--student-tokens 40k] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distillscale.data import DataConfig, prepare_data
from distillscale.model import load_pretrained
from distillscale.training.logit_cache import LogitCache, SampledEncoding, TopKEncoding

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.runs import run_here  # noqa: E402
from bench.common.tiny import CORPUS  # noqa: E402
from bench.common.tiny import STUDENT as TINY_STUDENT  # noqa: E402
from bench.common.tiny import TEACHER as TINY_TEACHER  # noqa: E402

TEACHER = [*TINY_TEACHER, "--tokens", "150k", "--eval-tokens", "16k"]
STUDENT = [*TINY_STUDENT, "--eval-tokens", "16k"]
TOP_K, SAMPLES, BINS = 32, 12, 15


def equal_bytes_samples(vocab: int, budget: int) -> int:
    """The largest K whose sampled records take at most `budget` bytes per token."""
    samples = 1
    while SampledEncoding(vocab, samples + 1).bytes_per_token <= budget:
        samples += 1
    return samples


@torch.no_grad()
def calibration_error(run_dir: Path, tokens: np.ndarray, seq_len: int, max_tokens: int) -> float:
    """ECE of the top-1 next-token probability over the first `max_tokens` validation tokens."""
    model = load_pretrained(run_dir, torch.device("cpu")).eval()
    windows = min((len(tokens) - 1) // seq_len, max_tokens // seq_len)
    rows = np.stack([tokens[w * seq_len:(w + 1) * seq_len + 1] for w in range(windows)]).astype(np.int64)
    inputs, targets = torch.from_numpy(rows[:, :-1]), torch.from_numpy(rows[:, 1:])
    confidence, correct = [], []
    for start in range(0, windows, 32):
        probs = model.head(model.hidden_states(inputs[start:start + 32])).float().softmax(-1)
        top_prob, top_id = probs.max(-1)
        confidence.append(top_prob.flatten())
        correct.append((top_id == targets[start:start + 32]).flatten().float())
    confidence, correct = torch.cat(confidence), torch.cat(correct)
    bins = (confidence * BINS).long().clamp(max=BINS - 1)
    error = 0.0
    for b in range(BINS):
        members = bins == b
        if members.any():
            error += members.float().mean().item() * abs(confidence[members].mean() - correct[members].mean()).item()
    return error


def read_throughput(cache: LogitCache, batch_windows: int = 16, reads: int = 30) -> float:
    """Tokens/s of `teacher_predictions` on random batches of windows (median of `reads`)."""
    generator = np.random.default_rng(0)
    times = []
    for _ in range(reads):
        windows = generator.integers(0, cache.windows, size=batch_windows)
        started = time.perf_counter()
        cache.teacher_predictions(windows)
        times.append(time.perf_counter() - started)
    return batch_windows * cache.seq_len / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--student-tokens", default="40k")
    parser.add_argument("--kd-weight", default="1.0")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        run_here("train", "--out", root / "teacher", *TEACHER, *CORPUS)
        teacher = json.loads((root / "teacher" / "result.json").read_text())
        vocab = json.loads((root / "teacher" / "model_config.json").read_text())["vocab_size"]
        equal = equal_bytes_samples(vocab, TopKEncoding(vocab, TOP_K).bytes_per_token)
        arms: dict[str, list[str]] = {"full logits (live teacher)": ["--teacher", root / "teacher"]}
        caches = {f"top-{TOP_K} cache": ["--top-k", TOP_K],
                  f"sampled K={SAMPLES} cache": ["--targets", "sampled", "--samples", SAMPLES],
                  f"sampled K={equal} cache (bytes of top-{TOP_K})": ["--targets", "sampled", "--samples", equal]}
        for index, (name, flags) in enumerate(caches.items()):
            out = root / f"cache{index}"
            run_here("cache-logits", "--teacher", root / "teacher", "--out", out, *flags, "--seq-len", "64",
                "--batch-size", "32", "--eval-tokens", "16k", "--device", "cpu")
            arms[name] = ["--teacher-cache", out]

        data = prepare_data(DataConfig(tokenizer=root / "teacher" / "tokenizer.json", max_bytes="300k"),
                            progress=False)
        val = data.split("val")
        rows = []
        for index, (name, source) in enumerate(arms.items()):
            losses, errors = [], []
            for seed in range(args.seeds):
                out = root / f"student{index}-{seed}"
                run_here("distill", *source, "--out", out, *STUDENT, "--tokens", args.student_tokens, "--seed", seed,
                    "--kd-weight", args.kd_weight, *CORPUS)
                losses.append(json.loads((out / "result.json").read_text())["val_loss"])
                errors.append(calibration_error(out, val, 64, 16_384))
            if source[0] == "--teacher-cache":
                cache = LogitCache(source[1])
                size, speed = f"{cache.manifest['bytes_per_token']:.0f}", f"{read_throughput(cache) / 1e6:.2f}M"
            else:
                size, speed = f"{4 * vocab} (float32 x V)", "- (teacher forward)"
            rows.append((name, losses, errors, size, speed))

    print(f"\nteacher: {teacher['non_embedding_params']:,} non-embedding parameters, validation loss "
          f"{teacher['val_loss']:.4f}; vocabulary {vocab}; students: {args.student_tokens} tokens, "
          f"kd_weight {args.kd_weight}, {args.seeds} seeds; total wall {time.perf_counter() - started:.0f} s\n")
    header = ("targets", "val loss (mean, spread)", "ECE (mean, spread)", "bytes/token", "read tokens/s")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for name, losses, errors, size, speed in rows:
        print(f"{name} | {np.mean(losses):.4f} ({min(losses):.4f}-{max(losses):.4f}) | "
              f"{np.mean(errors):.4f} ({min(errors):.4f}-{max(errors):.4f}) | {size} | {speed}")


if __name__ == "__main__":
    main()
