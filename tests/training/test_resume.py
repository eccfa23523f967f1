"""Exact resume: a run killed with SIGKILL mid-training and started again with the same command ends
with the same validation loss as an uninterrupted run; a different config cannot take it over."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

ARGS = ("--tokens", "38400", "--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32",
        "--vocab-size", "320", "--max-bytes", "300k", "--seq-len", "32", "--batch-size", "8",
        "--eval-tokens", "4k", "--eval-every", "50", "--save-every", "10", "--log-every", "5",
        "--device", "cpu")  # 150 steps
TOTAL_STEPS = 150


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir):
    from distillscale.cli import main

    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--out", str(out), *ARGS]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def read_json(path):
    return json.loads(path.read_text())


def metric_steps(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_after_sigkill_gives_the_uninterrupted_result(cli, tmp_path, uninterrupted, kill_after_checkpoint):
    out = tmp_path / "killed"
    kill_after_checkpoint(out, "train", "--out", out, *ARGS)
    assert not (out / "result.json").exists()
    killed_at = torch.load(out / "state" / "checkpoint.pt", weights_only=True)["progress"]["step"]
    assert 10 <= killed_at < TOTAL_STEPS

    # Another config must not take over the interrupted run, nor touch it.
    state_bytes = (out / "state" / "checkpoint.pt").read_bytes()
    code, _, err = cli("train", "--out", out, *ARGS, "--lr", "0.02", "--seed", "5")
    assert code == 2
    assert "holds an unfinished run with a different config (differs in: lr, seed)" in err
    assert (out / "state" / "checkpoint.pt").read_bytes() == state_bytes

    code, _, err = cli("train", "--out", out, *ARGS)
    assert code == 0
    assert f"resuming {out} from step {killed_at}/{TOTAL_STEPS}" in err
    resumed, expected = read_json(out / "result.json"), read_json(uninterrupted / "result.json")
    assert resumed["status"] == "completed" and resumed["steps"] == TOTAL_STEPS
    assert abs(resumed["val_loss"] - expected["val_loss"]) < 1e-4
    # metrics.jsonl reads as one run: what the killed process logged after its checkpoint is gone.
    assert metric_steps(out) == metric_steps(uninterrupted)
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["val_loss"] == resumed["val_loss"]


def test_resume_between_the_last_checkpoint_and_result_json(cli, tmp_path, uninterrupted):
    out = tmp_path / "almost"
    shutil.copytree(uninterrupted, out)
    (out / "result.json").unlink()
    code, _, err = cli("train", "--out", out, *ARGS)
    assert code == 0 and f"from step {TOTAL_STEPS}/{TOTAL_STEPS}" in err
    assert read_json(out / "result.json")["val_loss"] == read_json(uninterrupted / "result.json")["val_loss"]
    assert metric_steps(out) == metric_steps(uninterrupted)


def test_overwrite_restarts_an_unfinished_run_from_scratch(cli, tmp_path, uninterrupted):
    out = tmp_path / "restarted"
    shutil.copytree(uninterrupted, out)
    (out / "result.json").unlink()
    code, _, err = cli("train", "--out", out, *ARGS, "--seed", "1", "--tokens", "2560", "--overwrite")
    assert code == 0 and "resuming" not in err
    assert read_json(out / "result.json")["steps"] == 10
    assert metric_steps(out) == [5, 10]


def test_a_run_killed_while_writing_its_first_file_starts_again(cli, tmp_path, uninterrupted):
    """SIGKILL during the atomic write of config.json (the first file) leaves only a temporary file:
    the next start must see an empty run directory, not a foreign one, and sweep away the leftover."""
    out = tmp_path / "first-write"
    out.mkdir()
    (out / ".tmp-abc123").write_text('{"config": ')  # what the killed write left
    code, _, err = cli("train", "--out", out, *ARGS, "--tokens", "2560")
    assert code == 0, err
    assert not list(out.glob(".tmp-*"))
    assert read_json(out / "result.json")["steps"] == 10


def test_a_directory_with_a_users_hidden_file_is_still_refused(cli, tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / ".notes").write_text("mine")
    code, _, err = cli("train", "--out", out, *ARGS, "--tokens", "2560")
    assert code == 2 and "is not empty and is not a distillscale run directory" in err
    assert (out / ".notes").read_text() == "mine"
