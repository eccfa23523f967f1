"""The micro-scale check of on-policy distillation: at equal student FLOPs, does a student trained
partly on its own continuations (`distill --on-policy-fraction lambda`) reach a lower loss on its
own generations, as the teacher scores them, than the off-policy student?

Setting: the micro family of the demo (bench/common/micro.py: vocabulary 512, seq_len 128, aspect ratio 24,
head_dim 24, batch 16, lr 0.003) on the built-in corpus (Python's standard library sources), or
--data. A depth-4 teacher (443K non-embedding parameters; the micro sweep's largest) trains on the
teacher half (or --teacher reuses a finished run); depth-2 students (55K) distil from it on the
student half, all with the same tokens (so the same student training FLOPs), the same seed and
the same KD divergence: off-policy (lambda 0) and on-policy at each --lambdas, for each divergence
of --kd (forward KL, the default of `distill`, and reverse KL, GKD's and MiniLLM's choice on-policy). On-policy batches
continue --prompt corpus tokens by seq_len + 1 - prompt sampled tokens (the rest of the window),
after the first --start of the steps (default half) trained off-policy: GKD's students start from a
trained model, and from scratch (--start 0) the student's early samples are noise to learn on (with
forward KL the on-policy students then end worse on their own generations; see docs/benchmarks.md).

The task: --eval-prompts prompts of --prompt tokens from the held-out validation split; each student
continues each by the same number of tokens at temperature 1 (the same seed for every student), and
the teacher scores the continuations. Columns (nats/token, averaged over the generated tokens):
- teacher NLL: -log p_T(sampled token | prefix), how likely the teacher finds what the student says;
- KL(T||S): forward KL between the two next-token distributions at the student's own prefixes
  (the loss the students are trained with, on the distribution of prefixes the student meets);
- KL(S||T): reverse KL at those prefixes;
- val CE: the student's cross-entropy on the validation split (teacher-forced, as result.json).
FLOPs per phase, from each run's result.json: student training (3 F_S per token), generation
(on_policy.generation_flops), teacher forward passes (teacher.flops; of which on-policy scoring).
With --equal-total (default), an off-policy student with more tokens, to the on-policy run's total
FLOPs, is added: what the generation FLOPs would buy off-policy.

Usage: python bench/distillation/on_policy_check.py [--teacher RUN] [--teacher-tokens 1.8M] [--student-tokens 400K]
       [--lambdas 0.5,1] [--kd forward-kl,reverse-kl] [--seeds 0] [--prompt 32] [--temperature 1] [--start 0.5] [--eval-prompts 64]
       [--data PATH] [--out DIR] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from distillscale.data import DataConfig, prepare_data
from distillscale.model import generate, load_pretrained
from distillscale.planning.flops import run_flops
from distillscale.training.config import DistillConfig, TrainConfig
from distillscale.training.distillation import distill
from distillscale.training.losses import kd_divergence
from distillscale.training.recipe import train
from distillscale.training.records import RunRecord, RunResult
from distillscale.units import Quantity, format_quantity, parse_quantity

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.micro import FAMILY

TEACHER_LAYERS, STUDENT_LAYERS, LR = 4, 2, 0.003


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=None, help="a finished teacher run to reuse")
    parser.add_argument("--teacher-tokens", default="1.8M")
    parser.add_argument("--student-tokens", default="400K")
    parser.add_argument("--lambdas", default="0.5,1")
    parser.add_argument("--kd", default="forward-kl,reverse-kl", help="the divergences to compare, each for all "
                                                                       "students")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0, help="the on-policy students' sampling "
                                                                       "temperature in training")
    parser.add_argument("--start", type=float, default=0.5, help="share of the steps before the first "
                                                                 "on-policy batch (--on-policy-start)")
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--equal-total", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary directory)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lambdas = [float(x) for x in args.lambdas.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    corpus = {"data": args.data} if args.data else {}

    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        start = time.perf_counter()
        teacher = args.teacher
        if teacher is None:
            teacher = root / "teacher"
            if not (teacher / "result.json").exists():
                train(TrainConfig(out=teacher, n_layers=TEACHER_LAYERS, tokens=parse_quantity(args.teacher_tokens, kind=Quantity.TOKENS),
                                  lr=LR, **corpus, **FAMILY), progress=False)
        teacher_result = RunResult.load(teacher / "result.json")
        print(f"teacher: {format_quantity(teacher_result.non_embedding_params)} non-embedding parameters, "
              f"{format_quantity(teacher_result.tokens)} tokens, val loss {teacher_result.val_loss:.4f} "
              f"nats/token ({time.perf_counter() - start:.0f} s)", flush=True)
        teacher_model = load_pretrained(teacher).eval()
        settings = {key: value for key, value in FAMILY.items() if key != "vocab_size"}
        data = prepare_data(DataConfig(tokenizer=teacher / "tokenizer.json", **({"path": args.data} if args.data else {})),
                            progress=False)
        prompts = eval_prompts(data.split("val"), args.eval_prompts, args.prompt)
        new_tokens = FAMILY["seq_len"] + 1 - args.prompt

        rows = []
        for seed, kd in ((seed, kd) for seed in seeds for kd in args.kd.split(",")):
            args.kd_now = kd
            runs = [("off-policy", 0.0, parse_quantity(args.student_tokens, kind=Quantity.TOKENS))]
            runs += [(f"on-policy lambda {fraction:g}", fraction, parse_quantity(args.student_tokens, kind=Quantity.TOKENS))
                     for fraction in lambdas]
            results, run_dirs = {}, {}
            for name, fraction, tokens in runs:
                run_dirs[name] = run_name(fraction, tokens, seed, args)
                results[name] = student(root / run_dirs[name], teacher, fraction, tokens, seed, args, settings,
                                        corpus)
            if args.equal_total and lambdas:
                on_policy = results[runs[-1][0]]
                off = results["off-policy"]
                per_step = FAMILY["batch_size"] * FAMILY["seq_len"]  # whole steps, not above that total
                tokens = int(off.tokens * on_policy.flops / off.flops) // per_step * per_step
            if args.equal_total and lambdas and tokens > off.tokens:
                name = f"off-policy, FLOPs of lambda {lambdas[-1]:g}"
                run_dirs[name] = run_name(0.0, tokens, seed, args)
                results[name] = student(root / run_dirs[name], teacher, 0.0, tokens, seed, args, settings, corpus)
            for name, result in results.items():
                run = root / run_dirs[name]
                scores = score(load_pretrained(run).eval(), teacher_model, prompts, new_tokens, seed)
                model = RunRecord.load(run / "config.json").plan.model
                scores["train_flops"] = run_flops(model, FAMILY["seq_len"], result.tokens).student
                rows.append((seed, f"{kd}: {name}", result, scores))
                print(f"  seed {seed} {kd} {name}: done ({time.perf_counter() - start:.0f} s)", flush=True)

        print_table(rows, args, new_tokens)
        print(f"total wall time {time.perf_counter() - start:.0f} s")


def run_name(fraction: float, tokens: float, seed: int, args: argparse.Namespace) -> str:
    """The directory of a student run, named by what it computes (so that runs are reused across calls)."""
    on_policy = f"-lambda{fraction:g}-t{args.temperature:g}-p{args.prompt}" if fraction else ""
    on_policy += f"-start{args.start:g}" if fraction and args.start else ""
    return f"student-{args.kd_now}-{int(tokens)}{on_policy}-seed{seed}"


def student(out: Path, teacher: Path, fraction: float, tokens: float, seed: int,
            args: argparse.Namespace, settings: dict, corpus: dict) -> RunResult:
    if (out / "result.json").exists():
        return RunResult.load(out / "result.json")
    on_policy = ({"on_policy_fraction": fraction, "on_policy_prompt_tokens": args.prompt,
                  "on_policy_temperature": args.temperature, "on_policy_start": args.start} if fraction else {})
    config = DistillConfig(teacher=teacher, out=out, n_layers=STUDENT_LAYERS, tokens=tokens, lr=LR, seed=seed,
                           kd=args.kd_now, **on_policy, **corpus, **settings)
    return distill(config, progress=False)


def eval_prompts(tokens, count: int, length: int) -> torch.Tensor:
    """`count` prompts of `length` tokens, evenly spaced over the validation split."""
    step = (len(tokens) - length) // count
    return torch.stack([torch.from_numpy(tokens[i * step:i * step + length].astype("int64")) for i in range(count)])


@torch.no_grad()
def score(student, teacher, prompts: torch.Tensor, new_tokens: int, seed: int) -> dict[str, float]:
    """The student's continuations of `prompts` (temperature 1), scored by the teacher."""
    generator = torch.Generator().manual_seed(1000 + seed)
    tokens = generate(student, prompts, new_tokens, temperature=1.0, generator=generator).tokens
    inputs, sampled = tokens[:, :-1], tokens[:, prompts.shape[1]:]
    at = slice(prompts.shape[1] - 1, None)  # positions predicting the sampled tokens
    teacher_logits = teacher(inputs)[:, at].flatten(0, 1).float()
    student_logits = student(inputs)[:, at].flatten(0, 1).float()
    teacher_nll = -torch.log_softmax(teacher_logits, -1).gather(-1, sampled.reshape(-1, 1)).mean()
    return {"teacher_nll": teacher_nll.item(),
            "forward_kl": kd_divergence(student_logits, teacher_logits, "forward-kl").mean().item(),
            "reverse_kl": kd_divergence(student_logits, teacher_logits, "reverse-kl").mean().item()}


def print_table(rows, args: argparse.Namespace, new_tokens: int) -> None:
    print(f"\nprompt-continuation task: {args.eval_prompts} validation prompts of {args.prompt} tokens, "
          f"{new_tokens}-token continuations sampled by each student at temperature 1; "
          f"losses in nats/token, FLOPs in FLOPs")
    header = (f"{'seed':>4} {'student (KD: sampling)':<42}{'tokens':>8}{'teacher NLL':>12}{'KL(T||S)':>10}{'KL(S||T)':>10}"
              f"{'val CE':>8}{'student':>10}{'generation':>11}{'teacher':>10}{'scoring':>10}{'total':>10}")
    print(header)
    print(f"{'':>4} {'':<42}{'':>8}{'(own samples)':>12}{'':>10}{'':>10}{'':>8}{'train':>10}{'':>11}"
          f"{'forward':>10}{'(on-pol.)':>10}{'':>10}")
    for seed, name, result, scores in rows:
        train_flops = scores["train_flops"]
        generation = result.on_policy.generation_flops if result.on_policy else 0.0
        scoring = result.on_policy.teacher_scoring_flops if result.on_policy else 0.0
        print(f"{seed:>4} {name:<42}{format_quantity(result.tokens):>8}{scores['teacher_nll']:>12.4f}"
              f"{scores['forward_kl']:>10.4f}{scores['reverse_kl']:>10.4f}{result.val_loss:>8.4f}"
              f"{train_flops:>10.3g}{generation:>11.3g}{result.teacher.flops:>10.3g}{scoring:>10.3g}"
              f"{result.flops:>10.3g}")


if __name__ == "__main__":
    main()
