"""The background batch reader: the batches the training loop would have read itself, in order,
from any step (resume); errors reach the trainer and the worker ends; it ends at the last step and
when the trainer leaves early; a run trains to the same losses with and without it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from distillscale.training import recipe
from distillscale.training.config import TrainConfig
from distillscale.training.kd_settings import DistillationLossConfig
from distillscale.training.logit_cache import CachedDistillationObjective, CachedWindowSampler, LogitCache
from distillscale.training.logit_cache.encoding import SampledEncoding
from distillscale.training.logit_cache.store import FORMAT, CacheDirectory, plan_shards
from distillscale.training.objective import ObjectiveRecord
from distillscale.training.prefetch import BatchPrefetcher

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

CPU = torch.device("cpu")
SEQ_LEN, SAMPLES = 32, 6


def sampled_cache(path: Path, vocab_size: int, windows: int, seed: int = 0) -> LogitCache:
    """A sampled logit cache of random draws, in the layout `cache-logits` writes."""
    encoding = SampledEncoding(vocab_size, SAMPLES)
    directory, rng, sidecars = CacheDirectory(path), np.random.default_rng(seed), []
    for shard in plan_shards(windows, windows_per_shard=16):
        tokens = shard.windows * SEQ_LEN
        records = encoding.encode(rng.integers(0, vocab_size, (tokens, SAMPLES)),
                                  (rng.random(tokens) * 3).astype(np.float32))
        sidecars.append(directory.write_shard(shard, records.reshape(shard.windows, SEQ_LEN), "test", SEQ_LEN,
                                              statistics={}))
    manifest = {"format": FORMAT, "identity_hash": "test", "encoding": encoding.describe(), "seq_len": SEQ_LEN,
                "windows": windows, "shards": sidecars, "sampling": {"temperature": 1.0}}
    (path / "cache.json").write_text(json.dumps(manifest))
    return LogitCache(path)


@pytest.fixture(scope="module")
def sampler(tmp_path_factory) -> CachedWindowSampler:
    cache = sampled_cache(tmp_path_factory.mktemp("cache") / "c", vocab_size=320, windows=40)
    tokens = np.random.default_rng(1).integers(0, 320, cache.tokens + 1).astype(np.uint16)
    return CachedWindowSampler(cache, tokens, batch_size=4, seed=3)


class SyntheticCacheObjective(CachedDistillationObjective):
    def record(self, tokens: int) -> ObjectiveRecord:
        return ObjectiveRecord()  # no teacher to record: the cache holds random draws


def two_micro_batches(sampler):
    return lambda step: [sampler.batch(2 * step + micro) for micro in range(2)]


@pytest.mark.parametrize("first_step", [0, 5])  # 5: a resumed run
def test_the_background_reader_yields_the_synchronous_batches_in_order(sampler, first_step):
    read = two_micro_batches(sampler)
    with BatchPrefetcher(read, first_step, 14, CPU, depth=0) as inline, \
            BatchPrefetcher(read, first_step, 14, CPU, depth=3) as background:
        assert not inline.running and background.running
        for step in range(first_step, 14):
            expected, got = inline.next(step), background.next(step)
            assert len(got) == 2 and all(len(micro) == 4 for micro in got)  # inputs, targets, ids, entropies
            for want, have in zip(expected, got):
                for a, b in zip(want, have):
                    assert a.dtype == b.dtype and torch.equal(a, b)
        with pytest.raises(IndexError):
            background.next(14)
    assert not background.running


def batches_bytes(batches) -> list:
    """Every tensor of a list of steps' micro-batches as (dtype, shape, bytes): equal only bit for bit."""
    return [(t.dtype, tuple(t.shape), t.numpy().tobytes()) for step in batches for micro in step for t in micro]


@pytest.mark.parametrize("first_step", [0, 7])  # 7: a resumed run
def test_any_number_of_workers_yields_the_same_batches_bit_for_bit_in_order(sampler, first_step):
    read = two_micro_batches(sampler)
    with BatchPrefetcher(read, first_step, 24, CPU, depth=0) as inline:
        expected = batches_bytes([inline.next(step) for step in range(first_step, 24)])
    for workers in (1, 2, 5):
        with BatchPrefetcher(read, first_step, 24, CPU, depth=2, workers=workers) as pool:
            assert pool.workers == workers
            assert batches_bytes([pool.next(step) for step in range(first_step, 24)]) == expected
        assert not pool.running


def test_the_workers_read_at_once_and_hand_the_steps_over_in_order():
    together = threading.Barrier(3, timeout=20)  # broken unless three reads run at the same time

    def read(step):
        if step < 3:
            together.wait()
        time.sleep(0.02 * (step % 3 == 0))  # every third step slower: later steps finish first
        return [(torch.full((2,), step),)]

    with BatchPrefetcher(read, 0, 12, CPU, depth=1, workers=3) as batches:  # workers raise the read-ahead
        assert [batches.next(step)[0][0][0].item() for step in range(12)] == list(range(12))
    assert not together.broken


def test_a_failed_read_among_several_workers_reaches_the_trainer_at_its_step():
    def read(step):
        if step == 4:
            raise RuntimeError("shard 7 is unreadable")
        time.sleep(0.01)
        return [(torch.full((2,), step),)]

    with BatchPrefetcher(read, 0, 30, CPU, depth=2, workers=3) as batches:
        assert [batches.next(step)[0][0][0].item() for step in range(4)] == [0, 1, 2, 3]
        with pytest.raises(RuntimeError, match="shard 7 is unreadable"):
            batches.next(4)
        assert not batches.running


def test_bad_worker_counts_are_refused(sampler):
    with pytest.raises(ValueError, match="workers must be >= 1"):
        BatchPrefetcher(two_micro_batches(sampler), 0, 5, CPU, workers=0)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        CachedWindowSampler(sampler.cache, sampler.tokens, 4, 3, workers=0)


def test_batches_are_asked_for_in_order(sampler):
    with BatchPrefetcher(two_micro_batches(sampler), 0, 5, CPU) as batches:
        with pytest.raises(ValueError, match="expected step 0"):
            batches.next(1)


def test_an_error_in_the_reader_reaches_the_trainer_and_ends_the_worker():
    def read(step):
        if step == 3:
            raise RuntimeError("shard 7 is unreadable")
        return [(torch.full((2,), step),)]

    with BatchPrefetcher(read, 0, 10, CPU, depth=2) as batches:
        assert [batches.next(step)[0][0][0].item() for step in range(3)] == [0, 1, 2]
        with pytest.raises(RuntimeError, match="shard 7 is unreadable"):
            batches.next(3)
        assert not batches.running


def test_the_worker_ends_at_the_last_step_and_when_the_trainer_leaves_early():
    reads = []

    def read(step):
        reads.append(step)
        return [(torch.zeros(1),)]

    with BatchPrefetcher(read, 0, 4, CPU, depth=2) as batches:
        for step in range(4):
            batches.next(step)
        deadline = time.monotonic() + 10
        while batches.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not batches.running  # nothing left to read: the worker has returned
    assert reads == [0, 1, 2, 3]

    reads.clear()
    with BatchPrefetcher(read, 0, 1000, CPU, depth=2) as batches:
        batches.next(0)
        time.sleep(0.05)  # the worker fills the queue and waits
    assert not batches.running  # leaving the block (divergence, an error in the step) stopped it
    assert len(reads) <= 4      # it read no further than the queue's bound


def test_distillation_from_a_cache_trains_to_the_same_losses_with_and_without_the_reader(
        tmp_path, monkeypatch):
    from distillscale.data.prepared import PreparedData

    config = TrainConfig(out=tmp_path / "run", n_layers=1, aspect_ratio=32, head_dim=32, vocab_size=320,
                         max_bytes="300k", seq_len=SEQ_LEN, batch_size=4, grad_accum=2, tokens="2560",
                         eval_tokens="1k", log_every=1, device="cpu")
    caches: list[LogitCache] = []

    def make_sampler(data: PreparedData, tokens) -> CachedWindowSampler:
        caches.append(sampled_cache(tmp_path / f"cache{len(caches)}", data.vocab_size, windows=24))
        return CachedWindowSampler(caches[-1], tokens, config.batch_size, config.seed)

    def make_objective(*_) -> SyntheticCacheObjective:
        return SyntheticCacheObjective(caches[-1], DistillationLossConfig(kd_weight=0.5), "")

    losses = []
    for depth, workers in ((0, 1), (2, 1), (2, 3)):  # inline reads; one reader; three (the same batches)
        monkeypatch.setattr(recipe, "PREFETCH_STEPS", depth)
        config = config.model_copy(update={"out": tmp_path / f"run{depth}-{workers}"})
        reader = (lambda data, tokens, workers=workers:
                  CachedWindowSampler(make_sampler(data, tokens).cache, tokens, config.batch_size, config.seed,
                                      workers=workers))
        recipe.train(config, progress=False, make_objective=make_objective, make_sampler=reader)
        metrics = [json.loads(line) for line in (config.out / "metrics.jsonl").read_text().splitlines()]
        losses.append([(m["loss"], m["kd"], m["grad_norm"]) for m in metrics])
    assert len(losses[0]) == 10 and losses[0] == losses[1] == losses[2]


@pytest.mark.parametrize("device, cores, local_ranks, expected", [
    ("cpu", 16, None, 1),    # the CPU step's own threads use the cores
    ("cuda", 16, None, 4),   # capped
    ("cuda", 3, None, 2),    # one core kept for the training thread
    ("cuda", 16, "8", 1),    # torchrun: this rank's share, 2 cores
    ("cuda", 1, None, 1),    # at least one
])
def test_distill_reads_a_cache_with_threads_for_the_cores_it_has(monkeypatch, device, cores, local_ranks, expected):
    from distillscale.training.logit_cache.distill import default_cache_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    if local_ranks is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_ranks)
    assert default_cache_workers(torch.device(device)) == expected
