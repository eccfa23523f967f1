"""Data repetition counted: epochs in result.json, the one-line warning before a run (or a sweep)
repeats its data and its absence when it fits; the python-env built-in corpus, on a fake environment."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillscale.data import prepare_data
from distillscale.data.config import DataConfig
from distillscale.data.repetition import epoch_tokens, epochs, repetition_warning
from distillscale.data.sources import ReadStats, python_env_corpus, resolve_corpus
from distillscale.errors import UserError

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

TINY = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--vocab-size", "320",
        "--max-bytes", "100k", "--seq-len", "32", "--batch-size", "8", "--eval-tokens", "1k",
        "--device", "cpu")


def test_epochs_and_the_warning_line():
    assert epochs(300, 100) == 3.0
    assert repetition_warning(100, 100, "teacher", "corpus X") is None
    line = repetition_warning(3e6, 1e6, "teacher", "corpus X")
    assert "3 epochs of the teacher split's 1M unique tokens of corpus X" in line
    assert "builtin:python-env" in line and "\n" not in line


@pytest.mark.parametrize("tokens, repeats", [("4k", False), ("120k", True)])
def test_train_records_epochs_and_warns_only_when_it_repeats(cli, tmp_path, tokens, repeats):
    out = tmp_path / "run"
    code, _, err = cli("train", "--out", out, "--tokens", tokens, *TINY)
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    split_tokens = prepare_data(DataConfig(vocab_size=320, max_bytes=100_000), progress=False).manifest[
        "splits"]["teacher"]["tokens"]
    unique = epoch_tokens(split_tokens, 32)  # the tokens one epoch of windows (32 + 1 tokens) predicts
    assert result["unique_tokens"] == unique and split_tokens - 33 < unique < split_tokens
    assert result["epochs"] == pytest.approx(result["tokens"] / unique)
    assert (result["epochs"] > 1) is repeats
    warnings = [line for line in err.splitlines() if "repeated data" in line]
    assert len(warnings) == (1 if repeats else 0)
    if repeats:
        assert warnings[0].startswith("warning: the run will see") and f" {unique:,} unique" in warnings[0]


def test_an_old_result_without_epochs_still_loads(tmp_path):
    from distillscale.training.records import RunResult

    result = RunResult(status="completed", val_loss=3.0, steps=1, lr=0.01, schedule="cosine", tokens=10,
                       token_budget=10, non_embedding_params=1, total_params=2, forward_flops_per_token=1.0,
                       flops=1.0, flops_6nd=1.0, flops_method="", wall_seconds=1.0, train_seconds=1.0,
                       tokens_per_second=10.0, config_hash="x", world_size=1, device="cpu")
    result.save(tmp_path / "result.json")
    assert "epochs" not in json.loads((tmp_path / "result.json").read_text())
    assert RunResult.load(tmp_path / "result.json").epochs is None


SPEC = """
name = "repeats"
[data]
vocab_size = 320
max_bytes = "100k"
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = 8
device = "cpu"
[teachers]
n_layers = [1]
tokens_per_param = {m}
"""


@pytest.mark.parametrize("m, repeats", [("[0.1]", False), ("[0.1, 8]", True)])
def test_a_sweep_spec_is_checked_for_repetition_up_front(tmp_path, m, repeats):
    from distillscale.sweeps.runner import repetition_check
    from distillscale.sweeps.spec import load_sweep_spec

    (tmp_path / "spec.toml").write_text(SPEC.format(m=m))
    line = repetition_check(load_sweep_spec(tmp_path / "spec.toml"))
    assert (line is not None) is repeats
    if repeats:
        assert line.startswith("1 of 2 runs repeat their data; the longest will see 132,096 tokens")


def fake_environment(root):
    """A standard library and a site-packages holding a vendored copy of one of its modules."""
    (root / "lib" / "json").mkdir(parents=True)
    (root / "lib" / "json" / "__init__.py").write_text("import os\n" * 50)
    (root / "lib" / "abc.py").write_text("class ABC:\n    pass\n" * 50)
    (root / "lib" / "__pycache__").mkdir()
    (root / "lib" / "__pycache__" / "abc.cpython-311.py").write_text("compiled")
    (root / "lib" / "notes.txt").write_text("not python")
    site = root / "site-packages" / "pkg"
    (site / "_vendor").mkdir(parents=True)
    (site / "_vendor" / "json.py").write_text("import os\n" * 50)  # the same content as lib/json
    (site / "core.py").write_text("def f(x):\n    return x + 1\n" * 50)
    return [root / "lib", root / "site-packages", root / "lib"]  # a root listed twice counts once


def test_python_env_corpus_reads_every_distinct_python_file_once(tmp_path):
    corpus = python_env_corpus(fake_environment(tmp_path))
    assert [str(path.relative_to(tmp_path)) for path in corpus.files] == [
        "lib/abc.py", "lib/json/__init__.py", "site-packages/pkg/_vendor/json.py", "site-packages/pkg/core.py"]
    stats = ReadStats()
    documents = list(corpus.documents(None, stats))
    assert len(documents) == 3 and stats.duplicates == 1
    assert corpus.kind == "python-env" and "environment sources" in corpus.describe()


def test_python_env_is_selected_by_its_builtin_name(tmp_path, monkeypatch):
    from distillscale.data import sources

    roots = fake_environment(tmp_path)
    monkeypatch.setattr(sources, "python_env_roots", lambda: roots)
    assert resolve_corpus("builtin:python-env").files == python_env_corpus(roots).files
    assert resolve_corpus("builtin:stdlib").kind == "stdlib"
    with pytest.raises(UserError, match="unknown built-in corpus 'builtin:nope': use builtin:stdlib or "
                                        "builtin:python-env"):
        resolve_corpus("builtin:nope")


def test_preparing_python_env_reports_its_size_in_tokens(tmp_path, monkeypatch, capsys):
    from distillscale.data import sources

    roots = fake_environment(tmp_path)
    for index in range(6):  # enough documents for three splits
        (tmp_path / "site-packages" / "pkg" / f"m{index}.py").write_text(f"value_{index} = {index}\n" * 40)
    monkeypatch.setattr(sources, "python_env_roots", lambda: roots)
    prepared = prepare_data(DataConfig(path="builtin:python-env", vocab_size=300), progress=True)
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("prepared "))
    total = sum(split["tokens"] for split in prepared.manifest["splits"].values())
    assert "environment sources" in line and "(1 duplicates left out)" in line
    assert f"{total / 1e6:,.2f}M tokens" in line
    assert prepared.manifest["source"]["duplicates_skipped"] == 1


def test_the_report_lists_the_runs_that_repeated_their_data():
    from distillscale.report.runs import split_runs

    def run(run_id, epochs):
        return {"run_id": run_id, "kind": "teacher", "status": "completed", "val_loss": 3.0, "epochs": epochs}

    runs = split_runs([run("a", 0.5), run("b", 3.0), run("c", None), run("d", 1.5)], "sweep")
    assert runs.repeated_data() == [{"run_id": "b", "epochs": 3.0}, {"run_id": "d", "epochs": 1.5}]


def test_unique_tokens_trains_on_a_fixed_subset_and_records_its_epochs(cli, tmp_path):
    """--unique-tokens U: the run samples U + 1 tokens of its split (U to predict), as fixed chunks spread
    over it (not its first files), nested for smaller U; result.json records the U' <= U tokens its whole
    windows predict and tokens / U', and the warning names the subset."""
    from distillscale.data import TokenSampler
    from distillscale.data.repetition import SUBSET_CHUNK, unique_subset

    split = np.asarray(prepare_data(DataConfig(vocab_size=320, max_bytes=100_000), progress=False).split("teacher"))
    subset = unique_subset(split, 5000, "teacher")
    assert len(subset) == 5001 and (unique_subset(split, 5000, "teacher") == subset).all()
    assert (unique_subset(split, 2000, "teacher") == subset[:2001]).all()   # nested
    chunks = {tuple(split[start:start + SUBSET_CHUNK]): start for start in range(0, len(split), SUBSET_CHUNK)}
    starts = [chunks[tuple(subset[i:i + SUBSET_CHUNK])] for i in range(0, 4 * SUBSET_CHUNK, SUBSET_CHUNK)]
    assert starts != sorted(starts) and max(starts) > len(split) / 2   # spread over the split, not its head
    sampler = TokenSampler(unique_subset(split, 4992, "teacher"), seq_len=32, batch_size=8, seed=0)
    assert sampler.unique_tokens == 4992   # 156 whole windows
    assert max(sampler.window_starts(step).max() for step in range(50)) == 4992 - 32
    assert unique_subset(split, None, "teacher") is split
    assert len(unique_subset(split, len(split) - 1, "teacher")) == len(split)
    with pytest.raises(UserError, match=f"more than the teacher split's {len(split) - 1:,} tokens to predict"):
        unique_subset(split, len(split), "teacher")

    out = tmp_path / "run"
    code, _, err = cli("train", "--out", out, "--tokens", "8k", "--unique-tokens", "2k", *TINY)
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert result["unique_tokens"] == 1984   # 62 whole windows of 32 predicted tokens
    assert result["epochs"] == pytest.approx(result["tokens"] / 1984) and result["epochs"] > 4
    said = " ".join(err.split())
    assert "epochs of the fixed subset of 1,984 unique tokens of the teacher split (--unique-tokens 2,000, in whole " \
           "windows)" in said   # readable counts, never 0.00198M; the rounding said
    assert "--unique-tokens 2,000 trains on 1,984 unique tokens: whole windows of --seq-len 32" in said
    assert "use a larger corpus" not in err
    code, _, err = cli("train", "--out", tmp_path / "too-many", "--tokens", "8k", "--unique-tokens", "10M", *TINY)
    assert code == 2 and "--unique-tokens 10,000,000 is more than the teacher split's" in err


def test_unique_tokens_changes_the_run_hash_only_when_given():
    from distillscale.training.config import TrainConfig

    base = dict(n_layers=1, tokens=1000, out=".")
    assert TrainConfig(**base).hash() == "452e6cc94fe70a94"  # as before the setting existed
    assert TrainConfig(**base, unique_tokens=500).hash() != TrainConfig(**base).hash()


REPETITION_SPEC = """
name = "repeated"
[data]
vocab_size = 320
max_bytes = "100k"
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = 8
schedule = "wsd"
[teachers]
n_layers = [2]
tokens_per_param = [1]
[students]
n_layers = [1]
tokens_per_param = [1, 2, 4]
[distill]
teach_from = "longest"
[repetition]
epochs = [1, 2, 8]
"""


def test_a_repetition_spec_trains_each_size_on_nested_subsets(tmp_path):
    """[repetition]: the student ladder (forks included) reads the subset its longest run sees once;
    the longest budget is trained again on D / e tokens for each e > 1, baseline and student."""
    from distillscale.sweeps.spec import load_sweep_spec

    (tmp_path / "spec.toml").write_text(REPETITION_SPEC)
    spec = load_sweep_spec(tmp_path / "spec.toml")
    teacher = spec.runs[0]
    assert teacher.kind == "teacher" and "unique_tokens" not in teacher.settings
    ladder = [run for run in spec.runs if run.kind != "teacher" and run.epochs is None]
    longest = max(run.tokens for run in ladder)
    trained = -(-longest // 256) * 256  # whole steps of 8 x 32 tokens
    assert len(ladder) == 6 and {run.settings["unique_tokens"] for run in ladder} == {trained}
    repeated = [run for run in spec.runs if run.epochs is not None]
    assert sorted((run.kind, run.epochs) for run in repeated) == [
        ("baseline", 2.0), ("baseline", 8.0), ("student", 2.0), ("student", 8.0)]
    for run in repeated:
        assert run.tokens == longest and run.settings["unique_tokens"] == round(trained / run.epochs)
        assert run.parent_id is None and "fork_tokens" not in run.settings
        assert f"-E{run.epochs:g}" in run.run_id and run.to_config()["epochs"] == run.epochs
    assert all(run.teacher_id == teacher.run_id for run in repeated if run.kind == "student")
    assert spec.sections["repetition"] == {"epochs": [1.0, 2.0, 8.0]}
    (tmp_path / "bad.toml").write_text(REPETITION_SPEC.replace("[1, 2, 8]", "[0.5, 2]"))
    with pytest.raises(UserError, match="epochs must be at least 1"):
        load_sweep_spec(tmp_path / "bad.toml")


def test_students_seeds_train_each_repeated_run_and_its_one_epoch_reference_per_seed(tmp_path):
    """[students] seeds = k over every size: each seed has its own ladder (its longest run the 1-epoch
    reference) and its own repeated runs, so every (mode, epochs) cell holds k runs, seeds 0 .. k-1."""
    from distillscale.sweeps.spec import load_sweep_spec

    (tmp_path / "spec.toml").write_text(REPETITION_SPEC.replace("tokens_per_param = [1, 2, 4]",
                                                                "tokens_per_param = [1, 2, 4]\nseeds = 3"))
    spec = load_sweep_spec(tmp_path / "spec.toml")
    students = [run for run in spec.runs if run.kind != "teacher"]
    longest = max(run.tokens for run in students)
    for kind in ("baseline", "student"):
        for epoch_count in (None, 2.0, 8.0):
            cell = [run for run in students if run.kind == kind and run.epochs == epoch_count and run.tokens == longest]
            assert sorted(run.settings["seed"] for run in cell) == [0, 1, 2]
            assert len({run.run_id for run in cell}) == 3
    assert len([run for run in spec.runs if run.kind == "teacher"]) == 1   # the teacher keeps one seed
