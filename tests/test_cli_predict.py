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
    (["predict", "supervised", "--params", "-5", "--tokens", "1B"], "malformed --params"),
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
