"""A light core (issue 36, item 7): `pip install distillscale` plans and predicts without torch; each
extra adds a part, and a command that needs a missing one names it in one line (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from distillscale.cli import MODULE_EXTRAS

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
EXTRA_MODULES = ("torch", "pandas", "matplotlib", "transformers", "tokenizers", "safetensors", "datasets",
                 "filelock", "tomli_w")

# Runs `main(argv)` for each argv in a fresh interpreter where the modules in BLOCKED cannot be
# imported (as in a core install), and prints each exit status and the modules of extras it loaded.
RUNNER = """
import contextlib, io, json, sys
BLOCKED = set(sys.argv[1].split(","))
class Block:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block)
from distillscale.cli import main
for argv in json.loads(sys.argv[2]):
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    print(code, file=sys.stderr)
print(json.dumps(sorted(m for m in sys.argv[3].split(",") if m in sys.modules)))
"""


def _run(blocked, commands: list[list[str]]):
    import json

    out = subprocess.run([sys.executable, "-c", RUNNER, ",".join(blocked), json.dumps(commands),
                          ",".join(EXTRA_MODULES)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), [line for line in out.stderr.splitlines() if line]


def test_the_core_commands_load_no_module_of_an_extra(tmp_path):
    commands = [["plan", "--compute", "1e21", "--student-params", "546M", "--scenario", "best-case",
                 "--unique-tokens", "2B"], ["predict", "supervised", "--params", "1B", "--tokens", "20B"]]
    loaded, stderr = _run([], commands)  # nothing blocked: what they load when everything is there
    assert loaded == [] and [line for line in stderr if not line.startswith("warning")] == ["0"] * len(commands)
    assert not any(module in " ".join(PYPROJECT["dependencies"]) for module in ("torch", "pandas", "matplotlib"))


def test_a_command_of_a_missing_extra_names_it_in_one_line(tmp_path):
    _, stderr = _run(EXTRA_MODULES, [["train", "--out", str(tmp_path / "run"), "--n-layers", "1", "--tokens", "1K"],
                                     ["fit", "supervised", str(tmp_path / "runs.csv")],
                                     ["plan", "--compute", "1e21", "--student-params", "546M", "--scenario",
                                      "best-case", "--plot", str(tmp_path / "plan.png")]])
    assert stderr == [
        "distillscale: error: `distillscale train` needs torch, which is not installed: install the engine extra, "
        "pip install 'distillscale[engine]' (or 'distillscale[all]')", "2",
        "distillscale: error: `distillscale fit supervised` needs torch, which is not installed: install the fit "
        "extra, pip install 'distillscale[fit]' (or 'distillscale[all]')", "2",
        "distillscale: error: `distillscale plan` needs matplotlib, which is not installed: install the "
        "figures extra, pip install 'distillscale[figures]' (or 'distillscale[all]')", "2"]


def test_each_extra_named_installs_the_module_it_is_named_for():
    extras = PYPROJECT["optional-dependencies"]
    distribution = {"tomli_w": "tomli-w", "pyarrow": "datasets"}  # pyarrow comes with datasets
    for module, extra in [*MODULE_EXTRAS.items(), ("torch", "fit"), ("pandas", "fit")]:
        names = [requirement.split(">")[0].split("=")[0].split(";")[0].strip() for requirement in extras[extra]]
        assert distribution.get(module, module) in names, (module, extra)
    assert extras["all"] == ["distillscale[engine,hf-data,figures]"]
