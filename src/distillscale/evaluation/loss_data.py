"""The text a loss is measured on: the validation split of a corpus prepared with the model's own
tokenizer (`data prepare`'s split, the one a sweep on that corpus validates on), or of a prepared
directory given as it is; a run's own corpus, split as it trained, when none is given.

    prepared = scored_data(target, "corpus/", max_bytes=None, val_fraction=None, seed=None, progress=True)
    identity = named_identity(prepared_loss_identity(prepared), target)     # the loss's units

A corpus prepared with another tokenizer, or split otherwise than a run trained on it, is refused in
one line (`data.trained_split`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from distillscale.console import warn
from distillscale.data.loss_identity import LossIdentity, corpus_tokenizer_identity, tokenizer_identity
from distillscale.data.trained_split import TrainedSplit
from distillscale.errors import UserError

if TYPE_CHECKING:
    from distillscale.data.prepared import PreparedData
    from distillscale.evaluation.model_argument import ScoredModel


def scored_data(target: ScoredModel, data: str | Path | None, max_bytes: int | None, val_fraction: float | None,
                seed: int | None, progress: bool, other_corpus: bool = False) -> PreparedData:
    """The prepared corpus to score `target` on, its tokenizer the model's; `other_corpus`: `data` shares no
    text with a run's corpus (split on its own, not checked: `data.trained_split`)."""
    from distillscale.data import DataConfig, prepare_data
    from distillscale.data.loss_identity import is_prepared_dir
    from distillscale.data.prepared import open_prepared

    split = {"max_bytes": max_bytes, "val_fraction": val_fraction, "seed": seed}
    given = {key: value for key, value in split.items() if value is not None}
    if other_corpus and data is None:
        raise UserError("--other-corpus says that --data shares no text with the run's corpus: give --data, or "
                        "leave out --other-corpus to score the run's own corpus")
    trained = TrainedSplit.of_run(target.location, role="model") if target.kind == "run" and not other_corpus else None
    if data is not None and is_prepared_dir(data):
        if given:
            raise UserError(f"--data {data} is prepared already: its split is fixed; leave out --max-bytes, "
                            "--val-fraction and --seed (they split a corpus)")
        prepared = open_prepared(data)
        if trained is not None:
            trained.check(DataConfig(path=str(data)), who=f"--data {data}",
                          fix="measure the model on its own corpus as it trained: leave out --data")
    elif data is not None:
        if target.tokenizer is None:
            raise UserError(f"a served model's loss needs its tokenizer to prepare --data {data}: give --tokenizer "
                            "(the tokenizer the server's model speaks), or a corpus prepared with it")
        config = DataConfig(path=str(data), tokenizer=str(target.tokenizer), **given)
        prepared = prepare_data(_as_trained(trained, config, given), progress)
    elif target.kind == "run":
        prepared = prepare_data(_as_trained(trained, _run_data(target, given), given), progress)
    else:
        raise UserError("give --data: the corpus to measure the model's loss on (a directory, file or glob of text; "
                        "or a corpus prepared by `distillscale data prepare`)")
    _check_tokenizer(target, prepared, data)
    moved = trained.moved_into_validation(prepared) if trained is not None and data is not None else None
    if moved is not None and moved.warning(f"--data {data}") is not None:
        warn(moved.warning(f"--data {data}"))
    return prepared


def named_identity(identity: LossIdentity, target: ScoredModel) -> LossIdentity:
    """The identity with its tokenizer named as the model's own (checked to give the corpus's ids:
    `scored_data`), not as whichever tokenizer of the same ids first prepared the corpus; a server's
    without --tokenizer, as the corpus names it."""
    if target.tokenizer is None:
        return identity
    return identity.model_copy(update={"tokenizer": identity.tokenizer.model_copy(update={"name": str(target.tokenizer)})})


def _as_trained(trained: TrainedSplit | None, config, given: dict):
    """`config` split as the run `trained` split its corpus where `given` says nothing (the rule every
    reader of a run's corpus follows: `data.trained_split`), refused in one line where it says otherwise."""
    if trained is None:
        return config
    config = trained.as_trained(config, given=given)
    trained.check(config, who="the measurement", given=given,
                  fix="give the corpus itself as --data, which is then split as the model did")
    return config


def _run_data(target: ScoredModel, given: dict):
    """A run's own corpus, split as it was (what its val_loss was measured on)."""
    from distillscale.training.run_dir import RunDirectory

    return RunDirectory(Path(target.location)).data_to_read(role="run").model_copy(update=given)


def _check_tokenizer(target: ScoredModel, prepared: PreparedData, data) -> None:
    """The prepared corpus speaks the model's tokenizer (every token the same id)."""
    from distillscale.data.tokenizer import load_tokenizer

    if target.tokenizer is None:  # a server scored on a prepared corpus: its tokenizer is the corpus's
        return
    why = tokenizer_identity(load_tokenizer(target.tokenizer)[0], str(target.tokenizer)).differs(
        corpus_tokenizer_identity(prepared))
    if why is not None:
        raise UserError(f"--data {data} was prepared with another tokenizer than the model's ({target.tokenizer}: "
                        f"{why}): a loss is measured in the model's own tokens; give the corpus itself, or prepare "
                        f"it with `distillscale data prepare --tokenizer {target.location}`")
