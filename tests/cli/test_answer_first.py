"""The first screen of a command's output is its answer: `plan` says what each scenario should do
(distil or pretrain, with the losses that decide it) before its table and the notes on how it was
reached; `teacher` names the best teacher before ranking them all."""

from __future__ import annotations

import re

import pytest


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("args", [["--student-params", "546M"], []], ids=["given student", "best student size"])
def test_plan_opens_with_each_verdict_and_its_losses(cli, args):
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", *args)
    assert code == 0, err
    text = " ".join(out.split())
    first = _lines(out)[0]
    assert re.match(r"(distill|pretrain|too close to call|cannot tell at this distance): student loss best-case "
                    r"\d\.\d{4}", first), first
    verdicts = re.findall(r"^(distill|pretrain|too close to call|cannot tell at this distance): student loss", out, re.M)
    assert verdicts and len(verdicts) == len(set(verdicts))  # one line per verdict, every scenario in one of them
    for scenario in ("best-case", "teacher-inference", "teacher-pretraining", "teacher-pretraining-inference"):
        assert scenario in text.split(" 546M student" if args else " Best student size")[0]
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", *args, "--explain")
    text = " ".join(out.split())
    assert re.match(r"(distill|pretrain|too close to call|cannot tell at this distance): student loss", text)
    assert text.index("without a teacher") < text.index("solver") < text.index("supervised law form")


def test_the_mode_comparison_opens_with_its_verdict(cli):
    code, out, err = cli("plan", "--on-policy", "--student-params", "546M", "--teacher-params", "7.75B",
                         "--teacher-tokens", "155B", "--compute", "1e21")
    assert code == 0, err
    assert re.match(r"(predicted best|too close to call|cannot tell at this distance): ", _lines(out)[0])


def test_teacher_opens_with_the_best_candidate(cli):
    code, out, err = cli("teacher", "--student-params", "546M", "--student-tokens", "10.92B")
    assert code == 0, err
    first = " ".join(out.split()).split(" Teachers for a")[0]
    assert re.fullmatch(r"best teacher: 64x student \(34\.9B parameters\), L_T = \d\.\d{4} -> student \d\.\d{4} "
                        r"nats/token; without a teacher 2\.5149(; too close to call with it: [^;]+)?", first), first
