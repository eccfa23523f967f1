"""The first screen of a command's output is its answer: `plan` says what each scenario should do
(distil or pretrain, with the difference that decides it and its interval) before its table and the notes on how it was
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
    answer = text.split(" 546M student" if args else " Best student size")[0]
    verdict = r"(distill|pretrain|too close to call|cannot tell at this distance)"
    delta = r"Δ [+-]\d\.\d{4} nats/token \([+-]\d+\.\d%\) \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]"
    lines = re.findall(rf"(best-case|teacher-inference|teacher-pretraining|teacher-pretraining-inference): {verdict}, "
                       rf"{delta} \(distilled \d\.\d{{4}}", answer)
    # one line per scenario, in order, each with its verdict and the interval of the difference
    assert [name for name, _ in lines] == ["best-case", "teacher-inference", "teacher-pretraining",
                                           "teacher-pretraining-inference"], answer
    assert answer.startswith("best-case: ")
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", *args, "--explain")
    text = " ".join(out.split())
    assert text.startswith("best-case: ")
    assert text.index("alone") < text.index("solver") < text.index("supervised law form")


def test_the_mode_comparison_opens_with_its_verdict(cli):
    code, out, err = cli("plan", "--on-policy", "--student-params", "546M", "--teacher-params", "7.75B",
                         "--teacher-tokens", "155B", "--compute", "1e21")
    assert code == 0, err
    assert re.match(r"(distill, |pretrain \(supervised\)|too close to call|cannot tell at this distance)", _lines(out)[0])


def test_teacher_opens_with_the_best_candidate(cli):
    code, out, err = cli("teacher", "--student-params", "546M", "--student-tokens", "10.92B")
    assert code == 0, err
    first = " ".join(out.split()).split(" Teachers for a")[0]
    assert re.fullmatch(r"best (teacher|candidate): 64x N_S \(34\.9B parameters\), L_T = \d\.\d{4} -> student \d\.\d{4} "
                        r"nats/token; without a teacher 2\.5149(; (too close to call with|cannot tell at this distance against) it: "
                        r"[^;]+)* against training "
                        r"alone: (distill|pretrain|too close to call), Δ -?\d\.\d{4} nats/token \(-?\d+\.\d%\) "
                        r"\[[+-]\d\.\d{4}, [+-]\d\.\d{4}\] on the same tokens", first), first
