"""How fast `distillscale loss` scores a model: its scorer (the trunk on a batch, then the head and the
cross-entropy on chunks of the batch's flattened tokens) side by side with the scorer it replaced (the
head and the cross-entropy row by row, `training.losses.cross_entropy_loss` on each window) and with
the engine's own evaluation (what a run's val_loss costs: `training.evaluation.evaluate`), on the same
loaded model, windows and threads, in one run.

Two models, each saved as a Hugging Face directory with its tokenizer (a BPE trained on a generated
corpus): a Llama (imported as the family: the fast path) and a GPT-2 (the generic AutoModelForCausalLM
path). The three scorers take turns over `--rounds` rounds on the same windows; printed: each one's
median tokens/s, the median of the per-round ratios, and the losses (the same to float32 rounding).
Then `distillscale loss` end to end (preparing nothing: the corpus is prepared first; loading the
model, scoring, writing the record) once per model.

Run: .venv/bin/python bench/speed/loss_throughput.py [--seq-len 512] [--tokens 16K] [--rounds 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def corpus(folder: Path, documents: int = 300, words: int = 900) -> Path:
    rng = random.Random(0)
    vocabulary = ["".join(rng.choice("etaoinshrdlcumwfgypbvk") for _ in range(rng.randint(1, 9))) for _ in range(5000)]
    folder.mkdir(parents=True)
    for document in range(documents):
        (folder / f"{document:04d}.txt").write_text(" ".join(rng.choice(vocabulary) for _ in range(words)) + "\n")
    return folder


def save_model(kind: str, tokenizer, folder: Path) -> Path:
    import transformers

    vocab = tokenizer.get_vocab_size()
    if kind == "llama":
        config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=512, intermediate_size=1536, num_hidden_layers=6,
                                          num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048,
                                          tie_word_embeddings=False)
        model = transformers.LlamaForCausalLM(config)
    else:
        end = tokenizer.token_to_id("<|endoftext|>")
        config = transformers.GPT2Config(vocab_size=vocab, n_embd=512, n_layer=6, n_head=8, n_positions=2048,
                                         bos_token_id=end, eos_token_id=end)
        model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")
    fast.save_pretrained(folder)
    return folder


class RowByRowScorer:
    """The scorer `distillscale loss` had before: the trunk on the batch, then the chunked
    cross-entropy of each window on its own (its mean times the window's tokens)."""

    def __init__(self, scorer):
        self.scorer = scorer

    def __call__(self, inputs, targets) -> list[float]:
        import torch

        from distillscale.training.evaluation import bf16_autocast
        from distillscale.training.losses import cross_entropy_loss

        s = self.scorer
        inputs, targets = inputs.to(s.torch_device), targets.to(s.torch_device)
        with torch.no_grad(), bf16_autocast(s.torch_device, s.autocast):
            hidden = s.teacher.hidden_states(inputs)
            return [cross_entropy_loss(hidden[row], s.teacher.head, targets[row], chunk_size=s.chunk).ce.double().item()
                    * targets.shape[1] for row in range(len(targets))]


def compare(teacher, device, split, seq_len: int, tokens: int, batch_size: int, rounds: int) -> dict:
    """Each scorer's tokens/s per round, taking turns on the same windows; and the loss each gives."""
    import torch

    from distillscale.data import iter_eval_batches
    from distillscale.evaluation.scoring import LocalScorer
    from distillscale.training.evaluation import evaluate

    new = LocalScorer(teacher, device, autocast=False)
    old = RowByRowScorer(new)
    batches = list(iter_eval_batches(split, seq_len, batch_size, tokens))
    scored = sum(targets.numel() for _, targets in batches)

    def by(scorer):
        return lambda: sum(sum(scorer(inputs, targets)) for inputs, targets in batches) / scored

    runs = {"new": by(new), "old": by(old), "evaluate": lambda: evaluate(teacher, split, seq_len, batch_size, tokens)}
    speeds, losses = {name: [] for name in runs}, {}
    with torch.no_grad():
        for name, run in runs.items():
            losses[name] = run()  # warm up, and the loss
        for _ in range(rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                speeds[name].append(scored / (time.perf_counter() - start))
    return {"tokens": scored, "speeds": speeds, "losses": losses}


def main() -> None:
    import torch

    from distillscale.data import DataConfig, prepare_data
    from distillscale.data.tokenizer import train_byte_level_bpe
    from distillscale.evaluation.loss import evaluate_loss
    from distillscale.training.distributed import resolve_device
    from distillscale.training.teachers import find_teacher, load_teacher
    from distillscale.units import Quantity, parse_quantity

    parser = argparse.ArgumentParser()
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--tokens", default="16K")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    tokens = int(parse_quantity(args.tokens, "--tokens", kind=Quantity.TOKENS))
    device = resolve_device(args.device)
    root = Path(tempfile.mkdtemp(prefix="loss-bench-"))
    try:
        text = corpus(root / "corpus")
        tokenizer = train_byte_level_bpe((p.read_text() for p in sorted(text.iterdir())), 8192)
        print(f"device {device}, {torch.get_num_threads()} threads; windows of {args.seq_len} tokens, batches of "
              f"{args.batch_size}, {tokens:,} tokens a pass, {args.rounds} rounds; 6 layers, d_model 512, "
              f"vocabulary {tokenizer.get_vocab_size():,}")
        for kind in ("llama", "gpt2"):
            folder = save_model(kind, tokenizer, root / kind)
            data = prepare_data(DataConfig(path=str(text), tokenizer=str(folder), cache_dir=str(root / "cache")),
                                progress=False)
            teacher = load_teacher(find_teacher(folder), data.vocab_size, device, args.seq_len, dtype=torch.float32)
            result = compare(teacher, device, data.split("val"), args.seq_len, tokens, args.batch_size, args.rounds)
            speeds = result["speeds"]
            ratios = {name: statistics.median(a / b for a, b in zip(speeds["new"], speeds[name]))
                      for name in ("old", "evaluate")}
            median = {name: statistics.median(values) for name, values in speeds.items()}
            print(f"{kind}: {result['tokens']:,} tokens; tokens/s new scorer {median['new']:,.0f}, row-by-row scorer "
                  f"{median['old']:,.0f}, evaluate {median['evaluate']:,.0f}; new/old {ratios['old']:.2f}x, "
                  f"new/evaluate {ratios['evaluate']:.2f}x; losses {result['losses']['new']:.6f} / "
                  f"{result['losses']['old']:.6f} / {result['losses']['evaluate']:.6f}")
            start = time.perf_counter()
            record = evaluate_loss(folder, data.directory, seq_len=args.seq_len, max_tokens=tokens,
                                   batch_size=args.batch_size, device=args.device, progress=False)
            print(f"{kind}: distillscale loss end to end {record.tokens / (time.perf_counter() - start):,.0f} tokens/s "
                  f"({record.tokens_per_second:,.0f} scoring alone), {record.nats_per_token:.6f} nats/token")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
