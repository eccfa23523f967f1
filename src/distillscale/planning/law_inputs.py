"""The laws a plan reads, however given: the law set (a preset name, a law file, a LawSet or a fitted
law: `load_law`), and the hyperparameter and downstream laws (a name, a path, or a law object kept as
it is and named where to save it in the plan's command line: `given_laws`; loaded from the settings,
a law that cannot be read refused naming its option: `settings_law`)."""

from __future__ import annotations

import sys
from pathlib import Path

from distillscale.errors import ParameterError, UserError
from distillscale.laws.forms import DistillationLaw, SupervisedLaw
from distillscale.laws.lawset import LawSet, load_laws
from distillscale.planning.options import PlanSettings


def load_law(law) -> tuple[LawSet, str]:
    """(the law set, what `--law` takes to load it again, for the plan's command line). A law
    object that was not loaded from a file (a fit's law, not saved yet) is shown as "law.json", where
    to save it; the plan keeps the object itself (`Plan.laws`), so nothing is reloaded by name."""
    # A LawFit exists only once its module (the fitter, over torch) is loaded: not imported here, so
    # that planning from a preset or a law file needs no torch (the core install has none).
    selection = sys.modules.get("distillscale.laws.selection")
    if selection is not None and isinstance(law, selection.LawFit):
        laws = law.laws("fitted")
    elif isinstance(law, SupervisedLaw):
        laws = LawSet("fitted", supervised=law)
    elif isinstance(law, DistillationLaw):
        laws = LawSet("fitted", law.student_law, law)
    elif isinstance(law, LawSet):
        laws = law
    elif isinstance(law, (str, Path)):
        laws = load_laws(law)
    else:
        raise ParameterError("law", f"{{}} must be a preset name, a law file, a LawSet or a fitted law, "
                                    f"got {type(law).__name__}")
    return laws, laws.spec or "law.json"


# How the command line of a plan names a law given as an object, not loaded from a file (a fit's law,
# not saved yet): where to save it, as `load_law` names a law object "law.json".
GIVEN_LAW_FILES = {"hyperparameter_law": "hp.json", "downstream_law": "downstream.json"}


def given_laws(options: dict) -> tuple[dict, tuple]:
    """(the options as settings take them, (the hyperparameter law object given, the downstream law
    object given), each None where a name or a path was given, for the settings to load): an object
    is kept, and named GIVEN_LAW_FILES[option] in the settings."""
    objects = []
    for name, file_name in GIVEN_LAW_FILES.items():
        given = options.get(name)
        if isinstance(given, Path):
            options = {**options, name: str(given)}
        law = None if given is None or isinstance(given, (str, Path)) else law_object(name, given)
        options = {**options, name: file_name} if law is not None else options
        objects.append(law)
    return options, tuple(objects)


def law_object(name: str, law):
    """A hyperparameter law (or a fit's, `ds.fit_hyperparameters(...)`) or a downstream law given from
    Python as `name`, or a ParameterError saying what it takes."""
    from distillscale.laws.downstream import DownstreamLaw
    from distillscale.laws.hyperparameters import HyperparameterFit, HyperparameterLaw

    if name == "hyperparameter_law" and isinstance(law, (HyperparameterFit, HyperparameterLaw)):
        return law.law if isinstance(law, HyperparameterFit) else law
    if name == "downstream_law" and isinstance(law, DownstreamLaw):
        return law
    kind = ("a preset name, a law file or a HyperparameterLaw (a fit's .law)" if name == "hyperparameter_law"
            else "a law file or a DownstreamLaw (`ds.fit_downstream`'s)")
    raise ParameterError(name, f"{{}} must be {kind}, got {type(law).__name__}")


def settings_law(settings: PlanSettings, name: str):
    """The law the settings name as `name` (hyperparameter_law, or downstream_law: None when none is
    asked for), loaded; one that cannot be read is a ParameterError naming it."""
    from distillscale.laws.downstream import load_downstream_law
    from distillscale.laws.hyperparameters import load_hyperparameter_law

    spec = getattr(settings, name)
    if spec is None:
        return None
    try:
        return (load_hyperparameter_law if name == "hyperparameter_law" else load_downstream_law)(spec)
    except UserError as exc:
        raise ParameterError.about(name, f"{ParameterError.NAME}: {exc}") from None
