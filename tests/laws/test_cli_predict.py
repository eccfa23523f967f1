import json

import pytest


def test_predict_supervised_json(cli):
    code, out, _ = cli("predict", "supervised", "--law", "busbridge2025",
                       "--params", "546M", "--tokens", "10.92B", "--json")
    assert code == 0
    assert json.loads(out)["loss"] == pytest.approx(2.515, abs=1e-3)


def test_predict_distillation_with_teacher_size(cli):
    code, out, _ = cli("predict", "distillation", "--law", "busbridge2025",
                       "--student-params", "546M", "--student-tokens", "10.92B",
                       "--teacher-params", "7.75B", "--teacher-tokens", "155B", "--json")
    assert code == 0
    record = json.loads(out)
    assert record["student_loss"] == pytest.approx(2.376, abs=1e-3)
    assert record["student_supervised_loss"] == pytest.approx(2.515, abs=1e-3)
    assert record["teacher_loss"] == pytest.approx(2.004, abs=1e-3)


def test_predict_distillation_with_teacher_loss_human_output(cli):
    code, out, _ = cli("predict", "distillation", "--student-params", "546M",
                       "--student-tokens", "10.92B", "--teacher-loss", "2.0036")
    assert code == 0
    assert "2.3760 nats/token" in out


@pytest.mark.parametrize("args, fragment", [
    (["predict", "supervised", "--law", "nope", "--params", "1M", "--tokens", "1B"], "unknown law 'nope'"),
    (["predict", "supervised", "--params", "abc", "--tokens", "1B"], "malformed --params 'abc'"),
    (["predict", "supervised", "--params", "-5", "--tokens", "1B"], "--params must be a positive finite number"),
    (["predict", "distillation", "--student-params", "1M", "--student-tokens", "1B"], "the teacher is missing"),
    (["predict", "distillation", "--law", "epoch2024", "--student-params", "1M",
      "--student-tokens", "1B", "--teacher-loss", "2"], "has no distillation law"),
])
def test_predict_bad_input_is_one_line_exit_2(cli, args, fragment):
    code, out, err = cli(*args)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_every_command_has_help(cli):
    for args in (["--help"], ["predict", "--help"], ["predict", "supervised", "--help"],
                 ["predict", "distillation", "--help"]):
        code, out, _ = cli(*args)
        assert code == 0 and "Usage" in out


def _law_file(tmp_path, **changes):
    from distillscale.laws import load_laws

    record = load_laws("busbridge2025").to_dict()
    record["supervised"]["coefficients"].update(changes)
    path = tmp_path / "law.json"
    path.write_text(json.dumps(record).replace('"NaN_"', "NaN"))
    return path


@pytest.mark.parametrize("changes, fragment", [
    ({"E": "NaN_"}, "supervised.coefficients.E = nan: must be a finite number"),
    ({"alpha": -1}, "supervised.coefficients.alpha = -1: Input should be greater than or equal to 0"),
    ({"B": 1e400}, "supervised.coefficients.B = inf: must be a finite number"),
])
def test_hand_edited_laws_with_impossible_coefficients_are_refused(cli, tmp_path, changes, fragment):
    code, out, err = cli("predict", "supervised", "--law", _law_file(tmp_path, **changes),
                         "--params", "546M", "--tokens", "11B")
    assert code == 2 and out == "" and fragment in err and len(err.strip().splitlines()) == 1


def test_a_teacher_loss_below_the_irreducible_loss_is_refused(cli):
    for command in (["predict", "distillation", "--student-params", "546M", "--student-tokens", "11B"],
                    ["plan", "--compute", "1e21", "--student-params", "1B", "--teacher-params", "7B"]):
        code, _, err = cli(*command, "--teacher-loss", "0.01")
        assert code == 2 and "--teacher-loss 0.01 is not above the irreducible loss E = 1.22" in err
        assert "Warning" not in err and len(err.strip().splitlines()) == 1


def test_predict_warns_when_it_extrapolates_as_plan_does(cli):
    code, out, err = cli("predict", "supervised", "--params", "1e17", "--tokens", "1T", "--json")
    assert code == 0 and json.loads(out)["loss"] > 0
    assert "the model (100P parameters) is far above the largest (12.6B)" in err
    assert "the prediction is an extrapolation" in err
    code, _, err = cli("predict", "supervised", "--params", "546M", "--tokens", "11B")
    assert code == 0 and err == ""
    code, _, err = cli("predict", "distillation", "--student-params", "1T", "--student-tokens", "20T",
                       "--teacher-loss", "2.0")
    assert code == 0 and "the student (1T parameters) is far above" in err
