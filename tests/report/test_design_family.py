"""A builtin design's family term (`laws.crossladder.FamilyTerm`; none ships now, so the tests install
one: the `family_term` fixture) is applied only to laws fitted from that design: `report.design.design_family` names a sweep directory whose
spec.toml is the micro demo's (on any corpus, under any name) and nothing else, and the report's
supervised law carries the term only then, never with --no-bias-correction."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
import tomli_w

from distillscale.report import calibration, demo, design
from distillscale.report.calibration import CalibrationSettings, calibrate
from distillscale.report.runs import load_runs
from distillscale.sweeps.export import write_records
from tests.report.test_report import LAWS, _record, _write_run_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _sweep_dir(root, name: str, table: dict):
    """A directory holding a spec.toml as `sweep run` writes it."""
    path = root / name
    path.mkdir()
    (path / "spec.toml").write_text(tomli_w.dumps(table))
    return path


def test_only_a_sweep_of_the_micro_demo_design_is_of_its_family(tmp_path, family_term):
    micro = tomllib.loads(demo.builtin_sweep().to_toml())
    assert design.design_family(_sweep_dir(tmp_path, "stdlib", micro)) == "micro-demo"
    # the same design on the user's corpus, under demo --data's name
    mine = {**micro, "name": "micro-my-corpus", "data": {**micro["data"], "path": "/data/my-corpus"}}
    assert design.design_family(_sweep_dir(tmp_path, "mine", mine)) == "micro-demo"
    # another recipe is another family: a rate, a size, the quick and the repetition demos
    other_lr = {**micro, "model": {**micro["model"], "lr": 0.01}}
    fewer = {**micro, "teachers": {**micro["teachers"], "n_layers": [3, 2, 1]}}
    quick = tomllib.loads(demo.builtin_sweep(quick=True).to_toml())
    repetition = tomllib.loads(demo.builtin_sweep(repetition=True).to_toml())
    for name, table in (("lr", other_lr), ("fewer", fewer), ("quick", quick), ("repetition", repetition)):
        assert design.design_family(_sweep_dir(tmp_path, name, table)) is None, name
    # no sweep directory, no spec, a broken spec: none
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "spec.toml").write_text("name = [")
    for source in (tmp_path / "empty", broken, tmp_path / "stdlib" / "spec.toml", tmp_path / "absent"):
        assert design.design_family(source) is None


def test_a_sweeps_corpus_is_named_as_the_terms_members_are(tmp_path):
    micro = tomllib.loads(demo.builtin_sweep().to_toml())
    assert design.design_corpus(_sweep_dir(tmp_path, "default", micro)) == "stdlib"
    for path, name in (("/corpora/man-en", "man-en"), ("builtin:python-env", "python-env"), ("/data/mine/", "mine")):
        table = {**micro, "data": {**micro["data"], "path": path}}
        assert design.design_corpus(_sweep_dir(tmp_path, name, table)) == name
    assert design.design_corpus(tmp_path / "absent") is None


def test_a_check_the_family_term_was_learned_on_is_labelled_in_sample(tmp_path, family_term):
    """The default demo's corpus (stdlib) is one of the micro demo term's members: its held-out check
    is in sample for a law carrying the term; a corpus the term never saw, or a law without it, is not."""
    from distillscale.laws import SupervisedLaw
    from distillscale.laws.crossladder import BiasCorrection, FitSummary, shipped_family, shipped_model
    from distillscale.laws.record import FitRecord

    micro = tomllib.loads(demo.builtin_sweep().to_toml())
    stdlib = _sweep_dir(tmp_path, "stdlib", micro)
    mine = _sweep_dir(tmp_path, "mine", {**micro, "data": {**micro["data"], "path": "/data/my-corpus"}})
    summary = FitSummary(params_max=1.9e5, params_min=6.9e3, tokens_max=1.8e6, sizes=3, runs=20,
                         log_ratio_median=1.0, alpha=0.3, beta=0.3)
    term = shipped_family("micro-demo")
    assert "stdlib" in term.model.ladders
    law = SupervisedLaw(E=1.0, A=10.0, B=10.0, alpha=0.3, beta=0.3, fit=FitRecord(bias_correction=BiasCorrection(
        model=shipped_model(), summary=summary, family=term)))
    note = design.in_sample_note(stdlib, law)
    assert note is not None and note.startswith("in sample") and "stdlib" in note
    assert design.in_sample_note(mine, law) is None
    assert design.in_sample_note(stdlib, law.without_bias_correction()) is None


SETTINGS = {"bootstrap": 0, "max_iter": 200, "target_params": 1e9, "target_compute": 1e20}


class Stop(Exception):
    pass


def _family_asked(records, monkeypatch, **settings) -> tuple[str | None, bool]:
    """The family and bias correction `calibrate` asks the supervised fit for (stopped before fitting)."""
    def capture(**arguments):
        options = arguments["supervised_options"]
        raise Stop((options.get("family"), options["bias_correction"]))

    with monkeypatch.context() as patch:   # only this patch undone after: the installed term stays
        patch.setattr(calibration, "calibrate_laws", capture)
        with pytest.raises(Stop) as stopped:
            calibrate(records, CalibrationSettings(**SETTINGS, **settings))
    return stopped.value.args[0]


def _supervised_runs(tmp_path):
    """A sweep's supervised runs alone (the family term is the supervised law's, and without students
    the distillation fit is skipped): 6 sizes a doubling apart at 4 token ratios, drawn from the
    busbridge2025 law with 0.3% noise, so that the fits converge fast."""
    rng = np.random.default_rng(0)
    records = []
    for N in (2.5e6, 5e6, 1e7, 2e7, 4e7, 8e7):
        for M in (10, 20, 40, 80):
            run_id, run_dir = f"b-{N:g}-{M}", tmp_path / "runs" / f"b-{N:g}-{M}"
            loss = float(LAWS.supervised.predict(N, M * N) * (1 + 0.003 * rng.standard_normal()))
            _write_run_dir(run_dir, N, M * N, loss)
            records.append(_record(run_id, "baseline", N, M * N, loss, run_dir))
    write_records(records, tmp_path / "records.jsonl", "jsonl")
    return load_runs(tmp_path / "records.jsonl")


@pytest.mark.slow  # reports fitted with and without the term (about 35 s)
def test_the_report_applies_the_term_only_to_the_design_and_never_without_the_bias_correction(tmp_path, monkeypatch,
                                                                                               capsys, family_term):
    records = _supervised_runs(tmp_path)
    # a user's own sweep (here an exported records file): no correction, the pack's only when asked for
    assert _family_asked(records, monkeypatch) == (None, False)
    assert _family_asked(records, monkeypatch, bias_correction=True) == (None, True)
    # the same runs, were they a sweep of the micro demo: the design's term (with the pack model it was
    # learned after: `fit_supervised`) ...
    named = lambda source: "micro-demo" if source == records.source else None  # noqa: E731
    for settings, asked in (({}, ("micro-demo", False)), ({"no_bias_correction": True}, (None, False)),
                            ({"no_bias_correction": True, "bias_correction": True}, (None, False)),
                            ({"family_term": False}, (None, False))):
        monkeypatch.setattr(calibration, "design_family", named)
        assert _family_asked(records, monkeypatch, **settings) == asked, settings
    # ... end to end: the law carries it, said in the one line, and the held-out check's refit too
    monkeypatch.setattr(calibration, "design_family", named)
    monkeypatch.setattr(design, "design_corpus", lambda source: "stdlib")
    family = calibrate(records, CalibrationSettings(**SETTINGS))
    correction = family.supervised.law.bias_correction
    assert correction.family is not None and correction.family.name == "micro-demo"
    report = family.to_dict()
    assert "builtin micro demo design" in report["bias_correction"]
    assert report["laws"]["supervised"]["fit"]["bias_correction"]["family"]["name"] == "micro-demo"
    top = correction.summary.params_max
    pack_alone = replace(family.supervised.law, fit=family.supervised.law.fit.model_copy(
        update={"bias_correction": correction.model_copy(update={"family": None})}))
    assert family.laws.supervised.predict(4 * top, 1e11) < 0.97 * pack_alone.predict(4 * top, 1e11)
    assert family.laws.supervised.predict(top / 2, 1e9) == pack_alone.predict(top / 2, 1e9)
    for run in report["extrapolation_check"]["supervised"]["runs"]:   # 2x beyond: the term's -6% x ln 2
        assert run["predicted"] < 0.97 * run["raw_predicted"]
    # the corpus is one the term was learned on (stdlib: the default demo's): the check is labelled in
    # sample, in report.json and printed
    assert report["extrapolation_check"]["supervised"]["in_sample"].startswith("in sample")
    from distillscale.report.commands import print_summary

    print_summary(report)
    assert "in sample: this law's builtin micro demo design term" in " ".join(capsys.readouterr().out.split())
