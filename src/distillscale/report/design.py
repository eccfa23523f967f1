"""The builtin sweep designs (package data, run by `distillscale demo`) and which of them a sweep
directory ran: a law fitted from the micro demo's design carries that design's family term (issue
64, `laws.crossladder.FamilyTerm`), learned on the design's runs on six corpora.

    builtin_spec()                    # the micro demo's spec file
    design_family("sweeps/micro")     # "micro-demo" for a sweep of that design, else None
    design_corpus("sweeps/micro")     # "stdlib": the corpus it ran on, by the name a term's members have
"""

from __future__ import annotations

import copy
import sys
from importlib import resources
from pathlib import Path

SPECS = {False: "micro_sweep.toml", True: "micro_sweep_quick.toml"}
# `demo --repetition`: students on 1-16 epochs of fixed subsets (the micro sweep's conventions)
REPETITION_SPEC = "repetition_sweep.toml"
# `demo --capacity-gap`: MiniMA's capacity-gap experiment, students pruned from each teacher and from scratch
CAPACITY_GAP_SPEC = "capacity_gap_sweep.toml"
GPU_SPEC = "gpu_ladder.toml"  # `demo --scale gpu`; examples/gpu_ladder.toml is the same design
# The builtin designs with a family term (family_terms.json): name -> spec file. None now: the micro
# demo's term corrected the over-prediction of a design whose runs were too short for the laws (49-870
# optimizer steps); its runs now take 500 or more, and its raw supervised law predicts the held-out size
# within 3% on each demo corpus, both ways (docs/demo_corpora.md), so no term is learned for it.
FAMILY_DESIGNS: dict[str, str] = {}
# The corpus a spec without a data path runs on (`data.sources`: the builtin default).
DEFAULT_CORPUS = "stdlib"
# What a sweep of a design may change without leaving it: its name and its corpus.
DESIGN_FREE = (("name",), ("data", "path"))


def builtin_spec(quick: bool = False, scale: str = "micro", repetition: bool = False,
                 capacity_gap: bool = False) -> Path:
    name = (CAPACITY_GAP_SPEC if capacity_gap else REPETITION_SPEC if repetition else GPU_SPEC if scale == "gpu"
            else SPECS[quick])
    return Path(str(resources.files("distillscale.report") / name))


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    return tomllib


def _design(sections: dict) -> dict:
    """A spec's sections as spec.toml holds them, without what a run of the design may change
    (DESIGN_FREE)."""
    table = copy.deepcopy(sections)
    for *parents, key in DESIGN_FREE:
        part = table
        for parent in parents:
            part = part.get(parent, {})
        part.pop(key, None)
    return table


def _builtin_design(name: str) -> dict:
    """The resolved sections of a builtin spec, as `sweep run` writes them into spec.toml."""
    from distillscale.sweeps.spec import load_sweep_spec

    return _design(_toml().loads(load_sweep_spec(Path(str(resources.files("distillscale.report") / name))).to_toml()))


def design_corpus(source: str | Path) -> str | None:
    """The name of the corpus a sweep directory ran on, as a design's family term names its members:
    the builtin corpus's name (`builtin:NAME`; `stdlib` where the spec names none, the default) or
    the data path's last part (`demo --data /corpora/man-en`: man-en); None without a spec."""
    from distillscale.data.sources import BUILTIN_PREFIX
    from distillscale.sweeps.runner import sweep_spec

    sections = sweep_spec(source)
    if sections is None:
        return None
    path = sections.get("data", {}).get("path")
    if path is None:
        return DEFAULT_CORPUS
    path = str(path)
    return path.removeprefix(BUILTIN_PREFIX) if path.startswith(BUILTIN_PREFIX) else Path(path).name


def design_family(source: str | Path) -> str | None:
    """The builtin design a sweep directory ran (its spec.toml equal to the design's but for its name
    and corpus), when that design has a family term, else None: a user's own sweep, an exported
    records file, the quick, repetition, capacity-gap or GPU demos, or `demo --lr-law` (another
    recipe) get none."""
    from distillscale.sweeps.runner import sweep_spec

    sections = sweep_spec(source)
    if sections is None:
        return None
    mine = _design(sections)
    for name, spec in FAMILY_DESIGNS.items():
        if mine == _builtin_design(spec):
            return name
    return None


IN_SAMPLE = ("in sample: this law's {design} term was learned on this very check of the {corpus} corpus (one of its "
             "{members} members), so the check does not measure it; on a corpus it has not seen it is scored "
             "leaving that corpus out (docs/validation_pack.md)")


def in_sample_note(source: str | Path, law) -> str | None:
    """What to say of a sweep's supervised held-out check when `law` (the report's supervised law)
    carries a design's family term learned on that check itself (the sweep's corpus is one of the
    term's members, `design_corpus`); None otherwise: the check is out of sample for the term."""
    correction = getattr(law, "bias_correction", None)
    term = None if correction is None else correction.family
    if term is None:
        return None
    corpus = design_corpus(source)
    if corpus is None or corpus not in term.model.ladders:
        return None
    return IN_SAMPLE.format(design=term.design, corpus=corpus, members=len(term.model.ladders))
