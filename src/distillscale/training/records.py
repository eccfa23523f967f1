"""`RunResult`: what a finished run reports, the typed record that owns its `result.json`.

A run writes it last (atomically), so its presence means the run is over; sweeps, exports, reports
and teachers read it back through `RunResult.load`. `schema_version` guards the format: files
written before it existed load as version 1, and a file from a newer distillscale is refused with a
message instead of being misread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from distillscale.errors import UserError
from distillscale.io import atomic_write_json

RESULT_SCHEMA_VERSION = 1


class TeacherRecord(BaseModel):
    """The teacher of a distillation run: where it came from, its size, its validation loss on the
    student's data and the FLOPs of its forward passes in this run (0 from a logit cache). Whatever
    else its source records about it (e.g. a weights hash) is kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    path: str
    kind: str
    teacher_val_loss: float
    non_embedding_params: int
    total_params: int
    forward_flops_per_token: float | None = None
    flops: float = 0.0
    flops_method: str | None = None


class RunResult(BaseModel):
    """result.json. Losses in nats/token; `flops` counts the whole run as `planning.flops.run_flops`
    does (plus the teacher's forward passes when distilling); times in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = RESULT_SCHEMA_VERSION
    status: Literal["completed", "diverged"]
    val_loss: float | None
    val_loss_unit: str = "nats/token"
    steps: int
    lr: float
    schedule: str
    tokens: int
    token_budget: float
    non_embedding_params: int
    total_params: int
    forward_flops_per_token: float
    flops: float
    flops_6nd: float
    flops_method: str
    wall_seconds: float
    train_seconds: float
    tokens_per_second: float | None
    config_hash: str
    world_size: int
    device: str
    # a diverged run: where, and the checkpoint kept
    diverged_at_step: int | None = None
    diverged_loss: float | None = None
    diverged_grad_norm: float | None = None
    checkpoint_step: int | None = None
    # a WSD fork: its parent and what the parent spent for it (training.fork)
    fork: dict[str, Any] | None = None
    # a distillation run: its teacher, the KD settings, and the logit cache it read instead of a teacher
    teacher: TeacherRecord | None = None
    distillation: dict[str, Any] | None = None
    teacher_cache: dict[str, Any] | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def to_json(self) -> dict[str, Any]:
        """The content of result.json; the optional sections that do not apply to this run (a
        divergence, a fork, a teacher) are left out."""
        absent = {name for name, field in type(self).model_fields.items()
                  if not field.is_required() and getattr(self, name) is None}
        return self.model_dump(mode="json", exclude=absent)

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "RunResult":
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read the run result {path}: {exc}") from None
        if not isinstance(record, dict):
            raise UserError(f"{path} is not a run result (not a JSON object)")
        version = record.get("schema_version", 1)
        if not isinstance(version, int) or version > RESULT_SCHEMA_VERSION:
            raise UserError(f"{path} has result schema version {version!r}, newer than this distillscale "
                            f"reads ({RESULT_SCHEMA_VERSION}): upgrade distillscale to read it")
        try:
            return cls.model_validate(record | {"schema_version": version})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "the file"
            raise UserError(f"{path} is not a valid run result: {where}: {error['msg']}") from None
