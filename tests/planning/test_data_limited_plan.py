"""`plan` with a pool: training alone, self-distillation, an ensemble distilled and the given teacher at
equal compute under the data-limited law (`planning.data_limited`)."""

import json

import pytest

from distillscale.laws.data_limited import Constant, DataLimitedConstants, DataLimitedLaw
from distillscale.laws.lawset import load_laws
from distillscale.planning.data_limited import data_limited_plan, plan_lines
from distillscale.planning.flops import ForwardFlops
from distillscale.planning.results import verdict_difference

C, N, U = 1.5e19, 1.5e9, 50e6
CONSTANTS = DataLimitedConstants(Constant(0.5, (0.3, 0.7)), Constant(0.5, (0.3, 0.7)), source="test")
PLAN = ("plan", "--law", "busbridge2025", "--student-params", "1.5B", "--compute", "1.5e19", "--unique-tokens", "50M")


@pytest.fixture(scope="module")
def laws():
    return load_laws("busbridge2025")


@pytest.fixture(scope="module")
def forward(laws):
    return ForwardFlops.from_settings(laws.compute)


def test_every_option_spends_the_same_compute(laws, forward):
    plan = data_limited_plan(laws, forward, C, N, U, constants=CONSTANTS)
    F = forward(N)
    for option in plan.options:
        k = option.k
        if option.kind == "alone":
            assert 3 * F * option.tokens == pytest.approx(C)
        else:   # k + 1 trainings and k teacher forward passes over D (a chain; an ensemble of k and its student)
            assert (3 * F * (k + 1) + F * k) * option.tokens == pytest.approx(C)
        assert all(run.epochs == pytest.approx(option.tokens / U) for run in option.runs)
    assert [o.k for o in plan.options if o.kind == "chain"] == [1, 2, 3, 4]
    assert [o.k for o in plan.options if o.kind == "ensemble"] == [2, 3, 4]   # an ensemble of one is a chain of one


def test_each_option_is_the_law_s_and_its_verdict_the_one_rule_s(laws, forward):
    plan = data_limited_plan(laws, forward, C, N, U, generations=3, constants=CONSTANTS)
    law = DataLimitedLaw(laws, CONSTANTS)
    alone, chain = plan.options[0].final, next(o for o in plan.options if o.kind == "chain")
    assert chain.k == 3 and len(chain.runs) == 4
    expected = law.chain(N, chain.tokens, U, 3).generations[-1]
    assert chain.final.value == expected.value
    rule = verdict_difference(expected.value, expected.loss, alone.value, alone.loss)
    assert chain.difference.describe() == rule.describe() and chain.verdict == rule.verdict
    assert plan.chain_k == 3 and len(plan.chain.generations) == 4


def test_the_best_chain_length_is_the_lowest_loss_and_the_teacher_is_an_option(laws, forward):
    law = DataLimitedLaw(laws, CONSTANTS)
    teacher = law.alone(N, 800e6, U)
    plan = data_limited_plan(laws, forward, C, N, U, teacher=teacher, teacher_params=N, constants=CONSTANTS)
    chains = [o for o in plan.options if o.kind == "chain"]
    assert plan.chain_k == min(chains, key=lambda o: o.final.value).k
    given = plan.options[-1]
    assert given.kind == "teacher" and (3 * forward(N) + forward(N)) * given.tokens == pytest.approx(C)
    assert given.final.value == law.student(N, given.tokens, U, teacher).value
    assert all(len(line) <= 80 for line in plan_lines(plan))
    assert f"its teacher: {teacher.value:.4f} on 50M tokens read 16 times" in "\n".join(plan_lines(plan))
    assert given.to_dict()["teacher"]["loss_fresh"] == float(teacher.fresh.value)


def test_the_run_sheet_gives_each_generation_s_command(laws, forward):
    plan = data_limited_plan(laws, forward, C, N, U, generations=2, constants=CONSTANTS)
    commands = plan.commands()
    assert commands[0].startswith("distillscale train ") and "--unique-tokens 50M" in commands[0]
    assert "distillscale distill --teacher gen0 --split teacher" in commands[1]
    assert "distillscale distill --teacher gen1 --split teacher" in commands[2]
    assert commands[3].startswith("distillscale distill --teacher gen0 --generations 2 --split teacher")  # the whole chain from gen0
    assert len(commands) == 4


def test_plan_text_and_json_carry_the_same_numbers(cli):
    code, out, _ = cli(*PLAN, "--generations", "2", "--json")
    assert code == 0
    record = json.loads(out)["data_limited"]
    assert record["generations"] == 2 and record["units"] == "nats/token"
    code, text, _ = cli(*PLAN, "--generations", "2")
    assert code == 0
    assert all(len(line) <= 80 for line in text.splitlines())
    for option in record["options"]:
        low, high = option["loss_interval"]
        assert f"{option['label']:<24} {option['loss']:.4f} [{low:.4f}, {high:.4f}]" in text
        assert f"reading the 50M pool {option['tokens_per_run'] / 50e6:.3g} times" in text
        if option["verdict"] is not None:
            assert f"{option['distilled_minus_alone']:+.4f} nats/token" in text
    assert "self-distillation: --generations 2" in text


def test_without_generations_the_plan_says_the_best_k(cli):
    code, out, _ = cli(*PLAN, "--json")
    assert code == 0
    record = json.loads(out)["data_limited"]
    assert record["generations"] is None and record["best_chain_k"] in (1, 2, 3, 4)
    assert record["chain_generations"] == record["best_chain_k"]
    best = next(o for o in record["options"] if o["label"] == record["best"])
    code, brief, _ = cli(*PLAN)   # one screen: the best option in three lines
    assert code == 0
    part = brief[brief.index("Data-limited"):].splitlines()[:3]
    low, high = best["loss_interval"]
    assert part[0].endswith(f"best {best['label']}")
    assert part[1].startswith(f"  {best['loss']:.4f} [{low:.4f}, {high:.4f}]")
    assert f"best chain: k = {record['best_chain_k']}" in part[2] and all(len(line) <= 80 for line in part)
    code, full, _ = cli(*PLAN, "--explain")   # each option, the chain's stop and the commands
    assert code == 0 and "self-distil, 4 gens" in full and "distillscale distill --teacher gen0 --generations" in full


def test_a_plan_on_fresh_data_has_no_data_limited_part(cli):
    code, out, _ = cli("plan", "--law", "busbridge2025", "--student-params", "1.5B", "--compute", "1.5e19", "--json")
    assert code == 0 and "data_limited" not in json.loads(out)


@pytest.mark.parametrize("extra, fragment", [
    (("--generations", "2"), "--generations plans self-distillation on a pool of unique tokens: give --unique-tokens"),
    (("--unique-tokens", "50M", "--generations", "0"), "--generations must be at least 1"),
    (("--unique-tokens", "50M", "--generations", "-3"), "--generations must be at least 1"),
])
def test_bad_generations_is_one_line_exit_2(cli, extra, fragment):
    code, out, err = cli("plan", "--law", "busbridge2025", "--student-params", "1.5B", "--compute", "1.5e19", *extra)
    assert code == 2 and out == ""
    assert fragment in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, fragment", [
    (("--law", "busbridge2025"), "--generations compares ways to train one student size: give --student-params"),
    (("--law", "epoch2024", "--student-params", "1.5B"), "has no distillation law"),
])
def test_generations_without_a_student_size_or_a_distillation_law_is_one_line_exit_2(cli, args, fragment):
    code, out, err = cli("plan", *args, "--compute", "1.5e19", "--unique-tokens", "50M", "--generations", "2")
    assert code == 2 and out == ""
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_the_plan_s_student_of_a_teacher_on_the_pool_is_the_data_limited_law_s():
    """The plan's table and its data-limited comparison give the same student: its loss as if its teacher had
    seen fresh data, plus kappa of the teacher's repetition penalty."""
    import distillscale as ds

    plan = ds.plan("busbridge2025", compute=C, student_params=N, teacher=ds.ExistingTeacher(params=N, tokens=8e8),
                   unique_tokens=U)
    given = plan.data_limited.options[-1]
    assert given.kind == "teacher"
    assert plan.headline.student_tokens == pytest.approx(given.tokens, rel=1e-9)
    assert plan.headline.student_loss == pytest.approx(given.final.value, rel=1e-9)
    assert plan.headline.student_loss < plan.headline.teacher_loss   # it beats its same-size teacher
    # one number, one interval: the table's interval, its verdict's Delta and the comparison's are the same
    low, high = plan.headline.student_interval.low, plan.headline.student_interval.high
    assert (low, high) == pytest.approx((float(given.final.loss.low), float(given.final.loss.high)), rel=1e-12)
    mine, theirs = plan.headline.difference, given.difference
    assert (mine.low, mine.high) == pytest.approx((theirs.low, theirs.high), rel=1e-12)
