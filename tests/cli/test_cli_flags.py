"""Every command keeps its flags: the name of each option (and its --no- form), whether it takes a
value, repeats or is required, its default, and the command's arguments, as recorded at commit
03d6351 (before the commands' flags were generated from their settings classes) in
tests/data/cli-flags-03d6351.json."""

from __future__ import annotations

import json

import typer

from distillscale.cli import app
from tests.conftest import TEST_DATA

RECORD = TEST_DATA / "cli-flags-03d6351.json"


def flag_sets() -> dict[str, dict]:
    """{command path: {"options": {flag: "value" | "flag" | "values"}, "defaults": {first flag: default},
    "arguments": [NAME, ...]}}."""
    found: dict[str, dict] = {}

    def walk(command, path: str) -> None:
        if hasattr(command, "commands"):
            for name, sub in sorted(command.commands.items()):
                walk(sub, f"{path} {name}".strip())
            return
        options: dict[str, str] = {}
        defaults: dict[str, object] = {}
        arguments = []
        for param in command.params:
            if param.param_type_name == "argument":
                arguments.append(param.name.upper() + ("..." if param.nargs != 1 else ""))
                continue
            kind = "flag" if param.is_flag else "values" if param.multiple else "value"
            kind += " (required)" if param.required else ""
            for opt in [*param.opts, *param.secondary_opts]:
                options[opt] = kind
            default = param.default
            defaults[param.opts[0]] = list(default) if isinstance(default, (list, tuple)) else (
                default if default is None or isinstance(default, (bool, int, float, str)) else str(default))
        found[path] = {"options": dict(sorted(options.items())), "defaults": dict(sorted(defaults.items())),
                       "arguments": arguments}

    walk(typer.main.get_command(app), "")
    return found


# Commands and flags added since the record (new features); every recorded one must stay as it was.
ADDED_SINCE = {"prune": None, "fit hyperparameters": None, "predict hyperparameters": None, "eval": None,
               "fit downstream": None, "predict downstream": None, "train": {"--student-init"}, "distill": {"--student-init", "--teacher-weight", "--teacher-route"}, "plan": {"--student-init", "--teacher-mixture", "--hyperparameter-law", "--batch-tokens", "--downstream-law"},
               "serve": {"--downstream-law"}, "demo": {"--capacity-gap", "--lr-law"}, "data prepare": {"--route-field"}}
# plans in GPU-hours (issue 65): plan's device, GPUs, MFU, price and throughput table; sweep plan's (it had --gpus)
ADDED_SINCE["plan"] = ADDED_SINCE["plan"] | {"--gpu", "--gpus", "--mfu", "--price-per-gpu-hour", "--throughput-table"}
ADDED_SINCE["sweep plan"] = {"--gpu", "--mfu", "--price-per-gpu-hour", "--throughput-table"}
# the cross-ladder bias correction (issue 64): every command that fits or reads a supervised law can
# leave it out; `ladder` designs the runs of a ladder
for _path in ("fit supervised", "predict supervised", "predict distillation", "plan", "report", "demo", "serve"):
    ADDED_SINCE[_path] = (ADDED_SINCE.get(_path) or set()) | {"--no-bias-correction"}
ADDED_SINCE["ladder"] = None
# what a loss is measured in: `loss` measures a model's; a fit records its runs' tokenizer and text
ADDED_SINCE["loss"] = None
for _path in ("fit supervised", "fit distillation"):
    ADDED_SINCE[_path] = (ADDED_SINCE.get(_path) or set()) | {"--tokenizer", "--text"}
# a teacher you have: plan and the planner page take its directory, demo calibrates on its tokenizer
ADDED_SINCE["plan"] |= {"--teacher-model", "--trust-remote-code"}
ADDED_SINCE["plan"] |= {"--explain"}   # the full plan; the default fits one screen
ADDED_SINCE["serve"] |= {"--teacher-model", "--trust-remote-code"}
ADDED_SINCE["demo"] |= {"--teacher", "--trust-remote-code"}
ADDED_SINCE["serve"] |= {"--hyperparameter-law"}   # issue 63 (c5d016c): the page takes fitted hyperparameter laws
ADDED_SINCE["fit supervised"] |= {"--bias-correction"}  # issue 72: the cross-ladder correction opt-in
ADDED_SINCE["distill"] |= {"--cache-workers"}  # issue 73: the threads reading a logit cache
for _path in ("fit supervised", "fit distillation"):  # the runs' context, priced with --tokenizer's vocabulary
    ADDED_SINCE[_path] |= {"--n-ctx"}
ADDED_SINCE["teacher"] = {"--compute"}  # a budget that pays each teacher's logits, instead of --student-tokens
# a family of students from one teacher, its targets and its logit cache's storage
ADDED_SINCE["plan"] |= {"--students", "--shares", "--targets", "--teacher-trained", "--cache-top-k", "--cache-storage"}
# how long a served teacher is waited for, as `distill` says it
ADDED_SINCE["plan"] |= {"--teacher-timeout", "--teacher-retries"}
ADDED_SINCE["teacher"] |= {"--teacher-timeout", "--teacher-retries"}
# a reader that says its corpus shares no text with a run's (an earlier version's run whose split cannot be kept)
for _path in ("distill", "cache-logits", "demo", "plan", "teacher"):   # (prune and loss came later)
    ADDED_SINCE[_path] = (ADDED_SINCE.get(_path) or set()) | {"--other-corpus"}
for _path in ("distill", "cache-logits"):   # their flags have --no- forms
    ADDED_SINCE[_path] |= {"--no-other-corpus"}
# the unique tokens a teacher given by its size was trained on; the student's pool in predict distillation
for _path in ("plan", "teacher", "predict distillation"):
    ADDED_SINCE[_path] = (ADDED_SINCE.get(_path) or set()) | {"--teacher-unique-tokens"}
ADDED_SINCE["predict distillation"] |= {"--unique-tokens"}
# data-limited distillation: the student's half on the command line, self-distillation chains; dropout
ADDED_SINCE["distill"] |= {"--split", "--generations", "--dropout"}
ADDED_SINCE["train"] |= {"--dropout"}
ADDED_SINCE["demo"] |= {"--data-limited"}  # distillation when data is the limit, on the user's corpus
ADDED_SINCE["plan"] |= {"--generations"}   # self-distillation and ensembles on a pool, at equal compute
ADDED_SINCE["predict distillation"] |= {"--generations", "--members"}   # the same at fixed tokens per model
ADDED_SINCE["teacher"] |= {"--unique-tokens"}   # the student's own pool
# Recorded flags that repeat since (a single value still reads as before), or became optional: their kind now.
# several teachers, a mixture (issue 37); --teacher-cache repeats only to refuse a second one in one line
CHANGED_SINCE = {"distill": {"--teacher": "values", "--teacher-url": "values", "--teacher-cache": "values"},
                 # the teachers a user has, models and tables mixed (issue 78)
                 "teacher": {"--candidates": "values",
                             "--student-tokens": "value"}}  # optional since: --compute instead


def test_every_command_keeps_its_flags():
    recorded = json.loads(RECORD.read_text())
    now = flag_sets()
    assert set(recorded) <= set(now), f"commands removed: {sorted(set(recorded) - set(now))}"
    assert set(now) - set(recorded) == {p for p, added in ADDED_SINCE.items() if added is None}, "commands added"
    for path, flags in recorded.items():
        added = ADDED_SINCE.get(path) or set()
        kept = {key: {flag: value for flag, value in now[path][key].items() if flag not in added}
                for key in ("options", "defaults")}
        expected = {"options": flags["options"] | CHANGED_SINCE.get(path, {}), "defaults": flags["defaults"]}
        assert kept == expected, f"`distillscale {path}`: flags changed"
        assert now[path]["arguments"] == flags["arguments"], f"`distillscale {path}`: arguments changed"
        assert added <= set(now[path]["options"]), f"`distillscale {path}`: {added} missing"


if __name__ == "__main__":  # regenerate the record (only where a flag is meant to change)
    RECORD.write_text(json.dumps(flag_sets(), indent=1) + "\n")
