"""`distill --generations K`: a self-distillation chain, generation g distilled from generation g - 1 with the
same settings and the half of the corpus generation 1 reads; resumable; bad input refused in one line."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

SHAPE = ("--aspect-ratio", "32", "--head-dim", "16", "--seq-len", "32", "--batch-size", "4",
         "--eval-tokens", "1k", "--eval-every", "0", "--device", "cpu")
TEACHER = ("--n-layers", "1", "--tokens", "512", "--vocab-size", "320", "--max-bytes", "100k",
           "--unique-tokens", "2k", *SHAPE)
# 8 steps of 128 tokens, a checkpoint every 2
STUDENT = ("--n-layers", "1", "--tokens", "1k", "--save-every", "2", "--log-every", "2", *SHAPE)
POOL = ("--split", "teacher", "--unique-tokens", "2k")


def read_json(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from distillscale.cli import main

    path = tmp_path_factory.mktemp("chain") / "teacher"
    assert main(["train", "--out", str(path), *TEACHER]) == 0
    return path


@pytest.fixture(scope="module")
def chain(teacher, tmp_path_factory):
    """Three generations on the teacher's own pool, and what the command printed."""
    import io
    from contextlib import redirect_stdout

    from distillscale.cli import main

    out = tmp_path_factory.mktemp("chains") / "pool"
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main(["distill", "--teacher", str(teacher), "--out", str(out), *STUDENT, *POOL,
                     "--generations", "3", "--json"])
    assert code == 0
    return out, json.loads(printed.getvalue())


def test_each_generation_is_distilled_from_the_one_before_on_the_same_pool(chain, teacher):
    out, printed = chain
    assert [g["generation"] for g in printed["generations"]] == [1, 2, 3]
    teachers = [str(teacher.resolve())] + [str((out / f"generation-{g}").resolve()) for g in (1, 2)]
    for g, expected in zip((1, 2, 3), teachers):
        run = out / f"generation-{g}"
        config, result = read_json(run / "config.json")["config"], read_json(run / "result.json")
        assert config["teacher"] == expected and result["teacher"]["path"] == expected
        # every generation reads the teacher's half and its very subset, though its teacher is a student run
        assert config["split"] == "teacher" and config["unique_tokens"] == 2000
        assert result["teacher"]["student_read"] == "subset"
        said = printed["generations"][g - 1]
        assert said["val_loss"] == result["val_loss"] and said["teacher_val_loss"] == result["teacher"]["teacher_val_loss"]
        assert said["change"] == pytest.approx(result["val_loss"] - result["teacher"]["teacher_val_loss"])
    # generation g's teacher loss is generation g - 1's own loss, on the same validation split
    for g in (2, 3):
        assert printed["generations"][g - 1]["teacher_val_loss"] == pytest.approx(
            printed["generations"][g - 2]["val_loss"], rel=1e-6)
    assert "nats/token of tokenizer" in printed["losses"]


def test_the_chain_pins_the_half_generation_one_reads(cli, teacher, tmp_path):
    """By default generation 1 takes the half its teacher did not train on; generation 2's teacher is then a
    student run, whose other half is the teacher's: the chain keeps generation 1's."""
    out = tmp_path / "default"
    code, stdout, err = cli("distill", "--teacher", teacher, "--out", out, *STUDENT, "--tokens", "256",
                            "--generations", "2")
    assert code == 0, err
    assert [read_json(out / f"generation-{g}" / "config.json")["config"]["split"] for g in (1, 2)] == \
        ["student", "student"]
    lines = [line for line in stdout.splitlines() if line.startswith("generation")]
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    for g, line in enumerate(lines, start=1):
        result = read_json(out / f"generation-{g}" / "result.json")
        change = result["val_loss"] - result["teacher"]["teacher_val_loss"]
        assert line == (f"generation {g}: loss {result['val_loss']:.4f}, its teacher's "
                        f"{result['teacher']['teacher_val_loss']:.4f}, change {change:+.4f} nats/token")
    assert "validation losses in nats/token of tokenizer" in " ".join(stdout.split())


def test_run_again_skips_the_finished_and_resumes_the_interrupted(cli, teacher, chain, tmp_path, monkeypatch):
    import distillscale.training.recipe as recipe

    train_step, calls = recipe.train_step, []

    def interrupted_in_generation_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 13:   # generation 1's 8 steps, then 4 of generation 2's
            raise KeyboardInterrupt
        return train_step(*args, **kwargs)

    out = tmp_path / "pool"
    args = ("distill", "--teacher", teacher, "--out", out, *STUDENT, *POOL)
    with monkeypatch.context() as patch:
        patch.setattr(recipe, "train_step", interrupted_in_generation_2)
        assert cli(*args, "--generations", "3")[0] == 130
    first = out / "generation-1" / "result.json"
    assert first.is_file() and not (out / "generation-2" / "result.json").exists()
    assert torch.load(out / "generation-2" / "state" / "checkpoint.pt", weights_only=True)["progress"]["step"] == 4
    written = first.stat().st_mtime_ns

    calls.clear()
    with monkeypatch.context() as patch:
        patch.setattr(recipe, "train_step", lambda *a, **k: (calls.append(1), train_step(*a, **k))[1])
        code, _, err = cli(*args, "--generations", "3")
    assert code == 0, err
    assert len(calls) == 4 + 8   # generation 1 skipped, generation 2 from its step 4, generation 3 whole
    assert first.stat().st_mtime_ns == written
    expected = chain[0]
    for g in (1, 2, 3):
        assert read_json(out / f"generation-{g}" / "result.json")["val_loss"] == \
            read_json(expected / f"generation-{g}" / "result.json")["val_loss"]

    code, _, err = cli(*args, "--generations", "3", "--lr", "0.001")
    assert code == 2 and "holds a finished generation with other settings (differs in: lr" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (("--generations", "0"), "--generations 0: a chain has at least one generation"),
    (("--generations", "2", "--teacher", "{other}"), "give --teacher once"),
])
def test_bad_chains_are_refused_in_one_line(cli, teacher, chain, tmp_path, args, message):
    args = [str(arg).format(other=chain[0] / "generation-1") for arg in args]
    code, _, err = cli("distill", "--teacher", teacher, "--out", tmp_path / "chain", *STUDENT, *args)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "chain").exists()


def test_a_cache_cannot_start_a_chain(cli, tmp_path):
    code, _, err = cli("distill", "--teacher-cache", tmp_path, "--out", tmp_path / "chain", *STUDENT,
                       "--generations", "2")
    assert code == 2 and "--teacher-cache cannot start a chain" in err and len(err.strip().splitlines()) == 1


def test_a_chain_never_writes_into_a_directory_it_did_not_make(cli, teacher, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, _, err = cli("distill", "--teacher", teacher, "--out", mine, *STUDENT, "--generations", "2")
    assert code == 2 and "is not empty and is not a distillscale chain directory" in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_teacher_server_cannot_start_a_chain(cli, teacher, tmp_path):
    code, _, err = cli("distill", "--teacher-url", "http://127.0.0.1:9/v1", "--top-k", "4", "--tokenizer",
                       teacher / "tokenizer.json", "--out", tmp_path / "chain", *STUDENT, "--generations", "2")
    assert code == 2 and "--teacher-url cannot start a chain" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "chain").exists()


def test_a_shorter_run_of_a_chain_keeps_and_names_the_generations_beyond_it(cli, teacher, chain, tmp_path):
    """Run again with fewer generations: the later ones stay on disk, chain.json still names them (the
    chain it holds) and the command says so, text and --json (before: chain.json said 2, silently)."""
    import shutil

    out = shutil.copytree(chain[0], tmp_path / "pool")
    args = ("distill", "--teacher", teacher, "--out", out, *STUDENT, *POOL, "--generations", "1")
    code, _, err = cli(*args)
    assert code == 0, err
    said = " ".join(err.split())
    assert "generation-2 .. generation-3 of an earlier, longer run of this chain stay in" in said
    assert "--generations 3 reports them" in said
    record = read_json(out / "chain.json")
    assert record["generations"] == 3 and record["asked"] == 1
    assert record["kept_beyond"] == [str(out / "generation-2"), str(out / "generation-3")]
    assert all((out / f"generation-{g}" / "result.json").is_file() for g in (1, 2, 3))
    code, printed, _ = cli(*args, "--json")
    assert code == 0 and json.loads(printed)["kept_beyond"] == record["kept_beyond"]


def test_a_chain_says_a_warning_of_every_generation_once_naming_it(cli, teacher, tmp_path):
    """Each generation reads the same pool for the same epochs: its repetition warning is said once for the
    chain, naming the generation that said it first (before: once per generation, unnamed)."""
    code, _, err = cli("distill", "--teacher", teacher, "--out", tmp_path / "chain", *STUDENT, "--split", "teacher",
                       "--unique-tokens", "512", "--generations", "2")
    assert code == 0, err
    lines = [line for line in " ".join(err.split("\n")).split("warning: ")[1:] if "epochs of the fixed subset" in line]
    assert len(lines) == 1 and lines[0].startswith("generation 1 of 2 (said once for the chain): the run will see")
