"""Scoring runs, apart from training them: a run's downstream scores with lm-eval-harness
(`lm_eval_run`: the exported model, its eval.json and what it was scored with, the runs a
downstream law is fitted on) and the `eval` and `fit downstream RUNS_DIR` commands (`commands`).
The validation loss a run measures while it trains stays in `training.evaluation`."""
