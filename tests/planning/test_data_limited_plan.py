"""`plan` with a pool: training alone, self-distillation, an ensemble distilled and the given teacher at
equal compute under the data-limited law (`planning.data_limited`); the best option and the best k by the
verdict rule, one answer on top, a long chain on one screen."""

import json

import pytest

from distillscale.laws.data_limited import DataLimitedConstants, DataLimitedLaw
from distillscale.laws.lawset import load_laws
from distillscale.laws.data_limited import difference
from distillscale.laws.data_limited_fit import MeasuredRange
from distillscale.laws.extrapolation import CANNOT_TELL
from distillscale.planning.data_limited import best_choice, data_limited_plan, plan_lines
from distillscale.planning.flops import ForwardFlops

C, N, U = 1.5e19, 1.5e9, 50e6
CONSTANTS = DataLimitedConstants.given(0.4, 0.5, 0.05, 0.8, 0.5, intervals={"kappa": (0.3, 0.5), "lam": (0.4, 0.6)},
                                       source="test")
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
    rule = difference(expected, alone)
    assert chain.difference.describe() == rule.describe() and chain.verdict == rule.verdict
    assert plan.chain_k == 3 and len(plan.chain.generations) == 4


def test_the_best_chain_length_is_the_fewest_generations_no_other_beats_and_the_teacher_is_an_option(laws, forward):
    law = DataLimitedLaw(laws, CONSTANTS)
    teacher = law.alone(N, 800e6, U)
    plan = data_limited_plan(laws, forward, C, N, U, teacher=teacher, teacher_params=N, constants=CONSTANTS)
    chains = [o for o in plan.options if o.kind == "chain"]
    unbeaten = [o for o in chains if not any(difference(p.final, o.final).verdict == "distill" for p in chains)]
    assert plan.chain_k == min(o.k for o in unbeaten)
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
    assert record["question"].startswith("equal compute")
    code, text, _ = cli(*PLAN, "--generations", "2", "--explain")
    assert code == 0
    assert all(len(line) <= 80 for line in text.splitlines())
    for option in record["options"]:
        low, high = option["loss_interval"]
        assert f"{option['label']:<24} {option['loss']:.4f} [{low:.4f}, {high:.4f}]" in text
        assert f"reading the 50M pool {option['tokens_per_run'] / 50e6:.3g} times" in text
        if option["verdict"] is not None:
            assert f"{option['distilled_minus_alone']:+.4f} nats/token" in text
    assert "Compared: --generations 2" in text and f"Best: {record['best_choice']['said'][:30]}" in text


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
    assert all(len(line) <= 80 for line in part)
    code, full, _ = cli(*PLAN, "--explain")   # each option, the chain's stop and the commands
    assert code == 0 and "self-distil, 4 gens" in full and "distillscale distill --teacher gen0 --generations" in full
    assert f"chain k = {record['best_chain_k']}" in " ".join(full.split())


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
    law = DataLimitedLaw(plan.laws)
    teacher = law.alone(N, 8e8, U)
    fresh = float(plan.laws.distillation.predict(N, given.tokens, float(teacher.fresh.value)))
    assert plan.headline.student_loss == pytest.approx(
        fresh + law.inherited_penalty(teacher.penalty) + law.own_penalty(N, given.tokens, U), rel=1e-9)
    # one number, one interval: the table's interval, its verdict's Delta and the comparison's are the same
    low, high = plan.headline.student_interval.low, plan.headline.student_interval.high
    assert (low, high) == pytest.approx((float(given.final.loss.low), float(given.final.loss.high)), rel=1e-12)
    mine, theirs = plan.headline.difference, given.difference
    assert (mine.low, mine.high) == pytest.approx((theirs.low, theirs.high), rel=1e-12)


def inside(**values) -> DataLimitedConstants:
    """Constants measured everywhere (no distance), with a spread: what decides is the verdict rule alone."""
    return DataLimitedConstants.given(**values, intervals={"kappa": (max(values["kappa"] - 0.05, 0), min(values["kappa"] + 0.05, 1))},
                                      measured=MeasuredRange.everywhere())


@pytest.mark.parametrize("values", [dict(kappa=0.1, lam=0.1, eta=0.05, gamma=0.8, theta=0.5),
                                    dict(kappa=0.5, lam=0.45, eta=0.0, gamma=0.8, theta=0.0),
                                    dict(kappa=1.0, lam=0.5, eta=0.0, gamma=0.8, theta=0.0)])
def test_best_never_names_an_option_whose_delta_straddles_0(laws, forward, values):
    """The best option is read by the verdict rule: one that beats training alone beyond its interval and
    that no other such option beats beyond theirs; training alone otherwise, saying why."""
    plan = data_limited_plan(laws, forward, 1e20, N, U, constants=inside(**values))
    for option in plan.best.options:
        assert option.kind == "alone" or option.verdict == "distill"
    winners = [o for o in plan.options if o.verdict == "distill"]
    if winners:
        assert plan.best.option in winners
        assert all(difference(o.final, plan.best.option.final).verdict != "distill" for o in winners)
    else:
        assert plan.best.option.kind == "alone" and plan.best.said.startswith("train alone")
    assert plan.best.said in " ".join(" ".join(plan_lines(plan)).split())


def test_a_point_value_below_alone_is_not_a_best_when_its_interval_straddles_0(laws, forward):
    plan = data_limited_plan(laws, forward, C, N, U, constants=inside(kappa=0.45, lam=0.5, eta=0.05, gamma=0.8,
                                                                      theta=0.5))
    lowest = min(plan.options, key=lambda o: o.final.value)
    chosen = best_choice(plan.options)
    if lowest.kind != "alone" and lowest.verdict != "distill":
        assert lowest not in chosen.options


def test_the_plan_opens_with_the_answer_its_comparison_ends_with(cli):
    code, text, _ = cli(*PLAN)
    assert code == 0
    code, out, _ = cli(*PLAN, "--json")
    best = json.loads(out)["data_limited"]["best_choice"]
    first = text.splitlines()[0]
    head = "answer on the 50M pool at equal compute: " if "--teacher-params" in PLAN else "answer with no teacher, 50M pool: "
    assert first.startswith(head) and len(first) <= 80
    assert first.split(": ", 1)[1].startswith(best["options"][0])


def test_a_thousand_generations_are_one_screen_that_says_where_the_chain_stops_paying(cli):
    code, text, _ = cli(*PLAN, "--generations", "1000")
    assert code == 0
    part = text[text.index("Data-limited"):].splitlines()
    assert len(part) <= 8 and all(len(line) <= 80 for line in part)
    assert "In the chain of 1000, generation" in " ".join(" ".join(part).split())
    code, full, _ = cli(*PLAN, "--generations", "1000", "--explain")
    part = full[full.index("Data-limited"):].splitlines()
    assert len(part) <= 45 and "generations 4-1000: the same" in full
    # runs far below the law's data are not priced, never "cannot tell at this distance" beside a clear interval
    code, out, _ = cli(*PLAN, "--generations", "1000", "--json")
    for option in json.loads(out)["data_limited"]["options"][1:]:
        assert option["verdict"] is None and "below the data" in option["not_priced"]
    assert CANNOT_TELL not in full[full.index("Data-limited"):].split("Constants measured")[0]


def test_gpu_prices_every_data_limited_option_in_text_and_json(cli):
    """Each option's trainings and the teachers' forward passes its students read, on the GPU named: at equal
    compute and one size, every option costs the same GPU time; the given teacher's logits at its own size."""
    code, out, _ = cli(*PLAN, "--gpu", "h100", "--price-per-gpu-hour", "2", "--teacher-params", "3B",
                       "--teacher-tokens", "800M", "--json")
    assert code == 0
    record = json.loads(out)["data_limited"]
    per_option = record["gpu_hours"]["per_option"]
    assert set(per_option) == {o["label"] for o in record["options"]}
    same = [v["gpu_hours"] for label, v in per_option.items() if label != "distil from the teacher"]
    assert max(same) == pytest.approx(min(same), rel=1e-6)
    assert all(v["cost"] == pytest.approx(2 * v["gpu_hours"]) for v in per_option.values())
    groups = {run["group"] for run in record["gpu_hours"]["runs"]}
    assert groups == set(per_option)
    code, text, _ = cli(*PLAN, "--gpu", "h100", "--teacher-params", "3B", "--teacher-tokens", "800M", "--explain")
    assert code == 0
    part = text[text.index("Data-limited"):]
    assert part.count("GPU-hours on h100:") == len(per_option)
