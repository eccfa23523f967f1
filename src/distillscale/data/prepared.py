"""A corpus `data prepare` made, on disk: `PreparedData` reads its splits; `open_prepared(DIR)` opens one by
its directory; `usable_preparation` says, in words, why a preparation cannot be used as it is (an earlier
version's, a file missing or cut short), the one reason both a refusal and a new preparation give; and
`prepare.given_prepared(config)` takes such a directory given as the corpus (`--data DIR`) as that corpus.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from distillscale.data.config import SETTING_FLAGS, DataConfig
from distillscale.data.manifest import composition, data_warnings, prepared_manifest
from distillscale.data.splits import SPLITS, SplitComposition
from distillscale.errors import UserError

# 4: each document whole in one split, by the hash of its anchor line (3: documents cut into pieces of about
# 1 KB, each split by its own hash; 2: pieces of a size that followed the corpus's, split by a budget of
# tokens; 1: whole documents, by bytes)
FORMAT = "distillscale.data/4"
FORMAT_METHOD = "each document whole in one split, by what it shares"
# Earlier formats, each of which split its corpora otherwise than FORMAT: what it did.
EARLIER_FORMATS = {"distillscale.data/1": "whole documents, split by bytes",
                   "distillscale.data/2": "pieces of a size that followed the corpus's size, split by a budget of tokens",
                   "distillscale.data/3": "documents cut into pieces of about 1 KB, each piece split on its own"}
ROUTE_DTYPE = "uint8"  # a document's route: the index of its field's value (a mixture's teacher)
# The settings of a preparation that decide its tokens and split, as the flags that give them.
FIXED_SETTINGS = SETTING_FLAGS


class PreparedData:
    """A tokenised corpus on disk. `split(name)` maps a split's tokens without reading them."""

    def __init__(self, directory: Path, manifest: dict, reused: bool):
        self.directory = directory
        self.manifest = manifest
        self.reused = reused  # True when an earlier preparation was found and nothing was tokenised

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_file(str(self.directory / "tokenizer.json"))

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def vocab_size(self) -> int:
        return self.manifest["tokenizer"]["vocab_size"]

    @property
    def tokenizer_hash(self) -> str:
        """sha256 of tokenizer.json (what the fingerprint hashes); whether a tokenizer is this corpus's
        is `data.loss_identity.corpus_tokenizer_identity`'s question."""
        return self.manifest["tokenizer"]["hash"]

    @property
    def end_of_text_id(self) -> int:
        return self.manifest["tokenizer"]["end_of_text_id"]

    def composition(self, name: str) -> SplitComposition:
        """What split `name` is made of: documents, units placed, tokens, the largest unit's and document's shares."""
        return composition(self.manifest, name)

    @property
    def warnings(self) -> list[str]:
        """What this preparation warns about (`data_warnings`), said by every use of it."""
        return data_warnings(self.manifest)

    def split(self, name: str) -> np.memmap:
        """Token ids of split `name` ("val", "teacher" or "student"), read-only, memory-mapped."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: choose from {', '.join(SPLITS)}")
        return np.memmap(self.directory / f"{name}.bin", dtype=self.manifest["dtype"], mode="r")

    def token_bytes(self, name: str = "val") -> np.memmap:
        """The UTF-8 bytes of source text behind each token of split `name` (only "val" is kept):
        `sum(token_bytes[a:b])` is the text of tokens a..b-1 as it was read, however the tokenizer
        decodes (or whether it can). Each character counts once, with the first token whose span
        covers it; text between tokens' spans (what a pre-tokenizer drops) with the token after it;
        end-of-text tokens 0."""
        recorded = self.manifest["token_bytes"]
        if name not in recorded["files"]:
            raise ValueError(f"the bytes behind split {name!r}'s tokens are not kept (only {', '.join(recorded['files'])})")
        return np.memmap(self.directory / recorded["files"][name], dtype=recorded["dtype"], mode="r")

    @property
    def route_values(self) -> list[str | None] | None:
        """The values of the route field (`DataConfig.route_field`), in the order of their ids; None when
        the corpus was prepared without one."""
        routes = self.manifest.get("routes")
        return None if routes is None else routes["values"]

    def routes(self, name: str) -> np.memmap:
        """The route id of every token of split `name` (an index into `route_values`), memory-mapped."""
        if self.route_values is None:
            raise ValueError("this corpus was prepared without a route field")
        return np.memmap(self.directory / self.manifest["routes"]["files"][name], dtype=ROUTE_DTYPE, mode="r")

    def __repr__(self) -> str:
        tokens = ", ".join(f"{name}={self.manifest['splits'][name]['tokens']}" for name in SPLITS)
        return f"PreparedData({str(self.directory)!r}, vocab_size={self.vocab_size}, tokens: {tokens})"


def unusable_reason(directory: Path, manifest: dict) -> str | None:
    """Why the preparation in `directory` (its `manifest`) cannot be used as it is, in words; None: it can.
    The one reason an opened corpus is refused with and a corpus is prepared again for."""
    made_as = manifest.get("format")
    if made_as in EARLIER_FORMATS:
        return (f"an earlier version prepared it as {made_as} ({EARLIER_FORMATS[made_as]}), and this one reads "
                f"{FORMAT} ({FORMAT_METHOD}), which splits every corpus anew")
    if made_as != FORMAT:
        return f"it was prepared as {made_as}, which this version does not read (it reads {FORMAT})"
    try:
        expected = {f"{name}.bin": manifest["splits"][name]["tokens"] * np.dtype(manifest["dtype"]).itemsize
                    for name in SPLITS}
        recorded = manifest["token_bytes"]
        for name, file in recorded["files"].items():
            expected[file] = manifest["splits"][name]["tokens"] * np.dtype(recorded["dtype"]).itemsize
        manifest["splits"]["val"]["bytes"], manifest["splits"]["val"]["sha256"]
        unit_files = list(manifest["units"]["files"].values())
    except (KeyError, TypeError, AttributeError):
        return ("an earlier version prepared it, keeping no record of the bytes behind its tokens (what bits "
                "per byte and a loss's identity are counted from)")
    for name, size in expected.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size:
            return f"its {name} is {'missing' if not path.is_file() else 'of another size than its manifest says'}"
    for name in unit_files:
        if not (directory / name).is_file():
            return f"its {name} is missing"
    return None


def complete_manifest(directory: Path, fingerprint: str) -> dict | None:
    """The manifest of a finished, usable preparation of `fingerprint` in `directory`, or None."""
    manifest = prepared_manifest(directory)
    if manifest is None or manifest.get("fingerprint") != fingerprint or unusable_reason(directory, manifest):
        return None
    return manifest


def open_prepared(directory: str | os.PathLike) -> PreparedData:
    """A corpus prepared before, by its directory (`<cache_dir>/<fingerprint>/`, as `data prepare`
    prints it), or a one-line UserError saying what the directory is not, or why it cannot be read."""
    directory = Path(directory).expanduser()
    manifest = prepared_manifest(directory)
    if manifest is None or not isinstance(manifest.get("fingerprint"), str):
        raise UserError(f"{directory} is not a corpus `distillscale data prepare` made (no manifest.json of one): "
                        "give the directory it printed, or the corpus's own files")
    why = unusable_reason(directory, manifest)
    if why is not None:
        raise UserError(f"the prepared corpus {directory} cannot be read as it is: {why}; prepare its corpus again: "
                        f"`{prepare_again(manifest)}`, and give the directory it prints")
    return PreparedData(directory, manifest, reused=True)


def prepare_again(manifest: dict) -> str:
    """The `data prepare` command that prepares a manifest's corpus again, with its recorded settings."""
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    words = ["distillscale data prepare", "--data", str(config.get("path") or "builtin:stdlib")]
    for key, flag in (("tokenizer", "--tokenizer"), *FIXED_SETTINGS.items(), ("route_field", "--route-field")):
        value = config.get(key)
        if value is not None and value != DataConfig.model_fields[key].default:
            words += [flag, str(value)]
    return " ".join(words)
