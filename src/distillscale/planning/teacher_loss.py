"""A teacher's loss measured for the planner on the law's split: the prepared split of the law's runs,
and `distillscale loss` run on it in a child process (the planner itself loads no model), for a
teacher directory (`planning.teacher_model`) or a served teacher (`planning.served_teacher`).

    directory = law_split_directory("models/qwen", laws, 2048, "--teacher-model")
    record = measure_in_child("models/qwen", directory, 2048, False, "--teacher-model")   # a LossRecord

The child's refusal, if any, becomes the planner's, in one line; a URL's credentials reach the child
in its environment, never on its command line (`urls.for_child`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from distillscale.data.loss_record import LOSS_FILE, LossRecord
from distillscale.errors import UserError
from distillscale.model.teacher_limits import RequestLimits

if TYPE_CHECKING:
    from distillscale.laws.lawset import LawSet


def law_split_directory(path, laws: LawSet, context: int, given_as: str) -> Path:
    """The prepared split of the law's runs, to measure a teacher on; refused in one line when the law
    records none or it is gone."""
    text = laws.losses.text
    directory = Path(text.directory) if text is not None and text.directory else None
    if directory is None or not (directory / "manifest.json").is_file():
        where = "records no prepared split" if directory is None else f"was fitted on a split no longer at {directory}"
        raise UserError(f"{given_as} {path} has no measured loss and law {laws.name!r} {where} to measure it on: "
                        f"measure the teacher on the text of the law's runs with `distillscale loss {path} --data "
                        f"CORPUS --seq-len {context}`, or give --teacher-params and --teacher-loss")
    return directory


def measure_in_child(path: Path | str, directory: Path, context: int, trust_remote_code: bool, given_as: str,
                     shown: str | None = None, limits: RequestLimits | None = None,
                     other_corpus: bool = False) -> LossRecord:
    """`distillscale loss` in a child process (the planner loads no model itself); its refusal, if
    any, becomes this one's, in one line (naming the model as `shown`: a URL without its password).
    A URL's credentials go to the child in its environment, never on its command line (`for_child`);
    `limits`: how long a served model is waited for there."""
    from distillscale.urls import for_child

    argument, secret = for_child(str(path))
    with tempfile.TemporaryDirectory(prefix="distillscale-loss-") as scratch:
        out = Path(scratch) / LOSS_FILE
        command = [sys.executable, "-m", "distillscale.cli", "loss", argument, "--data", str(directory),
                   "--seq-len", str(context), "--out", str(out)] + ["--trust-remote-code"] * trust_remote_code \
            + ([] if limits is None else limits.argv()) + ["--other-corpus"] * other_corpus
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, **secret})
        error = None
        try:
            for line in child.stderr:
                if line.startswith("distillscale: error: "):
                    error = line.removeprefix("distillscale: error: ").strip()
                elif line.strip():
                    sys.stderr.write(line)
            child.wait()
        except BaseException:   # Ctrl-C: the child (in our process group) is stopped and waited for, quietly
            child.kill()
            child.wait()
            raise
        finally:
            child.stderr.close()
        if child.returncode != 0 or not out.is_file():
            raise UserError(f"measuring {given_as} {shown or path} on the law's split: "
                            f"{error or f'exit {child.returncode}'}")
        return LossRecord.load(out)
