"""bench/laws/verdict_pairs.py and the calibration it ships: the package's difference_interval.json is the
fit of the shipped pairs (bench/data/verdict_pairs.json) by the command it records; no pair's prediction
comes from a law fitted on its own run; and the bench's scoring calls the verdicts' own function;
nothing trains."""

from __future__ import annotations

import json

import pytest

from distillscale.laws import difference
from tests.conftest import load_bench


def bench():
    return load_bench("laws/verdict_pairs.py")


def stored():
    return bench().read_pairs()


def test_the_shipped_calibration_is_the_fit_of_the_shipped_pairs():
    module, data = bench(), stored()
    shipped = difference.shipped_calibration()
    kinds = tuple(shipped.command.split("--kinds ")[1].split()[0].split(","))
    scale = module.interval_scale_without(data["interval_scores"], None)
    refit = module.fit_rule(module.pairs_of(data["pairs"], kinds, scale))
    assert refit.correlation == pytest.approx(shipped.correlation, abs=1e-9)
    assert refit.factor == pytest.approx(shipped.factor, rel=1e-9)
    for side in ("distilled", "alone"):
        mine, theirs = getattr(refit, side), getattr(shipped, side)
        assert mine.pairs == theirs.pairs and mine.reach == pytest.approx(theirs.reach)
        assert [s is None for s in mine.scales] == [s is None for s in theirs.scales]
        assert [s for s in mine.scales if s is not None] == pytest.approx([s for s in theirs.scales if s is not None])
    assert refit.pairs == shipped.pairs and set(refit.corpora) == set(shipped.corpora)
    assert refit.sample_size == pytest.approx(shipped.sample_size, rel=1e-9)


def check_no_law_saw_its_run(module, pairs: list[dict]) -> None:
    """Each record names the runs behind each prediction's law (sweep run ids) and the run it predicts,
    in one namespace: a sweep run's id, or a pair run's directory under its corpus in the pairs' work
    directory. The run is never one of its law's; a law that saw a run at the predicted (N, D) leaves the
    prediction inside its runs (distance 1 at most); a trained pair's distilled student is larger than
    every student its law saw."""
    for p in pairs:
        for side in ("alone", "distilled"):
            run, law_runs = p[f"{side}_run"], p[f"{side}_law_runs"]
            assert law_runs and all(module.run_point(r) is not None for r in law_runs), p
            assert module.run_point(run) is not None or run.startswith(f"{p['corpus']}/L"), run
            assert run not in law_runs, (run, p["corpus"])
        if module.alone_inside(p):
            assert p["alone"]["distance"] <= 1.0 + 1e-9, (p["alone_run"], p["alone"]["distance"])
    for p in (p for p in pairs if p["kind"] == "trained"):
        seen = max(module.run_point(r)[1] for r in p["distilled_law_runs"])
        assert p["student_params"] > seen and p["distilled"]["distance"] > 1.0, p["distilled_run"]


def test_no_pairs_prediction_comes_from_a_law_that_saw_its_run():
    module, pairs = bench(), stored()["pairs"]
    assert len(pairs) >= 100 and len({p["corpus"] for p in pairs}) >= 8
    assert sum(p["kind"] == "trained" for p in pairs) >= 60
    assert {module.micro_params(depth) for depth in (2, 3, 4)} <= {p["student_params"] for p in pairs}
    check_no_law_saw_its_run(module, pairs)


def test_the_check_of_which_runs_a_law_saw_fails_where_a_law_saw_one():
    """The check above fails on each way a law can see what it predicts: the predicted run among its
    law's runs, a run of its law at the predicted (N, D) of a prediction said to lie beyond the runs, a
    trained student no larger than a student its law saw."""
    module, pairs = bench(), stored()["pairs"]
    held = next(p for p in pairs if p["kind"] == "held-out-teacher")
    trained = next(p for p in pairs if p["kind"] == "trained" and p["alone"]["distance"] > 1.0)
    depth = next(d for d in (3, 4) if module.micro_params(d) == trained["student_params"])
    ratio = trained["alone_tokens"] / trained["student_params"]
    leaks = [{**held, "alone_law_runs": held["alone_law_runs"] + [held["alone_run"]]},
             {**held, "distilled_law_runs": held["distilled_law_runs"] + [held["distilled_run"]]},
             {**trained, "alone_law_runs": trained["alone_law_runs"] + [f"t-L{depth}-M{ratio:g}-0123abcd"]},
             {**trained, "distilled_law_runs": trained["distilled_law_runs"] + [f"s-L{depth}-M2-T4-0123abcd"]},
             {**trained, "alone_run": "/elsewhere/" + trained["alone_run"]}]
    for leak in leaks:
        with pytest.raises(AssertionError):
            check_no_law_saw_its_run(module, [leak])


def test_the_pairs_name_their_runs_relative_to_where_they_were_trained():
    """The pairs' file names a pair run by its directory under the work directory, never an absolute
    directory of the machine that trained it; a file of the earlier form reads the same."""
    module = bench()
    raw = json.loads(module.DATA.read_text())["pairs"]
    assert not any(p[key].startswith("/") for p in raw for key in ("alone_run", "distilled_run"))
    assert module.run_name("/work/pairs/stdlib/L3/alone-561816", "stdlib") == "stdlib/L3/alone-561816"
    assert module.run_name("/home/me/pairs/doc-en/L4/distilled", "doc-en") == "doc-en/L4/distilled"
    assert module.run_name("t-L3-M8-f58d0026", "stdlib") == "t-L3-M8-f58d0026"


def test_a_pairs_two_runs_train_at_one_batch_per_size():
    """Every run of one student size, alone or distilled, trains at one batch (the sweep's rule read at
    the size's shortest run of either kind), so a pair's two runs differ only in the teacher; the
    shortest still takes the sweep's minimum of optimizer steps."""
    module = bench()
    trained = [p for p in stored()["pairs"] if p["kind"] == "trained"]
    template = {"seq_len": 128, "lr": 0.003}
    for corpus, params in {(p["corpus"], p["student_params"]) for p in trained}:
        these = [p for p in trained if (p["corpus"], p["student_params"]) == (corpus, params)]
        alone = sorted({round(p["alone_tokens"]) for p in these})
        distilled = sorted({round(p["student_tokens"]) for p in these})
        shortest = min(alone[0], distilled[0])
        batches = {module.pair_settings(template, 3, t, shortest)["batch_size"] for t in alone + distilled}
        assert len(batches) == 1, (corpus, params, batches)
        assert shortest / (batches.pop() * 128) >= module.MIN_STEPS


def test_a_finished_run_of_another_batch_is_not_reused(tmp_path):
    """`train` reuses finished runs: one trained at another batch than its size's (the pairs before one
    batch per size) is refused in one line, not reused."""
    from types import SimpleNamespace

    module = bench()
    run = tmp_path / "stdlib" / "L3" / "alone"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": {"batch_size": 8, "warmup_steps": 55}}))
    (run / "result.json").write_text(json.dumps({"val_loss": 3.0}))
    same = SimpleNamespace(tokens=1e6, batch_size=8, warmup_steps=55)
    module._run_all([("train", same, run)], tmp_path)     # agrees: reused, nothing runs
    with pytest.raises(SystemExit, match="batch_size 8 \\(now 4\\)"):
        module._run_all([("train", SimpleNamespace(tokens=1e6, batch_size=4, warmup_steps=55), run)], tmp_path)


def test_the_bench_scores_through_the_verdicts_function(monkeypatch):
    """Every number the bench prints for a rule goes through `compare`, and every loss's coverage through
    `used_interval`, the functions every surface reads: break either, and the bench's own scores change."""
    module, data = bench(), stored()
    kinds = ("trained", "held-out-teacher")
    honest = module.tally(module.left_out(data["pairs"], data["interval_scores"], kinds))
    shown = module.shown_losses(data["pairs"], data["interval_scores"], kinds)
    monkeypatch.setattr(difference, "compare",
                        lambda d, a, c=None: difference.LossDifference(0.0, -1e9, 1e9, 0.9, 1.0))
    broken = module.tally(module.left_out(data["pairs"], data["interval_scores"], kinds))
    assert broken["given"] == 0 and broken["covered"] == broken["pairs"]
    assert (honest["given"], honest["half"]) != (broken["given"], broken["half"])
    monkeypatch.setattr(difference, "used_interval", lambda prediction, law, calibration=None: prediction)
    assert module.shown_losses(data["pairs"], data["interval_scores"], kinds) != shown


def test_each_corpus_is_scored_with_everything_of_its_own_left_out(monkeypatch):
    """Left out a corpus at a time: the rule and the distillation interval's calibration it scales the
    corpus's distilled predictions by are both fitted without that corpus."""
    module, data = bench(), stored()
    seen = []
    real = module.interval_scale_without

    def spy(scores, corpus):
        scale = real(scores, corpus)
        seen.append((corpus, scale.corpora))
        return scale

    monkeypatch.setattr(module, "interval_scale_without", spy)
    fitted = []
    scored = module.left_out(data["pairs"], data["interval_scores"], ("trained", "held-out-teacher"),
                             rule=lambda train: fitted.append({p.corpus for p in train}) or module.fit_rule(train))
    corpora = sorted({p["corpus"] for p in data["pairs"]})
    assert [corpus for corpus, _ in seen] == corpora and all(corpus not in kept for corpus, kept in seen)
    assert all(corpus not in train for corpus, train in zip(corpora, fitted))
    assert len(scored) == len(data["pairs"])
