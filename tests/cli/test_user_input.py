"""Issue 23 (hardening, third round): user input that once broke a message, a fit or the planner
page, and messages that named the wrong thing. The fuzz tests (test_fuzz.py) cover the classes;
these pin the cases as reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import distillscale as ds
from distillscale.errors import ParameterError


# --- 5: user text is never a format template ------------------------------------------------------

@pytest.mark.parametrize("text", ["{a}", "{}", "{0}", "{", "}", "%s"])
def test_braces_in_a_flag_are_shown_as_typed(cli, text):
    for args in (["plan", "--compute", "1e21", "--scenario", text], ["plan", "--compute", "1e21", "--flops", text],
                 ["plan", "--compute", text]):
        code, _, err = cli(*args)
        assert code == 2 and err.startswith("distillscale: error: ") and repr(text) in err, (args, err)


def test_parameter_error_keeps_stray_braces_in_a_template_built_with_user_text():
    exc = ParameterError("scenario", "unknown scenario '{a}{}' for {}")  # a caller's f-string mistake
    assert "{a}" in str(exc) and "--scenario" in exc.for_cli() or "{}" in exc.for_cli()
    exc = ParameterError("scenario", "unknown {} {value!r}", value="{a}")
    assert str(exc) == "unknown scenario '{a}'" and exc.for_cli() == "unknown --scenario '{a}'"
    assert ParameterError.about("teacher_loss", f"{ParameterError.NAME} {{x}} is bad").for_cli() == \
        "--teacher-loss {x} is bad"


def test_rich_markup_and_control_characters_in_user_text_print_as_typed(cli, tmp_path):
    runs = tmp_path / "runs.csv"
    runs.write_text("params,tokens,loss\n" + "".join(
        f"{n:g},{n * r:g},{1.7 + 400 / n ** 0.34 + 410 / (n * r) ** 0.28:.4f}\n"
        for n in (1e7, 3e7, 1e8) for r in (10, 40)))
    fit = ("fit", "supervised", runs, "--bootstrap", "0", "--no-backtest", "--form", "chinchilla")
    code, out, err = cli(*fit, "--name", "[bold]x[/bold] [/y] red", "--out", tmp_path / "law.json")
    assert code == 0, err
    code, out, err = cli("predict", "supervised", "--law", tmp_path / "law.json", "--params", "1B", "--tokens", "1T")
    assert code == 0, err
    assert "(law: [bold]x[/bold] [/y] red)" in " ".join(out.split())
    # An escape sequence in a name is not written into a law file at all (laws/schema.py), and the
    # one-line error shows it escaped.
    code, out, err = cli(*fit, "--name", "\x1b[31mred", "--out", tmp_path / "escaped.json")
    assert code == 2 and "control characters" in err and "\\x1b[31mred" in err and "\x1b" not in out + err
    assert not (tmp_path / "escaped.json").exists()


# --- 7, 13: capacity gap --------------------------------------------------------------------------

@pytest.mark.parametrize("students", ["1,1,1", "546M,546M", "1B,2B,1B"])
def test_capacity_gap_refuses_repeated_student_sizes(cli, students):
    code, _, err = cli("capacity-gap", "--students", students)
    assert code == 2 and "--students lists a size more than once" in err and len(err.splitlines()) == 1


def test_capacity_gap_interval_is_not_identified_when_every_size_gives_the_same_ratio(cli, tmp_path):
    runs = tmp_path / "runs.csv"
    runs.write_text("student_params,teacher_params,student_loss\n"
                    "1e8,2e9,3.0\n1e8,4e9,3.1\n2e8,4e9,2.9\n2e8,8e9,3.0\n")
    code, out, err = cli("capacity-gap", "--runs", runs, "--law", "chinchilla2022")
    assert code == 0, err
    assert "k = 20 (90% interval not identified" in " ".join(out.split()) and "20 to 20" not in out
    code, out, err = cli("capacity-gap", "--runs", runs, "--law", "chinchilla2022", "--json")
    assert json.loads(out)["runs"]["ratio_interval"] is None
    fit = ds.load_laws  # the library: the same
    from distillscale.planning.teacher import LinearCapacityGap

    gap = LinearCapacityGap().fit([1e8, 2e8, 4e8], [2e9, 4e9, 8e9], [3.0, 2.9, 2.8])
    assert gap.ratio_interval_ is None and gap.exponent_stderr_ is None and gap.ratio_ == pytest.approx(20)
    gap = LinearCapacityGap().fit([1e8, 2e8, 4e8], [2e9, 5e9, 7e9], [3.0, 2.9, 2.8])
    low, high = gap.ratio_interval_
    assert low < gap.ratio_ < high and fit is not None


# --- 16: an enum-like flag names itself -----------------------------------------------------------

def test_fit_distillation_form_names_its_own_flag(cli, tmp_path):
    runs = tmp_path / "students.csv"
    runs.write_text("student_params,student_tokens,teacher_loss,loss\n1e8,2e9,,3.0\n1e8,2e9,2.5,2.9\n")
    code, _, err = cli("fit", "distillation", runs, "--form", "bogus")
    assert code == 2 and "unknown --form 'bogus'" in err and "--supervised-form" not in err
    code, _, err = cli("fit", "distillation", runs, "--supervised-form", "bogus")
    assert code == 2 and "unknown --supervised-form 'bogus'" in err
    with pytest.raises(ParameterError) as caught:
        ds.calibrate(params=[1e8, 1e8], tokens=[2e9, 2e9], loss=[3.0, 2.9], teacher_loss=[np.nan, 2.5],
                     distillation_form="bogus")
    assert caught.value.param == "distillation_form"


# --- 21: messages that said the wrong thing --------------------------------------------------------

def test_export_hf_of_a_file_says_it_is_not_a_run_directory(cli, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("a\n1\n")
    code, _, err = cli("export-hf", good, tmp_path / "out")
    assert code == 2 and "is a file, not a run directory" in err and "does not exist" not in err


def test_a_sweep_spec_without_name_says_a_key_is_missing(cli, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[data]\npath = "x"\n')
    code, _, err = cli("sweep", "run", spec, "--out", tmp_path / "sweep")
    assert code == 2 and "missing key 'name'" in err and "section 'name'" not in err
    spec.write_text('name = "a"\n[data]\npath = "x"\n')
    code, _, err = cli("sweep", "run", spec, "--out", tmp_path / "sweep")
    assert code == 2 and "missing section [teachers]" in err


def test_serve_on_a_host_that_does_not_resolve_says_so():
    from distillscale.errors import UserError
    from distillscale.serve.server import make_server

    class NoLaws:
        default = "busbridge2025"

    with pytest.raises(UserError) as caught:
        make_server(NoLaws(), host="notahost.invalid", port=0)
    assert "--host notahost.invalid" in str(caught.value) and "--port" not in str(caught.value)


def test_page_labels_read_as_english():
    from distillscale.serve.api import Planner, PlanQuery

    answer = Planner().update(PlanQuery(law="busbridge2025", compute="1e30", student="1M", scenario="best-case"))
    message = answer["errors"]["compute"]
    assert "lower the budget" in message and "a smaller the" not in message


# --- 19: the warnings are in the JSON too ---------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["plan", "--compute", "1e25", "--student-params", "200B"],   # the student and the teachers it trains, far out
    ["predict", "supervised", "--params", "1T", "--tokens", "20T"],
    ["predict", "distillation", "--student-params", "1T", "--student-tokens", "20T", "--teacher-loss", "2"],
    ["teacher", "--student-params", "100B", "--student-tokens", "20T"],
])
def test_json_output_carries_the_warnings_shown_on_stderr(cli, args):
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    shown = [line.removeprefix("warning: ") for line in err.splitlines() if line.startswith("warning: ")]
    record = json.loads(out)
    assert shown and [" ".join(m.split()) for m in record["warnings"]] == [" ".join(m.split()) for m in shown]


# --- 12: too few bootstrap resamples --------------------------------------------------------------

def _runs() -> dict:
    sizes = [1e7, 2e7, 4e7, 8e7]
    rows = [(n, n * r) for n in sizes for r in (10, 20, 40)]
    return {"params": [n for n, _ in rows], "tokens": [d for _, d in rows],
            "loss": [1.7 + 400 / n ** 0.34 + 410 / d ** 0.28 for n, d in rows]}


@pytest.mark.parametrize("bootstrap", [1, 2, 5, 19])
def test_too_few_bootstrap_resamples_are_refused(cli, tmp_path, bootstrap):
    runs = tmp_path / "runs.csv"
    data = _runs()
    runs.write_text("params,tokens,loss\n" + "".join(f"{n:g},{d:g},{loss}\n" for n, d, loss in zip(*data.values())))
    code, _, err = cli("fit", "supervised", runs, "--bootstrap", str(bootstrap))
    assert code == 2 and f"--bootstrap {bootstrap} is too few resamples for 90% intervals" in err
    with pytest.raises(ParameterError) as caught:
        ds.fit_supervised(data, bootstrap=bootstrap, backtest=False)
    assert caught.value.param == "bootstrap" and "at least 20" in str(caught.value)
    with pytest.raises(ParameterError, match="at least 200"):
        ds.fit_supervised(data, bootstrap=100, level=0.99, backtest=False)


def test_rough_bootstrap_intervals_carry_a_warning():
    fit = ds.fit_supervised(_runs(), form="chinchilla", bootstrap=20, backtest=False)
    assert any("only 20 bootstrap resamples" in message for message in fit.warnings)
    for name, (low, high) in fit.record.intervals.items():  # an interval shown contains its estimate,
        value = fit.law.coefficients()[name]                # or the fit says it is not meaningful
        assert low <= value <= high or any("does not contain the estimate" in m for m in fit.warnings)


# --- 11: the fit's choices apply, or are refused, the same with and without a backtest ------------

@pytest.mark.parametrize("choice, value, shown", [
    ("irreducible_loss", 1.6, "E = 1.6"), ("irreducible_loss_prior", (1.6, 0.1), "E ~ N(1.6, 0.1)"),
    ("min_tokens_per_param", 15, "D/N >= 15")])
@pytest.mark.slow
def test_fit_choices_apply_without_a_backtest(choice, value, shown):
    # The default candidates; one start per member form (what is tested is which candidate applies).
    one_start = {"log_E": (0.5,), "log_A": (5.0,), "log_B": (5.0,), "alpha": (0.5,), "beta": (0.5,), "gamma": (1.0,)}
    fit = ds.fit_supervised(_runs(), bootstrap=0, backtest=False, grid=one_start, **{choice: value})
    assert fit.chosen == f"median of tied, chinchilla, busbridge, {shown}"
    if choice == "irreducible_loss":
        assert fit.law.coefficients()["E"] == pytest.approx(1.6)
    if choice == "min_tokens_per_param":
        assert fit.record.n_runs == 8  # the runs at 10 tokens per parameter are left out


@pytest.mark.parametrize("backtest", [True, False])
@pytest.mark.parametrize("options", [dict(irreducible_loss=-1), dict(irreducible_loss=100),
                                     dict(irreducible_loss=100, form="chinchilla"),
                                     dict(irreducible_loss="1.7"), dict(irreducible_loss_prior=(100, 0.1)),
                                     dict(irreducible_loss_prior=(1.6, -1)), dict(min_tokens_per_param=-2)])
def test_bad_fit_choices_are_refused_with_and_without_a_backtest(options, backtest):
    with pytest.raises(ParameterError) as caught:
        ds.fit_supervised(_runs(), bootstrap=0, backtest=backtest, **options)
    assert caught.value.param in options and len(str(caught.value).splitlines()) == 1


def test_cli_irreducible_loss_above_every_loss_is_refused(cli, tmp_path):
    runs = tmp_path / "runs.csv"
    data = _runs()
    runs.write_text("params,tokens,loss\n" + "".join(f"{n:g},{d:g},{loss}\n" for n, d, loss in zip(*data.values())))
    for extra in ([], ["--no-backtest"], ["--form", "chinchilla"]):
        code, _, err = cli("fit", "supervised", runs, "--bootstrap", "0", "--irreducible-loss", "100", *extra)
        assert code == 2 and "--irreducible-loss 100 must be above 0 and below every run's loss" in err


# --- 18: progress when stderr is not a terminal ---------------------------------------------------

def test_plain_progress_lines_every_tenth_and_at_the_end():
    import io

    from distillscale.training.metrics import PlainProgress

    stream = io.StringIO()
    with PlainProgress("train", "step", stream=stream, every_seconds=1e9) as bar:
        task = bar.add_task("train", total=400, completed=0, loss="-", tokens_per_second="-")
        for step in range(1, 401):
            bar.update(task, completed=step, loss=f"{3 - step / 400:.3f}", tokens_per_second="12,345")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("train: step 40/400 (10%), loss 2.900 nats/token, "
                                                    "12,345 tokens/s, elapsed 0:00:00, ETA ")
    assert lines[-1].startswith("train: step 400/400 (100%)") and "ETA" not in lines[-1]
    stream = io.StringIO()
    bar = PlainProgress("cache-logits", "window", stream=stream, every_seconds=0)  # every update, by time
    task = bar.add_task("x", total=1000)
    bar.advance(task, 1)
    bar.advance(task, 1)
    assert stream.getvalue().splitlines()[-1].startswith("cache-logits: window 2/1,000 (0%)")


@pytest.mark.slow
@pytest.mark.usefixtures("cache_dir", "one_thread")
def test_training_prints_progress_lines_when_stderr_is_not_a_terminal(cli, tmp_path):
    code, _, err = cli("train", "--out", tmp_path / "run", "--tokens", "10k", "--n-layers", "1", "--aspect-ratio",
                       "64", "--head-dim", "32", "--vocab-size", "320", "--max-bytes", "300k", "--seq-len", "32",
                       "--batch-size", "8", "--eval-tokens", "4k", "--device", "cpu", "--log-every", "1")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("train: step ")]
    assert len(lines) >= 5 and lines[-1].startswith("train: step 40/40 (100%)"), err
    assert "\x1b" not in err  # plain text, no bar redrawn


# --- 10: the Python API names the parameter of a wrong type --------------------------------------

@pytest.mark.parametrize("call, param", [
    (lambda: ds.fit_supervised(_runs(), bootstrap=2.5), "bootstrap"),
    (lambda: ds.fit_supervised(_runs(), bootstrap="many"), "bootstrap"),
    (lambda: ds.fit_supervised(_runs(), level="0.9", bootstrap=0), "level"),
    (lambda: ds.fit_supervised(_runs(), form=5), "form"),
    (lambda: ds.plan("busbridge2025", compute=None), "compute"),
    (lambda: ds.plan("busbridge2025", compute=1e21, vocab_size="abc"), "vocab_size"),
    (lambda: ds.plan("busbridge2025", compute=1e21, student_params=546e6, teacher="7B"), "teacher"),
    (lambda: ds.plan("busbridge2025", compute=1e21, student_params=546e6, teacher={"size": 7e9}), "teacher.size"),
    (lambda: ds.train("config.toml"), "config"),
    (lambda: ds.train({"n_layers": 2, "tokens": "1M", "lr": -1}), "config.lr"),
    (lambda: ds.TrainConfig(n_layers=2, tokens="1M", lr="abc"), "lr"),
    (lambda: ds.DistillConfig(n_layers=2, tokens="1M", teacher=5), "teacher"),
    (lambda: ds.CacheConfig(teacher="t", out="o", top_k="x"), "top_k"),
    (lambda: ds.load_laws(5), "spec"),
    (lambda: ds.export_records(5), "sweep_dir"),
])
def test_python_api_wrong_types_are_one_line_parameter_errors(call, param):
    with pytest.raises(ParameterError) as caught:
        call()
    assert caught.value.param == param and "\n" not in str(caught.value), str(caught.value)


def test_python_api_takes_a_record_as_a_dict_of_its_fields():
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="teacher-inference",
                   teacher={"params": 7e9, "tokens": 2e12})
    assert plan.settings.teacher.params == 7e9 and plan.settings.teacher.tokens == 2e12


def test_every_public_function_is_checked():
    import inspect

    functions = [name for name in dir(ds) if inspect.isfunction(getattr(ds, name))]
    assert {"fit_supervised", "plan", "train", "load_laws"} <= set(functions)
    assert all(hasattr(getattr(ds, name), "__wrapped_unchecked__") for name in functions)


# --- 20: readable at 80 columns -------------------------------------------------------------------

def _commands():
    import typer

    from distillscale.cli import app

    found = []

    def walk(command, path):
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_every_help_is_readable_at_80_columns(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    for path, command in _commands():
        code, out, _ = cli(*path, "--help")
        assert code == 0 and "…" not in out, (path, [line for line in out.splitlines() if "…" in line])
        assert max(map(len, out.splitlines())) <= 80, path
        for param in command.params:
            for flag in [*param.opts, *getattr(param, "secondary_opts", [])]:
                assert flag.startswith("-") is False or flag in out, (path, flag)


@pytest.mark.parametrize("args", [
    ["plan", "--compute", "1e21"], ["plan", "--compute", "1e21", "--student-params", "546M"],
    ["predict", "distillation", "--student-params", "1B", "--student-tokens", "20B", "--teacher-loss", "2.5"],
    ["teacher", "--student-params", "1B", "--student-tokens", "20B"], ["capacity-gap"],
])
def test_tables_are_not_cut_at_80_columns(cli, args):
    code, out, err = cli(*args)  # not a terminal: rich lays out for 80 columns
    assert code == 0, err
    assert "…" not in out and max(map(len, out.splitlines())) <= 80, out


def test_sweep_status_table_reads_whole_at_80_columns(capsys):
    from distillscale.sweeps.commands import _print_status

    runs = [{"run_id": f"t-L{i}-tpp{20 * i}-wsd-fork{i}", "kind": "teacher", "status": status,
             "non_embedding_params": 1.2e6 * i, "tokens": 2.4e7 * i, "val_loss": 3.1234, "attempts": 1,
             "wall_seconds": 74.0, "error": "exit status 1: RuntimeError: out of memory" if status == "failed" else None}
            for i, status in enumerate(["completed", "failed", "interrupted"], 1)]
    _print_status({"total": 3, "counts": {"completed": 1, "running": 0, "interrupted": 1, "failed": 1,
                                          "diverged": 0, "blocked": 0, "pending": 0},
                   "eta_seconds": None, "workers": 2, "runs": runs, "compute": {"forks": 0, "flops_spent": 1e15}},
                  Path("sweeps/micro"))
    out = capsys.readouterr().out
    assert "…" not in out and all(run["run_id"] in out for run in runs)
    assert "completed" in out and "interrupted" in out and "failed t-L2-tpp40-wsd-fork2: exit status 1" in out
    assert max(map(len, out.splitlines())) <= 80


def test_public_class_constructors_are_checked_too():
    with pytest.raises(ParameterError) as caught:
        ds.Sweep.open("spec.toml", workers="x")
    assert caught.value.param == "workers"
