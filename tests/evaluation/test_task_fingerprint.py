"""A task's fingerprint (issue 71): its config and the content of every local file it reads, as lm-eval's
own task index loads them. Editing a data file the YAML names (a file, a list or dict of them, a glob,
a data_dir, a local dataset_path) or a `!function`'s module changes it with the YAML unchanged; the
same task in another directory (another checkout, venv or machine) has the same one; a group is
fingerprinted with its members."""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")

from distillscale.evaluation.fingerprint import changed_files, task_fingerprints  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402

DATA = REPO_ROOT / "tests" / "data" / "lm_eval_tiny"
TASK = "distillscale_tiny_mc"
UTILS = "def process_docs(dataset):\n    return dataset\n"


def fingerprint(tasks_dir, task=TASK):
    from lm_eval.tasks import TaskManager

    return task_fingerprints(TaskManager(include_path=str(tasks_dir), include_defaults=False), [task])[task]


def task_dir(root, data_files: str, extra: str = ""):
    """tiny_mc.yaml under root/tasks reading `data_files` (a YAML value), its questions under root/data."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "questions.jsonl").write_text((DATA / "questions.jsonl").read_text())
    (root / "tasks").mkdir(exist_ok=True)
    yaml = (DATA / "tiny_mc.yaml").read_text().replace("    test: questions.jsonl", f"    test: {data_files}")
    (root / "tasks" / "tiny_mc.yaml").write_text(yaml + extra)
    return root / "tasks"


def edit(path):
    path.write_text(path.read_text().replace('"answer": 0}', '"answer": 1}', 1))


@pytest.mark.parametrize("data_files", ["{root}/data/questions.jsonl", "[{root}/data/questions.jsonl]",
                                        "{root}/data/*.jsonl", "data/questions.jsonl"])
def test_editing_a_data_file_changes_the_fingerprint(tmp_path, monkeypatch, data_files):
    monkeypatch.chdir(tmp_path)  # a relative path is read from the working directory, as datasets reads it
    tasks = task_dir(tmp_path, data_files.format(root=tmp_path))
    before = fingerprint(tasks)
    assert before.files and changed_files(before.files) is None
    assert fingerprint(tasks) == before  # the same files: the same fingerprint
    edit(tmp_path / "data" / "questions.jsonl")
    after = fingerprint(tasks)
    assert after.fingerprint != before.fingerprint
    assert "questions.jsonl changed since" in changed_files(before.files) or "data/*.jsonl changed since" in \
        changed_files(before.files)


def test_a_local_dataset_directory_and_data_dir_are_read_by_content(tmp_path):
    tasks = task_dir(tmp_path, f"{tmp_path}/data/questions.jsonl")
    yaml = tasks / "tiny_mc.yaml"
    yaml.write_text(yaml.read_text().replace("dataset_path: json", f"dataset_path: {tmp_path / 'data'}"))
    before = fingerprint(tasks)
    (tmp_path / "data" / "more.jsonl").write_text((DATA / "questions.jsonl").read_text())  # a new file in it
    assert fingerprint(tasks).fingerprint != before.fingerprint
    assert changed_files(before.files) == f"{tmp_path / 'data'} changed since"


def test_the_same_task_elsewhere_has_the_same_fingerprint(tmp_path):
    """Paths enter by content: another checkout, venv or machine rescores nothing."""
    one = task_dir(tmp_path / "one", f"{tmp_path}/one/data/questions.jsonl",
                   extra="process_docs: !function utils.process_docs\n")
    two = task_dir(tmp_path / "two", f"{tmp_path}/two/data/questions.jsonl",
                   extra="process_docs: !function utils.process_docs\n")
    for tasks in (one, two):
        (tasks / "utils.py").write_text(UTILS)
    assert fingerprint(one).fingerprint == fingerprint(two).fingerprint
    assert set(fingerprint(one).files) != set(fingerprint(two).files)
    (two / "utils.py").write_text(UTILS.replace("return dataset", "return dataset.select(range(4))"))
    assert fingerprint(one).fingerprint != fingerprint(two).fingerprint  # the function's module is read


def test_a_group_is_fingerprinted_with_its_members(tmp_path):
    tasks = task_dir(tmp_path, f"{tmp_path}/data/questions.jsonl")
    (tasks / "group.yaml").write_text(f"group: tiny_group\ntask:\n  - {TASK}\n")
    before = fingerprint(tasks, "tiny_group")
    edit(tmp_path / "data" / "questions.jsonl")
    assert fingerprint(tasks, "tiny_group").fingerprint != before.fingerprint


@pytest.mark.slow  # lm-eval indexes its few thousand task files (about 10 s)
def test_a_builtin_task_has_no_local_files():
    from lm_eval.tasks import TaskManager

    manager = TaskManager()
    [found] = task_fingerprints(manager, ["arc_easy"]).values()
    assert found.files == {} and len(found.fingerprint) == 64
