"""`distillscale demo`: the built-in specs and sweeps, and the demo on the user's corpus. The demo end to
end (the quick sweep trained, both laws fitted and checked, the report, a rerun reusing the runs) is
tests/report/test_own_teacher.py's: one demo run serves its checks and the teacher's."""

from __future__ import annotations

import json
import re

import pytest

from distillscale.errors import UserError
from distillscale.report.demo import builtin_spec, builtin_sweep
from distillscale.sweeps.spec import load_sweep_spec


@pytest.mark.parametrize("quick", [False, True])
def test_builtin_sweeps_have_enough_runs_for_both_fits(quick):
    spec = load_sweep_spec(builtin_spec(quick))
    kinds = [run.kind for run in spec.runs]
    supervised = [run for run in spec.runs if run.kind != "student"]
    assert len({run.non_embedding_params for run in supervised}) >= 3
    assert len({run.tokens_per_param for run in supervised}) >= 2  # separates the N and D terms
    assert kinds.count("student") >= 9                             # the distillation law has 9 parameters
    assert len({run.teacher_id for run in spec.runs if run.kind == "student"}) >= 3


def test_full_demo_sweep_can_check_extrapolation():
    """The report refits the distillation law without the largest teacher's students: the other
    students must still outnumber its 9 parameters."""
    spec = load_sweep_spec(builtin_spec(quick=False))
    strongest = max((run for run in spec.runs if run.kind == "teacher"), key=lambda run: run.non_embedding_params)
    students = [run for run in spec.runs if run.kind == "student"]
    assert len([run for run in students if run.teacher_id != strongest.run_id]) > 9


def test_the_repetition_sweep_keeps_the_micro_conventions_and_repeats_both_modes():
    """demo --repetition: the micro sweep's [data] and [model], its student depths and a teacher of
    its ladder; per student size and mode a fresh ladder of >= 4 budgets and the longest budget on
    2, 4, 8 and 16 epochs of nested subsets (enough runs for the fit and its <= 4-epoch backtest), 2 seeds each."""
    micro = load_sweep_spec(builtin_spec()).sections
    spec = builtin_sweep(repetition=True)
    table = spec.sections
    assert table["data"] == micro["data"] and table["model"] == micro["model"]
    assert set(table["teachers"]["n_layers"]) <= set(micro["teachers"]["n_layers"])
    assert table["students"]["n_layers"] == micro["students"]["n_layers"]
    assert spec.name == "micro-repetition" and spec.sections["repetition"]["epochs"] == [1, 2, 4, 8, 16]
    for n_layers in micro["students"]["n_layers"]:
        for kind in ("baseline", "student"):
            runs = [run for run in spec.runs if run.kind == kind and run.n_layers == n_layers]
            fresh = [run for run in runs if run.epochs is None]
            longest = max(run.tokens for run in fresh)
            assert len(fresh) >= 4 and sorted(run.epochs for run in runs if run.epochs) == sorted([2, 4, 8, 16] * 2)
            assert sorted(run.settings["seed"] for run in runs if run.epochs == 16) == [0, 1]  # seed noise
            assert all(run.tokens == longest for run in runs if run.epochs)
    with pytest.raises(UserError, match="--repetition runs its own micro sweep"):
        builtin_sweep(quick=True, repetition=True)


def test_the_builtin_design_runs_on_the_users_corpus(tmp_path, cli):
    corpus = tmp_path / "my corpus.jsonl"
    corpus.write_text('{"text": "hello"}\n')
    sweep = builtin_sweep(quick=True, data=corpus)
    assert sweep.name == "micro-quick-my-corpus"
    assert sweep.sections["data"]["path"] == str(corpus)
    assert [run.run_id.split("-")[:3] for run in sweep.runs] == [
        run.run_id.split("-")[:3] for run in builtin_sweep(quick=True).runs]
    code, _, err = cli("demo", "--quick", "--data", tmp_path / "missing.txt", "--out", tmp_path / "out")
    assert code == 2 and "--data" in err and "matches no file" in err
    assert not (tmp_path / "out").exists()


def test_the_repetition_demos_help_states_its_measured_duration(cli):
    """`demo --repetition --help` quotes the wall time measured in the spec's own budget note."""
    spec = builtin_spec(repetition=True).read_text()
    measured = re.search(r"~(\d+) minutes of wall\s*\n?#?\s*time from nothing", spec)
    assert measured, "the spec's budget note moved: update this test"
    code, out, _ = cli("demo", "--help")
    assert code == 0
    help_text = " ".join(out.replace("│", " ").split())
    stated = re.search(r"--repetition .*?\(about (\d+) minutes on 2 cores\)", help_text)
    assert stated and stated.group(1) == measured.group(1), help_text
