"""`distill --split teacher`: a student trained on its teacher's own training text (self-distillation,
distillation on a fixed pool of data). The leak checks let it through, the validation split stays the
teacher's, the same --unique-tokens reads the teacher's very subset, and result.json and the summary say
that the student read its teacher's training text."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

SHAPE = ("--aspect-ratio", "32", "--head-dim", "16", "--seq-len", "32", "--batch-size", "4",
         "--eval-tokens", "1k", "--eval-every", "0", "--device", "cpu")
TEACHER = ("--n-layers", "1", "--tokens", "512", "--vocab-size", "320", "--max-bytes", "100k",
           "--unique-tokens", "2k", *SHAPE)
STUDENT = ("--n-layers", "1", "--tokens", "256", *SHAPE)


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """A teacher trained on a fixed pool of 2K tokens of the teacher half, and the pools each run read."""
    import distillscale.training.recipe as recipe
    from distillscale.cli import main

    runs, read = tmp_path_factory.mktemp("pool"), {}
    original = recipe.training_tokens

    def recorded(config, data):
        tokens = original(config, data)
        read[str(config.out)] = tokens
        return tokens

    recipe.training_tokens = recorded
    try:
        assert main(["train", "--out", str(runs / "teacher"), *TEACHER]) == 0
    finally:
        recipe.training_tokens = original
    return runs / "teacher", read


def distill_reading(cli, monkeypatch, read, *args):
    import distillscale.training.recipe as recipe

    original = recipe.training_tokens

    def recorded(config, data):
        tokens = original(config, data)
        read[str(config.out)] = tokens
        return tokens

    monkeypatch.setattr(recipe, "training_tokens", recorded)
    return cli("distill", *args)


def test_split_teacher_reads_the_teachers_very_pool_and_says_so(cli, tmp_path, pooled, monkeypatch):
    teacher, read = pooled
    out = tmp_path / "same"
    code, stdout, err = distill_reading(cli, monkeypatch, read, "--teacher", teacher, "--out", out, *STUDENT,
                                        "--split", "teacher", "--unique-tokens", "2k")
    assert code == 0, err
    assert np.array_equal(read[str(out)], read[str(teacher)])   # the same fixed subset, token for token
    result = json.loads((out / "result.json").read_text())
    assert result["teacher"]["trained_split"] == "teacher" and result["teacher"]["student_read"] == "subset"
    # the same validation split as the teacher's own run: its loss there, as it measured it
    assert result["teacher"]["teacher_val_loss"] == pytest.approx(
        json.loads((teacher / "result.json").read_text())["val_loss"], rel=1e-6)
    assert json.loads((out / "config.json").read_text())["config"]["split"] == "teacher"
    said = " ".join(stdout.split())
    assert "the student trained on its teacher's own training text (the teacher half of the same corpus, " \
           "the same fixed subset of" in said


def test_split_teacher_without_the_same_pool_says_the_half(cli, tmp_path, pooled):
    teacher, _ = pooled
    code, stdout, err = cli("distill", "--teacher", teacher, "--out", tmp_path / "half", *STUDENT,
                            "--split", "teacher", "--json")
    assert code == 0, err
    assert json.loads(stdout)["teacher"]["student_read"] == "split"


def test_the_default_half_records_no_shared_text(cli, tmp_path, pooled):
    teacher, _ = pooled
    code, stdout, err = cli("distill", "--teacher", teacher, "--out", tmp_path / "other", *STUDENT, "--json")
    assert code == 0, err
    record = json.loads(stdout)["teacher"]
    assert "student_read" not in record and "trained_split" not in record
    assert json.loads((tmp_path / "other" / "config.json").read_text())["config"]["split"] == "student"


def test_help_says_which_half_the_student_reads(cli):
    code, out, _ = cli("distill", "--help")
    said = " ".join(out.split())
    assert code == 0 and "--split" in said and "self-distillation" in said


def test_a_student_of_another_tokenizer_on_the_teachers_half_says_so(cli, tmp_path, pooled):
    """Cross-tokenizer distillation on the teacher's half reads the teacher's text (each piece's half follows
    from its text), not its subset of token ids: result.json says "split"."""
    teacher, _ = pooled
    other = tmp_path / "other"
    assert cli("train", "--out", other, *TEACHER, "--vocab-size", "400", "--tokens", "128")[0] == 0
    code, stdout, err = cli("distill", "--teacher", teacher, "--tokenizer", other / "tokenizer.json",
                            "--out", tmp_path / "cross", *STUDENT, "--split", "teacher", "--unique-tokens", "2k",
                            "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["distillation"]["mode"] == "cross-tokenizer"
    assert result["teacher"]["student_read"] == "split" and result["teacher"]["trained_split"] == "teacher"
