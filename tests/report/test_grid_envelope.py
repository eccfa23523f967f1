"""A report on an lr x batch grid ([tune]) fits its laws on each (size, tokens) cell's best grid point,
not on every rate (issue 53: a law fitted on rates off the optimum is biased); a sweep without a grid
(seeds at one rate, a rule's rate per size) keeps every run."""

from __future__ import annotations

from distillscale.report.runs import split_runs


def run(run_id, params, tokens, lr, loss, kind="teacher", batch=2048.0, **extra):
    return {"run_id": run_id, "kind": kind, "status": "completed", "non_embedding_params": params,
            "tokens": tokens, "val_loss": loss, "lr": lr, "batch_tokens": batch, **extra}


def test_a_grid_keeps_each_cells_best_point_with_all_its_seeds():
    records = [run("a1", 1e4, 1e5, 0.001, 3.2), run("a2", 1e4, 1e5, 0.003, 3.0), run("a3", 1e4, 1e5, 0.01, 3.1),
               run("a2s", 1e4, 1e5, 0.003, 3.02),            # a second seed at the best point: kept
               run("b1", 1e4, 4e5, 0.001, 2.7), run("b2", 1e4, 4e5, 0.003, 2.8),
               run("c1", 1e4, 1e5, 0.003, 3.05, batch=4096.0),  # another batch in cell a: worse, left out
               run("s1", 1e4, 1e5, 0.001, 3.3, kind="student", teacher_id="t", teacher_loss=2.5),
               run("s2", 1e4, 1e5, 0.003, 3.25, kind="student", teacher_id="t", teacher_loss=2.5)]
    runs = split_runs(records, "grid")
    assert sorted(r["run_id"] for r in runs.supervised) == ["a2", "a2s", "b1"]
    assert [r["run_id"] for r in runs.students] == ["s2"]
    assert sorted(r["run_id"] for r in runs.off_optimum) == ["a1", "a3", "b2", "c1", "s1"]


def test_without_a_grid_every_run_is_kept():
    records = [run("a", 1e4, 1e5, 0.003, 3.0), run("a-seed1", 1e4, 1e5, 0.003, 3.04),
               run("b", 4e4, 1e5, 0.002, 2.8), run("c", 4e4, 4e5, 0.002, 2.6),
               run("legacy", 1e5, 1e6, None, 2.4, batch=None)]      # an export from before the lr column
    runs = split_runs(records, "plain")
    assert len(runs.supervised) == 5 and runs.off_optimum == []
