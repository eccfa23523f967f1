"""The tiny teacher and student the CPU distillation benches train (a 2 x 96 teacher, a 1 x 32
student, vocabulary 512, 64-token windows on 300 kB of the default corpus): their flags for
`distillscale train`, `cache-logits` and `distill`, each script adding its token budgets."""

from __future__ import annotations

CORPUS = ["--max-bytes", "300k", "--seq-len", "64", "--device", "cpu"]
TEACHER = ["--n-layers", "2", "--aspect-ratio", "48", "--head-dim", "32", "--vocab-size", "512",
           "--batch-size", "16", "--eval-every", "0"]
STUDENT = ["--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "32", "--batch-size", "8", "--eval-every", "0"]
