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
from distillscale.planning.family import (bytes_per_token, cache_shares, family_costs, parse_bytes,
                                          sampled_bytes_per_token)

pytestmark = pytest.mark.fast

TEACHER = ds.ExistingTeacher(params=8e9, tokens=2e12)


def test_one_student_is_the_single_student_plan_number_for_number():
    """Online targets: the teacher runs on every token the student reads, as the single-student plan prices it.
    Cached, the student may re-read fewer of the cache's tokens (`planning.family_cache`): never worse."""
    single = ds.plan("busbridge2025", compute=1e21, student_params=1e9, teacher=TEACHER).plans[0]
    member = ds.plan("busbridge2025", compute=1e21, students=(1e9,), teacher=TEACHER, targets="online").plans[0]
    for name in ("student_tokens", "student_loss", "teacher_loss", "budget"):
        assert getattr(member, name) == getattr(single, name), name
    assert (member.student_interval.low, member.student_interval.high) == (single.student_interval.low,
                                                                         single.student_interval.high)
    assert member.supervised.loss == single.supervised.loss and member.verdict == single.verdict
    assert member.difference.low == single.difference.low and member.difference.high == single.difference.high
    assert member.flops.total == pytest.approx(single.flops.total, rel=1e-15)
    assert member.flops.teacher_inference == pytest.approx(single.flops.teacher_inference, rel=1e-15)
    cached = ds.plan("busbridge2025", compute=1e21, students=(1e9,), teacher=TEACHER, targets="cached")
    assert cached.plans[0].student_loss <= single.student_loss
    assert cached.plans[0].student_tokens >= single.student_tokens


def test_cache_shares_are_the_token_by_token_split():
    """Brute force: each token of the cache costs F(N_T), split equally among the students that read it;
    a student reading past its reach re-reads the cache's first tokens (`distill --teacher-cache
    --unique-tokens`), at no teacher FLOPs."""
    rng = random.Random(0)
    for _ in range(50):
        tokens = [rng.randint(1, 40) for _ in range(rng.randint(1, 6))]
        caps = rng.choice([math.inf, rng.randint(1, 40), [rng.choice([math.inf, rng.randint(1, 40)]) for _ in tokens]])
        each = caps if isinstance(caps, list) else [caps] * len(tokens)
        brute = [0.0] * len(tokens)
        for t in range(max(tokens)):
            readers = [i for i, d in enumerate(tokens) if d > t and each[i] > t]
            for i in readers:
                brute[i] += 3.0 / len(readers)
        assert cache_shares([float(d) for d in tokens], 3.0, caps) == pytest.approx(brute, rel=1e-12)


def test_every_students_budget_is_spent_whole_and_the_teachers_forward_paid_once():
    rng = random.Random(1)
    for _ in range(300):
        k = rng.randint(1, 8)
        flops = [rng.uniform(1e9, 1e10) for _ in range(k)]
        budgets = [rng.uniform(1e20, 5e21) for _ in range(k)]
        cap = rng.choice([math.inf, rng.uniform(5e9, 1e11),
                          [rng.choice([math.inf, rng.uniform(5e9, 1e11)]) for _ in range(k)]])
        costs = family_costs(budgets, flops, 2e10, "cached", training=rng.choice([0.0, 1e20]), reach=cap)
        if min(costs.tokens) <= 0:
            continue
        for f, d, a, t, c in zip(flops, costs.tokens, costs.forward, costs.training, budgets):
            assert 3 * f * d + a + t == pytest.approx(c, rel=1e-12)
        caps = cap if isinstance(cap, list) else [cap] * k
        assert costs.reach == pytest.approx([min(d, r) for d, r in zip(costs.tokens, caps)], rel=1e-12)
        assert sum(costs.forward) == pytest.approx(2e10 * max(costs.reach), rel=1e-12)


def test_the_teacher_costs_each_student_less_as_the_family_grows():
    """K students of one size and budget: with a cache each pays 1/K of the teacher's forward passes (and
    trains on more tokens); online each pays its own, whatever K."""
    per_student, tokens = [], []
    for k in range(1, 6):
        plan = ds.plan("busbridge2025", compute=3e20 * k, students=tuple(3e9 * (1 + 1e-6 * i) for i in range(k)),
                       teacher=TEACHER)
        assert plan.verdict == "distill" and len(plan.sharing) == k   # every one distils: all share the teacher
        per_student.append(plan.totals()["teacher_forward"] / k)
        tokens.append(plan.plans[0].student_tokens)
        online = plan.other
        assert online.plans[0].student_tokens == pytest.approx(
            ds.plan("busbridge2025", compute=3e20, student_params=3e9, teacher=TEACHER).plans[0].student_tokens,
            rel=1e-5)
    assert all(a > b for a, b in zip(per_student, per_student[1:]))
    assert all(a < b for a, b in zip(tokens, tokens[1:]))


def test_the_caches_storage_is_the_engines_encoding():
    from distillscale.training.logit_cache.encoding import SampledEncoding, TopKEncoding

    for vocab in (300, 32168, 32768, 128256):
        for k in (1, 32, 128):
            assert bytes_per_token(vocab, k) == TopKEncoding(vocab, k).bytes_per_token
        for samples in (1, 12, 64):
            assert sampled_bytes_per_token(vocab, samples) == SampledEncoding(vocab, samples).bytes_per_token
    plan = ds.plan("busbridge2025", compute=6e20, students=(2e9, 3e9), teacher=TEACHER)
    assert plan.cache.bytes == pytest.approx(plan.cache.tokens * 296) and plan.cache.tokens == pytest.approx(max(
        plan.reaches.get(p.scenario.name, p.student_tokens) for p in plan.plans), rel=1e-12)
    assert parse_bytes("200TB") == 2e14 and parse_bytes("1.5 PB") == 1.5e15


def test_a_storage_limit_is_priced_as_the_engine_runs_it_a_short_cache_re_read():
    """`distill --teacher-cache --unique-tokens` re-reads the cache's first tokens: a student reading past its
    reach costs no more teacher FLOPs, and pays in loss what repeating its reach costs (the data-limited law,
    its reach its unique tokens); the cache holds the longest reach, within --cache-storage."""
    full = ds.plan("busbridge2025", compute=6e20, students=(2e9, 3e9), teacher=TEACHER)
    assert full.reaches and full.cache.capped   # re-reading pays by itself: the 2B re-reads without a limit
    for plan, limit in ((ds.plan("busbridge2025", compute=6e20, students=(2e9, 3e9), teacher=TEACHER,
                                 cache_storage="2TB"), 2e12),):
        held = plan.cache.tokens
        assert limit is None or held == pytest.approx(limit / 296, rel=1e-9)
        assert plan.cache.capped and plan.cache.bytes == pytest.approx(held * 296, rel=1e-12)
        assert plan.totals()["teacher_forward"] == pytest.approx(float(plan.planner.flops(8e9)) * held, rel=1e-9)
        for p in plan.plans:
            reach = plan.reaches[p.scenario.name]
            assert p.student_tokens > reach and reach <= held * (1 + 1e-12)
            check = plan.repetition[p.scenario.name]
            assert check.unique_tokens == pytest.approx(reach) and check.epochs == pytest.approx(p.student_tokens / reach)
            assert p.student_loss == pytest.approx(p.fresh.student_loss * (1 + check.penalty)) and check.penalty > 0
        text = " ".join(plan.as_text(200).split())
        assert "; re-read: 2B its first" in text and "(distill --unique-tokens; losses after repetition)" in text
        record = plan.to_dict()
        assert [r["reach"] for r in record["cache"]["rereads"]] == [plan.reaches[p.scenario.name] for p in plan.plans]
        assert [s["cache_reach"] for s in record["students"]] == [plan.reaches[p.scenario.name] for p in plan.plans]
    assert all(p.student_loss >= q.student_loss for p, q in zip(plan.plans, full.plans))


def test_the_family_prints_and_carries_its_answer(cli):
    args = ("plan", "--students", "1B,2B,3B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--compute",
            "1.5e21", "--shares", "0.2,0.3,0.5")
    code, out, err = cli(*args)
    assert code == 0, err
    text = " ".join(out.split())
    assert "3 students from one 8B teacher" in text and "logit cache: top-128" in text
    assert "online targets instead" in text and "family compute as answered: students" in text
    code, out, _ = cli(*args, "--json")
    record = json.loads(out)
    assert [s["share"] for s in record["students"]] == pytest.approx([0.2, 0.3, 0.5])
    assert record["targets"] == "cached" and record["other_targets"]["targets"] == "online"
    assert sum(record["totals"].values()) == pytest.approx(1.5e21, rel=1e-12)
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
    (("--students", "500M,1B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--cache-storage", "100KB"),
     "below the 7.53M unique tokens law 'busbridge2025' can price re-read"),
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
        ds.plan("busbridge2025", compute=3e21, students=(500e6, 1e9), teacher=TEACHER, cache_storage="100KB")


def test_the_family_answers_which_students_distil_sharing_the_teacher(cli):
    """A verdict in a family assumes the students it shares the teacher with distil too. With every listed
    student sharing, the 1B distils but the 100M and 300M do not; the 1B alone on the teacher's cost still
    distils: the family's answer is that the 1B distils, and the 100M's and 300M's plans are each as if it
    joined it. Text, --json and the Python object say the same."""
    small = ds.ExistingTeacher(params=3e9, tokens=300e9)
    plan = ds.plan("busbridge2025", compute=3e20, students=(100e6, 300e6, 1e9), teacher=small)
    first = plan.rounds[0]
    assert first.sharing == ("student 100M", "student 300M", "student 1B") and first.verdicts["student 1B"] == "distill"
    assert plan.sharing == ("student 1B",) and plan.verdict == "distill 1B"
    assert [r.sharing for r in plan.rounds] == [first.sharing, ("student 1B",)]
    assert plan.assumes("student 1B") == ("student 1B",)
    assert plan.assumes("student 100M") == ("student 100M", "student 1B")
    assert plan.cache is not None and plan.totals()["teacher_forward"] > 0
    args = ("plan", "--students", "100M,300M,1B", "--teacher-params", "3B", "--teacher-tokens", "300B", "--compute",
            "3e20")
    code, out, err = cli(*args)
    text = " ".join(out.split())
    assert code == 0, err
    assert "family: 1B distils, sharing the teacher's cost" in text and "student 1B: distill" in text
    assert "all 3 sharing: only 1B distils; 1B sharing: all distil" in text
    record = json.loads(cli(*args, "--json")[1])
    assert record["verdict"] == plan.verdict and record["distilling"] == ["student 1B"]
    assert [s["verdict"] for s in record["students"]] == [p.verdict for p in plan.plans]
    assert record["rounds"][0]["verdicts"]["student 1B"] == "distill"


def test_the_family_answer_is_stable_each_verdict_under_what_it_assumes():
    """Whatever the family: every student that distils does so sharing the teacher with exactly the others
    that do (planned again on them alone it still distils), and every student that does not would not
    distil joining them (so none that left ever rejoins: `planning.family_plan`); the family's compute as
    answered is its budget; and the answer is the same whatever order the students are listed in."""
    rng = random.Random(3)
    for _ in range(4):
        sizes = rng.sample([200e6, 500e6, 1e9, 2e9, 3e9, 5e9], rng.randint(2, 4))
        shares = [rng.uniform(0.5, 2) for _ in sizes]
        shares = [share / sum(shares) for share in shares]
        compute = rng.choice([6e20, 1.5e21, 4e21])
        plan = ds.plan("busbridge2025", compute=compute, students=tuple(sizes), shares=tuple(shares), teacher=TEACHER)
        for p in plan.plans:
            name = p.scenario.name
            assert (p.verdict == "distill") == (name in plan.sharing), (sizes, compute, name)
            assert name in plan.assumes(name) and set(plan.sharing) <= set(plan.assumes(name))
            assert set(plan.assumes(name)) == set(plan.sharing) | {name}
        assert sum(plan.totals().values()) == pytest.approx(compute, rel=1e-12)
        if plan.sharing:
            assert plan.verdict == ("distill" if len(plan.sharing) == len(sizes) else
                                    "distill " + ", ".join(n.removeprefix("student ") for n in plan.sharing))
        order = list(range(len(sizes)))
        rng.shuffle(order)
        again = ds.plan("busbridge2025", compute=compute, students=tuple(sizes[i] for i in order),
                        shares=tuple(shares[i] for i in order), teacher=TEACHER)
        assert set(again.sharing) == set(plan.sharing)
        before = {p.scenario.name: p for p in plan.plans}
        for p in again.plans:
            q = before[p.scenario.name]
            assert p.verdict == q.verdict and p.student_loss == pytest.approx(q.student_loss, rel=1e-9)
            assert p.student_tokens == pytest.approx(q.student_tokens, rel=1e-6)


def test_a_family_with_gpu_hours_prices_its_answer(cli):
    """`plan --students ... --gpu h100`: each student's GPU time as answered (a student that does not distil:
    its run alone), the family's in all; in Python and in --json too."""
    args = ("plan", "--students", "1B,2B,3B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--compute", "9e20",
            "--gpu", "h100")
    code, out, err = cli(*args)
    assert code == 0 and "Traceback" not in err, err
    text = " ".join(out.split())
    assert "GPU-hours on 1 x" in text and "as answered" in text and "1B alone" in text and "the family" in text
    code, out, err = cli(*args, "--json")
    assert code == 0 and json.loads(out)["gpu_hours"]["runs"]
    plan = ds.plan("busbridge2025", compute=9e20, students=(1e9, 2e9, 3e9), teacher=TEACHER, gpu="h100")
    assert set(plan.gpu_hours.totals()) == {p.scenario.name for p in plan.plans}


def test_the_cache_is_priced_at_the_teachers_vocabulary_beside_a_sampled_cache(cli):
    """--vocab-size (or the teacher model's rows) prices the cache, not the law's vocabulary; the family
    warns of a vocabulary other than the law's as a single plan does; a sampled cache's storage is offered
    beside top-k's; the top-k truncation is said to be assumed free."""
    args = ("plan", "--students", "2B,3B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--compute", "6e20",
            "--vocab-size", "152064")
    code, out, err = cli(*args)
    assert code == 0, err
    text = " ".join(out.split())
    assert "top-128 of 152,064 ids (331 bytes/token)" in text and "truncation assumed free" in text
    assert f"--samples 12, unbiased) {sampled_bytes_per_token(152064, 12)} bytes/token" in text
    assert "152,064 rows (--vocab-size)" in err   # the warning a single plan gives
    record = json.loads(cli(*args, "--json")[1])
    cache = record["cache"]
    assert cache["vocab_size"] == 152064 and cache["bytes_per_token"] == bytes_per_token(152064, 128) == 331
    assert "truncation assumed free" in cache["note"]
    assert cache["sampled"]["bytes"] == pytest.approx(cache["tokens"] * sampled_bytes_per_token(152064, 12))
    assert any("152,064 rows" in warning for warning in record["warnings"])


@pytest.mark.parametrize("args,message", [
    (("--students", "500M,1B", "--vocab-size", "300", "--cache-top-k", "400"), "--cache-top-k 400 keeps all 300 ids"),
    (("--students", "500M,1B", "--vocab-size", "300", "--cache-top-k", "300"), "give 299 or less"),
    (("--students", "500M,1B", "--targets", "online", "--cache-top-k", "64"), "--cache-top-k prices a logit cache"),
    (("--students", "500M,-1B"), "the 2nd student's size '-1B'"),
    (("--students", "500M,1B,x"), "the 3rd student's size 'x'"),
    (("--students", "500M,1B", "--shares", "0.5,-0.5"), "the 2nd student's share '-0.5'"),
    (("--students", "100M,1B", "--teacher-trained", "--shares", "0.01,0.99"),
     "the 100M-parameter student's share of the teacher's training"),
])
def test_family_input_refused_in_one_line_naming_what_is_wrong(cli, args, message):
    code, out, err = cli("plan", "--compute", "3e21", "--teacher-params", "8B", "--teacher-tokens", "2T", *args)
    assert code == 2 and not out and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert message in err


def test_sizes_that_print_alike_are_told_apart_and_one_student_reads_as_one(cli):
    plan = ds.plan("busbridge2025", compute=3e20, students=(1e9, 1.0000001e9), teacher=TEACHER)
    assert [p.scenario.name for p in plan.plans] == ["student 1B", "student 1.0000001B"]
    assert len(plan.rounds[0].verdicts) == 2 and len(plan.assumed) == 2
    code, out, err = cli("plan", "--students", "1B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--compute",
                         "3e20")
    assert code == 0 and "1 student from one 8B teacher" in " ".join(out.split()) and "1 students" not in out


def test_a_family_that_cannot_tell_says_why(cli):
    """A student far below the law's runs (1M parameters, 143x below its smallest) cannot tell, and the family
    says why as a single plan does (a loss no better than a uniform guess is refused instead:
    tests/planning/test_no_loss_worse_than_a_guess.py)."""
    code, out, err = cli("plan", "--students", "1M,100M", "--teacher-params", "8B", "--teacher-tokens", "2T",
                         "--compute", "3e20")
    text = " ".join(out.split())
    assert code == 0 and "can't tell" in text
    assert "cannot tell at this distance: 1M parameters is 143x below the data behind law" in text
    code, out, err = cli("plan", "--students", "1M,100M", "--teacher-params", "8B", "--teacher-tokens", "2T",
                         "--compute", "3e20", "--explain")
    assert code == 0 and " ".join(out.split()).count("cannot tell at this distance: 1M parameters") == 1


def test_a_large_family_stays_compact(cli):
    code, out, err = cli("plan", "--students", "100M,200M,300M,400M,500M,700M,1B,1.5B,2B,3B", "--teacher-params", "8B",
                         "--teacher-tokens", "2T", "--compute", "9e21", "--gpu", "h100")
    assert code == 0, err
    assert len(out.splitlines()) <= 45, out
