"""Every command and flag that prints a verdict prints the one its own Delta interval says: distill
where the interval of Delta = L(distilled) - L(alone) lies below 0, pretrain above, too close to call
or cannot tell where it reaches 0, and cannot tell wherever a loss's interval means nothing (said so).
Walked over `plan` (each kind of plan: scenarios, a sweep, a pruned start, a teacher mixture, the mode
comparison, repeated data, --explain, far outside the data), `teacher` and `predict distillation`, in
their text and their --json, and in Python: one function decides them all (`laws.difference.compare`)."""

from __future__ import annotations

import json
import re

import pytest

import distillscale as ds
from distillscale.laws.extrapolation import CANNOT_TELL

VERDICT = r"(distill|pretrain|too close to call|cannot tell at this distance)"
NUMBER = r"([+-]\d+\.\d+)"
# "best-case: distill, Δ -0.2090 nats/token (-8.1%) [-0.2847, -0.1334]": a plan's answer line
ANSWER = re.compile(rf"{VERDICT}, Δ {NUMBER} nats/token \([^)]*\) \[{NUMBER}, {NUMBER}\]")
# "distill, off-policy: Δ = off-policy - supervised -0.9480 nats/token (-28.2%) [-1.0366, -0.8594]"
MODES = re.compile(rf"(distill|pretrain|too close to call|cannot tell at this distance)(?:, [^:]+| \(supervised\))?: "
                   rf"Δ = .+? - supervised {NUMBER} nats/token \([^)]*\) \[{NUMBER}, {NUMBER}\]")

PRESET = ("--law", "busbridge2025")
PLANS = {
    "scenarios": ("--student-params", "546M", "--compute", "1e21"),
    "one scenario": ("--student-params", "546M", "--compute", "1e21", "--scenario", "teacher-inference"),
    "sweep": ("--compute", "1e21"),
    "pruned": ("--student-params", "546M", "--compute", "1e20", "--student-init", "pruned", "--teacher-params",
               "7.75B", "--teacher-tokens", "2T"),
    "pruned, straddling": ("--student-params", "546M", "--compute", "1e21", "--student-init", "pruned",
                           "--teacher-params", "7.75B", "--teacher-tokens", "2T"),
    "mixture": ("--student-params", "546M", "--compute", "1e20", "--teacher-mixture", "7.75B,1.82B",
                "--teacher-loss", "1.95"),
    "repeated data": ("--student-params", "546M", "--compute", "1e21", "--unique-tokens", "1B"),
    "explain": ("--student-params", "546M", "--compute", "1e21", "--explain"),
    "family": ("--students", "500M,1B,3B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--compute", "9e20"),
    "family online": ("--students", "500M,1B,3B", "--teacher-params", "8B", "--teacher-tokens", "2T", "--compute",
                      "9e20", "--targets", "online"),
    "far below the data": ("--student-params", "1M", "--compute", "1e21"),
    "tokens far below the data": ("--student-params", "546M", "--compute", "1e17"),
}
MODE_PLANS = {
    "on-policy": ("--student-params", "546M", "--compute", "1e21", "--on-policy", "--teacher-params", "70B",
                  "--teacher-tokens", "2T"),
    "remote teacher": ("--student-params", "546M", "--compute", "1e18", "--teacher-remote", "--teacher-params",
                       "7.75B", "--teacher-tokens", "2T"),
    "logit cache": ("--student-params", "546M", "--compute", "1e21", "--logit-cache", "--teacher-params", "7.75B",
                    "--teacher-tokens", "2T"),
}


def said(verdict: str, low: float, high: float, outside: str | None = None) -> None:
    """The verdict the interval [low, high] of Delta allows (cannot tell always allowed where a loss's
    interval means nothing; then said why)."""
    if outside is not None:
        assert verdict == CANNOT_TELL, (verdict, outside)
    elif high < 0:
        assert verdict == "distill", (verdict, low, high)
    elif low > 0:
        assert verdict == "pretrain", (verdict, low, high)
    else:
        assert verdict in ("too close to call", CANNOT_TELL), (verdict, low, high)


def _records(record: dict) -> list[dict]:
    """The verdict records of a plan's --json: each scenario's (or the single one)."""
    for key in ("plans", "sweeps", "students"):
        if key in record:
            return list(record[key].values()) if isinstance(record[key], dict) else record[key]
    return [record]


@pytest.mark.parametrize("name", list(PLANS))
def test_plan_prints_the_verdict_its_interval_says(cli, name):
    args = PLANS[name]
    code, out, err = cli("plan", *PRESET, *args)
    assert code == 0, err
    text = " ".join(out.split())
    answers = ANSWER.findall(text)
    assert answers, text[:2000]
    for verdict, _value, low, high in answers:
        if verdict == CANNOT_TELL:
            assert "cannot tell at this distance:" in text   # and says why
        said(verdict, float(low), float(high), "said" if "a distance its interval does not measure" in text
             and verdict == CANNOT_TELL else None)
    code, out, _ = cli("plan", *PRESET, *args, "--json")
    assert code == 0
    for record in _records(json.loads(out)):
        rule = record["difference_interval"]
        assert rule["version"] == 2 and "loss_difference" not in record
        low, high = record["distilled_minus_alone_interval"]
        said(record["verdict"], low, high, rule["outside"])
        delta = record["distilled_minus_alone"]
        best = record.get("best", record)
        alone = record.get("supervised_best", {}).get("loss", record.get("supervised_loss"))
        assert delta == pytest.approx(best["student_loss"] - alone, abs=1e-9)   # one sign: distilled - alone


@pytest.mark.parametrize("name", list(MODE_PLANS))
def test_the_mode_comparison_prints_the_verdict_its_interval_says(cli, name):
    args = MODE_PLANS[name]
    code, out, err = cli("plan", *PRESET, *args)
    assert code == 0, err
    found = MODES.search(" ".join(out.split()))
    assert found, out[:2000]
    said(found.group(1), float(found.group(3)), float(found.group(4)))
    code, out, _ = cli("plan", *PRESET, *args, "--json")
    record = json.loads(out)
    low, high = record["distilled_minus_alone_interval"]
    said(record["verdict"], low, high, record["difference_interval"]["outside"])
    modes = {m["name"]: m for m in record["modes"]}
    assert record["distilled_minus_alone"] == pytest.approx(
        modes[record["distillation_mode"]]["student_loss"] - modes["supervised"]["student_loss"])
    assert record["loss_alone"] == pytest.approx(modes["supervised"]["student_loss"])


@pytest.mark.parametrize("args", [("--student-params", "546M", "--compute", "1e21"),
                                  ("--student-params", "546M", "--student-tokens", "20B"),
                                  ("--student-params", "546M", "--student-tokens", "10.92B")])
def test_teacher_prints_each_candidates_verdict_as_its_interval_says(cli, args):
    code, out, err = cli("teacher", *PRESET, *args)
    assert code == 0, err
    text = " ".join(out.split())
    found = re.search(rf"against training alone: {VERDICT}, Δ {NUMBER} nats/token \([^)]*\) \[{NUMBER}, {NUMBER}\]",
                      text)
    assert found, text[:1500]
    said(found.group(1), float(found.group(3)), float(found.group(4)))
    headline = text.split(" against training alone")[0]
    assert headline.startswith("train alone:") == (found.group(1) == "pretrain")
    code, out, _ = cli("teacher", *PRESET, *args, "--json")
    record = json.loads(out)
    for candidate in record["candidates"]:
        low, high = candidate["distilled_minus_alone_interval"]
        said(candidate["verdict_against_alone"], low, high, candidate["difference_interval"]["outside"])
    verdicts = {c["name"]: c["verdict_against_alone"] for c in record["candidates"]}
    assert record["alone_is_best"] == all(v == "pretrain" for v in verdicts.values())
    assert all(verdicts[name] == verdicts[record["best"]] for name in record["too_close_to_call"])


@pytest.mark.parametrize("args", [("--teacher-loss", "1.95"), ("--teacher-loss", "10.3"),
                                  ("--teacher-params", "100M", "--teacher-tokens", "10B")])
def test_predict_distillation_says_the_verdict_its_interval_says_and_plans_warnings(cli, args):
    code, out, err = cli("predict", "distillation", *PRESET, "--student-params", "546M", "--student-tokens", "10B",
                         *args)
    assert code == 0, err
    text = " ".join(out.split())
    found = re.search(rf"(helps|does not help|too close to call|{CANNOT_TELL}): Δ = distilled - alone {NUMBER} "
                      rf"nats/token \([^)]*\) \[{NUMBER}, {NUMBER}\]", " ".join(text.replace("│", " ").split()))
    assert found, text[:1500]
    verdict = {"helps": "distill", "does not help": "pretrain"}.get(found.group(1), found.group(1))
    said(verdict, float(found.group(3)), float(found.group(4)))
    # the warnings `plan` and `teacher` give for the same input
    if "--teacher-loss" in args:
        assert "is taken as" in err
    else:
        assert "is smaller than its 546M-parameter student" in err
    code, out, _ = cli("predict", "distillation", *PRESET, "--student-params", "546M", "--student-tokens", "10B",
                       *args, "--json")
    record = json.loads(out)
    low, high = record["distilled_minus_alone_interval"]
    said(record["verdict"], low, high, record["difference_interval"]["outside"])


def test_in_python_every_plans_verdict_is_its_differences():
    """`plan.verdict` and `plan.difference.verdict` are one answer for every kind of plan."""
    teacher = ds.ExistingTeacher(params=70e9, tokens=2e12)
    plans = [ds.plan("busbridge2025", compute=1e21, student_params=546e6),
             ds.plan("busbridge2025", compute=1e21),
             ds.plan("busbridge2025", compute=1e21, student_params=546e6, teacher=teacher, on_policy=ds.OnPolicy()),
             ds.plan("busbridge2025", compute=1e20, student_params=546e6, student_init="pruned",
                     teacher=ds.ExistingTeacher(params=7.75e9, tokens=2e12))]
    for plan in plans:
        if plan.kind == "modes":
            assert plan.verdict == plan.difference.verdict
            continue
        for p in (plan.plans if plan.kind == "plans" else plan.sweeps):
            assert p.verdict == p.difference.verdict
