"""A light core (issue 36, item 7): `pip install distillscale` plans and predicts without torch; each
extra adds a part, and a command that needs a missing one names it in one line (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from distillscale.cli import MODULE_EXTRAS

from tests.conftest import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]

# Runs `main(argv)` for each argv in a fresh interpreter where no module of an extra can be imported
# (as in a core install), and prints each exit status after what the command printed on stderr.
RUNNER = """
import contextlib, io, json, sys
class Block:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in sys.argv[1].split(","):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block)
from distillscale.cli import main
for argv in json.loads(sys.argv[2]):
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    print(code, file=sys.stderr)
"""


def test_the_core_commands_run_without_the_extras_and_the_others_name_theirs(tmp_path):
    plan = ["plan", "--compute", "1e21", "--student-params", "546M", "--scenario", "best-case"]
    commands = [[*plan, "--unique-tokens", "2B"], ["predict", "supervised", "--params", "1B", "--tokens", "20B"],
                ["train", "--out", str(tmp_path / "run"), "--n-layers", "1", "--tokens", "1K"],
                ["fit", "supervised", str(tmp_path / "runs.csv")], [*plan, "--plot", str(tmp_path / "plan.png")]]
    out = subprocess.run([sys.executable, "-c", RUNNER, ",".join(MODULE_EXTRAS), json.dumps(commands)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [line for line in out.stderr.splitlines() if not line.startswith("warning: ")] == ["0", "0",
        "distillscale: error: `distillscale train` needs torch, which is not installed: install the engine extra, "
        "pip install 'distillscale[engine]' (or 'distillscale[all]')", "2",
        "distillscale: error: `distillscale fit supervised` needs torch, which is not installed: install the fit "
        "extra, pip install 'distillscale[fit]' (or 'distillscale[all]')", "2",
        "distillscale: error: `distillscale plan` needs matplotlib, which is not installed: install the "
        "figures extra, pip install 'distillscale[figures]' (or 'distillscale[all]')", "2"]
    assert not any(module in " ".join(PYPROJECT["dependencies"]) for module in ("torch", "pandas", "matplotlib"))


def test_each_extra_named_installs_the_module_it_is_named_for():
    extras = PYPROJECT["optional-dependencies"]
    # pyarrow comes with datasets; lm-eval with its hf extra (HFLM's accelerate)
    distribution = {"tomli_w": "tomli-w", "pyarrow": "datasets", "lm_eval": "lm-eval[hf]"}
    for module, extra in [*MODULE_EXTRAS.items(), ("torch", "fit"), ("pandas", "fit")]:
        names = [requirement.split(">")[0].split("=")[0].split(";")[0].strip() for requirement in extras[extra]]
        assert distribution.get(module, module) in names, (module, extra)
    assert extras["all"] == ["distillscale[engine,hf-data,figures,eval]"]
