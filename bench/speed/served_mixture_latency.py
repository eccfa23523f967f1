"""Served-mixture latency: the wall time of one training batch's top-k from a mixture of served teachers
(`served_mixture_top_k`), its servers asked one after another (the old code path, kept here as
`one_after_another`) vs all at once (`training.mixture.ask_servers`), side by side in one run.

Each server is an in-process fake of the completions endpoint (`serve-teacher`'s and vLLM's answer shape)
that waits `--latency` seconds before it answers, as a remote teacher's forward pass and network would;
its answer bytes are made once per prompt shape, so the servers hold the GIL as little as possible. The
client is the real `TeacherClient` (HTTP, JSON parsing and validation, which hold the GIL and do not
overlap). Rounds alternate sequential / concurrent; each figure is the median over the timed rounds
after one warm-up round. The merged answers of both ways are checked to be identical.

Usage: python bench/speed/served_mixture_latency.py [--servers 2 3] [--latency 0.2] [--batch-size 8]
       [--seq-len 128] [--top-k 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from distillscale.training.mixture import merge_top_k, served_mixture_top_k
from distillscale.training.remote_teacher import TeacherClient

VOCAB = 4096


def fake_answer(n: int, length: int, k: int, shift: int) -> bytes:
    """A valid completions answer for n prompts of `length` tokens: top-k ids shift .. shift + k - 1 with
    probabilities 0.5 / 2^rank (a different top-k per server), the prompt's own token at log(1e-4)."""
    top = {f"token_id:{shift + rank}": math.log(0.5 / 2 ** rank) for rank in range(k)}
    logprobs = {"tokens": ["token_id:0"] * length, "token_logprobs": [None] + [math.log(1e-4)] * (length - 1),
                "top_logprobs": [None] + [top] * (length - 1), "text_offset": list(range(length))}
    return json.dumps({"object": "text_completion",
                       "choices": [{"index": i, "text": "", "logprobs": logprobs} for i in range(n)]}).encode()


def fake_server(latency: float, k: int, shift: int) -> ThreadingHTTPServer:
    answers: dict[tuple[int, int], bytes] = {}
    card = json.dumps({"object": "list", "data": [{"id": f"fake-{shift}", "max_model_len": 1 << 16}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._reply(card)

        def do_POST(self):
            prompts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["prompt"]
            shape = (len(prompts), len(prompts[0]))
            if shape not in answers:
                answers[shape] = fake_answer(*shape, k, shift)
            time.sleep(latency)
            self._reply(answers[shape])

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def one_after_another(clients: list, weights: list[float], prompts: torch.Tensor,
                      vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`served_mixture_top_k` as it was: one round trip after another."""
    answers = [client.top_logprobs(prompts) if weight > 0 else None for client, weight in zip(clients, weights)]
    return merge_top_k([a.ids if a is not None else None for a in answers],
                       [a.log_probs if a is not None else None for a in answers], weights, vocab_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--latency", type=float, default=0.2, help="each server's wait before it answers (s)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    prompts = torch.randint(0, VOCAB, (args.batch_size, args.seq_len + 1), generator=torch.Generator().manual_seed(0))
    print(f"batch {args.batch_size} x {args.seq_len} tokens, top-{args.top_k}, latency {args.latency:g} s per "
          f"server; median of {args.rounds} rounds")
    print(f"{'servers':>7} {'one after another':>18} {'at once':>9} {'ratio':>6}")
    for count in args.servers:
        running = [fake_server(args.latency, args.top_k, shift=i * args.top_k) for i in range(count)]
        clients = [TeacherClient(f"http://127.0.0.1:{httpd.server_address[1]}/v1", args.top_k) for httpd in running]
        for client in clients:
            client.connect()
        weights = [1.0 / count] * count
        times: dict[str, list[float]] = {"sequential": [], "concurrent": []}
        for round_ in range(args.rounds + 1):
            for name, ask in (("sequential", one_after_another), ("concurrent", served_mixture_top_k)):
                started = time.perf_counter()
                ids, log_probs = ask(clients, weights, prompts, VOCAB)
                elapsed = time.perf_counter() - started
                if round_:
                    times[name].append(elapsed)
                if name == "sequential":
                    reference = ids, log_probs
                elif not (torch.equal(ids, reference[0]) and torch.equal(log_probs, reference[1])):
                    raise SystemExit("the concurrent answers differ from the sequential ones")
        for httpd in running:
            httpd.shutdown()
            httpd.server_close()
        sequential, concurrent = (statistics.median(times[name]) for name in ("sequential", "concurrent"))
        print(f"{count:>7} {sequential:>16.3f} s {concurrent:>7.3f} s {sequential / concurrent:>5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
