"""The split a run trained on, and the one rule for whoever reads the run's corpus after it.

A distillscale run trains on one half of its corpus's split (`data.splits`) and is scored on the
validation split. Whoever reads that corpus beside the run (a student distilled from it, the demo's
sweep calibrating the laws for it, a measurement of its loss for a plan or with `loss`) must cut it
the same way, with the run's max_bytes, val_fraction and seed, or the validation split may hold text
the run trained on, and its loss there comes out low. The rule, in one place:

    split = TrainedSplit.of_run("runs/teacher")             # None: not a run, or nothing recorded
    data = split.as_trained(data, given={"max_bytes"})      # the run's split where none is given
    split.check(data, fix="leave out --max-bytes")          # one-line refusal of another split

A reader of another corpus is not checked (nothing of it was trained on), nor a corpus that is gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection

from distillscale.data.config import DataConfig
from distillscale.errors import UserError

# What decides which text lands in which split, beside the corpus itself (its files, its text field).
SPLIT_SETTINGS = ("max_bytes", "val_fraction", "seed")


@dataclass(frozen=True)
class TrainedSplit:
    """A run's data as it trained (`data`), the fingerprint of the data it trained on, and what the
    run is to its reader (`role`: "teacher", "start", "model"), for the messages."""

    path: Path
    data: DataConfig
    fingerprint: str
    role: str = "teacher"

    @classmethod
    def of_run(cls, path: str | Path, role: str = "teacher") -> TrainedSplit | None:
        """The split of the distillscale run in `path` (its config.json, read as JSON); None when it is
        not a run or records no data that can be read (a Hugging Face model: nothing says what it read)."""
        try:
            record = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
            data = DataConfig.of_run_settings(record["config"])
            fingerprint = record["plan"]["data_fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(Path(path), data, fingerprint, role) if isinstance(fingerprint, str) else None

    def settings(self) -> dict[str, Any]:
        """The run's split settings (SPLIT_SETTINGS)."""
        return {name: getattr(self.data, name) for name in SPLIT_SETTINGS}

    def reads_my_corpus(self, reader: DataConfig) -> bool:
        """Whether `reader` reads the corpus the run trained on (the same files, as they are now)."""
        from distillscale.data.prepare import data_identity

        try:
            mine = data_identity(self.data)
        except UserError:  # its corpus is gone (or named relative to another directory): not the reader's
            return False
        return mine.corpus == data_identity(reader).corpus

    def as_trained(self, reader: DataConfig, given: Collection[str] = ()) -> DataConfig:
        """`reader` split as the run split its corpus: the run's SPLIT_SETTINGS in place of the reader's,
        except those in `given` (the reader's own choice, left for `check` to judge); `reader` as it is
        when it reads another corpus."""
        if not self.reads_my_corpus(reader):
            return reader
        return reader.model_copy(update={name: value for name, value in self.settings().items() if name not in given})

    def differences(self, reader: DataConfig) -> dict[str, tuple[Any, Any]]:
        """The split settings `reader` gives otherwise than the run: name -> (the reader's, the run's)."""
        return {name: (getattr(reader, name), theirs) for name, theirs in self.settings().items()
                if getattr(reader, name) != theirs}

    def check(self, reader: DataConfig, fix: str, who: str = "the student") -> None:
        """Refuse, in one line, a `reader` (`who`, in the message) of the run's corpus whose validation
        split may hold text the run trained on: the run's data is not what its settings prepare from
        that corpus now (an earlier data format's split, a corpus changed since), or `reader` splits it
        otherwise (`fix`: how to split it as the run did)."""
        from distillscale.data.prepare import data_identity

        if not self.reads_my_corpus(reader):
            return
        mine, role = data_identity(self.data), self.role
        if mine.fingerprint != self.fingerprint:
            raise UserError(f"{role} {self.path} was trained on other data than its corpus gives now "
                            f"({mine.why_other(self.fingerprint)}): {who}'s validation split would hold text the "
                            f"{role} trained on, biasing its loss low; train the {role} again on this data (or "
                            f"use a {role} trained on it)")
        differ = self.differences(reader)
        if differ:
            said = ", ".join(f"{name} {ours!r} (the {role}'s {theirs!r})" for name, (ours, theirs) in differ.items())
            raise UserError(f"{who} splits the corpus of {role} {self.path} otherwise than the {role} did ({said}): "
                            f"its validation split would hold text the {role} trained on; {fix}")
