"""The peak learning rate of a run that starts from a model without muP (`--student-init` of an
imported Llama/Qwen3, of another Hugging Face model, or of a run trained with --no-mup).

The family's default `--lr` (`MUP_BASE_LR`, 1e-2) is a muP base rate: muP divides the hidden matrices'
rate by the width multiplier, so the rate any matrix sees is far lower. A start without muP applies
`--lr` to every matrix as it is, so 1e-2 is 30-100x the peak of a usual continued pretraining
(1e-4 to 1e-3: Llama 2 and 3 pretrain at 1.5e-4 to 3e-4; continued-pretraining recipes peak at
1e-4 to 3e-4 and warn that more forgets the start), and wrecks the weights the start exists for.
Such a start therefore defaults to `START_LR`; a `--lr` given above `HIGH_START_LR` is trained as
given, with one warning line. The rate used is recorded in config.json (`lr`) and result.json.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distillscale.errors import UserError

MUP_BASE_LR = 1e-2  # the family's default --lr, a muP base rate
START_LR = 3e-4  # the default peak --lr of a start without muP
HIGH_START_LR = 3e-3  # a given --lr above this (10x START_LR) warns, for a start without muP


def start_without_mup(student_init: str | os.PathLike) -> bool:
    """Whether the model in `student_init` trains without muP: a generic Hugging Face model, an
    imported Llama/Qwen3, or a run or pruned model whose config says mup false."""
    from distillscale.model.hf_import import is_generic_hf  # torch: not for `training.config`'s constants
    from distillscale.model.pretrained import pretrained_config

    return is_generic_hf(student_init) or not pretrained_config(student_init).mup


def with_start_lr(settings: Any) -> Any:
    """A run's settings (a dict, before validation) with `lr` set to START_LR where no lr is given and
    `student_init` names an existing start without muP; anything else as it is. The config then holds
    the rate the run uses: config.json, the run's hash and every copy of the config say it."""
    if not isinstance(settings, dict) or settings.get("lr") is not None or not settings.get("student_init"):
        return settings
    start = Path(settings["student_init"]).expanduser()
    try:
        return {**settings, "lr": START_LR} if start.is_dir() and start_without_mup(start) else settings
    except UserError:  # not a start: the run's own check of it says so, in its words (`recipe`)
        return settings


def lr_warning(student_init: str | os.PathLike | None, lr: float) -> str | None:
    """The warning line for a run from a start without muP at a given `lr` above HIGH_START_LR."""
    if student_init is None or lr <= HIGH_START_LR or not start_without_mup(Path(student_init).expanduser()):
        return None
    return (f"--lr {lr:g} is {lr / START_LR:.0f}x the {START_LR:g} that a start without muP ({student_init}) "
            f"trains at by default: a rate this high can wreck the pretrained weights (continued pretraining "
            f"usually peaks at 1e-4 to 1e-3); lower --lr, or leave it out")
