"""A family of students from one teacher (`plan --students`, `planning.family`): one student is today's
single-student plan number for number; the teacher's costs are shared as the plan says (checked against
a brute-force sum, token by token), each student's budget spent whole; the cache's storage is the engine's
encoding; and bad input is one line."""

from __future__ import annotations

import json
import math
import random

import pytest

import distillscale as ds
from distillscale.errors import ParameterError, UserError
from distillscale.planning.family import bytes_per_token, cache_shares, family_costs, parse_bytes

pytestmark = pytest.mark.fast

TEACHER = ds.ExistingTeacher(params=8e9, tokens=2e12)


@pytest.mark.parametrize("targets", ["online", "cached"])
def test_one_student_is_the_single_student_plan_number_for_number(targets):
    single = ds.plan("busbridge2025", compute=1e21, student_params=1e9, teacher=TEACHER).plans[0]
    member = ds.plan("busbridge2025", compute=1e21, students=(1e9,), teacher=TEACHER, targets=targets).plans[0]
    for name in ("student_tokens", "student_loss", "teacher_loss", "budget"):
        assert getattr(member, name) == getattr(single, name), name
    assert (member.student_interval.low, member.student_interval.high) == (single.student_interval.low,
                                                                         single.student_interval.high)
    assert member.supervised.loss == single.supervised.loss and member.verdict == single.verdict
    assert member.difference.low == single.difference.low and member.difference.high == single.difference.high
    assert member.flops.total == pytest.approx(single.flops.total, rel=1e-15)
    assert member.flops.teacher_inference == pytest.approx(single.flops.teacher_inference, rel=1e-15)


def test_cache_shares_are_the_token_by_token_split():
    """Brute force: each token of the cache costs F(N_T), split equally among the students that read it;
    beyond the cache every student pays its own tokens in full."""
    rng = random.Random(0)
    for _ in range(50):
        tokens = [rng.randint(1, 40) for _ in range(rng.randint(1, 6))]
        cap = rng.choice([math.inf, rng.randint(1, 40)])
        brute = [0.0] * len(tokens)
        for t in range(max(tokens)):
            readers = [i for i, d in enumerate(tokens) if d > t]
            for i in readers:
                brute[i] += 3.0 / len(readers) if t < cap else 3.0
        assert cache_shares([float(d) for d in tokens], 3.0, cap) == pytest.approx(brute, rel=1e-12)


def test_every_students_budget_is_spent_whole_and_the_teachers_forward_paid_once():
    rng = random.Random(1)
    for _ in range(300):
        k = rng.randint(1, 8)
        flops = [rng.uniform(1e9, 1e10) for _ in range(k)]
        budgets = [rng.uniform(1e20, 5e21) for _ in range(k)]
        cap = rng.choice([math.inf, rng.uniform(5e9, 1e11)])
        costs = family_costs(budgets, flops, 2e10, "cached", training=rng.choice([0.0, 1e20]), cached_tokens=cap)
        if min(costs.tokens) <= 0:
            continue
        for f, d, a, t, c in zip(flops, costs.tokens, costs.forward, costs.training, budgets):
            assert 3 * f * d + a + t == pytest.approx(c, rel=1e-12)
        cached = min(max(costs.tokens), cap)
        online = sum(max(d - cap, 0.0) for d in costs.tokens)
        assert sum(costs.forward) == pytest.approx(2e10 * (cached + online), rel=1e-12)


def test_the_teacher_costs_each_student_less_as_the_family_grows():
    """K students of one size and budget: with a cache each pays 1/K of the teacher's forward passes (and
    trains on more tokens); online each pays its own, whatever K."""
    per_student, tokens = [], []
    for k in range(1, 6):
        plan = ds.plan("busbridge2025", compute=2e20 * k, students=tuple(1e9 * (1 + 1e-6 * i) for i in range(k)),
                       teacher=TEACHER)
        per_student.append(plan.totals()["teacher_forward"] / k)
        tokens.append(plan.plans[0].student_tokens)
        online = plan.other
        assert online.plans[0].student_tokens == pytest.approx(
            ds.plan("busbridge2025", compute=2e20, student_params=1e9, teacher=TEACHER).plans[0].student_tokens,
            rel=1e-5)
    assert all(a > b for a, b in zip(per_student, per_student[1:]))
    assert all(a < b for a, b in zip(tokens, tokens[1:]))


def test_the_caches_storage_is_the_engines_encoding():
    from distillscale.training.logit_cache.encoding import TopKEncoding

    for vocab in (300, 32168, 32768, 128256):
        for k in (1, 32, 128):
            assert bytes_per_token(vocab, k) == TopKEncoding(vocab, k).bytes_per_token
    plan = ds.plan("busbridge2025", compute=3e21, students=(500e6, 1e9, 3e9), teacher=TEACHER)
    assert plan.cache.bytes == pytest.approx(max(p.student_tokens for p in plan.plans) * 296)
    assert parse_bytes("200TB") == 2e14 and parse_bytes("1.5 PB") == 1.5e15


def test_a_storage_limit_is_respected_and_the_rest_paid_online():
    full = ds.plan("busbridge2025", compute=3e21, students=(500e6, 1e9, 3e9), teacher=TEACHER)
    capped = ds.plan("busbridge2025", compute=3e21, students=(500e6, 1e9, 3e9), teacher=TEACHER, cache_storage="15TB")
    assert capped.cache.capped and capped.cache.bytes == pytest.approx(15e12, rel=1e-9)
    assert capped.totals()["teacher_forward"] > full.totals()["teacher_forward"]
    assert all(p.student_loss >= q.student_loss - 1e-12 for p, q in zip(capped.plans, full.plans))


def test_the_family_prints_and_carries_its_answer(cli):
    args = ("plan", "--students", "500M,1B,3B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--compute",
            "3e21", "--shares", "0.2,0.3,0.5")
    code, out, err = cli(*args)
    assert code == 0, err
    text = " ".join(out.split())
    assert "3 students from one 8B teacher" in text and "logit cache: top-128" in text
    assert "online targets instead" in text and "family compute: students" in text
    code, out, _ = cli(*args, "--json")
    record = json.loads(out)
    assert [s["share"] for s in record["students"]] == pytest.approx([0.2, 0.3, 0.5])
    assert record["targets"] == "cached" and record["other_targets"]["targets"] == "online"
    assert sum(record["totals"].values()) == pytest.approx(3e21, rel=1e-12)
    for student in record["students"]:
        low, high = student["distilled_minus_alone_interval"]
        verdict = "distill" if high < 0 else "pretrain" if low > 0 else None
        assert verdict is None or student["verdict"] == verdict


@pytest.mark.parametrize("args,message", [
    (("--students", "500M,10B", "--teacher-params", "8B", "--teacher-tokens", "2T"), "not smaller than its teacher"),
    (("--students", "500M,1B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--shares", "0.5,0.6"),
     "summing to 1"),
    (("--students", "500M,1B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--shares", "1"),
     "one share per student"),
    (("--students", "500M,1B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--cache-storage", "1TB"),
     "below the"),
    (("--students", "500M,1B",), "shares one existing teacher"),
    (("--shares", "0.5,0.5", "--student-params", "1B"), "plans a family of students"),
    (("--students", "500M,1B", "--teacher-params", "8B", "--teacher-loss", "2", "--teacher-trained"), "--teacher-tokens"),
    (("--students", "500M,1B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--targets", "online",
      "--cache-storage", "1PB"), "keeps none"),
])
def test_bad_family_input_is_one_line(cli, args, message):
    code, out, err = cli("plan", "--compute", "3e21", *args)
    assert code == 2 and not out and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert message in err


def test_the_python_api_refuses_as_the_flags_do():
    with pytest.raises((ParameterError, UserError)):
        ds.plan("busbridge2025", compute=3e21, students=(500e6, 1e9), teacher=TEACHER, cache_storage="1TB")
