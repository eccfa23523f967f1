"""`distillscale eval` (issue 56): a run's lm-eval-harness scores in eval.json, offline, on a tiny local
multiple-choice task (tests/data/lm_eval_tiny) — the same numbers lm-eval's own API gives for the
exported model — and one-line refusals."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from tests.conftest import REPO_ROOT  # noqa: E402

TASK = "distillscale_tiny_mc"
DATA = REPO_ROOT / "tests" / "data" / "lm_eval_tiny"
RUN = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--tokens", "1k", "--vocab-size", "320",
       "--max-bytes", "50k", "--seq-len", "32", "--batch-size", "4", "--eval-tokens", "1k", "--eval-every", "0",
       "--device", "cpu")

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread", "offline_datasets")


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory) -> Path:
    """The shipped task YAML, its data file given by absolute path (datasets reads relative paths from
    the working directory, not from the YAML's)."""
    directory = tmp_path_factory.mktemp("tasks")
    text = (DATA / "tiny_mc.yaml").read_text().replace("questions.jsonl", str(DATA / "questions.jsonl"))
    (directory / "tiny_mc.yaml").write_text(text)
    return directory


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished 1-layer family run."""
    from distillscale.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), *RUN]) == 0
    return out


def test_eval_json_holds_the_scores_lm_eval_gives_for_the_exported_model(tmp_path, cli, run, tasks_dir):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    code, out, err = cli("eval", run, "--tasks", TASK, "--include-path", tasks_dir, "--batch-size", "4", "--json")
    assert code == 0, err
    record = json.loads((run / "eval.json").read_text())
    assert json.loads(out) == record
    [score] = record["scores"]
    assert (score["task"], score["metric"], score["n"]) == (TASK, "acc", 8)
    assert score["lm_eval_version"] == record["lm_eval_version"] == lm_eval.__version__
    assert re.fullmatch("[0-9a-f]{64}", score["config_hash"])
    # issue 63: what the scores depend on besides the model, to compare eval.json files by
    assert re.fullmatch("[0-9a-f]{64}", record["task_sources"][TASK]) and set(record["task_versions"]) == {TASK}
    assert record["distillscale_version"] == __import__("distillscale").__version__ and record["limit"] is None

    assert cli("export-hf", run, tmp_path / "hf")[0] == 0
    expected = lm_eval.simple_evaluate(model=HFLM(pretrained=str(tmp_path / "hf"), batch_size=4, device="cpu"),
                                       tasks=[TASK],
                                       task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False))
    assert score["value"] == expected["results"][TASK]["acc,none"]
    assert score["stderr"] == expected["results"][TASK]["acc_stderr,none"]

    # A Hugging Face directory is scored as it is, with the same numbers; --limit scores fewer examples.
    code, _, err = cli("eval", tmp_path / "hf", "--tasks", TASK, "--include-path", tasks_dir, "--limit", "3",
                       "--out", tmp_path / "limited.json")
    assert code == 0, err
    [limited] = json.loads((tmp_path / "limited.json").read_text())["scores"]
    assert limited["n"] == 3
    assert not (tmp_path / "hf" / "eval.json").exists()


@pytest.mark.slow  # the lm-eval CLI indexes its few thousand task files (about 20 s on 2 cores)
def test_the_scores_equal_what_the_lm_eval_cli_prints_for_the_exported_model(tmp_path, cli, run, tasks_dir):
    import subprocess

    code, _, err = cli("eval", run, "--tasks", TASK, "--include-path", tasks_dir, "--device", "cpu",
                       "--out", tmp_path / "eval.json")
    assert code == 0, err
    [score] = json.loads((tmp_path / "eval.json").read_text())["scores"]
    assert cli("export-hf", run, tmp_path / "hf")[0] == 0
    # lm-eval's own command line, in a process of its own, offline (the fixture's environment)
    printed = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={tmp_path / 'hf'}",
         "--tasks", TASK, "--include_path", str(tasks_dir), "--device", "cpu", "--batch_size", "1",
         "--output_path", str(tmp_path / "lm_eval")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr[-2000:]
    # its table row: |task|version|filter|n-shot|metric|direction|value|±|stderr|
    [row] = [[cell.strip() for cell in line.strip().strip("|").split("|")]
             for line in printed.stdout.splitlines() if line.startswith(f"|{TASK}")]
    assert row[4] == score["metric"] == "acc"
    value, stderr = row[6], row[8]
    decimals = len(value.partition(".")[2])
    assert float(value) == pytest.approx(score["value"], abs=0.5 * 10 ** -decimals + 1e-12)
    assert float(stderr) == pytest.approx(score["stderr"], abs=0.5 * 10 ** -len(stderr.partition(".")[2]) + 1e-12)
    # and the results file it wrote, to the last bit
    [results] = (tmp_path / "lm_eval").rglob("results_*.json")
    written = json.loads(results.read_text())["results"][TASK]
    assert (written["acc,none"], written["acc_stderr,none"]) == (score["value"], score["stderr"])


def test_refusals_are_one_line(tmp_path, cli, run, tasks_dir, monkeypatch):
    def refused(*args):
        code, _, err = cli("eval", *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        return err

    assert "unknown lm-eval task no_such_task" in refused(run, "--tasks", f"{TASK},no_such_task",
                                                          "--include-path", tasks_dir, "--out", tmp_path / "e.json")
    mine = tmp_path / "notes.json"
    mine.write_text("{\"mine\": 1}")
    assert "exists" in refused(run, "--tasks", TASK, "--include-path", tasks_dir, "--out", mine)
    assert "is not a file written by `distillscale eval`" in refused(run, "--tasks", TASK, "--include-path", tasks_dir,
                                                                     "--out", mine, "--overwrite")
    assert mine.read_text() == "{\"mine\": 1}"
    assert "--tasks names no task" in refused(run, "--tasks", " , ")
    assert "neither a distillscale run nor a Hugging Face model" in refused(tmp_path, "--tasks", TASK)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((run / "config.json").read_text())
    assert "has not finished" in refused(unfinished, "--tasks", TASK)
    lost = tmp_path / "lost_data"
    lost.mkdir()
    (lost / "tiny_mc.yaml").write_text((tasks_dir / "tiny_mc.yaml").read_text().replace(
        str(DATA / "questions.jsonl"), str(lost / "gone.jsonl")))
    code, _, err = cli("eval", run, "--tasks", TASK, "--include-path", lost, "--out", tmp_path / "e.json")
    # after transformers' progress bar of the model's loading, one line, no traceback
    assert code == 2 and "Traceback" not in err, err
    assert "could not load the data of distillscale_tiny_mc" in err.strip().splitlines()[-1]
    assert not (tmp_path / "e.json").exists()
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as without the extra
    assert "install the eval extra, pip install 'distillscale[eval]'" in refused(run, "--tasks", TASK)


def test_a_generic_hugging_face_student_run_is_exported_and_scored(tmp_path, cli, tasks_dir):
    """A run of a GPT-2 student (`--student-init DIR`) is scored through its export, as a family run is."""
    import inspect

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from distillscale.data.tokenizer import train_byte_level_bpe
    from tests.training.test_hf_student import RUN as HF_RUN
    from tests.training.test_hf_student import VOCAB, save_gpt2

    tokenizer = train_byte_level_bpe([inspect.getsource(json) * 50], vocab_size=VOCAB)
    start = save_gpt2(tmp_path / "start", tokenizer)
    code, _, err = cli("train", "--student-init", start, "--tokenizer", start / "tokenizer.json", "--out",
                       tmp_path / "run", *HF_RUN, "--tokens", "1k")
    assert code == 0, err
    code, _, err = cli("eval", tmp_path / "run", "--tasks", TASK, "--include-path", tasks_dir)
    assert code == 0, err
    [score] = json.loads((tmp_path / "run" / "eval.json").read_text())["scores"]
    assert cli("export-hf", tmp_path / "run", tmp_path / "hf")[0] == 0
    expected = lm_eval.simple_evaluate(model=HFLM(pretrained=str(tmp_path / "hf"), batch_size=1, device="cpu"),
                                       tasks=[TASK], task_manager=TaskManager(include_path=str(tasks_dir),
                                                                              include_defaults=False))
    assert (score["value"], score["n"]) == (expected["results"][TASK]["acc,none"], 8)


def test_fit_downstream_reads_a_directory_of_evaluated_runs(tmp_path, cli, run):
    """Each run's validation loss (result.json) and 1 - its mean accuracy over the task set (eval.json)."""
    from distillscale.evaluation.scores import EVAL_FORMAT

    truth = {"epsilon": 0.75, "k": 12.0, "gamma": 1.3}
    runs = tmp_path / "runs"
    for i, loss in enumerate([2.2, 2.5, 2.8, 3.1, 3.4, 3.7, 4.0]):
        directory = runs / f"r{i}"
        directory.mkdir(parents=True)
        (directory / "config.json").write_text((run / "config.json").read_text())
        result = json.loads((run / "result.json").read_text())
        (directory / "result.json").write_text(json.dumps({**result, "val_loss": loss}))
        error = truth["epsilon"] - truth["k"] * 2.718281828459045 ** (-truth["gamma"] * loss)
        scores = [{"task": task, "metric": "acc", "value": 1 - error + shift, "stderr": 0.01, "n": 100,
                   "config_hash": "0" * 64, "lm_eval_version": "0.4.13"} for task, shift in (("a", 0.01), ("b", -0.01))]
        (directory / "eval.json").write_text(json.dumps({"format": EVAL_FORMAT, "model": str(directory),
                                                         "tasks": ["a", "b"], "limit": None,
                                                         "lm_eval_version": "0.4.13", "scores": scores}))
    code, out, err = cli("fit", "downstream", runs, "--bootstrap", "10", "--json")
    assert code == 0, err
    law = json.loads(out)
    assert law["task_set"] == "a,b" and law["n_runs"] == 7
    assert (law["epsilon"], law["k"], law["gamma"]) == pytest.approx(tuple(truth.values()), rel=1e-6)

    code, _, err = cli("fit", "downstream", runs, "--tasks", "a,c")
    assert code == 2 and "has no acc score of c" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("fit", "downstream", tmp_path / "runs" / "r0" / "..", "--holdout", "5")
    assert code == 2 and "--holdout 5 of 7 runs leaves fewer than 4" in err


def test_merge_adds_these_tasks_and_keeps_the_others(tmp_path, cli, run, tasks_dir):
    """issue 71: `--merge` scores its tasks into an eval.json that holds others (a user's own scores of
    another task): theirs kept as they were, these added with their fingerprint and the data files read."""
    from distillscale.evaluation.scores import EVAL_FORMAT

    out = tmp_path / "eval.json"
    theirs = {"task": "hellaswag", "metric": "acc", "value": 0.61, "stderr": 0.01, "n": 100,
              "config_hash": "0" * 64, "lm_eval_version": "0.4.11"}
    out.write_text(json.dumps({"format": "distillscale eval 2", "model": str(run), "tasks": ["hellaswag"],
                               "limit": None, "lm_eval_version": "0.4.11", "scores": [theirs],
                               "task_sources": {"hellaswag": "1" * 64}}))
    code, _, err = cli("eval", run, "--tasks", TASK, "--include-path", tasks_dir, "--limit", "4", "--out", out,
                       "--merge")
    assert code == 0, err
    record = json.loads(out.read_text())
    assert record["format"] == EVAL_FORMAT and record["tasks"] == ["hellaswag", TASK]
    assert record["scores"][0] == theirs and record["task_sources"]["hellaswag"] == "1" * 64
    assert record["scorings"]["hellaswag"]["limit"] is None and record["scorings"][TASK]["limit"] == 4
    assert list(record["scorings"][TASK]["files"]) == [str(DATA / "questions.jsonl")]
    # again, without a limit: this task's scores replaced, the other's still kept
    code, _, err = cli("eval", run, "--tasks", TASK, "--include-path", tasks_dir, "--out", out, "--merge")
    assert code == 0, err
    again = json.loads(out.read_text())
    assert again["tasks"] == ["hellaswag", TASK] and again["scores"][0] == theirs
    assert [s["n"] for s in again["scores"] if s["task"] == TASK] == [8]
    code, _, err = cli("eval", run, "--tasks", TASK, "--out", out, "--merge", "--overwrite")
    assert code == 2 and "not both" in err
    # another model's file, or these files' scores before the weights changed: refused before any scoring
    assert again["model_fingerprint"]
    for name, changed, words in (("moved.json", {"model": str(tmp_path / "another-model"), "model_fingerprint": None},
                                  "another-model"),
                                 ("retrained.json", {"model_fingerprint": "f" * 20}, "weights")):
        (tmp_path / name).write_text(json.dumps({**again, **changed}))
        code, _, err = cli("eval", run, "--tasks", TASK, "--include-path", tasks_dir, "--out", tmp_path / name, "--merge")
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
        assert json.loads((tmp_path / name).read_text()) == {**again, **changed}  # kept as it was
