"""`--dropout P` for the family's model: in the run's model and its plan, in the hash only when given (so
existing runs keep their hash and resume), refused outside [0, 1) in one line, and a sweep can grid it."""

from __future__ import annotations

import json

import pytest

from distillscale.training.config import DistillConfig, TrainConfig

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

REQUIRED = {"out": "runs/a", "n_layers": 1, "tokens": 1000}
RUN = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--tokens", "256", "--vocab-size", "320",
       "--max-bytes", "50k", "--seq-len", "32", "--batch-size", "4", "--eval-tokens", "1k", "--eval-every", "0",
       "--device", "cpu")


def test_the_default_leaves_the_hash_and_the_model_as_they_were():
    for kind in (TrainConfig, DistillConfig):
        extra = {"teacher": "t"} if kind is DistillConfig else {}
        base = kind(**REQUIRED, **extra)
        assert kind(**REQUIRED, **extra, dropout=0.0).hash() == base.hash()
        assert kind(**REQUIRED, **extra, dropout=0.1).hash() != base.hash()
        assert "dropout" not in base.model_shape(320).model_dump()
        assert kind(**REQUIRED, **extra, dropout=0.1).model_shape(320).dropout == 0.1


def test_a_run_trains_with_dropout_and_records_it(cli, tmp_path):
    code, out, err = cli("train", "--out", tmp_path / "run", *RUN, "--dropout", "0.2", "--json")
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["dropout"] == 0.2 and record["plan"]["model"]["dropout"] == 0.2
    plain = tmp_path / "plain"
    assert cli("train", "--out", plain, *RUN)[0] == 0
    # the same FLOPs; another loss (the training forward drops activations)
    result, plain_result = json.loads(out), json.loads((plain / "result.json").read_text())
    assert result["flops"] == plain_result["flops"] and result["val_loss"] != plain_result["val_loss"]
    assert "dropout" not in json.loads((plain / "config.json").read_text())["plan"]["model"]


@pytest.mark.parametrize("value", ["1", "-0.1"])
def test_dropout_outside_zero_to_one_is_refused_in_one_line(cli, tmp_path, value):
    code, _, err = cli("train", "--out", tmp_path / "run", *RUN, "--dropout", value)
    assert code == 2 and "--dropout" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_a_sweep_grids_dropout_and_keeps_its_run_ids_without_it():
    from distillscale.sweeps.spec import resolve_sweep_spec

    def spec(**model):
        return {"name": "micro", "data": {"vocab_size": 320, "max_bytes": "300k", "seq_len": 32},
                "model": {"aspect_ratio": 32, "head_dim": 16, "batch_size": 8, "device": "cpu", **model},
                "teachers": {"n_layers": [2], "tokens_per_param": 20}}

    plain = resolve_sweep_spec(spec())
    assert all("dropout" not in run.settings for run in plain.runs)
    assert [run.run_id for run in resolve_sweep_spec(spec(dropout=0.0)).runs] == [r.run_id for r in plain.runs]
    dropped = resolve_sweep_spec(spec(dropout=0.1))
    assert all(run.settings["dropout"] == 0.1 for run in dropped.runs)
    assert {run.run_id for run in dropped.runs}.isdisjoint(run.run_id for run in plain.runs)


def test_an_interrupted_run_with_dropout_resumes_to_the_same_loss(cli, tmp_path, monkeypatch):
    """The dropout masks come from the global RNG, which a checkpoint keeps: a resumed run draws the masks
    the uninterrupted one drew."""
    import distillscale.training.recipe as recipe

    args = (*RUN, "--tokens", "1k", "--save-every", "2", "--dropout", "0.3")
    assert cli("train", "--out", tmp_path / "whole", *args)[0] == 0
    train_step, calls = recipe.train_step, []

    def interrupted_at_step_6(*a, **k):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return train_step(*a, **k)

    with monkeypatch.context() as patch:
        patch.setattr(recipe, "train_step", interrupted_at_step_6)
        assert cli("train", "--out", tmp_path / "resumed", *args)[0] == 130
    code, _, err = cli("train", "--out", tmp_path / "resumed", *args)
    assert code == 0, err
    loss = [json.loads((tmp_path / name / "result.json").read_text())["val_loss"] for name in ("whole", "resumed")]
    assert loss[0] == loss[1]


def test_a_start_trained_with_dropout_hands_on_its_weights_not_its_dropout(cli, tmp_path):
    assert cli("train", "--out", tmp_path / "start", *RUN, "--dropout", "0.3")[0] == 0
    assert json.loads((tmp_path / "start" / "model_config.json").read_text())["dropout"] == 0.3
    rest = [arg for arg in RUN[6:] if arg not in ("--vocab-size", "320")]   # the start's shape and tokenizer
    for dropout, recorded in ((None, None), ("0.1", 0.1)):
        out = tmp_path / f"from-start-{dropout}"
        flags = ("--dropout", dropout) if dropout else ()
        code, _, err = cli("train", "--out", out, "--student-init", tmp_path / "start", "--tokenizer",
                           tmp_path / "start" / "tokenizer.json", *rest, *flags)
        assert code == 0, err
        assert json.loads((out / "config.json").read_text())["plan"]["model"].get("dropout") == recorded
