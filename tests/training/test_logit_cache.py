"""Offline teacher logits: the record encoding, `cache-logits` (identity, resume, refusals), the
loss from the cache against the loss from the live teacher, and `distill --teacher-cache`."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from distillscale.data import DataConfig, prepare_data
from distillscale.errors import UserError
from distillscale.model import ModelConfig, Transformer
from distillscale.training.config import DistillConfig
from distillscale.training.logit_cache import (CachedDistillationObjective, CachedWindowSampler, LogitCache,
                                               TopKEncoding)
from distillscale.training.losses import DistillationLossConfig, distillation_loss
from distillscale.training.teachers import find_teacher, load_teacher

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

SEQ_LEN, TOP_K, MAX_BYTES = 32, 16, "200k"
TEACHER = ("--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32", "--seq-len", str(SEQ_LEN),
           "--batch-size", "8", "--tokens", "4k", "--vocab-size", "320", "--max-bytes", MAX_BYTES,
           "--eval-tokens", "1k", "--eval-every", "0", "--device", "cpu")
# 64 windows of 32 tokens in 4 shards of 16 windows.
CACHE = ("--top-k", str(TOP_K), "--seq-len", str(SEQ_LEN), "--tokens", "2048", "--shard-tokens", "512", "--batch-size", "16",
         "--eval-tokens", "1k", "--device", "cpu")
# 4 steps, a checkpoint every 2.
STUDENT = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "32", "--tokens", "1k", "--batch-size", "8",
           "--save-every", "2", "--eval-tokens", "1k", "--eval-every", "0", "--device", "cpu")


def run_cli(*args) -> None:
    from distillscale.cli import main

    assert main([str(a) for a in args]) == 0


def read_json(path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    run_cli("train", "--out", out, *TEACHER)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory, teacher):
    out = tmp_path_factory.mktemp("caches") / "top16"
    run_cli("cache-logits", "--teacher", teacher, "--out", out, *CACHE)
    return out


@pytest.fixture
def cache_copy(cache, tmp_path):
    """A copy to damage."""
    return shutil.copytree(cache, tmp_path / "cache")


def student_data(teacher):
    return prepare_data(DataConfig(tokenizer=teacher / "tokenizer.json", max_bytes=MAX_BYTES), progress=False)


# -- the encoding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("vocab_size, top_k", [(32768, 128), (32168, 128), (32768, 32), (300, 300),
                                                (300, 160), (1 << 20, 7), (5, 1)])
def test_encoding_round_trips_ids_exactly_and_log_probs_within_half_a_step(vocab_size, top_k):
    rng = np.random.default_rng(0)
    n = 64
    ids = np.stack([rng.choice(vocab_size, top_k, replace=False) for _ in range(n)])
    log_probs = (rng.normal(size=(n, top_k)) * 3 - 5).astype(np.float32)
    encoding = TopKEncoding(vocab_size, top_k)
    records = encoding.encode(ids, log_probs)
    assert records.itemsize == encoding.bytes_per_token
    decoded_ids, relative, step, _ = encoding.decode(records)
    order = np.argsort(ids, axis=1)
    assert np.array_equal(decoded_ids, np.take_along_axis(ids, order, axis=1))
    exact = np.take_along_axis(log_probs, order, axis=1)
    exact -= exact.max(axis=1, keepdims=True)
    assert np.all(np.abs(relative - exact) <= step[:, None] * (0.5 + 1e-4) + 1e-6)


def test_bytes_per_token_meet_the_target_for_a_32k_vocabulary():
    # <= 300 targeted; uint16 ids alone take 256; 4 of them the stored top-k mass (the tail, issue 39)
    assert TopKEncoding(32768, 128).bytes_per_token == 296
    assert TopKEncoding(32168, 128).bytes_per_token == 296
    assert TopKEncoding(32768, 32).bytes_per_token == 88
    assert TopKEncoding(32768, 128, with_mass=False).bytes_per_token == 292  # caches made before


def test_corrupted_id_bits_are_detected():
    encoding = TopKEncoding(1000, 8)
    records = encoding.encode(np.arange(16).reshape(2, 8), np.zeros((2, 8), np.float32))
    records["ids_high"][0, 0] ^= 0x80
    with pytest.raises(ValueError, match="corrupted"):
        encoding.decode(records)


# -- what the cache holds -------------------------------------------------------------------------

def test_cache_json_records_the_teacher_the_data_and_the_one_time_cost(cache, teacher):
    manifest = read_json(cache / "cache.json")
    data = student_data(teacher)
    teacher_result = read_json(teacher / "result.json")
    assert manifest["teacher"]["path"] == str(teacher.resolve()) and manifest["teacher"]["kind"] == "run"
    assert len(manifest["teacher"]["weights_sha256"]) == 64
    assert manifest["teacher"]["teacher_val_loss"] == pytest.approx(teacher_result["val_loss"], rel=1e-6)
    assert manifest["data"]["fingerprint"] == data.fingerprint
    assert manifest["data"]["tokenizer_hash"] == data.tokenizer_hash
    assert (manifest["split"], manifest["seq_len"], manifest["windows"], manifest["tokens"], manifest["top_k"]) \
        == ("student", SEQ_LEN, 64, 2048, TOP_K)
    encoding = TopKEncoding(data.vocab_size, TOP_K)
    assert manifest["encoding"] == encoding.describe()
    assert manifest["bytes_per_token"] == encoding.bytes_per_token
    assert manifest["flops"] == teacher_result["forward_flops_per_token"] * 2048
    assert [shard["windows"] for shard in manifest["shards"]] == [16, 16, 16, 16]
    assert 0 < manifest["mean_top_k_mass"] < 1
    assert (cache / "tokenizer.json").read_text() == (teacher / "tokenizer.json").read_text()


def test_cached_predictions_are_the_teachers_top_k_in_the_window_context(cache, teacher):
    data = student_data(teacher)
    model = load_teacher(find_teacher(teacher), data.vocab_size, torch.device("cpu"), SEQ_LEN)
    windows = np.array([0, 17, 63])
    ids, log_probs = LogitCache(cache).teacher_predictions(windows)
    tokens = np.asarray(data.split("student"))
    inputs = torch.from_numpy(np.stack([tokens[w * SEQ_LEN:(w + 1) * SEQ_LEN] for w in windows]).astype(np.int64))
    with torch.no_grad():
        top_log_probs, top_ids = model.head(model.hidden_states(inputs)).log_softmax(-1).topk(TOP_K, dim=-1)
    assert np.array_equal(ids, np.sort(top_ids.numpy(), axis=-1))
    # normalised over the whole vocabulary with the stored top-k mass: the tail 1 - sum is the teacher's
    torch.testing.assert_close(torch.from_numpy(log_probs).logsumexp(-1), top_log_probs.logsumexp(-1),
                               rtol=0, atol=1e-5)
    exact = np.sort(top_log_probs.numpy(), axis=-1)
    step = read_json(cache / "cache.json")["quantisation"]["max_step"]
    assert np.abs(np.sort(log_probs, axis=-1) - exact).max() <= step + 1e-5  # r within step / 2, and its logsumexp


def test_sampler_draws_whole_cached_windows_as_a_pure_function_of_the_step(cache, teacher):
    data = student_data(teacher)
    logit_cache = LogitCache(cache)
    sampler = CachedWindowSampler(logit_cache, data.split("student"), batch_size=4, seed=3)
    inputs, targets, ids, log_probs = sampler.batch(7)
    starts = sampler.window_starts(7)
    assert np.all(starts % SEQ_LEN == 0) and np.all(starts < 2048)
    tokens = np.asarray(data.split("student"))
    assert np.array_equal(inputs.numpy(), np.stack([tokens[s:s + SEQ_LEN] for s in starts]))
    assert np.array_equal(targets.numpy(), np.stack([tokens[s + 1:s + SEQ_LEN + 1] for s in starts]))
    assert np.array_equal(ids.numpy(), logit_cache.teacher_predictions(starts // SEQ_LEN)[0])
    halves = [sampler.batch(7, rank, 2) for rank in (0, 1)]
    assert all(torch.equal(torch.cat([h[i] for h in halves]), whole)
               for i, whole in enumerate((inputs, targets, ids, log_probs)))


# -- the loss from the cache is the live top-k loss -----------------------------------------------

@pytest.mark.parametrize("chunk_size", [None, 100])
def test_loss_from_the_cache_equals_the_live_teacher_loss_within_the_quantisation_bound(cache, teacher,
                                                                                      chunk_size):
    data = student_data(teacher)
    live_teacher = load_teacher(find_teacher(teacher), data.vocab_size, torch.device("cpu"), SEQ_LEN)
    logit_cache = LogitCache(cache)
    inputs, targets, ids, log_probs = CachedWindowSampler(logit_cache, data.split("student"), 8, 0).batch(0)
    torch.manual_seed(0)
    student = Transformer(ModelConfig(n_layers=1, aspect_ratio=32, head_dim=32, vocab_size=data.vocab_size,
                                      max_seq_len=SEQ_LEN))
    config = DistillationLossConfig(kd_weight=0.7, top_k=TOP_K, chunk_size=chunk_size)

    cached = CachedDistillationObjective(logit_cache, config, flops_method="")(student, inputs, targets, ids,
                                                                                log_probs)
    cached.loss.backward()
    cached_grad = student.lm_head.weight.grad.clone()
    student.zero_grad()
    with torch.no_grad():
        teacher_hidden = live_teacher.hidden_states(inputs).flatten(0, 1)
    live = distillation_loss(student.hidden_states(inputs).flatten(0, 1), student.head, teacher_hidden,
                             live_teacher.head, targets.flatten(), config)
    live.loss.backward()

    # The student's own terms do not involve the teacher.
    assert cached.ce.item() == pytest.approx(live.ce.item(), rel=1e-6)
    assert cached.z_loss.item() == pytest.approx(live.z_loss.item(), rel=1e-6)
    # KD: the documented per-token bound 2h + (exp(2h) - 1) E_p |log p_T^k - log p_S|, h = step / 2.
    with torch.no_grad():
        top_logits, support = live_teacher.head(teacher_hidden).topk(TOP_K, dim=-1)
        teacher_log_probs = top_logits.log_softmax(-1)
        student_log_probs = student.head(student.hidden_states(inputs).flatten(0, 1)).log_softmax(-1)
        gap = (teacher_log_probs - student_log_probs.gather(-1, support)).abs()
    _, _, step, _ = logit_cache.encoding.decode(logit_cache.records(CachedWindowSampler(
        logit_cache, data.split("student"), 8, 0).window_starts(0) // SEQ_LEN))
    h = torch.from_numpy(step).double() / 2
    bound = (2 * h + torch.expm1(2 * h) * (teacher_log_probs.exp() * gap).sum(-1).double()).mean().item()
    error = abs(cached.kd.item() - live.kd.item())
    assert 0 < error <= bound, (error, bound)
    assert error < 0.01  # in practice the rounding errors average out far below the bound
    assert cached.loss.item() == pytest.approx(live.loss.item(), abs=0.7 * bound + 1e-6)
    assert torch.allclose(cached_grad, student.lm_head.weight.grad, rtol=0.05, atol=1e-4)


# -- cache-logits: resume and refusals ------------------------------------------------------------

def test_an_interrupted_cache_run_keeps_its_finished_shards(cli, cache, cache_copy, teacher):
    (cache_copy / "shard-00003.bin").unlink()
    (cache_copy / "cache.json").unlink()
    kept = {path.name: path.stat().st_mtime_ns for path in cache_copy.glob("shard-0000[012].*")}
    code, out, err = cli("cache-logits", "--teacher", teacher, "--out", cache_copy, *CACHE)
    assert code == 0, err
    assert {path.name: path.stat().st_mtime_ns for path in cache_copy.glob("shard-0000[012].*")} == kept
    assert (cache_copy / "shard-00003.bin").read_bytes() == (cache / "shard-00003.bin").read_bytes()
    assert read_json(cache_copy / "cache.json")["shards"] == read_json(cache / "cache.json")["shards"]


def test_a_finished_cache_is_checked_and_reused(cli, cache_copy, teacher):
    before = (cache_copy / "cache.json").read_text()
    code, out, err = cli("cache-logits", "--teacher", teacher, "--out", cache_copy, *CACHE, "--json")
    assert code == 0, err
    assert json.loads(out) == json.loads(before) and (cache_copy / "cache.json").read_text() == before


def test_a_corrupted_shard_is_rebuilt_by_cache_logits(cli, cache, cache_copy, teacher):
    shard = cache_copy / "shard-00001.bin"
    shard.write_bytes(b"\0" + shard.read_bytes()[1:])
    assert cli("cache-logits", "--teacher", teacher, "--out", cache_copy, *CACHE)[0] == 0
    assert shard.read_bytes() == (cache / "shard-00001.bin").read_bytes()


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(path.read_bytes()[:-7]), "is truncated or padded"),
    (lambda path: path.write_bytes(path.read_bytes()[:-1] + b"\x01"), "is corrupted (sha256 mismatch)"),
    (lambda path: path.unlink(), "is missing"),
])
def test_damaged_caches_are_refused(cli, tmp_path, cache_copy, damage, message):
    damage(cache_copy / "shard-00002.bin")
    code, _, err = cli("distill", "--teacher-cache", cache_copy, "--out", tmp_path / "student", *STUDENT)
    assert code == 2 and message in err and "run the `distillscale cache-logits` command" in err, err
    assert not (tmp_path / "student").exists()


@pytest.mark.parametrize("args, message", [
    (("--max-bytes", "150k"), "was made for other data"),
    (("--tokenizer", "OTHER"), "was made with another tokenizer"),
    (("--seq-len", "16"), "--seq-len 16 differs from the 32 of the logit cache"),
    (("--top-k", "17"), "--top-k 17 is more than the logit cache"),
    (("--teacher", "TEACHER"), "give --teacher or --teacher-cache, not both"),
])
def test_distill_refuses_a_cache_that_does_not_fit(cli, tmp_path, cache, teacher, args, message):
    if "OTHER" in args:
        from distillscale.data.tokenizer import train_byte_level_bpe

        train_byte_level_bpe(["another corpus, another tokenizer"] * 50, 300).save(str(tmp_path / "other.json"))
    args = [{"OTHER": tmp_path / "other.json", "TEACHER": teacher}.get(a, a) for a in args]
    code, _, err = cli("distill", "--teacher-cache", cache, "--out", tmp_path / "student", *STUDENT, *args)
    assert code == 2 and message in err, err
    assert not (tmp_path / "student").exists()


def test_distill_refuses_an_unfinished_cache(cli, tmp_path, cache_copy):
    (cache_copy / "cache.json").unlink()
    code, _, err = cli("distill", "--teacher-cache", cache_copy, "--out", tmp_path / "student", *STUDENT)
    assert code == 2 and "is not a finished logit cache (no cache.json)" in err


@pytest.mark.parametrize("args, message", [
    (("--top-k", "400"), "--top-k 400 keeps all 320 ids of the vocabulary"),
    # a full distribution read as top-k targets, at the top-k kd-weight default 0.5
    (("--top-k", "320"), "--top-k 320 keeps all 320 ids of the vocabulary: that is the full distribution"),
    (("--tokens", "100M"), "--tokens 100000000 is more than the student split holds"),
    (("--tokens", "8"), "--tokens 8 is less than one window of --seq-len 32"),
    (("--top-k", "0"), "invalid --top-k: Input should be greater than or equal to 1"),
    (("--shard-tokens", "lots"), "malformed --shard-tokens 'lots'"),
])
def test_cache_logits_refuses_bad_settings(cli, tmp_path, teacher, args, message):
    code, _, err = cli("cache-logits", "--teacher", teacher, "--out", tmp_path / "cache", *CACHE, *args)
    assert code == 2 and message in err, err
    assert not (tmp_path / "cache").exists()


def test_cache_logits_refuses_an_out_inside_its_teacher(cli, teacher):
    """--out inside the teacher run wrote the cache's shards among the teacher's own files."""
    before = sorted(p.name for p in teacher.iterdir())
    code, _, err = cli("cache-logits", "--teacher", teacher, "--out", teacher / "cache", *CACHE)
    assert code == 2 and "--out" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in teacher.iterdir()) == before


def test_cache_logits_never_replaces_what_it_did_not_make(cli, tmp_path, cache_copy, teacher):
    code, _, err = cli("cache-logits", "--teacher", teacher, "--out", cache_copy, *CACHE, "--top-k", "8")
    assert code == 2 and "holds a logit cache of another teacher, data or settings" in err
    assert read_json(cache_copy / "cache.json")["top_k"] == TOP_K

    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = cli("cache-logits", "--teacher", teacher, "--out", other, *CACHE, "--overwrite")
    assert code == 2 and "holds files that are not part of a logit cache" in err
    assert (other / "notes.txt").read_text() == "mine"

    code, _, err = cli("cache-logits", "--teacher", teacher, "--out", cache_copy, *CACHE, "--top-k", "8",
                       "--tokens", "512", "--overwrite")
    assert code == 0, err
    manifest = read_json(cache_copy / "cache.json")
    assert manifest["top_k"] == 8 and sorted(p.name for p in cache_copy.glob("shard-*.bin")) == ["shard-00000.bin"]


# -- distill --teacher-cache ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cached_student(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("students") / "cached"
    run_cli("distill", "--teacher-cache", cache, "--out", out, *STUDENT, "--kd-weight", "0.7")
    return out


def test_distill_from_the_cache_records_the_cached_teacher_and_no_teacher_flops(cached_student, cache, teacher):
    out = cached_student
    result = read_json(out / "result.json")
    assert result["status"] == "completed"
    assert math.isfinite(result["val_loss"])
    manifest = read_json(cache / "cache.json")
    assert result["teacher"]["path"] == str(teacher.resolve())
    assert result["teacher"]["teacher_val_loss"] == manifest["teacher"]["teacher_val_loss"]
    assert result["teacher"]["flops"] == 0
    assert result["flops"] == 3 * result["forward_flops_per_token"] * result["tokens"]
    assert result["teacher_cache"]["flops"] == manifest["flops"] > 0
    assert result["teacher_cache"]["bytes_per_token"] == manifest["bytes_per_token"]
    assert result["distillation"]["top_k"] == TOP_K and result["distillation"]["kd_weight"] == 0.7
    config = read_json(out / "config.json")["config"]
    assert config["teacher"] is None and config["teacher_cache"] == str(cache.resolve())
    assert (config["split"], config["seq_len"]) == ("student", SEQ_LEN)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(m["kd"]) and m["kd"] >= 0 for m in metrics)


def test_a_student_reads_the_caches_first_tokens_again_with_unique_tokens(cli, tmp_path, cache, monkeypatch):
    """`distill --teacher-cache --unique-tokens U`: the student re-reads the cache's first U tokens (a
    family's student whose best reach is short, `planning.family_cache`): every batch from those windows,
    its epochs and unique tokens recorded; more than the cache holds is one line."""
    from distillscale.training.logit_cache.sampler import CachedWindowSampler

    drawn = []
    batch = CachedWindowSampler.batch

    def recorded(self, step, rank=0, world_size=1):
        drawn.append(self.rank_windows(step, rank, world_size).copy())
        return batch(self, step, rank, world_size)

    monkeypatch.setattr(CachedWindowSampler, "batch", recorded)
    out = tmp_path / "student"
    code, _, err = cli("distill", "--teacher-cache", cache, "--out", out, *STUDENT, "--unique-tokens", "256")
    assert code == 0, err
    result = read_json(out / "result.json")
    assert result["unique_tokens"] == 256 and result["epochs"] == result["tokens"] / 256
    windows = {int(w) for step in drawn for w in step.ravel()}
    assert windows == set(range(256 // SEQ_LEN))   # the cache's first 8 windows, every one of them
    code, _, err = cli("distill", "--teacher-cache", cache, "--out", tmp_path / "more", *STUDENT,
                       "--unique-tokens", "4096")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--unique-tokens 4,096 is more than the 2,048" in err


def test_an_interrupted_distillation_from_the_cache_resumes_to_the_same_loss(cli, tmp_path, cache,
                                                                            cached_student, monkeypatch):
    import distillscale.training.recipe as recipe

    train_step, calls = recipe.train_step, []

    def interrupted_at_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return train_step(*args, **kwargs)

    out = tmp_path / "student"
    with monkeypatch.context() as patch:
        patch.setattr(recipe, "train_step", interrupted_at_step_3)
        assert cli("distill", "--teacher-cache", cache, "--out", out, *STUDENT, "--kd-weight", "0.7")[0] == 130
    assert not (out / "result.json").exists()
    code, _, err = cli("distill", "--teacher-cache", cache, "--out", out, *STUDENT, "--kd-weight", "0.7")
    assert code == 0 and "resuming" in err, err
    assert read_json(out / "result.json")["val_loss"] == read_json(cached_student / "result.json")["val_loss"]


def test_reader_threads_change_no_bit_of_a_run_interrupted_or_not(cli, tmp_path, cache, cached_student,
                                                                  monkeypatch):
    """--cache-workers 3, interrupted at step 3 and resumed with --cache-workers 2: the same weights, bit
    for bit, as the uninterrupted run with the CPU's default single reader."""
    import distillscale.training.recipe as recipe

    train_step, calls = recipe.train_step, []

    def interrupted_at_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return train_step(*args, **kwargs)

    out = tmp_path / "student"
    with monkeypatch.context() as patch:
        patch.setattr(recipe, "train_step", interrupted_at_step_3)
        code, _, _ = cli("distill", "--teacher-cache", cache, "--out", out, *STUDENT, "--kd-weight", "0.7",
                         "--cache-workers", "3")
        assert code == 130
    code, _, err = cli("distill", "--teacher-cache", cache, "--out", out, *STUDENT, "--kd-weight", "0.7",
                       "--cache-workers", "2")
    assert code == 0 and "resuming" in err, err
    assert (out / "model.safetensors").read_bytes() == (cached_student / "model.safetensors").read_bytes()
    assert read_json(out / "result.json")["val_loss"] == read_json(cached_student / "result.json")["val_loss"]


@pytest.mark.parametrize("args, message", [
    (("--cache-workers", "0"), "invalid --cache-workers: Input should be greater than or equal to 1"),
    (("--cache-workers", "two"), "--cache-workers"),
])
def test_distill_refuses_bad_reader_thread_counts(cli, tmp_path, cache, args, message):
    code, _, err = cli("distill", "--teacher-cache", cache, "--out", tmp_path / "student", *STUDENT, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "student").exists()


def test_cache_workers_need_a_cache(cli, tmp_path, teacher):
    code, _, err = cli("distill", "--teacher", teacher, "--out", tmp_path / "student", *STUDENT,
                       "--cache-workers", "2")
    assert code == 2 and "--cache-workers needs --teacher-cache" in err, err


def test_a_shard_that_changes_during_a_run_stops_it_with_one_line(cli, tmp_path, cache_copy, monkeypatch):
    """A shard checked when the cache was opened and overwritten in place afterwards (simulated: the
    open-time check passes it): the readers' decoding finds it, and the run stops with one line."""
    from distillscale.training.logit_cache import store

    shard = cache_copy / "shard-00002.bin"
    shard.write_bytes(bytes(shard.stat().st_size))  # zeros: no id bits
    monkeypatch.setattr(store, "check_shard", lambda *args: None)
    code, _, err = cli("distill", "--teacher-cache", cache_copy, "--out", tmp_path / "student", *STUDENT,
                       "--cache-workers", "2")
    (line,) = [line for line in err.splitlines() if line.startswith("distillscale: error:")]  # no traceback
    assert code == 2 and "Traceback" not in err, err
    assert "shard-00002.bin do not decode" in line and "run the `distillscale cache-logits` command" in err, err


def test_distill_config_needs_a_teacher_or_a_cache(tmp_path):
    with pytest.raises(ValueError, match="missing required setting --teacher"):
        DistillConfig(out=tmp_path, n_layers=1, tokens=100)


def test_logit_cache_refuses_a_directory_that_is_not_a_cache(tmp_path):
    (tmp_path / "cache.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(UserError, match="is not a distillscale logit cache"):
        LogitCache(tmp_path)


def test_help(cli):
    code, out, _ = cli("cache-logits", "--help")
    assert code == 0
    for option in ("--teacher", "--out", "--top-k", "--tokens", "--split", "--seq-len", "--shard-tokens", "--json"):
        assert option in out
    assert "--teacher-cache" in cli("distill", "--help")[1]


@pytest.mark.slow
def test_students_of_a_family_share_one_cache_concurrently(tmp_path, cache, cached_student, cache_dir):
    """A family's students read one logit cache (`plan --students`, cached targets): two `distill
    --teacher-cache` runs at once, of two sizes, each in its own process; the cache is opened read-only
    (not a byte of it changes), and each student equals the same student trained alone from it."""
    import hashlib
    import os
    import subprocess
    import sys

    def digest() -> dict:
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(cache.iterdir())}

    before = digest()
    env = {**os.environ, "DISTILLSCALE_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}
    sizes = {"small": "32", "large": "64"}   # aspect ratios: two student widths

    def shape(ratio: str) -> list[str]:
        args = list(STUDENT)
        args[args.index("--aspect-ratio") + 1] = ratio
        return args

    runs = {name: subprocess.Popen([sys.executable, "-m", "distillscale.cli", "distill", "--teacher-cache", str(cache),
                                    "--out", str(tmp_path / name), *shape(ratio), "--kd-weight", "0.7"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for name, ratio in sizes.items()}
    for name, run in runs.items():
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-2000:]
        assert read_json(tmp_path / name / "result.json")["status"] == "completed"
    assert digest() == before
    assert read_json(tmp_path / "small" / "result.json")["val_loss"] == read_json(cached_student / "result.json")["val_loss"]
