"""A law's correction beyond its runs (`laws.crossladder`) is applied the same way everywhere the law
is used: the distillation interval's E-profile alternatives are corrected as the student law is, and
the correction's one line names only what it uses."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from distillscale.laws import SupervisedLaw, load_laws
from distillscale.laws.crossladder import BiasCorrection, BiasModel, FitSummary
from distillscale.laws.record import FitRecord, Profile

STUDENT = SupervisedLaw(E=1.7, A=400.0, B=2000.0, alpha=0.34, beta=0.36)
SUMMARY = FitSummary(params_max=1e7, params_min=1e6, tokens_max=4e8, sizes=4, runs=16, log_ratio_median=3.0,
                     alpha=0.34, beta=0.36)
CENTRES = {"ratio": 3.0, "sizes": 1.5, "alpha": 0.3, "beta": 0.35}


def corrected_student(profile_laws: list[dict]) -> SupervisedLaw:
    """The student law with a strong correction beyond 1e7 parameters (-30% per e-fold) and E's profile."""
    model = BiasModel(features=("dN",), coefficients=(-0.3,), centres=CENTRES, penalty=0.0, slope_sd=0.0)
    profile = Profile(coefficient="E", level=0.9, values=[law["E"] for law in profile_laws], laws=profile_laws)
    record = FitRecord(profile=profile, bias_correction=BiasCorrection(model=model, summary=SUMMARY))
    return replace(STUDENT, fit=record)


def test_the_distillation_intervals_e_profile_is_corrected_as_the_student_law_is():
    """A profile that allows only the fitted law adds no width to a student beyond the runs; one that
    allows other E's spans those laws corrected by the same factor."""
    # the preset's law without its own (stated) error: the profile's width alone
    distillation = replace(load_laws("busbridge2025").distillation, fit=None)
    N_S, D_S, L_T = 4e7, 8e8, 2.0                      # the student 4x beyond the fitted sizes
    only = replace(distillation, student_law=corrected_student([STUDENT.coefficients()]))
    p = only.prediction(N_S, D_S, L_T)
    assert p.has_interval
    assert float(p.low) == pytest.approx(float(p.value), rel=1e-12)
    assert float(p.high) == pytest.approx(float(p.value), rel=1e-12)
    others = [{**STUDENT.coefficients(), "E": E} for E in (1.5, 1.9)]
    law = replace(distillation, student_law=corrected_student(others))
    factor = law.student_law.bias_correction.factor(N_S, D_S)
    assert factor < 0.7                                 # the correction is strong here
    ends = [law.predict(N_S, D_S, L_T, student_supervised_loss=SupervisedLaw(**c).raw_predict(N_S, D_S) * factor)
            for c in others]
    p = law.prediction(N_S, D_S, L_T)
    assert float(p.low) == pytest.approx(min(ends + [float(p.value)]), rel=1e-12)
    assert float(p.high) == pytest.approx(max(ends + [float(p.value)]), rel=1e-12)
    np.testing.assert_allclose(float(p.value), law.predict(N_S, D_S, L_T))
