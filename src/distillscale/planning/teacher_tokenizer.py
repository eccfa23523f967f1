"""A teacher's tokenizer held against the law's: a teacher's loss in another tokenizer is in other
units, so a plan refuses it in one line, for a teacher directory (`planning.teacher_model`) and a
served teacher (`planning.served_teacher`) alike.

    refuse_another_tokenizer("--teacher-model", path, mine, laws, unstated=None, hint=calibrate_hint(path))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from distillscale.errors import UserError

if TYPE_CHECKING:
    from distillscale.data.loss_identity import TokenizerIdentity
    from distillscale.laws.lawset import LawSet


def calibrate_hint(path: Path) -> str:
    """How to get laws in a teacher's own tokenizer: a sweep on your data prepared with it."""
    return (f"calibrate the laws on your data in this teacher's tokenizer: `distillscale demo --data DIR --teacher "
            f"{path}` (or `distillscale data prepare --data DIR --tokenizer {path}`, then a sweep on that corpus)")


def refuse_another_tokenizer(given_as: str, shown, mine: TokenizerIdentity, laws: LawSet, unstated: str | None,
                             hint: str) -> None:
    """One line refusing a teacher whose tokenizer `mine` is not the law's, or cannot be told to be: the
    vocabularies' hashes decide where both have one; a served model (`unstated`: why, when it states
    no identity) states only its tokenizer's identity, compared with the law's; a law whose tokenizer
    was never published cannot be compared with."""
    theirs = laws.losses.tokenizer
    why = theirs.differs(mine)
    if why is None and not theirs.verifiable(mine):
        if unstated is None or not theirs.sha256:
            why = f"the law's tokenizer, {theirs.name}, is not published to compare with"
        elif not mine.sha256:
            why = unstated
        elif mine.sha256 != theirs.sha256:
            why = f"identity sha256 {mine.sha256[:12]}, not {theirs.sha256[:12]}"
    if why is not None:
        raise UserError(f"{given_as} {shown} speaks another tokenizer than law {laws.name!r} ({why}): the law's "
                        f"losses are {laws.losses.describe()}, and a teacher's loss in another tokenizer is in other "
                        f"units; {hint}")
