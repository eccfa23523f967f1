"""The output rule: no command writes over an input, into a directory distillscale did not make, or
over an existing file without --overwrite; outputs are checked before any work, and the user's files
stay byte-identical when a command refuses."""

from __future__ import annotations

import json
import os

import pytest

from distillscale.io import atomic_write_text, check_output_dir, check_output_file
from distillscale.errors import UserError

RUNS = "params,tokens,loss\n" + "".join(f"{n},{d},{2 + 400 / n ** 0.34 + 400 / d ** 0.28}\n"
                                        for n in (1e7, 3e7, 1e8, 3e8) for d in (1e9, 3e9, 1e10))


def snapshot(root) -> dict:
    """Every file under `root` with its bytes (the directory's whole content)."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def runs_csv(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(RUNS)
    return path


def fit(cli, *args):  # one form, no backtest: these tests are about the files written, not the fit
    return cli("fit", "supervised", *args, "--form", "chinchilla", "--no-backtest", "--bootstrap", "0")


def test_fit_never_writes_over_its_input(cli, tmp_path, runs_csv):
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        code, _, err = fit(cli, runs_csv, "--out", runs_csv, *extra)
        one_line_error(code, err, "is also an input")
        assert snapshot(tmp_path) == before


def test_fit_replaces_an_existing_law_file_only_with_overwrite(cli, tmp_path, runs_csv):
    law = tmp_path / "law.json"
    code, _, err = fit(cli, runs_csv, "--out", law)
    assert code == 0, err
    earlier = law.read_bytes()
    code, _, err = fit(cli, runs_csv, "--out", law)
    one_line_error(code, err, "exists: pass --overwrite")
    assert law.read_bytes() == earlier
    code, out, err = fit(cli, runs_csv, "--out", law, "--overwrite", "--name", "again")
    assert code == 0, err
    assert json.loads(law.read_text())["name"] == "again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["law.json", "runs.csv"]  # no temporary files


def test_overwrite_never_replaces_a_file_distillscale_did_not_write(cli, tmp_path, runs_csv):
    law = tmp_path / "law.json"
    law.write_text("my notes")
    before = snapshot(tmp_path)
    code, _, err = fit(cli, runs_csv, "--out", law, "--overwrite")
    one_line_error(code, err, "is not a distillscale law file", "replaces only files distillscale wrote")
    assert snapshot(tmp_path) == before


def test_fit_checks_its_output_before_fitting(cli, tmp_path, runs_csv, monkeypatch):
    import distillscale.laws.fitting as fitting

    monkeypatch.setattr(fitting.SupervisedLawFitter, "fit", lambda *a, **k: pytest.fail("fitted"))
    code, _, err = fit(cli, runs_csv, "--out", tmp_path)
    one_line_error(code, err, "is a directory")
    code, _, err = fit(cli, runs_csv, "--out", tmp_path / ("x" * 300 + ".json"))
    one_line_error(code, err, "longer than 255 bytes")


def test_a_long_output_name_is_written(cli, tmp_path, runs_csv):
    """A name near the file system's limit works: the temporary file beside it has a short name."""
    law = tmp_path / ("law-" + "x" * 245 + ".json")
    code, _, err = fit(cli, runs_csv, "--out", law)
    assert code == 0, err
    assert law.is_file() and len(str(law)) > 300


def test_train_never_writes_into_a_foreign_directory(cli, tmp_path):
    model = tmp_path / "hf-model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "model.safetensors").write_bytes(b"\x00weights" * 1000)
    (model / "tokenizer.json").write_text('{"version": "1.0"}')
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        code, _, err = cli("train", "--out", model, "--n-layers", "1", "--tokens", "1k", *extra)
        one_line_error(code, err, "is not a distillscale run directory")
        assert "--overwrite" not in err  # that advice would have cost the user the model
        assert snapshot(tmp_path) == before


def test_sweep_export_replaces_a_file_only_with_overwrite(cli, tmp_path):
    target = tmp_path / "runs.csv"
    target.write_text("keep")
    code, _, err = cli("sweep", "export", tmp_path / "sweep", "--out", target)
    one_line_error(code, err, "exists: pass --overwrite")
    assert target.read_text() == "keep"


def test_report_replaces_a_report_only_with_overwrite(cli, tmp_path, runs_csv):
    (tmp_path / "report.html").write_text("an earlier report")
    code, _, err = cli("report", runs_csv)
    one_line_error(code, err, "report.html exists: pass --overwrite")
    assert (tmp_path / "report.html").read_text() == "an earlier report"


def test_sweep_run_never_writes_into_a_foreign_directory(cli, tmp_path):
    from distillscale.report.demo import builtin_spec

    spec = tmp_path / "spec.toml"
    spec.write_text(builtin_spec(quick=True).read_text())
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, _, err = cli("sweep", "run", spec, "--out", tmp_path)
    one_line_error(code, err, "is not a sweep directory")
    assert snapshot(tmp_path) == before
    code, _, err = cli("demo", "--quick", "--out", tmp_path)
    one_line_error(code, err, "is not a sweep directory")
    assert snapshot(tmp_path) == before


def test_output_rule_helpers(tmp_path):
    existing = tmp_path / "a.json"
    existing.write_text("{}")
    with pytest.raises(UserError, match="is also an input"):
        check_output_file(tmp_path / "." / "a.json", overwrite=True, is_ours=lambda p: True, inputs=[existing])
    assert check_output_file(existing, overwrite=True, is_ours=lambda p: True) == existing
    with pytest.raises(UserError, match="is not a distillscale output"):
        check_output_file(existing, overwrite=True, is_ours=lambda p: False)
    with pytest.raises(UserError, match="is a file, not a directory"):
        check_output_file(existing / "b.json", overwrite=False, is_ours=lambda p: True)
    with pytest.raises(UserError, match="is not empty and is not a run"):
        check_output_dir(tmp_path, is_ours=lambda p: False, what="run")
    assert check_output_dir(tmp_path / "new", is_ours=lambda p: False) == tmp_path / "new"
    assert check_output_dir(tmp_path, is_ours=lambda p: (p / "a.json").exists()) == tmp_path
    atomic_write_text(tmp_path / ("y" * 250), "fits")  # the temporary name must not exceed 255 bytes
    assert (tmp_path / ("y" * 250)).read_text() == "fits"


@pytest.mark.parametrize("args", [["distill-map", "--out"],
                                  ["teacher", "--student-params", "1B", "--student-tokens", "20B", "--plot"],
                                  ["plan", "--compute", "1e21", "--plot"]])
def test_figures_replace_a_file_only_with_overwrite(cli, tmp_path, args):
    figure = tmp_path / "figure.png"
    figure.write_bytes(b"my figure")
    code, _, err = cli(*args, figure)
    one_line_error(code, err, "figure.png exists: pass --overwrite")
    assert figure.read_bytes() == b"my figure"


def test_experiment_never_writes_into_a_foreign_directory(cli, tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    for extra in ([], ["--overwrite"]):
        code, _, err = cli("experiment", "large-batch", "--out", tmp_path, *extra)
        one_line_error(code, err, "is not a large-batch experiment directory")
        assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]


def _unwritable_outputs(tmp_path):
    yield "proc", "/proc/self/law.json", "cannot write in /proc/self"
    yield "missing parent", tmp_path / "missing" / "law.json", "does not exist"
    yield "a directory", tmp_path, "is a directory"
    yield "under a file", tmp_path / "runs.csv" / "law.json", "is a file, not a directory"
    if os.getuid() != 0:  # root writes into a read-only directory anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        yield "read-only", locked / "law.json", "cannot write in"


def test_an_unwritable_output_is_one_line_before_any_work(cli, tmp_path, runs_csv, monkeypatch):
    import distillscale.laws.fitting as fitting

    monkeypatch.setattr(fitting.SupervisedLawFitter, "fit", lambda *a, **k: pytest.fail("fitted"))
    for _, out, needle in _unwritable_outputs(tmp_path):
        for extra in ([], ["--overwrite"]):
            code, _, err = fit(cli, runs_csv, "--out", out, *extra)
            one_line_error(code, err, needle)


def test_law_save_follows_the_output_rule(tmp_path, runs_csv):
    """LawFit.save: never the input table (even with overwrite=True), never a file it did not write,
    an earlier law file only with overwrite=True, a directory or unwritable path in one line."""
    import pandas as pd

    import distillscale as ds

    table = runs_csv.read_bytes()
    fitted = ds.fit_supervised(pd.read_csv(runs_csv), form="chinchilla", bootstrap=0, backtest=False)
    for overwrite in (False, True):
        with pytest.raises(ds.UserError) as error:
            fitted.save(runs_csv, overwrite=overwrite)
        assert "\n" not in str(error.value)
        assert runs_csv.read_bytes() == table
    law = tmp_path / "law.json"
    fitted.save(law)
    with pytest.raises(ds.UserError, match="exists: pass overwrite=True"):
        fitted.save(law)
    fitted.save(law, name="again", overwrite=True)
    assert json.loads(law.read_text())["name"] == "again"
    for _, path, needle in _unwritable_outputs(tmp_path):
        with pytest.raises(ds.UserError, match=needle):
            fitted.save(path)


def test_sweep_export_never_replaces_a_file_of_the_sweep(cli, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "spec.toml").write_text('name = "s"\n')
    (sweep / "runs.sqlite").write_bytes(b"SQLite format 3\x00")
    before = snapshot(tmp_path)
    for name, needle in (("spec.toml", "not a sweep export"), ("runs.sqlite", "is also an input")):
        code, _, err = cli("sweep", "export", sweep, "--out", sweep / name, "--overwrite")
        one_line_error(code, err, needle)
        assert snapshot(tmp_path) == before


def test_overwrite_replaces_a_figure_only_if_distillscale_drew_it(cli, tmp_path):
    figure = tmp_path / "map.png"
    args = ("distill-map", "--resolution", "2", "--out", figure)
    assert cli(*args)[0] == 0
    assert cli(*args, "--overwrite")[0] == 0
    figure.write_bytes(b"\x89PNG my own figure")
    code, _, err = cli(*args, "--overwrite")
    one_line_error(code, err, "is not a figure distillscale drew")
    assert figure.read_bytes() == b"\x89PNG my own figure"


def test_report_out_writes_only_into_a_new_directory_or_its_own_earlier_report(cli, tmp_path, runs_csv):
    """`report --out DIR` into a user's folder or a run directory is refused before any work; the
    directory stays byte-identical (it used to receive report.html and report.json)."""
    folder = tmp_path / "my-folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {}, "config_hash": "0" * 16, "plan": {}}))
    for out in (folder, run):
        before = snapshot(tmp_path)
        for extra in ([], ["--overwrite"]):
            code, _, err = cli("report", runs_csv, "--out", out, "--bootstrap", "0", *extra)
            one_line_error(code, err, f"--out {out} is not empty and is not a sweep directory or earlier report")
            assert snapshot(tmp_path) == before


def test_a_run_directory_inside_its_corpus_is_refused(cli, tmp_path):
    """`train --data corp --out corp/run` would leave the run's files in the corpus that the next run
    reads; an output inside an input (or holding one) is refused, and nothing is made there."""
    corpus = tmp_path / "corp"
    corpus.mkdir()
    (corpus / "a.txt").write_text("some text to train on\n" * 50)
    before = snapshot(tmp_path)
    code, _, err = cli("train", "--data", corpus, "--out", corpus / "run", "--n-layers", "1", "--tokens", "1k")
    one_line_error(code, err, f"--out {corpus / 'run'} is inside {corpus}, an input of this command")
    assert snapshot(tmp_path) == before and sorted(p.name for p in corpus.iterdir()) == ["a.txt"]
    with pytest.raises(UserError, match="holds .*, an input of this command"):
        check_output_dir(tmp_path, is_ours=lambda path: True, inputs=[corpus])


def test_every_reader_of_a_runs_weights_refuses_a_run_that_did_not_finish(cli, tmp_path):
    """export-hf, distill --teacher and serve-teacher share one completeness check: a run killed before
    result.json (its weights those of some checkpoint) is refused by all three, in the same words."""
    import torch

    from distillscale.data.tokenizer import train_byte_level_bpe
    from distillscale.model import ModelConfig, Transformer, save_pretrained
    from distillscale.training.records import RunResult

    run = tmp_path / "killed"
    torch.manual_seed(0)
    save_pretrained(Transformer(ModelConfig(n_layers=1, aspect_ratio=32, head_dim=16, vocab_size=320,
                                            max_seq_len=32)), run)
    train_byte_level_bpe(["some text " * 50], vocab_size=300).save(str(run / "tokenizer.json"))
    (run / "config.json").write_text(json.dumps({"config": {}, "config_hash": "0" * 16, "plan": {}}))
    needle = f"{run} has not finished (no result.json): its weights are those of its last checkpoint"
    for args in (["export-hf", run, tmp_path / "hf"],
                 ["distill", "--teacher", run, "--out", tmp_path / "student", "--n-layers", "1", "--tokens", "1k"],
                 ["serve-teacher", run]):
        code, _, err = cli(*args)
        one_line_error(code, err, needle)
    assert not (tmp_path / "hf").exists()
    RunResult(status="diverged", val_loss=None, steps=3, lr=0.01, schedule="cosine", tokens=768,
              token_budget=1000, non_embedding_params=16512, total_params=37056, forward_flops_per_token=4.5e4,
              flops=1e8, flops_6nd=7.6e7, flops_method="-", wall_seconds=1, train_seconds=1,
              tokens_per_second=768, config_hash="0" * 16, world_size=1, device="cpu").save(run / "result.json")
    code, _, err = cli("export-hf", run, tmp_path / "hf")
    one_line_error(code, err, "did not complete (status 'diverged')")
