"""A local lm-eval task whose doc_to_target (doc_to_text, doc_to_choice) names a field its documents do
not have (issue 63): lm-eval renders the name itself as every target, and `distillscale eval` wrote
0.0000 +- 0.0000 and exited 0. Refused in one line, before any model is loaded or run trained (a
sweep's [eval] too)."""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")

from tests.conftest import REPO_ROOT  # noqa: E402

TASK = "distillscale_tiny_mc"
DATA = REPO_ROOT / "tests" / "data" / "lm_eval_tiny"

pytestmark = pytest.mark.usefixtures("offline_datasets")


def _tasks(directory, **fields):
    """The shipped tiny task, its data by absolute path, with `fields` (e.g. doc_to_target="answr")."""
    directory.mkdir()
    text = (DATA / "tiny_mc.yaml").read_text().replace("questions.jsonl", str(DATA / "questions.jsonl"))
    for key, value in fields.items():
        text = "\n".join(f"{key}: {value}" if line.startswith(f"{key}:") else line for line in text.splitlines())
    (directory / "tiny_mc.yaml").write_text(text + "\n")
    return directory


@pytest.mark.parametrize("key, value", [("doc_to_target", "answr"), ("doc_to_choice", "options")])
def test_a_field_the_documents_lack_is_refused_before_scoring(cli, tmp_path, key, value):
    model = tmp_path / "hf"  # a Hugging Face directory: nothing of it is loaded before the refusal
    model.mkdir()
    (model / "config.json").write_text("{}")
    tasks = _tasks(tmp_path / "tasks", **{key: value})
    code, _, err = cli("eval", model, "--tasks", TASK, "--include-path", tasks, "--out", tmp_path / "e.json")
    said = " ".join(err.split())
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"task {TASK}" in said and f"{key} names the field {value!r}, which its documents do not have" in said
    assert "(they have question, choices, answer)" in said
    assert not (tmp_path / "e.json").exists()


def test_a_sweep_refuses_it_before_any_run(cli, tmp_path):
    tasks = _tasks(tmp_path / "tasks", doc_to_target="answr")
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "bad-task"\n[data]\nvocab_size = 320\nmax_bytes = "20k"\nseq_len = 32\n'
                    f'[teachers]\nn_layers = [1]\ntokens_per_param = [1]\n[eval]\ntasks = ["{TASK}"]\n'
                    f'include_path = "{tasks}"\n')
    code, _, err = cli("sweep", "run", spec, "--out", tmp_path / "out", "--workers", "1")
    assert code == 2 and "doc_to_target names the field 'answr'" in " ".join(err.split()), err
    assert not (tmp_path / "out" / "runs").exists()
