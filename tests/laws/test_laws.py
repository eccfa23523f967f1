import json

import numpy as np
import pytest

from distillscale.errors import UserError
from distillscale.laws import PRESETS, LawSet, load_laws
from distillscale.laws.record import FitRecord

B = 1e9
M = 1e6


@pytest.mark.parametrize("N, D, expected", [
    (143 * M, 20 * 143 * M, 2.889),
    (546 * M, 20 * 546 * M, 2.515),
    (7.75 * B, 20 * 7.75 * B, 2.004),
    (7.75 * B, 512 * B, 1.933),
])
def test_busbridge_supervised_spot_values(N, D, expected):
    law = load_laws("busbridge2025").supervised
    assert law.predict(N, D) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("N_S, expected", [(546 * M, 2.376), (1.82 * B, 2.183)])
def test_busbridge_distillation_spot_values(N_S, expected):
    laws = load_laws("busbridge2025")
    teacher_loss = laws.supervised.predict(7.75 * B, 20 * 7.75 * B)
    assert laws.distillation.predict(N_S, 20 * N_S, teacher_loss) == pytest.approx(expected, abs=1e-3)


def test_predictions_are_vectorised_and_broadcast():
    laws = load_laws("busbridge2025")
    N = np.array([143 * M, 546 * M, 7.75 * B])
    out = laws.supervised.predict(N[:, None], 20 * N[None, :])
    assert out.shape == (3, 3)
    assert out[1, 1] == pytest.approx(laws.supervised.predict(N[1], 20 * N[1]))
    students = laws.distillation.predict(N, 20 * N, 2.0)
    assert students.shape == (3,)


def test_distillation_limits():
    d = load_laws("busbridge2025").distillation
    # A very weak teacher: the student converges to the teacher's loss.
    assert d.predict(546 * M, 1e13, 6.0) == pytest.approx(6.0, rel=1e-3)
    # Infinite student capacity and data: the student reaches the teacher.
    assert d.predict(1e16, 1e17, 2.1) == pytest.approx(2.1, abs=1e-3)


def test_capacity_gap_makes_student_loss_u_shaped_in_teacher_loss():
    d = load_laws("busbridge2025").distillation
    teacher_losses = np.linspace(1.3, 4.0, 400)
    student = d.predict(546 * M, 20 * 546 * M, teacher_losses)
    best = int(np.argmin(student))
    assert 0 < best < len(teacher_losses) - 1
    assert student[0] > student[best] and student[-1] > student[best]


def test_chinchilla_form_is_gamma_one():
    for name in ("chinchilla2022", "epoch2024"):
        law = load_laws(name).supervised
        assert law.gamma == 1.0 and law.form == "chinchilla"
    assert load_laws("busbridge2025").supervised.form == "busbridge"


def test_save_load_roundtrip_keeps_fit_metadata(tmp_path):
    laws = load_laws("busbridge2025")
    laws.supervised.fit = FitRecord(data_hash="abc", objective="huber", huber_delta=1e-3, level=0.9,
                                    intervals={"E": (1.1, 1.3)})
    path = tmp_path / "law.json"
    laws.save(path)
    again = load_laws(str(path))
    assert again.supervised == laws.supervised
    assert again.supervised.fit == laws.supervised.fit
    assert again.distillation.coefficients() == laws.distillation.coefficients()
    assert again.distillation.student_law is again.supervised
    assert again.compute == laws.compute


def test_presets_listed():
    assert set(PRESETS) == {"busbridge2025", "chinchilla2022", "epoch2024"}
    assert all(isinstance(PRESETS[name](), LawSet) for name in PRESETS)


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is not valid JSON"),
    (json.dumps({"format": "other"}), "is not a distillscale law file"),
    (json.dumps({"format": "distillscale.laws/1", "supervised": {"coefficients": {"E": 1}}}),
     "supervised.coefficients.A is missing"),
])
def test_bad_law_files_are_user_errors(tmp_path, content, fragment):
    path = tmp_path / "law.json"
    path.write_text(content)
    with pytest.raises(UserError, match=fragment):
        load_laws(str(path))


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown law 'nope'"):
        load_laws("nope")


def test_saved_law_file_has_default_permissions(tmp_path):
    import os
    import stat

    path = tmp_path / "law.json"
    load_laws("epoch2024").save(path)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
