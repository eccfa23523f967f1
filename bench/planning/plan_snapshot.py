"""20 varied plans through the Python API, dumped as JSON: a before/after check for planner refactors.

    .venv/bin/python bench/planning/plan_snapshot.py /tmp/plans_before.json
    .venv/bin/python bench/planning/plan_snapshot.py /tmp/plans_after.json --compare /tmp/plans_before.json

Each plan is recorded as `Plan.to_dict()` (what `plan --json` prints, warnings included) and its
command line, or as the one-line error it raised. `--compare` lists the plans that differ from an
earlier dump and, for each, the first numbers that differ (relative tolerance 1e-12); fields that
only the new dump has (a plan's new keys, e.g. `recipes`, issue 53) are listed apart, as additions,
so a refactor that adds fields shows whether everything that was there is unchanged.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from pathlib import Path

import distillscale as ds
from distillscale.errors import UserError
from distillscale.model.config import ModelConfig

# A student pruned from an imported Qwen3 keeps its maximum context (40,960); the plan trains it at
# the law's context (issue 57, M2).
LONG_CONTEXT_STUDENT = dict(vocab_size=32000, d_model=1024, n_layers=16, n_heads=16, max_seq_len=40960)


def cases(student_dir: Path) -> dict[str, dict]:
    teacher = ds.ExistingTeacher(params=7.75e9, tokens=155e9)
    return {
        "01 four scenarios, 546M": dict(law="busbridge2025", compute=1e21, student_params=546e6),
        "02 best-case, 546M": dict(law="busbridge2025", compute=1e21, student_params=546e6, scenario="best-case"),
        "03 teacher-pretraining, 2B, 1e23": dict(law="busbridge2025", compute=1e23, student_params=2e9,
                                                 scenario="teacher-pretraining"),
        "04 existing teacher (tokens)": dict(law="busbridge2025", compute=1e21, student_params=546e6, teacher=teacher),
        "05 existing teacher (loss)": dict(law="busbridge2025", compute=1e21, student_params=546e6,
                                           teacher=ds.ExistingTeacher(params=7e9, loss=2.1)),
        "06 sweep best-case": dict(law="busbridge2025", compute=1e21, scenario="best-case"),
        "07 sweep limits": dict(law="busbridge2025", compute=1e21, scenario="teacher-inference", min_params=1e8,
                                max_params=3e9, min_tokens_per_param=5, max_tokens_per_param=300),
        "08 simple flops, n_ctx": dict(law="busbridge2025", compute=1e21, student_params=546e6,
                                       scenario="best-case", flops="simple"),
        "09 n_ctx, vocab, aspect": dict(law="busbridge2025", compute=1e21, student_params=546e6,
                                        scenario="teacher-inference", n_ctx=2048, vocab_size=50000, aspect_ratio=64),
        "10 supervised law": dict(law="epoch2024", compute=1e21),
        "11 supervised law, size": dict(law="chinchilla2022", compute=1e22, student_params=1e9),
        "12 unique tokens, plans": dict(law="busbridge2025", compute=1e21, student_params=546e6,
                                        scenario="best-case", unique_tokens=5e9),
        "13 unique tokens, sweep": dict(law="busbridge2025", compute=1e22, scenario="teacher-inference",
                                        unique_tokens=2e10, max_penalty=0.02),
        "14 unique tokens, teacher": dict(law="busbridge2025", compute=1e21, student_params=546e6, teacher=teacher,
                                          unique_tokens=3e9),
        "15 on-policy": dict(law="busbridge2025", compute=1e21, student_params=546e6, teacher=teacher,
                             on_policy=ds.OnPolicy()),
        "16 on-policy, cache, unique": dict(law="busbridge2025", compute=1e21, student_params=546e6,
                                            teacher=teacher, on_policy=ds.OnPolicy(fraction=0.5, efficiency=3.0),
                                            logit_cache=True, unique_tokens=5e9),
        "17 remote teacher, budget": dict(law="busbridge2025", compute=1e21, student_params=546e6, teacher=teacher,
                                          teacher_remote=True, teacher_compute=5e20),
        "18 pruned start": dict(law="busbridge2025", compute=1e21, student_params=546e6,
                                teacher=ds.ExistingTeacher(params=7.75e9, loss=2.1), student_init="pruned"),
        "19 mixture": dict(law="busbridge2025", compute=1e21, student_params=1e8,
                           teacher=ds.ExistingTeacher(mixture=(1e9, 3e8), loss=2.3)),
        "20 student model (40,960 context)": dict(law="busbridge2025", compute=1e21, student_model=str(student_dir),
                                                  scenario="best-case"),
        "21 unique tokens, supervised law": dict(law="epoch2024", compute=1e21, unique_tokens=5e9),
        "22 fixed batch above B*": dict(law="busbridge2025", compute=1e21, student_params=546e6,
                                        scenario="teacher-pretraining", batch_tokens=8e6),
        "23 fixed batch, law without an exponent": dict(law="busbridge2025", compute=1e21, scenario="best-case",
                                                        batch_tokens=8e6, hyperparameter_law="deepseek2024"),
    }


def snapshot() -> dict[str, dict]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        student = Path(tmp, "student")
        student.mkdir()
        (student / "model_config.json").write_text(json.dumps(ModelConfig(**LONG_CONTEXT_STUDENT).model_dump()))
        for name, kwargs in cases(student).items():
            law = kwargs.pop("law")
            try:
                plan = ds.plan(law, **kwargs)
                record = {"plan": json.loads(plan.to_json()),
                          "command": plan.as_cli_command().replace(str(student), "STUDENT_DIR")}
            except UserError as exc:
                record = {"error": f"{type(exc).__name__}: {exc}"}
            out[name] = json.loads(json.dumps(record).replace(str(student), "STUDENT_DIR"))
    return out


def differences(before, after, path: str = "") -> list[str]:
    """Where two JSON values differ (numbers within 1e-12 relative are equal)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = [f"{path}.{key}: only {'before' if key in before else 'after'}"
                 for key in sorted(set(before) ^ set(after))]
        for key in before.keys() & after.keys():
            found += differences(before[key], after[key], f"{path}.{key}")
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [d for i, (b, a) in enumerate(zip(before, after)) for d in differences(b, a, f"{path}[{i}]")]
    if isinstance(before, (int, float)) and isinstance(after, (int, float)) \
            and not isinstance(before, bool) and not isinstance(after, bool):
        if before == after or math.isclose(before, after, rel_tol=1e-12, abs_tol=0.0):
            return []
        return [f"{path}: {before!r} -> {after!r}"]
    return [] if before == after else [f"{path}: {str(before)[:120]!r} -> {str(after)[:120]!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="JSON file to write")
    parser.add_argument("--compare", type=Path, help="an earlier dump to compare with")
    args = parser.parse_args(argv)
    plans = snapshot()
    args.out.write_text(json.dumps(plans, indent=1, sort_keys=True), encoding="utf-8")
    print(f"{len(plans)} plans written to {args.out}")
    if args.compare is None:
        return 0
    before = json.loads(args.compare.read_text(encoding="utf-8"))
    changed, added = 0, {}
    for name in sorted(before.keys() | plans.keys()):
        if name not in before:
            print(f"{name}: a new plan")
            continue
        found = differences(before.get(name), plans.get(name))
        new = [line for line in found if line.endswith(": only after")]
        for line in new:  # the path of a new field, its list indices dropped
            added.setdefault(re.sub(r"\[\d+\]", "[]", line.removesuffix(": only after")), set()).add(name)
        found = [line for line in found if line not in new]
        if found:
            changed += 1
            print(f"{name}: {len(found)} differences")
            for line in found[:8]:
                print(f"    {line}")
    for path, names in sorted(added.items()):
        print(f"new field {path} in {len(names)} plans")
    print(f"{changed} of {len(before.keys() & plans.keys())} plans differ (new fields aside)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
