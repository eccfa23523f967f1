"""The split a run trained on, and the one rule for whoever reads the run's corpus after it.

A distillscale run trains on one half of its corpus's split (`data.splits`) and is scored on the
validation split. Whoever reads that corpus beside the run (a student distilled from it, the demo's
sweep calibrating the laws for it, a measurement of its loss for a plan or with `loss`) must cut it
the same way, with the split settings that cut the run's (max_bytes, val_fraction, seed: a prepared
corpus's own), or the validation split may hold text the run trained on, and its loss there comes out
low. Whether a reader reads the run's corpus is decided by what the corpus is, its content
(`data.content`), never by the path that names it: a relative path read from another directory, a corpus
moved or copied, or given as the `data prepare` directory made from it, is the same corpus. The rule, in
one place:

    split = TrainedSplit.of_run("runs/teacher")             # None: not a run, or nothing recorded
    data = split.as_trained(data, given={"max_bytes"})      # the run's split where none is given
    split.check(data, fix="leave out --max-bytes")          # one-line refusal of another split

A reader of another corpus is not checked (nothing of it was trained on). Where a reader cannot tell
whether it reads the run's corpus (a run of an earlier version, which recorded neither its corpus's
content nor its path as it resolved, whose corpus is not where it says), it refuses in one line rather
than guess it does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection

from distillscale.data.config import SETTING_FLAGS, SPLIT_SETTINGS, DataConfig, shown_setting
from distillscale.errors import UserError

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
    corpus_path: str | None = None   # the corpus's own path as it resolved (a prepared directory's corpus)

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
        return cls(Path(path), data, fingerprint, role, corpus.get("content"), split or None,
                   corpus.get("path") or data.path)

    def settings(self) -> dict[str, Any]:
        """The split settings that cut the run's data (a prepared corpus's own, as the run recorded them)."""
        if self.split is not None:
            return {name: self.split.get(name, DataConfig.model_fields[name].default) for name in SPLIT_SETTINGS}
        return {name: getattr(self.data, name) for name in SPLIT_SETTINGS}

    def reads_my_corpus(self, reader: DataConfig) -> bool:
        """Whether `reader` reads the corpus the run trained on: the same content, whatever path names it,
        or the corpus at the very place the run read it, changed since (`check` refuses that one).
        Refused in one line where it cannot be told (see the module)."""
        from distillscale.data.prepare import split_source

        theirs = split_source(reader)
        if self.content is not None and theirs.content is not None:
            return self.content == theirs.content or self._same_place(theirs.root)
        mine = self._own_content()
        if mine is not None and theirs.content is not None:
            return mine == theirs.content
        raise UserError(f"cannot tell whether {reader.path or 'the default corpus'} is the corpus {self.role} "
                        f"{self.path} trained on ({self._why_unknown(theirs.content)}), so the split that keeps its "
                        f"training text out of the validation split cannot be kept: give the corpus it trained on "
                        f"where its config.json says ({self.data.path}), or a {self.role} trained by this version")

    def _same_place(self, root: str | None) -> bool:
        return root is not None and self.corpus_path is not None and Path(root) == Path(self.corpus_path)

    def _own_content(self) -> str | None:
        """The run's corpus's content where its recorded path still reads (a run of an earlier version)."""
        from distillscale.data.prepare import split_source

        try:
            return split_source(self.data).content
        except UserError:
            return None

    def _why_unknown(self, reader_content: str | None) -> str:
        if reader_content is None:
            return "that corpus was prepared by an earlier version, which did not record what it holds"
        return (f"the {self.role} was trained by an earlier version, which did not record what its corpus holds, "
                f"and no corpus is at {self.data.path} from here")

    def as_trained(self, reader: DataConfig, given: Collection[str] = ()) -> DataConfig:
        """`reader` split as the run split its corpus: the run's SPLIT_SETTINGS in place of the reader's,
        except those in `given` (the reader's own choice, left for `check` to judge); `reader` as it is
        when it reads another corpus. A reader of a `data prepare` directory keeps its own (fixed) split."""
        from distillscale.data.prepare import given_prepared

        if not self.reads_my_corpus(reader) or given_prepared(reader) is not None:
            return reader
        return reader.model_copy(update={name: value for name, value in self.settings().items() if name not in given})

    def differences(self, reader: DataConfig) -> dict[str, tuple[Any, Any]]:
        """The split settings `reader` cuts with otherwise than the run: name -> (the reader's, the run's)."""
        from distillscale.data.prepare import split_source

        ours = split_source(reader).settings
        return {name: (ours[name], theirs) for name, theirs in self.settings().items() if ours[name] != theirs}

    def check(self, reader: DataConfig, fix: str, who: str = "the student", given: Collection[str] = ()) -> None:
        """Refuse, in one line, a `reader` (`who`, in the message) of the run's corpus whose validation
        split may hold text the run trained on: the run's data is not what its settings prepare from
        that corpus now (an earlier data format's split, a corpus changed since), or `reader` splits it
        otherwise (`fix`: how to split it as the run did, where the user gave none of the settings that
        differ; `given`, the split settings the user gave: named as flags, the fix to leave them out)."""
        from distillscale.data.prepare import FORMAT, data_identity, split_source

        if not self.reads_my_corpus(reader):
            return
        role = self.role
        changed = None
        if self.content is None:   # a run of an earlier version: its data as its settings prepare it now
            mine = data_identity(self.data)
            if mine.fingerprint != self.fingerprint:
                changed = mine.why_other(self.fingerprint)
        elif self.content != split_source(reader).content and data_identity(self.data).fingerprint != self.fingerprint:
            # the same place, other content and other files (their paths, sizes or times): changed since
            changed = "the corpus at the place it read was changed since: other files, or files edited"
        elif self.split is not None and self.split.get("format") not in (None, FORMAT):
            changed = (f"it was prepared as {self.split['format']}, and this version prepares {FORMAT}, which splits "
                       "every corpus anew")
        if changed is not None:
            raise UserError(f"{role} {self.path} was trained on other data than its corpus gives now ({changed}): "
                            f"{who}'s validation split would hold text the {role} trained on, biasing its loss low; "
                            f"train the {role} again on this data (or use a {role} trained on it)")
        differ = self.differences(reader)
        if differ:
            said = ", ".join(f"{SETTING_FLAGS[name] if name in given else name} {shown_setting(ours)} "
                             f"(the {role}'s {shown_setting(theirs)})"
                             for name, (ours, theirs) in differ.items())
            yours = [SETTING_FLAGS[name] for name in differ if name in given]
            if yours:   # the user's own flags split it otherwise: leave those out
                fix = f"leave out {' and '.join(yours)} to split it as the {role} did"
            raise UserError(f"{who} splits the corpus of {role} {self.path} otherwise than the {role} did ({said}): "
                            f"its validation split would hold text the {role} trained on; {fix}")

