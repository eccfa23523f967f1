"""Scoring runs, apart from training them: a run's downstream scores with lm-eval-harness
(`lm_eval_run`: the exported model scored, the runs a downstream law is fitted on; `scores`: its
eval.json and what each task was scored with; `fingerprint`: a task's config and local files as one
hash) and the `eval` and `fit downstream RUNS_DIR` commands (`commands`).
The validation loss a run measures while it trains stays in `training.evaluation`."""
