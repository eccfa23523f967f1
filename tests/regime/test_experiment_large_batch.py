"""`distillscale experiment large-batch` (Hoffer et al. reproduction on MNIST-1D), at a tiny scale."""

import json
import socket

import pytest
import torch

from distillscale.regime.experiment import (LargeBatchConfig, LargeBatchResult, Regime,
                                            RegimeSummary, hoffer_regimes, load_mnist1d)

TINY = ["--small-batch", "16", "--large-batch", "64", "--epochs", "2", "--milestones", "1",
        "--seeds", "2", "--num-samples", "400", "--channels", "4"]


def test_default_regimes_add_one_remedy_each():
    small, large, sqrt_lr, ghost, adapted = hoffer_regimes(LargeBatchConfig())
    assert [r.name for r in (small, large, sqrt_lr, ghost, adapted)] == \
        ["SB", "LB", "+LR", "+GBN", "+RA"]
    assert (small.batch_size, large.batch_size, large.lr) == (32, 512, small.lr)
    assert sqrt_lr.lr == pytest.approx(4 * small.lr)  # sqrt(512 / 32)
    assert (sqrt_lr.ghost_batch_size, ghost.ghost_batch_size, adapted.ghost_batch_size) == \
        (None, 32, 32)
    assert (ghost.epochs, adapted.epochs, adapted.milestones) == (20, 320, (160, 240))


def test_mnist1d_is_generated_locally_without_network_or_files(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.chdir(tmp_path)
    data = load_mnist1d(200, seed=3)
    assert data.x_train.shape == (160, 1, 40) and data.x_test.shape == (40, 1, 40)
    assert set(data.y_train.tolist()) <= set(range(10)) and data.y_train.dtype == torch.int64
    assert list(tmp_path.iterdir()) == []


def test_tiny_experiment_end_to_end(cli, tmp_path):
    out = tmp_path / "lb"
    code, stdout, stderr = cli("experiment", "large-batch", *TINY, "--out", out,
                               "--plot-format", "svg", "--json")
    assert code == 0, stderr
    record = json.loads(stdout)
    summaries = {s["regime"]["name"]: s for s in record["summaries"]}
    assert list(summaries) == ["SB", "LB", "+LR", "+GBN", "+RA"]
    # 320 training samples: SB makes 20 updates an epoch, LB 5; regime adaptation restores 40.
    assert [s["updates"] for s in summaries.values()] == [40, 10, 10, 10, 40]
    assert summaries["+LR"]["regime"]["lr"] == pytest.approx(0.1)
    assert summaries["+RA"]["regime"]["milestones"] == [4.0]
    for summary in summaries.values():
        assert len(summary["runs"]) == 2
        assert 0 <= summary["test_accuracy_mean"] <= 1
        distances = summary["runs"][0]["weight_distance"]
        assert distances[-1][0] == summary["updates"] and distances[-1][1] > 0
    assert record["verdict"]["closed"] in (True, False) and "SB" in record["verdict"]["text"]
    assert json.loads((out / "results.json").read_text())["summaries"] == record["summaries"]
    assert "<svg" in (out / "weight_distance.svg").read_text()
    assert "SB seed 1: test accuracy" in stderr


def test_human_output_and_refusal_to_overwrite(cli, tmp_path):
    code, stdout, _ = cli("experiment", "large-batch", *TINY, "--seeds", "1", "--out", tmp_path)
    assert code == 0
    assert "+RA" in stdout and "vs SB" in stdout and "large-batch gap" in stdout
    assert (tmp_path / "weight_distance.png").read_bytes()[:4] == b"\x89PNG"
    before = (tmp_path / "results.json").read_text()

    code, _, stderr = cli("experiment", "large-batch", *TINY, "--out", tmp_path)
    assert code == 2 and "already exists: pass --overwrite" in stderr
    assert (tmp_path / "results.json").read_text() == before


@pytest.mark.parametrize("args, fragment", [
    (["--large-batch", "16"], "--large-batch (16) must be larger than --small-batch (16)"),
    (["--large-batch", "1024"], "--large-batch 1024 exceeds the 320 training samples"),
    (["--ghost-batch", "64"], "--ghost-batch must lie between 2 and --large-batch - 1 (63)"),
    (["--milestones", "1,x"], "malformed --milestones '1,x'"),
    (["--milestones", "3"], "milestones must lie strictly between 0 and the schedule length 2"),
    (["--seeds", "0"], "--seeds must be a positive integer"),
    (["--lr", "-1"], "--lr must be a positive finite number"),
    (["--weight-decay", "-1"], "--weight-decay must be a non-negative number"),
    (["--plot-format", "jpg"], "unknown --plot-format 'jpg'"),
    (["--threads", "0"], "--threads must be a positive integer"),
])
def test_bad_input_is_one_line_exit_2(cli, tmp_path, args, fragment):
    code, _, stderr = cli("experiment", "large-batch", *TINY, "--out", tmp_path, *args)
    assert code == 2
    assert fragment in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_out_must_be_a_directory(cli, tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    code, _, stderr = cli("experiment", "large-batch", *TINY, "--out", target)
    assert code == 2 and "is a file: give a directory" in stderr
    assert target.read_text() == "keep me"


def summary(name: str, mean: float, std: float) -> RegimeSummary:
    return RegimeSummary(Regime(name, name, 1, 0.1, 1, ()), 1, mean, std, mean, [])


@pytest.mark.parametrize("remedied, closed", [(0.89, True), (0.93, True), (0.85, False)])
def test_gap_verdict_uses_the_small_batch_spread(remedied, closed):
    result = LargeBatchResult(LargeBatchConfig(), [summary("SB", 0.90, 0.02), summary("LB", 0.7, 0),
                                                   summary("+RA", remedied, 0.01)], 1.0)
    verdict = result.gap_verdict()
    assert verdict["closed"] is closed
    assert verdict["large_batch_gap"] == pytest.approx(-0.2)
    assert verdict["remaining_gap"] == pytest.approx(remedied - 0.9)


def test_help(cli):
    for args in (["experiment", "--help"], ["experiment", "large-batch", "--help"]):
        code, out, _ = cli(*args)
        assert code == 0 and "Usage" in out
