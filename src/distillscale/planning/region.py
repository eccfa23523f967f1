"""Where the planner looks for an answer: its box of sizes and tokens (`planner_bounds`, opened to the
law's smallest runs) and the students a sweep over student sizes tries (`student_region`: the law's
student data range, with the limits the user gave replacing its ends)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from distillscale.errors import ParameterError
from distillscale.laws.extrapolation import data_range
from distillscale.laws.lawset import LawSet
from distillscale.planning.options import StudentSearch
from distillscale.units import format_quantity

if TYPE_CHECKING:
    from distillscale.planning.solver import DistillationPlanner


def planner_bounds(laws: LawSet) -> tuple[float, float]:
    """The planner's box (sizes and tokens): its default, opened below to a tenth of the smallest size
    and token count the law was fitted on (a micro sweep's law: thousands of parameters and tokens)."""
    from distillscale.planning.solver import DEFAULT_BOUNDS

    known = data_range(laws, students=True)
    if known is None:
        return DEFAULT_BOUNDS
    return min(DEFAULT_BOUNDS[0], known.params[0] / 10, known.tokens[0] / 10), DEFAULT_BOUNDS[1]


def student_region(laws: LawSet, planner: DistillationPlanner, search: StudentSearch
                    ) -> tuple[list[str], tuple[tuple[float, float], tuple[float, float] | None]]:
    """(warnings, (size range, tokens-per-parameter range)) of the student-size sweep: the law's
    student data range, with the limits given replacing its ends."""
    warnings = []
    known = data_range(laws, students=True)
    if known is None:
        warnings.append(f"law {laws.name!r} records no data range: searching students of any size in "
                        "the planner's bounds (set the search limits: smallest and largest size, "
                        "fewest tokens per parameter)")
    sizes = list(known.params if known else planner.bounds)
    ratios = list(known.tokens_per_param) if known else [None, None]
    for index, name in enumerate(("min_params", "max_params")):
        if getattr(search, name) is not None:
            sizes[index] = getattr(search, name)
    for index, name in enumerate(("min_tokens_per_param", "max_tokens_per_param")):
        value = getattr(search, name)
        if value is not None:
            if not value > 0:
                raise ParameterError(name, f"{{}} must be positive, got {value:g}")
            ratios[index] = float(value)
    if sizes[0] >= sizes[1]:
        raise ParameterError(("min_params", "max_params"),
                             f"the smallest student ({format_quantity(sizes[0])}) must be below the "
                             f"largest ({format_quantity(sizes[1])}): fix {{}}/{{}}")
    if ratios == [None, None]:
        return warnings, (tuple(sizes), None)
    ratios = [0.0 if ratios[0] is None else ratios[0], np.inf if ratios[1] is None else ratios[1]]
    if ratios[0] >= ratios[1]:
        raise ParameterError(("min_tokens_per_param", "max_tokens_per_param"),
                             f"the fewest tokens per parameter ({ratios[0]:g}) must be below the most "
                             f"({ratios[1]:g}): fix {{}}/{{}}")
    return warnings, (tuple(sizes), tuple(ratios))
