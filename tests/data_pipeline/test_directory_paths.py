"""Directories given by the user or the environment that are files (issue 63): the data cache
(`--cache-dir FILE`, `DISTILLSCALE_CACHE=FILE`, a path below a file) and every output directory the
output rule checks (`check_output_dir`: a run, a sweep, a pruned model, an export) are refused in
one line with exit 2, before any work, never with a traceback."""

from __future__ import annotations

import pytest

from distillscale.errors import UserError
from distillscale.io import check_output_dir

PREPARE = ("data", "prepare", "--max-bytes", "20k", "--vocab-size", "300")


def _refused(cli, *args):
    code, _, err = cli(*args)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("below", [False, True])
def test_a_cache_dir_that_is_a_file_is_one_line(cli, tmp_path, monkeypatch, below):
    monkeypatch.delenv("DISTILLSCALE_CACHE", raising=False)
    blocker = tmp_path / "afile"
    blocker.write_text("mine\n")
    given = blocker / "cache" if below else blocker
    err = _refused(cli, *PREPARE, "--cache-dir", given)
    assert f"--cache-dir {given}" in err and "not a directory" in err
    assert blocker.read_text() == "mine\n"


def test_a_cache_variable_that_names_a_file_is_one_line(cli, tmp_path, monkeypatch):
    blocker = tmp_path / "afile"
    blocker.write_text("mine\n")
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(blocker))
    err = _refused(cli, *PREPARE)
    assert f"$DISTILLSCALE_CACHE={blocker} is a file, not a directory" in err
    assert blocker.read_text() == "mine\n"


def test_an_output_directory_below_a_file_is_refused_before_any_work(cli, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("mine\n")
    with pytest.raises(UserError, match="afile is a file, not a directory"):
        check_output_dir(blocker / "run", is_ours=lambda path: False)
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "x"\n[teachers]\nn_layers = [1]\ntokens_per_param = [1]\n')
    assert "afile is a file, not a directory" in _refused(cli, "sweep", "run", spec, "--out", blocker / "sweep")
    # export-hf and prune made the directory's parents first (FileExistsError, a traceback)
    for args in (("export-hf", tmp_path, blocker / "hf"), ("prune", tmp_path, "--out", blocker / "p", "--n-layers", "1")):
        code, _, err = cli(*args)
        assert code == 2 and "Traceback" not in err, err
    assert blocker.read_text() == "mine\n"
