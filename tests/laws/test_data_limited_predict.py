"""`predict distillation` with a pool of unique tokens: the data-limited law's student (Python, text, JSON)."""

import json
import re

import pytest

from distillscale.laws.data_limited import DataLimitedConstants, DataLimitedLaw
from distillscale.laws.lawset import load_laws
from distillscale.laws.predict import predict_distillation

POOL = dict(teacher_params=1.5e9, teacher_tokens=800e6)
ARGS = ("predict", "distillation", "--student-params", "1.5B", "--student-tokens", "800M", "--teacher-params", "1.5B",
        "--teacher-tokens", "800M", "--unique-tokens", "50M")
CONSTANTS = DataLimitedConstants.given(0.3, 0.5, 0.05, 0.8, 0.5, intervals={"kappa": (0.1, 0.5)}, source="test")


@pytest.fixture(scope="module")
def laws():
    return load_laws("busbridge2025")


def test_a_pool_no_run_repeats_predicts_what_fresh_data_does(laws):
    fresh = predict_distillation(laws, 1.5e9, 800e6, **POOL)
    pooled = predict_distillation(laws, 1.5e9, 800e6, unique_tokens=2e9, constants=CONSTANTS, **POOL)
    for a, b in ((fresh.prediction, pooled.prediction), (fresh.supervised, pooled.supervised)):
        assert (a.value, a.low, a.high) == (b.value, b.low, b.high)
    assert fresh.difference.describe() == pooled.difference.describe()


def test_with_a_pool_the_student_is_the_data_limited_law_s_and_can_beat_its_teacher(laws):
    result = predict_distillation(laws, 1.5e9, 800e6, unique_tokens=50e6, constants=CONSTANTS, **POOL)
    law = DataLimitedLaw(laws, CONSTANTS)
    student = law.student(1.5e9, 800e6, 50e6, law.alone(1.5e9, 800e6, 50e6))
    assert float(result.prediction.value) == student.value
    assert (result.prediction.low, result.prediction.high) == (student.loss.low, student.loss.high)
    assert result.teacher_loss == pytest.approx(law.alone(1.5e9, 800e6, 50e6).value)   # `predict supervised`'s
    assert float(result.prediction.value) < result.teacher_loss
    assert result.data_limited.inherited == pytest.approx(0.3 * result.data_limited.teacher.penalty)


def test_a_measured_teacher_s_pool_unknown_is_fresh(laws):
    result = predict_distillation(laws, 1.5e9, 800e6, teacher_loss=3.4, unique_tokens=50e6, constants=CONSTANTS)
    assert result.data_limited.teacher.penalty == 0.0 and result.data_limited.inherited == 0.0


def test_text_and_json_carry_the_same_losses_with_intervals(cli):
    code, out, _ = cli(*ARGS, "--json")
    assert code == 0
    record = json.loads(out)
    states = record["data_limited"]
    assert states["student"]["loss"] == record["student_loss"]
    assert states["student"]["loss_interval"] == record["interval"]
    assert states["teacher"]["loss_interval"] is not None
    code, text, _ = cli(*ARGS)
    assert code == 0
    assert f"{record['student_loss']:.4f} nats/token" in text
    for key, row in (("loss", "teacher on its pool L_T"), ("loss_fresh", "teacher, fresh data F_T")):
        low, high = states["teacher"][f"{key}_interval"]
        assert re.search(rf"{re.escape(row)}\s*│ {states['teacher'][key]:.4f} \[{low:.4f}, {high:.4f}\] nats/token",
                         text), text
    low, high = states["student"]["loss_fresh_interval"]
    assert f"{states['student']['loss_fresh']:.4f} [{low:.4f}, {high:.4f}] nats/token" in text
    assert f"= {states['inherited']:.4f}" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_a_measured_teacher_whose_pool_is_given_takes_its_pool_s_penalty_off(laws, cli):
    result = predict_distillation(laws, 1.5e9, 800e6, teacher_loss=3.5, unique_tokens=50e6, constants=CONSTANTS,
                                  teacher_unique_tokens=50e6, **POOL)
    law = DataLimitedLaw(laws, CONSTANTS)
    alone = law.alone(1.5e9, 800e6, 50e6)
    teacher = result.data_limited.teacher
    assert result.teacher_loss == 3.5 and teacher.value == 3.5
    assert teacher.penalty == pytest.approx(alone.penalty)   # the law's penalty at its run, off its measured loss
    assert float(result.prediction.value) == law.student(1.5e9, 800e6, 50e6, teacher).value
    assert result.pools["teacher"] == {"measured": True, "unique_tokens": 50e6, "tokens": 800e6,
                                       "epochs": pytest.approx(16.0)}
    code, out, _ = cli(*ARGS, "--teacher-loss", "3.5", "--teacher-unique-tokens", "50M", "--json")
    assert code == 0
    record = json.loads(out)["data_limited"]["teacher"]
    assert record["loss"] == 3.5 and record["loss_fresh"] == pytest.approx(3.5 - alone.penalty)
    code, out, err = cli(*ARGS, "--teacher-loss", "3.5")   # without its pool: a loss and a size are two teachers
    assert code == 2 and "not both" in err
    code, out, err = cli(*ARGS[:6], "--teacher-loss", "3.5", "--teacher-unique-tokens", "50M")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "give --teacher-params and --teacher-tokens too" in err


FIXED = ("predict", "distillation", "--student-params", "2.7B", "--student-tokens", "1.2B", "--unique-tokens", "100M")


def test_at_fixed_tokens_each_generation_and_ensemble_is_the_law_s_against_alone(laws):
    law = DataLimitedLaw(laws, CONSTANTS)
    answer = law.at_fixed_tokens(2.7e9, 1.2e9, 100e6, generations=4, members=8)
    chain = law.chain(2.7e9, 1.2e9, 100e6, 4)
    assert [s.value for s in answer.chain.generations] == [s.value for s in chain.generations]
    assert answer.chain.stops_paying == chain.stops_paying
    assert [e.members for e in answer.ensembles] == [2, 4, 8]
    eight = answer.ensembles[-1]
    assert eight.student.value == law.student(2.7e9, 1.2e9, 100e6, law.ensemble(2.7e9, 1.2e9, 100e6, 8)).value
    delta = answer.against_alone(chain.generations[2])
    assert delta.value == pytest.approx(chain.generations[2].value - answer.alone.value)
    F = 2 * 2.7e9
    assert answer.chain_flops(3) == pytest.approx(4 * 3 * F * 1.2e9 + 3 * F * 1.2e9)
    assert eight.flops == pytest.approx(9 * 3 * F * 1.2e9 + 8 * F * 1.2e9)


def test_predict_at_fixed_tokens_text_and_json_carry_the_same_numbers(cli):
    code, out, _ = cli(*FIXED, "--generations", "3", "--members", "4", "--json")
    assert code == 0, out
    record = json.loads(out)
    assert record["question"].startswith("fixed tokens per model") and record["epochs"] == pytest.approx(12)
    generations = record["chain"]["generations"]
    assert len(generations) == 4 and [e["members"] for e in record["ensembles"]["sizes"]] == [2, 4]
    code, text, _ = cli(*FIXED, "--generations", "3", "--members", "4")
    assert code == 0
    assert all(len(line) <= 80 for line in text.splitlines())
    for g, row in enumerate(generations[1:], 1):
        low, high = row["loss_interval"]
        assert f"gen {g:<5}{row['loss']:.4f} [{low:.4f}, {high:.4f}] {row['distilled_minus_alone']:+.4f}" in text
    assert f"generation {record['chain']['stops_paying']}" in " ".join(text.split()) or \
        record["chain"]["stops_paying"] is None


def test_a_thousand_generations_at_fixed_tokens_are_one_screen(cli):
    code, text, _ = cli(*FIXED, "--generations", "1000")
    assert code == 0
    lines = text.splitlines()
    assert len(lines) <= 25 and "generations 8-999 the same way" in text and "gen 1000 " in text
    assert all(len(line) <= 80 for line in lines)


@pytest.mark.parametrize("extra, fragment", [
    (("--generations", "2"), "--generations answers on a pool of unique tokens: give --unique-tokens"),
    (("--unique-tokens", "100M", "--members", "4", "--teacher-loss", "3"), "leave out --teacher-loss"),
    (("--unique-tokens", "100M", "--members", "1"), "--members"),
    (("--unique-tokens", "100M", "--generations", "0"), "--generations"),
])
def test_bad_fixed_tokens_questions_are_one_line_exit_2(cli, extra, fragment):
    code, out, err = cli("predict", "distillation", "--student-params", "2.7B", "--student-tokens", "1.2B", *extra)
    assert code == 2 and out == "" and fragment in err and len(err.strip().splitlines()) == 1
