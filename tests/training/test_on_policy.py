"""On-policy distillation (training/on_policy.py): which batches the student generates, the loss only
on its sampled tokens, what result.json records (generated tokens, generation and scoring FLOPs),
exact resumption after kill -9, and bad settings refused in one line."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

from distillscale.model import ModelConfig, generate
from distillscale.planning.flops import generation_flops, run_flops
from distillscale.training.config import ON_POLICY_KEYS, DistillConfig
from distillscale.training.kd_settings import OnPolicyConfig
from distillscale.training.losses import IGNORE_INDEX
from distillscale.training.on_policy import (
    OnPolicySampler,
    continuation_uniforms,
    is_on_policy,
    on_policy_batches,
    rollout,
)
from distillscale.training.student import FamilyStudent

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

SHAPE = ("--aspect-ratio", "64", "--head-dim", "32", "--seq-len", "32", "--batch-size", "4",
         "--eval-tokens", "2k", "--eval-every", "0", "--device", "cpu")
TEACHER = ("--n-layers", "1", "--tokens", "4k", "--vocab-size", "320", "--max-bytes", "200k", *SHAPE)
# 24 steps of 4 x 32 tokens: the first 6 off-policy, then two in three on-policy; a checkpoint every 4 steps
STUDENT = ("--n-layers", "1", "--tokens", "3072", "--save-every", "4", "--log-every", "4", *SHAPE,
           "--on-policy-fraction", "0.67", "--on-policy-prompt-tokens", "8", "--on-policy-temperature", "0.9",
           "--on-policy-start", "0.25", "--kd", "jsd")


def read_json(path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from distillscale.cli import main

    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "--out", str(root / "teacher"), *TEACHER]) == 0
    assert main(["distill", "--teacher", str(root / "teacher"), "--out", str(root / "student"), *STUDENT]) == 0
    return root


def test_the_share_of_on_policy_batches_is_exact_and_evenly_spread():
    assert [is_on_policy(i, 0.5) for i in range(6)] == [False, True] * 3
    assert not any(is_on_policy(i, 0.0) for i in range(10)) and all(is_on_policy(i, 1.0) for i in range(10))
    for fraction in (0.1, 0.3, 0.67, 0.9):
        for n in (1, 7, 100, 1001):
            assert sum(is_on_policy(i, fraction) for i in range(n)) == on_policy_batches(n, fraction)
            assert abs(on_policy_batches(n, fraction) - n * fraction) < 1
            assert sum(is_on_policy(i, fraction, first=5) for i in range(n)) == on_policy_batches(n, fraction, 5)
    assert [is_on_policy(i, 1.0, first=3) for i in range(5)] == [False, False, False, True, True]


def test_a_rollout_keeps_the_prompt_and_trains_only_on_the_sampled_tokens():
    student = FamilyStudent(ModelConfig(n_layers=1, aspect_ratio=32, head_dim=16, vocab_size=50, max_seq_len=16))
    config = OnPolicyConfig(fraction=1.0, prompt_tokens=4, continuation_tokens=9)
    window = torch.randint(0, 50, (2, 17), generator=torch.Generator().manual_seed(0))
    inputs, targets = rollout(student, window[:, :-1], window[:, 1:], config, seed=7, first_row=10)
    sampled = generate(student, window[:, :4], 9, uniforms=continuation_uniforms(7, 10, 2, 9)).tokens
    assert torch.equal(inputs[:, :13], sampled[:, :13]) and torch.equal(inputs[:, 13:], window[:, 13:16])
    trained = targets != IGNORE_INDEX
    assert trained.sum(dim=1).tolist() == [9, 9]  # the positions predicting the 9 sampled tokens
    assert torch.equal(targets[trained].view(2, 9), sampled[:, 4:])
    again = rollout(student, window[:, :-1], window[:, 1:], config, seed=7, first_row=10)
    assert torch.equal(again[0], inputs)  # a pure function of the seed and the rows' places


def test_a_sequence_draws_the_same_continuation_whichever_rank_or_micro_batch_holds_it():
    """A step's 4 sequences in one process, on 2 ranks, or as 2 micro-batches of 2: each sequence's
    continuation is keyed by its place in the global batch, not by its rank or micro-batch."""
    student = FamilyStudent(ModelConfig(n_layers=1, aspect_ratio=32, head_dim=16, vocab_size=50, max_seq_len=16))
    config = OnPolicyConfig(fraction=1.0, prompt_tokens=4, continuation_tokens=9, temperature=2.0)
    tokens = torch.randint(0, 50, (1000,), generator=torch.Generator().manual_seed(0)).numpy()

    def rolled(sampler, index, rank=0, world_size=1):
        inputs, targets, plan = sampler.batch(index, rank, world_size)
        index_, first_row, seed = plan.tolist()
        assert index_ == index
        return rollout(student, inputs, targets, config, seed, first_row)[0]

    whole, halves = OnPolicySampler(tokens, 16, 4, seed=3), OnPolicySampler(tokens, 16, 2, seed=3)
    one = rolled(whole, 5)  # step 5's micro-batch of 4
    assert torch.equal(torch.cat([rolled(whole, 5, rank, 2) for rank in (0, 1)]), one)
    assert torch.equal(torch.cat([rolled(halves, 10), rolled(halves, 11)]), one)  # the same windows, in 2
    assert torch.equal(torch.cat([rolled(whole, 5, rank, 4) for rank in range(4)]), one)
    # the draws differ between the rows, and from another step's
    assert len({tuple(row[4:13].tolist()) for row in one}) == 4
    assert not torch.equal(rolled(whole, 6)[:, 4:13], one[:, 4:13])


def test_result_records_what_was_generated_and_its_flops(runs):
    result = read_json(runs / "student" / "result.json")
    teacher = result["teacher"]
    assert result["steps"] == 24
    sequences = on_policy_batches(24, 0.67, first=6) * 4
    assert sequences == 12 * 4
    assert result["on_policy"] | {"flops_method": None} == {
        "fraction": 0.67, "temperature": 0.9, "prompt_tokens": 8, "continuation_tokens": 25, "start": 0.25,
        "sequences": sequences, "generated_tokens": sequences * 25,
        "generation_flops": pytest.approx(result["on_policy"]["generation_flops"]),
        "teacher_scoring_flops": teacher["forward_flops_per_token"] * sequences * 32, "flops_method": None}
    model = ModelConfig(**read_json(runs / "student" / "config.json")["plan"]["model"])
    generated = generation_flops(model, 8, 25, sequences)
    assert result["on_policy"]["generation_flops"] == generated > 0
    assert result["flops"] == run_flops(model, 32, result["tokens"], teacher["forward_flops_per_token"]).total \
        + generated
    assert result["distillation"]["kd"] == "jsd" and result["distillation"]["kd_weight"] == 1.0
    metrics = [json.loads(line) for line in (runs / "student" / "metrics.jsonl").read_text().splitlines()]
    assert all(m["kd"] > 0 for m in metrics)


@pytest.mark.slow
def test_an_on_policy_run_killed_mid_run_resumes_to_the_same_weights(runs, tmp_path, cli, kill_after_checkpoint):
    out = tmp_path / "student"
    args = ("distill", "--teacher", runs / "teacher", "--out", out, *STUDENT)
    killed_at = kill_after_checkpoint(out, *args)
    assert 0 < killed_at < 24
    code, _, err = cli(*args)
    assert code == 0, err
    assert f"resuming {out} from step {killed_at}/24" in err
    resumed, uninterrupted = read_json(out / "result.json"), read_json(runs / "student" / "result.json")
    assert resumed["val_loss"] == uninterrupted["val_loss"]
    assert resumed["on_policy"] == uninterrupted["on_policy"] and resumed["flops"] == uninterrupted["flops"]
    weights = safetensors.torch.load_file(out / "model.safetensors")
    expected = safetensors.torch.load_file(runs / "student" / "model.safetensors")
    assert all(torch.equal(weights[name], expected[name]) for name in expected)
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] == [json.loads(line)["loss"] for line in
                          (runs / "student" / "metrics.jsonl").read_text().splitlines()][-1]


def test_off_policy_runs_keep_their_config_hash():
    base = dict(teacher="t", out="o", n_layers=1, tokens=1000)
    assert ON_POLICY_KEYS <= DistillConfig(**base).unhashed_keys()  # as before these settings existed
    on_policy = DistillConfig(**base, on_policy_fraction=0.5)
    assert not ON_POLICY_KEYS & on_policy.unhashed_keys()
    assert on_policy.hash() != DistillConfig(**base).hash()
    assert on_policy.hash() != DistillConfig(**base, on_policy_fraction=0.5, on_policy_temperature=0.5).hash()


def test_on_policy_with_a_served_teacher_is_accepted_and_hashed():
    # served on-policy runs themselves: tests/training/test_served_teacher.py
    served = dict(teacher_url="http://127.0.0.1:1/v1", top_k=4, tokenizer="t.json", out="o", n_layers=1, tokens=1000)
    on_policy = DistillConfig(**served, on_policy_fraction=0.5)
    assert not ON_POLICY_KEYS & on_policy.unhashed_keys()
    assert on_policy.hash() != DistillConfig(**served).hash()


@pytest.mark.parametrize("args, message", [
    (("--on-policy-fraction", "0.5", "--on-policy-prompt-tokens", "20", "--on-policy-continuation-tokens", "20"),
     "exceed the window of --seq-len + 1 = 33 tokens"),
    (("--on-policy-temperature", "0.5"), "--on-policy-temperature needs --on-policy-fraction > 0"),
    (("--on-policy-fraction", "1.5"), "on-policy-fraction"),
])
def test_bad_on_policy_settings_are_one_line(runs, cli, tmp_path, args, message):
    code, _, err = cli("distill", "--teacher", runs / "teacher", "--out", tmp_path / "s", "--n-layers", "1",
                       "--tokens", "1k", *SHAPE, *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "s").exists()


def test_an_on_policy_student_trains_on_its_unique_tokens_subset(runs, cli, tmp_path):
    """G1: the on-policy sampler draws from --unique-tokens' subset, as the default sampler does."""
    code, _, err = cli("distill", "--teacher", runs / "teacher", "--out", tmp_path / "s", "--n-layers", "1",
                       "--tokens", "1k", *SHAPE, "--on-policy-fraction", "0.5", "--unique-tokens", "2048")
    assert code == 0, err
    result = read_json(tmp_path / "s" / "result.json")
    assert result["unique_tokens"] == 2048 and result["epochs"] == pytest.approx(result["tokens"] / 2048)


def test_a_sampler_that_skips_the_training_tokens_is_refused(tmp_path):
    from types import SimpleNamespace

    import numpy as np

    from distillscale.data import TokenSampler
    from distillscale.training.config import TrainConfig
    from distillscale.training.recipe import make_training_sampler

    split = np.arange(10_000, dtype=np.uint16)
    data = SimpleNamespace(split=lambda name: split)
    config = TrainConfig(out=tmp_path, n_layers=1, tokens=1000, seq_len=8, unique_tokens=2000)
    sampler = make_training_sampler(config, data, lambda data, tokens: TokenSampler(tokens, 8, 2, 0))
    assert len(sampler.tokens) == 2001 and sampler.unique_tokens == 2000  # 250 windows predict 2,000 tokens
    with pytest.raises(RuntimeError, match="not the run's 2,001 training tokens"):
        make_training_sampler(config, data, lambda data, tokens: TokenSampler(data.split("student"), 8, 2, 0))


def test_the_on_policy_schedule_is_counted_from_the_plan():
    from distillscale.training.on_policy import OnPolicySchedule

    config = OnPolicyConfig(fraction=0.5, prompt_tokens=4, continuation_tokens=4, start=0.25)
    schedule = OnPolicySchedule.of(config, total_steps=20, micro_batches_per_step=2)
    assert schedule.first == 10 and schedule.batches() == 15
    assert [i for i in range(40) if schedule.is_on_policy(i)] == list(range(11, 40, 2))
    longer = OnPolicySchedule.of(config, total_steps=40, micro_batches_per_step=2)  # a fork's parent
    assert not schedule.agrees_with(longer, 12) and schedule.agrees_with(longer, 10)
    assert OnPolicySchedule.of(config.model_copy(update={"start": 0.0}), 20, 2).agrees_with(
        OnPolicySchedule.of(config.model_copy(update={"start": 0.0}), 40, 2), 30)


@pytest.mark.parametrize("args, words", [
    (("--on-policy-fraction", "0.01"), "raise --on-policy-fraction to at least 0.125"),
    (("--on-policy-fraction", "0.5", "--on-policy-start", "0.99"), "lower --on-policy-start"),
])
def test_a_run_with_no_on_policy_batch_is_refused(runs, cli, tmp_path, args, words):
    """G2: 8 steps at --on-policy-fraction 0.01, or all of them before --on-policy-start, would train
    without a single on-policy batch while result.json and the summary said otherwise."""
    code, _, err = cli("distill", "--teacher", runs / "teacher", "--out", tmp_path / "s", "--n-layers", "1",
                       "--tokens", "1k", *SHAPE, *args)
    assert code == 2 and "gives no on-policy batch in this run" in err and words in err, err
    errors = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]  # the corpus's own
    assert "Traceback" not in err and len(errors) == 1   # split warnings, said at every use of it, aside
    assert not (tmp_path / "s").exists()


def test_a_fork_shares_its_parents_on_policy_schedule_or_is_refused(runs, cli, tmp_path):
    """G2: a fork equals the same run from scratch, on-policy batches included; one whose parent took
    other on-policy batches before its cooldown (--on-policy-start is a share of each run's steps)
    is refused instead of training something else."""
    wsd = ("--n-layers", "1", *SHAPE, "--schedule", "wsd", "--warmup-steps", "2", "--on-policy-fraction", "0.5",
           "--on-policy-prompt-tokens", "8", "--log-every", "1")

    def distill(out, *args):
        return cli("distill", "--teacher", runs / "teacher", "--out", tmp_path / out, *wsd, *args)

    assert distill("parent", "--tokens", "4096", "--fork-tokens", "2048")[0] == 0  # 32 steps; the fork's 16
    assert distill("fork", "--tokens", "2048", "--fork-from", tmp_path / "parent")[0] == 0
    assert distill("scratch", "--tokens", "2048")[0] == 0
    fork, scratch = read_json(tmp_path / "fork" / "result.json"), read_json(tmp_path / "scratch" / "result.json")
    assert fork["fork"]["branch_step"] == 13
    assert fork["val_loss"] == scratch["val_loss"] and fork["on_policy"] == scratch["on_policy"]

    start = ("--on-policy-start", "0.5")
    assert distill("parent-late", "--tokens", "4096", "--fork-tokens", "2048", *start)[0] == 0
    code, _, err = distill("fork-late", "--tokens", "2048", "--fork-from", tmp_path / "parent-late", *start)
    assert code == 2 and "took its first on-policy batch at step 17 and this run would at step 9" in err, err
    assert "Traceback" not in err and not (tmp_path / "fork-late").exists()


def test_uld_weight_with_the_teachers_own_tokenizer_is_refused(runs, cli, tmp_path):
    """G8: --uld-weight weighs the cross-tokenizer term only; with the teacher's tokenizer it was ignored."""
    code, _, err = cli("distill", "--teacher", runs / "teacher", "--out", tmp_path / "s", "--n-layers", "1",
                       "--tokens", "1k", *SHAPE, "--uld-weight", "3")
    assert code == 2 and "--uld-weight needs a teacher of another tokenizer" in err and "Traceback" not in err, err
    assert not (tmp_path / "s").exists()
