"""The run store: concurrent writers never lose or duplicate a row nor start a run twice; the run life cycle."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

import pytest

from distillscale.errors import UserError
from distillscale.sweeps.store import RunStore

SHARED_RUNS = 40
OWN_RUNS = 15
WRITERS = 4


def rows(ids, kind="teacher", depends_on=()):
    return [(run_id, kind, {"n_layers": 1, "tag": run_id}, depends_on) for run_id in ids]


def writer(sweep_dir: str, name: str, start, claimed) -> None:
    """Add the shared runs and this writer's own, then try to claim every run, one transaction each."""
    start.wait()
    with RunStore(sweep_dir, create=True) as store:
        for i in range(0, SHARED_RUNS, 5):  # several small transactions, interleaved with the others
            store.add(rows(f"shared-{j}" for j in range(i, i + 5)))
        store.add(rows(f"{name}-{j}" for j in range(OWN_RUNS)))
        for record in store.records():
            if store.claim(record.id):
                claimed.put((name, record.id))
                store.finish(record.id, "completed", result={"by": name})


def test_concurrent_writers_never_lose_duplicate_or_double_start_a_run(tmp_path):
    context = multiprocessing.get_context("spawn")
    start, claimed = context.Event(), context.Queue()
    processes = [context.Process(target=writer, args=(str(tmp_path), f"w{i}", start, claimed))
                 for i in range(WRITERS)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    claims = [claimed.get(timeout=5) for _ in range(SHARED_RUNS + WRITERS * OWN_RUNS)]
    assert claimed.empty()

    with RunStore(tmp_path) as store:
        records = store.records()
    expected = {f"shared-{j}" for j in range(SHARED_RUNS)} | {
        f"w{i}-{j}" for i in range(WRITERS) for j in range(OWN_RUNS)}
    assert sorted(record.id for record in records) == sorted(expected)  # none lost, none duplicated
    assert sorted(run_id for _, run_id in claims) == sorted(expected)   # each started exactly once
    by_claimer = dict((run_id, name) for name, run_id in claims)
    for record in records:
        assert record.status == "completed" and record.attempts == 1
        assert record.result == {"by": by_claimer[record.id]}


def test_run_life_cycle(tmp_path):
    with RunStore(tmp_path, create=True) as store:
        assert store.add(rows(["t1", "t2"])) == 2
        assert store.add(rows(["t1", "s1"], kind="student", depends_on=("t1",))) == 1  # t1 kept as it was
        assert store.get("t1").kind == "teacher" and store.get("s1").depends_on == ("t1",)
        assert store.claim("t1") and not store.claim("t1")
        assert store.get("t1").status == "running" and store.get("t1").started_at is not None
        store.finish("t1", "failed", error="exit status 2: boom")
        store.block("s1", "teacher t1 failed")
        assert store.claim("t2")
        store.block("t2", "teacher t0 failed")  # only a pending run can be blocked
        assert store.counts() == {"pending": 0, "running": 1, "completed": 0, "diverged": 0, "failed": 1,
                                  "blocked": 1}
        # A new runner: interrupted, failed and blocked runs are tried again.
        assert store.reset_unfinished() == 3
        assert store.claim("t1") and store.get("t1").attempts == 2 and store.get("t1").error is None
        store.finish("t1", "completed", result={"val_loss": 3.2})
        store.set_meta("workers", 3)
        with pytest.raises(ValueError, match="finishes as one of"):
            store.finish("t2", "blocked")
    with RunStore(tmp_path) as reopened:
        assert reopened.get("t1").result == {"val_loss": 3.2} and reopened.meta("workers") == 3
        assert reopened.meta("absent", 7) == 7
        assert reopened.get("t1").finished_at >= reopened.get("t1").started_at
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_missing_or_damaged_stores_are_refused_untouched(tmp_path):
    with pytest.raises(UserError, match="holds no sweep"):
        RunStore(tmp_path)
    assert not (tmp_path / "runs.sqlite").exists()
    (tmp_path / "runs.sqlite").write_bytes(b"not a database, but someone's file" * 100)
    with pytest.raises(UserError, match="is not a usable run store"):
        RunStore(tmp_path)
    assert (tmp_path / "runs.sqlite").read_bytes() == b"not a database, but someone's file" * 100


def test_status_of_an_empty_store_is_an_error_and_writes_nothing(cli, tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"")
    for command in ("status", "export"):
        code, _, err = cli("sweep", command, tmp_path)
        assert code == 2 and "holds no runs" in err and len(err.strip().splitlines()) == 1
        assert [p.name for p in tmp_path.iterdir()] == ["runs.sqlite"]
        assert (tmp_path / "runs.sqlite").read_bytes() == b""


def test_runs_of_a_dead_runner_show_as_interrupted(cli, tmp_path):
    from filelock import FileLock

    from distillscale.sweeps.runner import SweepLayout

    with RunStore(tmp_path, create=True) as store:
        store.add([(run_id, "teacher", {"non_embedding_params": 1e6, "tokens": 2e7}, ()) for run_id in ("t1", "t2")])
        store.claim("t1")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, _ = cli("sweep", "status", tmp_path, "--json")  # no `sweep run` holds the lock
    status = json.loads(out)
    assert code == 0 and status["counts"]["interrupted"] == 1 and status["counts"]["running"] == 0
    assert [run["status"] for run in status["runs"]] == ["interrupted", "pending"]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # read-only
    code, out, _ = cli("sweep", "status", tmp_path)
    assert code == 0 and "1 interrupted" in out
    with FileLock(SweepLayout(tmp_path).lock_path):  # a live runner: the run is running
        status = json.loads(cli("sweep", "status", tmp_path, "--json")[1])
    assert status["counts"]["running"] == 1 and status["counts"]["interrupted"] == 0


KILLED_RUNNER = """
import os, signal, sys
from distillscale.sweeps.store import RunStore

store = RunStore(sys.argv[1], create=True)
config = {"non_embedding_params": 1e6, "tokens": 2e7, "n_layers": 1, "budget": None}
store.add([(f"t{i}", "teacher", config, ()) for i in range(6)])
for i in range(4):
    store.claim(f"t{i}")
    store.finish(f"t{i}", "completed", result={"val_loss": 3.0 + i})
store.claim("t4")
os.kill(os.getpid(), signal.SIGKILL)  # the last transactions are in runs.sqlite-wal alone
"""


def test_status_and_export_after_a_kill_9_read_what_the_runner_last_wrote(cli, tmp_path):
    import subprocess
    import sys

    from distillscale.sweeps.export import export_records

    subprocess.run([sys.executable, "-c", KILLED_RUNNER, str(tmp_path)], check=False)
    assert (tmp_path / "runs.sqlite-wal").stat().st_size > 0
    code, out, _ = cli("sweep", "status", tmp_path, "--json")
    status = json.loads(out)
    assert code == 0 and status["counts"]["completed"] == 4 and status["counts"]["interrupted"] == 1
    assert [record["val_loss"] for record in export_records(tmp_path)] == [3.0, 4.0, 5.0, 6.0]
