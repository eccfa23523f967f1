"""The logit cache's decoding made cheap (issue 65 item 1): the host decode reads the same ids and
log-probabilities bit for bit as before (the earlier code is kept here as the reference), and the
records decoded in torch (on the GPU in a run) give the same ids and relative log-probabilities
exactly, the normalised ones and the loss to float32 rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distillscale.training.logit_cache import CachedDistillationObjective, CachedWindowSampler, LogitCache
from distillscale.training.logit_cache.encoding import (SampledEncoding, TopKEncoding, _read_bit_groups,
                                                        _read_bit_spans, _read_bit_stream)
from distillscale.training.logit_cache.store import FORMAT, CacheDirectory, plan_shards
from distillscale.training.losses import DistillationLossConfig
from distillscale.training.top_k import normalise_relative


def reference_normalise(relative, log_mass, mean_mass):
    """`normalise_relative` as it was before issue 65."""
    relative = relative.astype(np.float32)
    top = relative.max(axis=1, keepdims=True)
    log_sum = top + np.log(np.exp(relative - top).sum(axis=1, keepdims=True))
    target = (log_mass.reshape(-1, 1) if log_mass is not None
              else np.float32(math.log(min(1.0, mean_mass)) if mean_mass else 0.0))
    return (relative - log_sum + target).astype(np.float32)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("width", range(1, 26))
def test_the_grouped_bit_reader_reads_every_width_as_before(width):
    rng = np.random.default_rng(width)
    for count in (1, 5, 12, 128, 131):
        data = rng.integers(0, 256, (7, (count * width + 7) // 8)).astype(np.uint8)
        assert same_bits(_read_bit_stream(data, count, width), _read_bit_spans(data, count, width))
        if width * 8 // math.gcd(width, 8) <= 64:
            assert same_bits(_read_bit_groups(data, count, width), _read_bit_spans(data, count, width))


def top_k_records(vocab: int, k: int, n: int, seed: int = 0, with_mass: bool = True):
    generator = torch.Generator().manual_seed(seed)
    top = torch.log_softmax(2 * torch.randn(n, vocab, generator=generator), -1).topk(k, dim=-1)
    encoding = TopKEncoding(vocab, k, with_mass=with_mass)
    return encoding, encoding.encode(top.indices.numpy(), top.values.numpy())


@pytest.mark.parametrize("vocab, k", [(8192, 128), (32768, 128), (512, 12), (128256, 20), (50, 50)])
def test_host_decode_and_normalisation_are_bit_for_bit_those_of_before(vocab, k):
    encoding, records = top_k_records(vocab, k, 257)
    ids, relative, _, log_mass = encoding.decode(records)
    unary = np.unpackbits(records["ids_high"], axis=1, count=encoding.ids.high_bits).view(bool)
    positions = np.flatnonzero(unary).reshape(len(records), k) - (np.arange(len(records)) * encoding.ids.high_bits)[:, None]
    expected = (positions - np.arange(k)) << encoding.ids.low_bits
    if encoding.ids.low_bits:
        expected |= _read_bit_spans(records["ids_low"], k, encoding.ids.low_bits)
    assert same_bits(ids, expected)
    for mass, mean in ((log_mass, None), (None, 0.93), (None, None)):
        assert same_bits(normalise_relative(relative, mass, mean), reference_normalise(relative, mass, mean))
    kept = relative.copy()
    normalise_relative(relative, log_mass, None)
    assert same_bits(relative, kept)  # the caller's values are left alone


def as_bytes(records: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(records.view(np.uint8).reshape(len(records), -1))


@pytest.mark.parametrize("vocab, k", [(8192, 128), (32768, 128), (512, 12), (128256, 20), (50, 50)])
def test_records_decoded_in_torch_give_the_same_ids_and_relative_log_probabilities(vocab, k):
    encoding, records = top_k_records(vocab, k, 257)
    ids, relative, _, log_mass = encoding.decode(records)
    ids_t, relative_t, log_mass_t = encoding.decode_tensors(as_bytes(records))
    assert torch.equal(ids_t, torch.from_numpy(ids)) and ids_t.dtype == torch.int64
    assert same_bits(relative_t.numpy(), relative) and same_bits(log_mass_t.numpy(), log_mass)
    sampled = SampledEncoding(vocab, 12)
    draws = np.random.default_rng(1).integers(0, vocab, (64, 12))
    records = sampled.encode(draws, np.random.default_rng(2).random(64).astype(np.float32))
    ids, entropy = sampled.decode(records)
    ids_t, entropy_t = sampled.decode_tensors(as_bytes(records))
    assert torch.equal(ids_t, torch.from_numpy(ids)) and same_bits(entropy_t.numpy(), entropy)


def synthetic_cache(path, vocab: int, k: int, seq_len: int, windows: int) -> LogitCache:
    encoding, directory, sidecars = TopKEncoding(vocab, k), CacheDirectory(path), []
    for shard in plan_shards(windows, windows_per_shard=3):
        _, records = top_k_records(vocab, k, shard.windows * seq_len, seed=shard.index)
        sidecars.append(directory.write_shard(shard, records.reshape(shard.windows, seq_len), "test", seq_len, {}))
    (path / "cache.json").write_text(__import__("json").dumps(
        {"format": FORMAT, "identity_hash": "test", "encoding": encoding.describe(), "seq_len": seq_len,
         "windows": windows, "shards": sidecars, "flops": 0.0}))
    return LogitCache(path)


def test_a_batch_decoded_on_the_device_trains_as_the_host_decoded_one(tmp_path):
    vocab, k, seq_len = 512, 16, 8
    cache = synthetic_cache(tmp_path / "cache", vocab, k, seq_len, windows=7)
    tokens = np.random.default_rng(0).integers(0, vocab, cache.tokens + 1).astype(np.uint16)
    host = CachedWindowSampler(cache, tokens, batch_size=3, seed=0)
    device = CachedWindowSampler(cache, tokens, batch_size=3, seed=0, decode="device")
    inputs, targets, ids, values = host.batch(2)
    inputs_d, targets_d, raw = device.batch(2)
    assert torch.equal(inputs, inputs_d) and torch.equal(targets, targets_d)
    assert raw.dtype == torch.uint8 and raw.shape == (3, seq_len, cache.encoding.bytes_per_token)
    assert raw.numel() < ids.numel() * 8 / 2  # the records, a fraction of the decoded tensors' bytes
    ids_d, values_d = cache.predictions_from_bytes(raw)
    assert torch.equal(ids_d, ids.long())
    torch.testing.assert_close(values_d, values, rtol=0, atol=2e-6)
    torch.manual_seed(0)
    head = torch.nn.Linear(12, vocab, bias=False)
    model = type("Student", (), {"hidden_states": staticmethod(lambda x: torch.tanh(x.unsqueeze(-1) / 100.0
                                                                                    * torch.ones(12))),
                                 "head": head})()
    objective = CachedDistillationObjective(cache, DistillationLossConfig(kd_weight=0.5, top_k=k, chunk_size=8), "")
    exact = objective(model, inputs, targets, ids, values)
    from_bytes = objective(model, inputs, targets, raw)
    assert torch.equal(exact.loss, objective(model, inputs, targets, ids, values).loss)  # deterministic
    torch.testing.assert_close(from_bytes.loss, exact.loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(from_bytes.kd, exact.kd, rtol=1e-5, atol=0)


def test_the_sampler_refuses_an_unknown_decode(tmp_path):
    cache = synthetic_cache(tmp_path / "cache", 64, 4, 4, windows=2)
    with pytest.raises(ValueError, match="decode must be one of"):
        CachedWindowSampler(cache, np.zeros(cache.tokens + 1, np.uint16), 1, 0, decode="gpu")
