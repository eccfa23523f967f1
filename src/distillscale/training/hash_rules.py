"""How a run setting enters the run's hash and which settings a WSD fork may give otherwise, as each
field of the configuration declares it (`training.config`)."""

from __future__ import annotations

from distillscale.settings import Settings


# How a setting enters the run's hash (`TrainConfig.hash`: an interrupted run resumes only under the
# same hash), declared on its field as `json_schema_extra`; a field that declares nothing is hashed.
# Bookkeeping: does not change what the run computes, so it may differ when an interrupted run resumes.
NOT_HASHED = {"in_hash": False}


# A WSD fork's own setting, which it may give otherwise than its parent (`training.fork`): its length
# and the fork links; every other setting a fork repeats.
FORK_OWN = {"fork_own": True}


def hashed_unless_default(leader: str = "") -> dict[str, str]:
    """A setting added after runs existed: left out of the hash while `leader` (by default the setting
    itself) is at its default, so that runs that do not use it keep the hash they had before it."""
    return {"in_hash_unless_default": leader}


def fork_own_keys(config: type[Settings]) -> frozenset[str]:
    """The settings of `config` that a fork may give otherwise than its parent (declared `FORK_OWN`)."""
    return frozenset(key for key, field in config.model_fields.items()
                     if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("fork_own"))


def hash_rule(config: type[Settings], key: str) -> bool | str:
    """How setting `key` of `config` enters the hash, as its field declares: True (always), False
    (bookkeeping, never) or the name of the setting while at whose default it is left out."""
    extra = config.model_fields[key].json_schema_extra
    extra = extra if isinstance(extra, dict) else {}
    if "in_hash_unless_default" in extra:
        return extra["in_hash_unless_default"] or key
    return bool(extra.get("in_hash", True))
