"""`sweep plan` holds a [tune] grid to the rule `fit hyperparameters` fits it by (issue 63): a grid
the fit would refuse (fewer than 3 rates per cell) is refused before it runs, with the fit's own
reason; a grid that cannot locate B* (2 batch sizes) is planned with a warning that says so."""

from __future__ import annotations

import json

import pytest

from distillscale.laws.hyperparameters.surface import grid_rule
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV

SPEC = """
name = "grid"
[data]
vocab_size = 320
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = 8
lr = 0.003
eval_tokens = "2k"
eval_every = 0
[teachers]
n_layers = [1, 2]
tokens_per_param = [4]
[tune]
{tune}
"""


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")


def plan(cli, tmp_path, tune: str, *flags: str):
    path = tmp_path / "grid.toml"
    path.write_text(SPEC.format(tune=tune), encoding="utf-8")
    return cli("sweep", "plan", path, "--gpus", "none", *flags)


@pytest.mark.parametrize("tune, rates", [("lr = [0.001, 0.01]", 2), ("batch_size = [4, 8, 16]", 1),
                                         ("lr = [0.003]\nbatch_size = [8]", 1)])
def test_a_grid_the_fit_would_refuse_is_refused_before_it_runs(cli, tmp_path, tune, rates):
    code, out, err = plan(cli, tmp_path, tune)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    reason = grid_rule([0.001 * (k + 1) for k in range(rates)], [8]).refusal   # the fit's own words
    assert reason in err and "[tune]" in err and "fit hyperparameters" in err


def test_a_grid_that_cannot_locate_b_star_is_planned_with_a_warning(cli, tmp_path):
    code, out, err = plan(cli, tmp_path, "lr = [0.001, 0.003, 0.01]\nbatch_size = [4, 8]")
    assert code == 0, err
    text = " ".join((out + err).split())
    assert grid_rule([1, 2, 3], [4, 8]).batch_note in text and "[tune]" in text
    code, out, err = plan(cli, tmp_path, "lr = [0.001, 0.003, 0.01]\nbatch_size = [4, 8, 16]")
    assert code == 0 and "cannot locate B*" not in " ".join((out + err).split()), err
    code, out, err = plan(cli, tmp_path, "lr = [0.001, 0.003, 0.01]")   # one batch: the rate's law, no B* asked
    assert code == 0 and "cannot locate B*" not in " ".join((out + err).split()), err
    code, out, err = plan(cli, tmp_path, "lr = [0.001, 0.003, 0.01]\nbatch_size = [4, 8]", "--json")
    assert code == 0 and any("cannot locate B*" in note for note in json.loads(out)["assumptions"]), err
