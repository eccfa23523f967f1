"""`plan --downstream-law FILE` (issue 56): each model a plan prints (the student, the teacher a
scenario pre-trains, the model pretrained instead) carries its predicted downstream error at the
plan's predicted loss, with the law's interval and the loss's interval carried through, in the JSON,
the text and the figure; a missing or invalid law file is one line."""

import json

import numpy as np
import pytest

import distillscale as ds


@pytest.fixture(scope="module")
def law_file(tmp_path_factory):
    """Gadre et al.'s law Err = 0.75 - 12 exp(-1.3 L) over losses 2.2-3.4, a little noise."""
    losses = np.linspace(2.2, 3.4, 12)
    errors = 0.75 - 12 * np.exp(-1.3 * losses) + np.random.default_rng(0).normal(0, 0.004, losses.size)
    path = tmp_path_factory.mktemp("downstream") / "down.json"
    ds.fit_downstream(losses, errors, task_set="tiny_mc", bootstrap=60).save(path)
    return path


def _law(path):
    from distillscale.laws.downstream import load_downstream_law

    return load_downstream_law(path)


def test_each_model_a_plan_prints_carries_its_error_in_the_json_and_the_text(cli, law_file):
    args = ("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
            "--scenario", "teacher-pretraining", "--downstream-law", str(law_file))
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    plan, law = json.loads(out), _law(law_file)
    downstream = plan["downstream"]
    assert downstream["task_set"] == "tiny_mc" and downstream["n_runs"] == 12
    losses = {"teacher-pretraining": plan["student_loss"], "teacher-pretraining teacher": plan["teacher_loss"],
              "teacher-pretraining (pretrain instead)": plan["supervised_loss"]}
    assert list(downstream["models"]) == list(losses) == list(plan["recipes"])
    for name, loss in losses.items():
        model = downstream["models"][name]
        assert model["loss"] == loss and model["error"] == pytest.approx(float(law.error(loss)), abs=1e-12)
        assert model["accuracy"] == pytest.approx(1 - model["error"])
        low, high = model["law_interval"]
        assert low <= model["error"] <= high and high - low > 0 and model["level"] == 0.9
        # busbridge2025's losses carry its intervals: the whole interval spans the law's at every loss they allow
        loss_low, loss_high = model["loss_interval"]
        assert loss_low < loss < loss_high
        assert model["interval"][0] <= low and model["interval"][1] >= high
        assert not model["beyond_law_data"]  # 2.2-2.3 nats lies inside the law's 2.2-3.4
    code, out, err = cli(*args, "--explain")   # the full plan: every note
    assert code == 0, err
    text = " ".join(out.split())
    student = downstream["models"]["teacher-pretraining"]
    assert "Downstream error on task set tiny_mc (error = 1 - accuracy;" in text
    assert (f"teacher-pretraining: loss {student['loss']:.4g} -> error {student['error']:.3f} (90% of the law: "
            f"{student['law_interval'][0]:.3f} to {student['law_interval'][1]:.3f}; with the loss's interval "
            f"{student['loss_interval'][0]:.4g} to {student['loss_interval'][1]:.4g}: {student['interval'][0]:.3f} to "
            f"{student['interval'][1]:.3f})") in text


def test_the_loss_interval_is_carried_through_the_law(law_file):
    # a pruned student's loss has an interval (the start multiplier's): the error's interval runs from
    # the law's low end at the loss's low end to its high end at the loss's high end
    law = _law(law_file)
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case",
                   student_init="pruned", downstream_law=law_file)
    student = plan.downstream.predictions["best-case"]
    interval = plan.plans[0].student_interval
    assert student.loss_interval == (interval.low, interval.high)
    assert student.interval == pytest.approx((law.interval(interval.low)[0], law.interval(interval.high)[1]))
    assert student.interval[0] < student.law_interval[0] and student.interval[1] > student.law_interval[1]
    assert "with the loss's interval" in plan.as_text()
    # a law object from Python gives the same
    same = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case",
                   student_init="pruned", downstream_law=law)
    assert same.downstream.predictions == plan.downstream.predictions


@pytest.mark.parametrize("options", [
    dict(scenario="best-case"),  # a sweep over sizes
    dict(student_params=546e6, teacher=ds.ExistingTeacher(params=7.75e9, tokens=155e9), on_policy=ds.OnPolicy()),
])
def test_every_kind_of_plan_reads_each_run_through_the_law(options, law_file):
    law = _law(law_file)
    plan = ds.plan("busbridge2025", compute=1e21, downstream_law=law_file, **options)
    assert list(plan.downstream.predictions) == list(plan.runs()) == list(plan.to_dict()["downstream"]["models"])
    for name, (loss, _) in plan.loss_predictions().items():
        assert plan.downstream.predictions[name].error == pytest.approx(float(law.error(loss)))
    supervised = ds.plan_supervised("epoch2024", compute=1e21, downstream_law=law_file)
    assert list(supervised.downstream.predictions) == ["supervised"]
    assert ds.plan("busbridge2025", compute=1e21, scenario="best-case").downstream is None


def test_a_loss_outside_the_laws_data_is_marked(tmp_path):
    path = tmp_path / "narrow.json"  # fitted on losses 3.0-3.6: every plan above is below them
    losses = np.linspace(3.0, 3.6, 6)
    ds.fit_downstream(losses, 0.75 - 12 * np.exp(-1.3 * losses), bootstrap=0).save(path)
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case", downstream_law=path)
    assert all(p.beyond_data and p.law_interval is None for p in plan.downstream.predictions.values())
    text = plan.as_text()
    assert "best-case, best-case (pretrain instead)*: loss" not in text  # distinct losses, a line each
    assert "* the loss lies outside the losses the law was fitted on" in text and "no interval" in text


def test_a_missing_or_invalid_law_file_is_one_line(cli, tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"format": "something else"}')
    for path, says in ((tmp_path / "missing.json", "no such file"), (other, "is not a downstream law file")):
        code, out, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--downstream-law", str(path))
        assert code == 2 and out == ""
        assert "--downstream-law" in err and says in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_the_figure_carries_the_errors(cli, law_file, tmp_path):
    figure = tmp_path / "plan.svg"
    code, _, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--scenario", "best-case",
                       "--downstream-law", str(law_file), "--plot", str(figure))
    assert code == 0, err
    assert "Downstream error on task set tiny_mc" in figure.read_text()


def test_a_downstream_law_on_another_loss_scale_is_refused_or_warned(cli, tmp_path):
    """Issue 63: a downstream law fitted on losses of another scale (here 5.2-6.4 nats/token, another
    tokenizer's) read the plan's 2.2-2.3 unchecked: an error far below 0 at the plan's losses."""
    from distillscale.planning.downstream import loss_scale_warning

    losses = np.linspace(5.2, 6.4, 12)
    far = tmp_path / "far.json"
    ds.fit_downstream(losses, 0.75 - 500 * np.exp(-1.3 * losses), task_set="other", bootstrap=0).save(far)
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                         "--downstream-law", far)
    said = " ".join(err.split())
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"--downstream-law {far} cannot read this plan's losses" in said and "outside 0-1" in said
    assert "the law's runs had losses 5.2 to 6.4 nats/token" in said and "another tokenizer or corpus" in said
    # far outside but a possible error (a far extrapolation, or another scale): a warning naming the models
    law = _law(far)
    assert loss_scale_warning(law, {"near": 4.5, "inside": 6.0}) is None  # within one width (1.2) of the range
    warning = loss_scale_warning(law, {"student": 8.0, "teacher": 5.0})
    assert warning.startswith("student 8: far outside the losses the downstream law was fitted on")
    with pytest.raises(ds.UserError, match="downstream_law cannot read this plan's losses: at student's loss 2.3"):
        loss_scale_warning(law, {"student": 2.3, "teacher": 5.0})
    narrow = tmp_path / "narrow.json"  # the law of small runs read at a larger model's loss: said, not refused
    losses = np.linspace(3.0, 3.6, 6)
    ds.fit_downstream(losses, 0.75 - 12 * np.exp(-1.3 * losses), bootstrap=0).save(narrow)
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case", downstream_law=narrow)
    assert plan.downstream.scale_warning is not None and "warning: best-case" in plan.as_text()
    # `predict downstream` reads a loss on another scale the same way
    code, _, err = cli("predict", "downstream", "--law", far, "--loss", "2.3")
    assert code == 2 and "outside 0-1: the loss is on another scale than the law's" in " ".join(err.split()), err
