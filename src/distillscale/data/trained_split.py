"""The split a run trained on, and the one rule for whoever reads text beside it.

A distillscale run trains on one half of its corpus's split (`data.splits`) and is scored on the
validation split. Each document lands whole in a split by its own content (the salted hash of its anchor
line), whatever corpus holds it: so a reader of any corpus that shares documents with the run's (the same
corpus named another way, a copy with files added or removed or lines edited, v2 = v1 plus new shards, a
subset, a prefix under --max-bytes) puts each shared document where the run did, provided it splits with the
run's seed and no larger a validation fraction (a smaller one takes a subset of the run's validation
documents); an edit moves a document only where it touches its anchor line, and a reader is told how many
of the run's training documents its edited copy moved into validation (`moved_into_validation`). The rule,
in one place:

    split = TrainedSplit.of_run("runs/teacher")             # None: not a run, or nothing recorded
    data = split.as_trained(data, given={"max_bytes"})      # the run's seed and fraction where none is given
    split.check(data, fix="leave out --val-fraction")       # one-line refusal of a split that would take
                                                            # the run's training text into validation

A reader of the run's very corpus (its content, whatever path names it) also reads as much of it as the run
did (its max_bytes, where the reader gives none). A run of an earlier version split its corpus otherwise (in
pieces placed on their own), which this version cannot repeat: whatever corpus a reader gives may share
text with it, so it is refused in one line, saying how to tell it the reader's corpus is another one
(`--other-corpus`, where the reader shares no text with the run's corpus) or to train the run again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection

from distillscale.data.config import SETTING_FLAGS, SPLIT_SETTINGS, DataConfig, shown_setting
from distillscale.errors import UserError

if TYPE_CHECKING:
    from distillscale.data.prepared import PreparedData


@dataclass(frozen=True)
class TrainedSplit:
    """A run's data as it trained (`data`), the fingerprint of the data it trained on, what its corpus
    is (`content`, None for a run of an earlier version) and the split settings that cut it
    (`split`), and what the run is to its reader (`role`: "teacher", "start", "model"), for the
    messages."""

    path: Path
    data: DataConfig
    fingerprint: str
    role: str = "teacher"
    content: str | None = None
    split: dict | None = None
    trained_half: str = "teacher"   # the half of its corpus's split the run trained on

    @classmethod
    def of_run(cls, path: str | Path, role: str = "teacher") -> TrainedSplit | None:
        """The split of the distillscale run in `path` (its config.json, read as JSON); None when it is
        not a run or records no data that can be read (a Hugging Face model: nothing says what it read)."""
        try:
            record = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
            data = DataConfig.of_run_settings(record["config"])
            fingerprint = record["plan"]["data_fingerprint"]
            corpus = record["plan"].get("corpus") or {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if not isinstance(fingerprint, str):
            return None
        read_from = corpus.get("prepared") or corpus.get("path")   # a prepared directory given, or the corpus
        if read_from is not None and data.path is not None:
            data = data.model_copy(update={"path": read_from})   # as it resolved when the run read it
        split = {name: corpus[name] for name in (*SPLIT_SETTINGS, "format") if name in corpus} if corpus else None
        half = record["config"].get("split") or ("student" if record["config"].get("teacher") else "teacher")
        return cls(Path(path), data, fingerprint, role, corpus.get("content"), split or None, half)

    def settings(self) -> dict[str, Any]:
        """The split settings that cut the run's data (a prepared corpus's own, as the run recorded them)."""
        if self.split is not None:
            return {name: self.split.get(name, DataConfig.model_fields[name].default) for name in SPLIT_SETTINGS}
        return {name: getattr(self.data, name) for name in SPLIT_SETTINGS}

    def reads_my_corpus(self, reader: DataConfig) -> bool:
        """Whether `reader` reads the corpus the run trained on, as it was (the same content, whatever path
        names it): the reader then reads as much of it as the run did. False for a run of an earlier
        version, whose reader `check` refuses."""
        from distillscale.data.prepare import split_source

        if self.content is None or not self.current_format:
            return False
        return split_source(reader, max_bytes=self.settings()["max_bytes"]).content == self.content

    @property
    def current_format(self) -> bool:
        """Whether the run's data was split as this version splits (each document whole, by its anchor)."""
        from distillscale.data.prepare import FORMAT

        return self.split is not None and self.split.get("format") == FORMAT

    def as_trained(self, reader: DataConfig, given: Collection[str] = ()) -> DataConfig:
        """`reader` split as the run split its corpus: the run's seed and val_fraction in place of the
        reader's, and where it reads the run's corpus, its max_bytes, except those in `given` (the reader's
        own choice, left for `check` to judge). A reader of a `data prepare` directory keeps its own
        (fixed) split; a reader of a run of an earlier version is left as it is (`check` refuses it)."""
        from distillscale.data.prepare import given_prepared

        if not self.current_format or given_prepared(reader) is not None:
            return reader
        taken = {"seed", "val_fraction"} | ({"max_bytes"} if self.reads_my_corpus(reader) else set())
        return reader.model_copy(update={name: value for name, value in self.settings().items()
                                         if name in taken and name not in given})

    def differences(self, reader: DataConfig) -> dict[str, tuple[Any, Any]]:
        """The split settings `reader` cuts with otherwise than the run: name -> (the reader's, the run's)."""
        from distillscale.data.prepare import split_settings

        ours = split_settings(reader)
        return {name: (ours[name], theirs) for name, theirs in self.settings().items() if ours[name] != theirs}

    def check(self, reader: DataConfig, fix: str, who: str = "the student", given: Collection[str] = ()) -> None:
        """Refuse, in one line, a `reader` (`who`, in the message) whose validation split may hold text the
        run trained on: a run of an earlier version (see the module), or a reader that splits with another
        seed or a larger validation fraction than the run (`fix`: how to split as the run did, where the
        user gave none of the settings that differ; `given`, the split settings the user gave: named as
        flags, the fix to leave them out). Another max_bytes is no concern: it cuts the read, not the documents."""
        role = self.role
        if not self.current_format:
            data = reader.path or "the default corpus"
            raise UserError(f"{role} {self.path} was trained by an earlier version, which split its corpus otherwise "
                            f"({self._earlier_split()}): {who}'s validation split could hold text the {role} trained "
                            f"on; train the {role} again with this version, or, if {data} shares no text with the "
                            f"corpus it trained on, give --other-corpus")
        differ = {name: pair for name, pair in self.differences(reader).items()
                  if name == "seed" or (name == "val_fraction" and pair[0] > pair[1])}
        if differ:
            said = ", ".join(f"{SETTING_FLAGS[name] if name in given else name} {shown_setting(ours)} "
                             f"(the {role}'s {shown_setting(theirs)})"
                             for name, (ours, theirs) in differ.items())
            yours = [SETTING_FLAGS[name] for name in differ if name in given]
            if yours:   # the user's own flags split it otherwise: leave those out
                fix = f"leave out {' and '.join(yours)} to split it as the {role} did"
            raise UserError(f"{who} splits its corpus otherwise than {role} {self.path} did ({said}): text the "
                            f"{role} trained on would land in its validation split; {fix}")

    def _earlier_split(self) -> str:
        """How the run's data was split, in words: its recorded format, else the format whose fingerprint
        its corpus gives for its recorded data (where that corpus still reads)."""
        from distillscale.data.prepare import data_identity
        from distillscale.data.prepared import EARLIER_FORMATS

        made_as = (self.split or {}).get("format")
        if made_as is None:
            try:
                made_as = data_identity(self.data).format_of(self.fingerprint)
            except UserError:
                made_as = None
        return f"{made_as}: {EARLIER_FORMATS[made_as]}" if made_as in EARLIER_FORMATS else "pieces cut by the corpus's size"

    def moved_into_validation(self, reader: "PreparedData") -> MovedDocuments | None:
        """How many of `reader`'s validation documents are documents the run trained on, edited since (a
        copy of its corpus with lines changed; an edit that touches a document's anchor line may move it):
        its units matched to the run's training units by their sketches (`splits.shared_documents`). None
        where nothing can be told: the reader reads the run's very corpus (nothing moves), splits with
        another seed (refused by `check`), or the run's preparation is no longer in the cache."""
        import numpy as np

        from distillscale.data.prepare import UNIT_FILES, prepared_directory
        from distillscale.data.splits import SPLITS, shared_documents

        recorded = reader.manifest.get("config") or {}
        if not self.current_format or recorded.get("seed", 0) != self.settings()["seed"] \
                or (reader.manifest.get("source") or {}).get("content") == self.content:
            return None
        try:
            theirs = prepared_directory(self.data, self.fingerprint)
            run_split = np.load(theirs / UNIT_FILES["split"], allow_pickle=False)
            run_sketches = np.load(theirs / UNIT_FILES["sketch"], allow_pickle=False)
            my_split = np.load(reader.directory / UNIT_FILES["split"], allow_pickle=False)
            my_sketches = np.load(reader.directory / UNIT_FILES["sketch"], allow_pickle=False)
        except (OSError, ValueError):
            return None
        mine = my_sketches[my_split == SPLITS.index("val")]
        moved = shared_documents(mine, run_sketches[run_split == SPLITS.index(self.trained_half)])
        return MovedDocuments(int(moved.sum()), len(mine), self.role, self.path)


@dataclass(frozen=True)
class MovedDocuments:
    """`count` of a reader's `of` validation documents (or segments) are documents the `role` run at `path`
    trained on, edited since (`TrainedSplit.moved_into_validation`)."""

    count: int
    of: int
    role: str
    path: Path

    def warning(self, who: str = "the student") -> str | None:
        """One line saying so (None where none moved): the run's loss there reads low."""
        if not self.count:
            return None
        return (f"{self.count:,} of the {self.of:,} documents of {who}'s validation split are documents {self.role} "
                f"{self.path} trained on, edited since it read them: its loss there reads lower than on text it never "
                f"read; give the corpus as the {self.role} read it (or one without those documents) for a clean "
                "validation split")
