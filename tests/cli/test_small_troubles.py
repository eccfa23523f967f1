"""Ordinary trouble said plainly: a candidates table given as a pipe is read once, two candidates of one
name are refused, a run's config.json that is not JSON is said as such (not as missing), a measurement of an
unfinished run speaks of a model, and a plan warns when its runs need more text than the law's corpus holds."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

from tests.report.test_demo_teacher_split import TINY
from tests.report.test_own_teacher import markov_corpus


def test_a_candidates_pipe_is_read_once_and_two_candidates_of_one_name_are_refused(tmp_path, cli):
    table = "name,teacher_loss,teacher_params\na,2.2,2B\nb,2.1,4B\n"
    piped = subprocess.run(["bash", "-c", f"{sys.executable} -m distillscale.cli teacher --student-params 546M "
                            f"--student-tokens 10B --candidates <(printf '{table}')"], capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    assert "best teacher: b" in " ".join(piped.stdout.split())
    twice = tmp_path / "twice.csv"
    twice.write_text("name,teacher_loss,teacher_params\na,2.2,2B\na,2.1,4B\n")
    code, _, err = cli("teacher", "--student-params", "546M", "--student-tokens", "10B", "--candidates", twice)
    assert code == 2 and "names 2 different teachers 'a'" in err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished run, its data cache `root / "cache"` (each test sets DISTILLSCALE_CACHE to it)."""
    from distillscale.cli import main

    root = tmp_path_factory.mktemp("troubles")
    corpus = markov_corpus(root / "corpus", documents=20, words=150)
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        patch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
        assert main(["train", "--data", str(corpus), "--out", str(root / "run"), *TINY]) == 0, err.getvalue()
    return root


@pytest.mark.slow
def test_a_config_json_that_is_not_json_is_said_as_such(run, tmp_path, cli, monkeypatch):
    import shutil

    monkeypatch.setenv("DISTILLSCALE_CACHE", str(run / "cache"))
    broken = shutil.copytree(run / "run", tmp_path / "broken")
    (broken / "config.json").write_text("garbage{")
    for command in (["loss", broken], ["eval", broken, "--tasks", "arc_easy"]):
        code, _, err = cli(*command)
        assert code == 2 and "Traceback" not in err, err[-2000:]
        assert "is not a readable JSON file" in err and "no config.json" not in err


@pytest.mark.slow
def test_a_measurement_of_an_unfinished_run_speaks_of_a_model(run, tmp_path, cli, monkeypatch):
    import shutil

    monkeypatch.setenv("DISTILLSCALE_CACHE", str(run / "cache"))
    unfinished = shutil.copytree(run / "run", tmp_path / "unfinished")
    (unfinished / "result.json").unlink()
    code, _, err = cli("loss", unfinished)
    said = err.removeprefix("distillscale: error: ")
    assert code == 2 and said.startswith("model run") and "has not finished" in said
    assert "teacher" not in said and "distil from it" not in said and said.rstrip().endswith("then measure it")


def test_a_plan_whose_runs_need_more_text_than_the_laws_corpus_prices_that_pool(tmp_path, cli):
    """A law calibrated on a corpus whose splits hold 20M tokens: a plan that trains on more prices its runs
    on that pool by default and says so in one line; --unique-tokens overrides it (another corpus)."""
    import distillscale as ds
    from distillscale.data.loss_identity import LossIdentity, TextIdentity
    from distillscale.planning.warnings import LargerThanCorpus

    prepared = tmp_path / "prepared"
    prepared.mkdir()
    from distillscale.data.prepared import FORMAT

    (prepared / "manifest.json").write_text(json.dumps(   # only its manifest is read: the splits' sizes
        {"format": FORMAT, "splits": {"teacher": {"tokens": 20_000_000}, "student": {"tokens": 20_010_000}}}))
    laws = ds.load_laws("busbridge2025")
    from dataclasses import replace

    identity = LossIdentity(text=TextIdentity(name="my corpus", split="val", directory=str(prepared)))
    laws = replace(laws, losses=identity)
    plan = ds.plan(laws, student_params=100e6, compute=1e19)
    pooled = ds.plan(laws, student_params=100e6, compute=1e19, unique_tokens=20e6)
    assert plan.settings.unique_tokens == 20e6 and plan.repeats_data
    assert plan.warnings[0].startswith("priced on the corpus law 'busbridge2025' was calibrated on (my corpus):")
    assert "(--unique-tokens 20M); give --unique-tokens to plan for another corpus" in plan.warnings[0]
    assert not any(isinstance(w, LargerThanCorpus) for w in plan.warnings + pooled.warnings)
    assert json.loads(plan.to_json())["plans"] == json.loads(pooled.to_json())["plans"]   # as with the pool given
    fresh = ds.plan(laws, student_params=100e6, compute=1e19, unique_tokens=1e12)   # another, larger corpus
    assert fresh.plans[0].student_loss < plan.plans[0].student_loss and not fresh.warnings[:1] == plan.warnings[:1]
