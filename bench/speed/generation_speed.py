"""Generation speed: tokens/s of sampling with the KV cache (`model.generation.generate`: the prompt
read once, then one position per step) against recomputing the whole prefix at every step (the same
function with `use_cache=False`), measured side by side in one run, for 256-token continuations.

Default model: the micro sweep's largest teacher (report/micro_sweep.toml: depth 4, aspect ratio 24,
so d_model 96, head_dim 24, vocabulary 512), also the shape `bench/distillation/on_policy_check.py` distils from.
The two methods alternate round by round so load from other processes hits both alike; each figure
is the median over the timed rounds. Both sample from the same generator seed, and the bench checks
that they draw the same tokens. The FLOP column is what each method computes (KV cache:
`planning.flops.generation_flops`; recomputation: a full forward over the prefix at every step).

Usage: python bench/speed/generation_speed.py [--n-layers 4] [--aspect-ratio 24] [--head-dim 24]
       [--vocab 512] [--prompt 32] [--new 256] [--batch-size 8] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from distillscale.model import ModelConfig, Transformer, generate
from distillscale.planning.flops import generation_flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--aspect-ratio", type=int, default=24)
    parser.add_argument("--head-dim", type=int, default=24)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = ModelConfig(n_layers=args.n_layers, aspect_ratio=args.aspect_ratio, head_dim=args.head_dim,
                         vocab_size=args.vocab, max_seq_len=args.prompt + args.new)
    torch.manual_seed(0)
    model = Transformer(config).eval()
    prompt = torch.randint(0, args.vocab, (args.batch_size, args.prompt))

    def run(use_cache: bool) -> tuple[float, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        tokens = generate(model, prompt, args.new, generator=generator, use_cache=use_cache).tokens
        return time.perf_counter() - start, tokens

    run(True), run(False)  # warm-up
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for use_cache in (True, False):
            seconds, tokens = run(use_cache)
            times[use_cache].append(seconds)
            if use_cache:
                cached_tokens = tokens
            elif not torch.equal(tokens, cached_tokens):
                print("warning: the two methods drew different tokens (float rounding at a near tie)")

    new_tokens = args.batch_size * args.new
    kv_flops = generation_flops(config, args.prompt, args.new, args.batch_size)
    recompute_flops = args.batch_size * sum(t * config.forward_flops_per_token(t)
                                            for t in range(args.prompt, args.prompt + args.new))
    print(f"model: n_layers {config.n_layers}, d_model {config.d_model}, head_dim {config.head_dim}, "
          f"vocab {config.vocab_size}: {config.non_embedding_params:,} non-embedding parameters; "
          f"threads {torch.get_num_threads()}")
    print(f"{args.batch_size} prompts of {args.prompt} tokens, {args.new}-token continuations, "
          f"median of {args.rounds} rounds")
    print(f"{'method':<22}{'seconds':>10}{'tokens/s':>12}{'FLOPs':>12}")
    rates = {}
    for use_cache, name, flops in ((True, "KV cache", kv_flops), (False, "recompute prefix", recompute_flops)):
        seconds = statistics.median(times[use_cache])
        rates[use_cache] = new_tokens / seconds
        print(f"{name:<22}{seconds:>10.3f}{rates[use_cache]:>12,.0f}{flops:>12.3g}")
    print(f"KV cache / recompute: {rates[True] / rates[False]:.1f}x tokens/s "
          f"({recompute_flops / kv_flops:.1f}x fewer FLOPs)")


if __name__ == "__main__":
    main()
