"""Scaling-law forms, published presets, and fitting with uncertainty."""

from distillscale.laws.forms import DistillationLaw, SupervisedLaw
from distillscale.laws.lawset import PRESETS, ComputeSettings, LawSet, load_laws

__all__ = ["SupervisedLaw", "DistillationLaw", "LawSet", "ComputeSettings", "PRESETS", "load_laws"]
