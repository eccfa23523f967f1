"""The run store: one SQLite database per sweep (`DIR/runs.sqlite`), one row per run.

Every write is a short `BEGIN IMMEDIATE` transaction, so several processes may write at once
(WAL mode lets readers, e.g. `sweep status`, go on meanwhile; `busy_timeout` makes writers queue
instead of failing). Rows are inserted with `INSERT OR IGNORE` on the run id, so a run is never
duplicated, and a run is claimed (pending -> running) by one conditional UPDATE, so it is never
started twice.

Statuses: pending -> running -> completed | diverged | failed; a student whose teacher did not
complete is `blocked`. `reset_unfinished` puts running, failed and blocked runs back to pending when a
runner starts again.

Besides the runs, `meta` holds key -> JSON value pairs: the runner's `workers` and `gpus`, each run's
`device/<run_id>`, a cluster run's `job/<run_id>`, and `scoring/<run_id>` while an [eval] job scores it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from distillscale.errors import UserError
from distillscale.jsontext import json_text

STORE_NAME = "runs.sqlite"
STATUSES = ("pending", "running", "completed", "diverged", "failed", "blocked")
FINISHED = ("completed", "diverged", "failed")
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    config      TEXT NOT NULL,            -- JSON: the resolved run config
    depends_on  TEXT NOT NULL,            -- JSON list of run ids
    status      TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'diverged',
                                                'failed', 'blocked')),
    created_at  REAL NOT NULL,            -- Unix seconds
    started_at  REAL,
    finished_at REAL,
    error       TEXT,
    result      TEXT,                     -- JSON: the run's result.json
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class StoredRun:
    """One row of the store."""

    id: str
    kind: str
    config: dict[str, Any]
    depends_on: tuple[str, ...]
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    result: dict[str, Any] | None
    attempts: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "StoredRun":
        return cls(id=row["id"], kind=row["kind"], config=json.loads(row["config"]),
                   depends_on=tuple(json.loads(row["depends_on"])), status=row["status"],
                   created_at=row["created_at"], started_at=row["started_at"],
                   finished_at=row["finished_at"], error=row["error"],
                   result=None if row["result"] is None else json.loads(row["result"]),
                   attempts=row["attempts"])


def is_sweep_dir(path: Path) -> bool:
    """Whether `path` is a directory that `sweep run` made: it holds the run store, or the runner's
    lock file, which `sweep run` creates first (a user's own spec.toml there does not count)."""
    return (path / STORE_NAME).is_file() or (path / "runner.lock").is_file()


class RunStore:
    """`RunStore(sweep_dir)` opens (or, with `create=True`, creates) `sweep_dir/runs.sqlite`.

    `read_only=True` (for `sweep status` and `export`) never writes a row. It reads what the write-ahead
    file holds too: a runner killed with -9 leaves its last transactions there, not in runs.sqlite. Only
    with `runner_alive=False` (no `sweep run` holds the sweep) and no write-ahead file left does it
    open the database as immutable, touching no other file.
    One connection per process; use it as a context manager or call `close()`.
    """

    def __init__(self, sweep_dir: str | Path, create: bool = False, read_only: bool = False,
                 runner_alive: bool = True):
        self.path = Path(sweep_dir) / STORE_NAME
        if not create and not self.path.is_file():
            raise UserError(f"{sweep_dir} holds no sweep ({STORE_NAME} not found): give the --out "
                            f"directory of a `distillscale sweep run`")
        if read_only:
            self._open_read_only(runner_alive)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; every write below opens its own.
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode, much faster
            with self._transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise UserError(f"{self.path} is not a usable run store ({exc}): move it away, or choose "
                            f"another sweep directory") from None

    def _open_read_only(self, runner_alive: bool) -> None:
        # immutable: nobody writes and everything is in the main file, so SQLite need not create -wal/-shm
        # files to read safely. An immutable reader ignores the -wal file: with one left, read through it.
        wal = self.path.with_name(self.path.name + "-wal")
        flag = "mode=ro" if runner_alive or (wal.is_file() and wal.stat().st_size > 0) else "immutable=1"
        self._db = sqlite3.connect(f"{self.path.absolute().as_uri()}?{flag}", uri=True,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
        self._db.row_factory = sqlite3.Row
        try:
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise UserError(f"{self.path} is not a usable run store ({exc}): move it away, or choose "
                            f"another sweep directory") from None
        if not {"runs", "meta"} <= tables:
            self._db.close()
            raise UserError(f"{self.path} holds no runs (an empty or foreign database): run `distillscale "
                            f"sweep run` into this directory first, or give another sweep directory")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """`BEGIN IMMEDIATE ... COMMIT` (ROLLBACK on error): the write lock is taken at the start, so
        two writers never both read, then write, and one of them fail midway."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------------

    def add(self, runs: Iterable[tuple[str, str, dict[str, Any], Iterable[str]]]) -> int:
        """Insert (id, kind, config, depends_on) rows that are not there yet; returns how many were new."""
        now = time.time()
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO runs (id, kind, config, depends_on, status, created_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?)",
                [(run_id, kind, json.dumps(config, sort_keys=True), json.dumps(list(depends_on)), now)
                 for run_id, kind, config, depends_on in runs])
            return self._db.total_changes - before

    def claim(self, run_id: str) -> bool:
        """Mark a pending run as running (one more attempt); False when it was not pending."""
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE runs SET status = 'running', started_at = ?, finished_at = NULL, error = NULL, "
                "attempts = attempts + 1 WHERE id = ? AND status = 'pending'", (time.time(), run_id))
            return cursor.rowcount == 1

    def finish(self, run_id: str, status: str, result: dict[str, Any] | None = None,
               error: str | None = None) -> None:
        """Record how a run ended: completed, diverged or failed."""
        if status not in FINISHED:
            raise ValueError(f"a run finishes as one of {FINISHED}, not {status!r}")
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, result = ?, error = ? WHERE id = ?",
                (status, time.time(), None if result is None else json_text(result), error, run_id))

    def block(self, run_id: str, reason: str) -> None:
        """A pending run that cannot start because a run it needs did not complete."""
        with self._transaction():
            self._db.execute("UPDATE runs SET status = 'blocked', error = ? WHERE id = ? AND status = 'pending'",
                             (reason, run_id))

    def reset_unfinished(self, keep: Iterable[str] = ()) -> int:
        """Put running (interrupted), failed and blocked runs back to pending, but the running runs in
        `keep` (still running elsewhere: a cluster job the new runner adopts); returns how many. No run
        is being scored any more (`scoring`): the new runner scores what needs it again."""
        kept = sorted(keep)
        with self._transaction():
            self._db.execute("DELETE FROM meta WHERE key LIKE 'scoring/%'")
            cursor = self._db.execute("UPDATE runs SET status = 'pending' "
                                      "WHERE status IN ('running', 'failed', 'blocked') "
                                      f"AND id NOT IN ({', '.join('?' * len(kept))})", kept)
            return cursor.rowcount

    def set_device(self, run_id: str, device: str) -> None:
        """Where the run's latest attempt runs: a GPU id as CUDA_VISIBLE_DEVICES names it, or "cpu"."""
        self.set_meta(f"device/{run_id}", device)

    def devices(self) -> dict[str, str]:
        """The device of each run that was started (run id -> device)."""
        return self._meta_of_runs("device/")

    def set_scoring(self, run_id: str, scoring: bool) -> None:
        """Whether an [eval] job scores the run now (set by the runner as it starts and ends the job)."""
        self.set_meta(f"scoring/{run_id}", scoring)

    def scoring(self) -> set[str]:
        """The runs an [eval] job scores now, as the runner last recorded them (stale once it died:
        `sweep status` trusts them while a runner is alive)."""
        return {run_id for run_id, scoring in self._meta_of_runs("scoring/").items() if scoring}

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # -- reading ---------------------------------------------------------------------------------

    def get(self, run_id: str) -> StoredRun:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        return StoredRun.from_row(row)

    def records(self) -> list[StoredRun]:
        """Every run, in the order they were added."""
        return [StoredRun.from_row(row)
                for row in self._db.execute("SELECT * FROM runs ORDER BY created_at, rowid")]

    def counts(self) -> dict[str, int]:
        """Runs per status (every status present, zero when none)."""
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(self._db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
        return counts

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def _meta_of_runs(self, prefix: str) -> dict[str, Any]:
        """The meta values kept per run under `prefix` (`device/`, `scoring/`): run id -> value."""
        rows = self._db.execute("SELECT key, value FROM meta WHERE key LIKE ?", (prefix + "%",)).fetchall()
        return {key.removeprefix(prefix): json.loads(value) for key, value in rows}

