"""Usage errors (misspelled flags, missing arguments, wrong-typed values) are one line on stderr and
exit status 2 for every subcommand; `distillscale` alone and `--version` are not errors."""

from __future__ import annotations

import pytest

from tests.cli.conftest import leaf_commands

COMMANDS = leaf_commands()
IDS = [" ".join(path) for path, _ in COMMANDS]


def _required_args(command) -> list[str]:
    """Placeholder values for the required parameters, so that the error under test is the only one."""
    args = []
    for param in command.params:
        if param.required:
            args += ["x"] if param.param_type_name == "argument" else [param.opts[0], "1"]
    return args


def _long_options(command, *, takes_value: bool | None = None):
    return [param for param in command.params if param.param_type_name == "option"
            and param.opts[0].startswith("--") and len(param.opts[0]) > 5
            and (takes_value is None or takes_value != param.is_flag)]


def assert_one_line_usage_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("distillscale: error: "), err
    for needle in needles:
        assert needle in err, err


def test_every_command_is_covered():
    assert len(COMMANDS) >= 19 and ["train"] in [path for path, _ in COMMANDS]


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_misspelled_flag_names_the_closest_flag(cli, path, command):
    option = _long_options(command)[0].opts[0]
    misspelled = option[:3] + option[4:]  # --params -> --arams
    code, _, err = cli(*path, *_required_args(command), misspelled)
    assert_one_line_usage_error(code, err, f"No such option: {misspelled}", f"did you mean {option}?",
                                f"{' '.join(path)} --help")


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_missing_argument(cli, path, command):
    if any(param.required for param in command.params):
        code, _, err = cli(*path)
        assert_one_line_usage_error(code, err, "Missing")
    for option in _long_options(command, takes_value=True)[:1]:
        code, _, err = cli(*path, *_required_args(command), option.opts[0])  # its value is missing
        assert_one_line_usage_error(code, err, f"Option '{option.opts[0]}' requires an argument")


def _is_numeric(param) -> bool:
    """An int or float option (click's ParamType name, or typer's type label for its own classes)."""
    click_type = getattr(param, "type", None)
    name = click_type.name if click_type is not None else param.bare_type()
    return name.split(" ")[0] in ("int", "integer", "float")


def _typed_option(command):
    return next((param for param in command.params if param.param_type_name == "option"
                 and not param.is_flag and _is_numeric(param)), None)


TYPED = [(path, command) for path, command in COMMANDS if _typed_option(command) is not None]


@pytest.mark.parametrize(("path", "command"), TYPED, ids=[" ".join(path) for path, _ in TYPED])
def test_wrong_typed_value(cli, path, command):
    option = _typed_option(command).opts[0]
    code, _, err = cli(*path, *_required_args(command), option, "abc")
    assert_one_line_usage_error(code, err, f"Invalid value for '{option}'")


@pytest.mark.parametrize("args", [["predict", "supervised", "--params", "abc", "--tokens", "1B"],
                                  ["teacher", "--student-params", "1B", "--student-tokens", "ten"]])
def test_wrong_typed_quantity(cli, args):
    code, _, err = cli(*args)
    assert_one_line_usage_error(code, err, "malformed", "'abc'" if "abc" in args else "'ten'")


def test_unknown_command_suggests_the_closest(cli):
    code, _, err = cli("prdict", "supervised")
    assert_one_line_usage_error(code, err, "No such command 'prdict'", "'predict'")
    code, _, err = cli("fit", "supervise", "runs.csv")
    assert_one_line_usage_error(code, err, "'supervised'", "distillscale fit --help")


@pytest.mark.parametrize("args", [[], ["fit"], ["sweep"]])
def test_a_command_alone_prints_help_and_exits_0(cli, args):
    code, out, err = cli(*args)
    assert code == 0 and "Usage" in out and err == ""


def test_version(cli):
    from importlib.metadata import version

    code, out, err = cli("--version")
    assert code == 0 and out.strip() == f"distillscale {version('distillscale')}" and err == ""


def test_ctrl_c_says_what_was_kept(cli, monkeypatch):
    """A command that keeps nothing as it goes (a prediction, a fit) says nothing was kept; one that
    resumes (a run, a sweep, a measurement) says running it again goes on from what it kept, if anything."""
    import distillscale.laws.commands as commands
    import distillscale.training.recipe as recipe

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "load_laws", interrupted)
    code, _, err = cli("predict", "supervised", "--params", "1B", "--tokens", "20B")
    assert code == 130 and "Traceback" not in err
    assert err.strip() == "distillscale: interrupted: nothing was kept"
    monkeypatch.setattr(recipe, "train", interrupted)
    code, _, err = cli("train", "--n-layers", "1", "--tokens", "1K", "--out", "x")
    assert code == 130 and "run the same command again to go on from what it kept" in err
    assert "if it got that far" in err


def test_sweep_run_help_keeps_its_section_names(cli):
    code, out, _ = cli("sweep", "run", "--help")
    assert code == 0
    for section in ("[data]", "[model]", "[teachers]", "[students]", "[distill]"):
        assert section in out


def test_help_paragraphs_wrap_at_the_terminal_not_where_the_docstring_broke_its_lines(cli, monkeypatch):
    # sweep run's docstring breaks "tokenizer,\n text_field" in the source; typer keeps a docstring's
    # line breaks, so at a wide terminal the help broke mid-list there (and mid-sentence at 80 columns).
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = cli("sweep", "run", "--help")
    assert code == 0
    assert "max_bytes, val_fraction, tokenizer, text_field, seq_len" in out
    code, out, _ = cli("distill", "--help")
    assert code == 0 and "its run teacher did not train on (--split teacher: the teacher's own half, for self-distillation" in out
