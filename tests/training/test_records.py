"""`RunResult` owns result.json: a schema version, old files still load, newer or malformed ones are
refused with one line."""

from __future__ import annotations

import json

import pytest

from distillscale.errors import UserError
from distillscale.training.config import TrainConfig
from distillscale.training.records import RESULT_SCHEMA_VERSION, RUN_SCHEMA_VERSION, RunRecord, RunResult

from tests.conftest import TEST_DATA

# A result.json as distillscale wrote it before the schema version (a distillation run from a cache).
OLD_RESULT = {
    "status": "completed", "val_loss": 4.25, "val_loss_unit": "nats/token", "steps": 65, "lr": 0.01,
    "schedule": "cosine", "tokens": 532480, "token_budget": 500000.0, "non_embedding_params": 16512,
    "total_params": 37056, "forward_flops_per_token": 45056.0, "flops": 7.2e10, "flops_6nd": 5.3e10,
    "flops_method": "3 x forward", "wall_seconds": 3.5, "train_seconds": 3.1, "tokens_per_second": 171767.7,
    "config_hash": "0123456789abcdef", "world_size": 1, "device": "cpu",
    "teacher": {"path": "runs/t", "kind": "run", "weights_sha256": "ab", "teacher_val_loss": 3.9,
                "non_embedding_params": 66048, "total_params": 107008, "forward_flops_per_token": 1e5,
                "flops_method": "run", "flops": 0, "cache": "caches/t"},
    "teacher_cache": {"path": "caches/t", "identity_hash": "sha256:0011", "targets": "top-k", "tokens": 40960,
                      "encoding": "top-k", "bytes_per_token": 19.5, "flops": 1.2e10, "flops_method": "exact",
                      "top_k": 16, "max_log_prob_error": 0.0123},
    "distillation": {"kd": "forward-kl", "temperature": 1.0, "kd_weight": 0.7, "z_loss_weight": 0.0001,
                     "top_k": 16, "jsd_beta": 0.5, "chunk_size": 1024},
}
OLD_FILES = TEST_DATA / "records"


def test_an_old_result_loads_as_version_one_and_round_trips(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(OLD_RESULT))
    result = RunResult.load(path)
    assert result.schema_version == 1 and result.completed
    assert result.teacher.teacher_val_loss == 3.9 and result.teacher.weights_sha256 == "ab"  # kept as given
    result.save(tmp_path / "again.json")
    assert RunResult.load(tmp_path / "again.json") == result
    assert json.loads((tmp_path / "again.json").read_text()) == OLD_RESULT | {"schema_version": 1}


@pytest.mark.parametrize("name", sorted(path.name for path in OLD_FILES.glob("result-*.json")))
def test_checked_in_old_results_load_into_typed_sections(tmp_path, name):
    """result.json files as earlier versions wrote them: each section loads as its record and is
    written back as it was (a cache record from before sampled caches gains its `targets`)."""
    old = json.loads((OLD_FILES / name).read_text())
    result = RunResult.load(OLD_FILES / name)
    if "fork" in old:
        assert result.fork.shared_flops == old["fork"]["shared_flops"] and result.fork.branch_step == 60
    if "teacher_cache" in old:
        assert result.teacher_cache.targets == old["teacher_cache"].get("targets", "top-k")
        assert result.teacher_cache.flops == old["teacher_cache"]["flops"]
    if "distillation" in old:
        assert result.distillation.kd_weight == 0.7
        assert result.distillation.mode == old["distillation"].get("mode")
    result.save(tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    expected = old | {"schema_version": 1}
    if "teacher_cache" in old:
        expected["teacher_cache"] = {"targets": "top-k"} | old["teacher_cache"]
    assert again == expected


@pytest.mark.parametrize("content, message", [
    (OLD_RESULT | {"schema_version": RESULT_SCHEMA_VERSION + 1},
     f"run result schema version {RESULT_SCHEMA_VERSION + 1}, newer than"),
    ({k: v for k, v in OLD_RESULT.items() if k != "flops"}, "not a valid run result: flops: Field required"),
    (OLD_RESULT | {"status": "done"}, "not a valid run result: status"),
    (OLD_RESULT | {"surprise": 1}, "not a valid run result: surprise"),
    ([1, 2], "not a run result"),
])
def test_newer_or_malformed_results_are_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UserError, match=message) as error:
        RunResult.load(path)
    assert "\n" not in str(error.value)


def test_an_unreadable_result_is_a_user_error(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="cannot read the run result"):
        RunResult.load(path)


# A config.json as a WSD fork wrote it before the schema version.
OLD_RUN = {
    "config": {"out": "runs/f", "n_layers": 1, "tokens": 112640.0}, "config_hash": "0123456789abcdef",
    "plan": {"total_steps": 55, "warmup_steps": 6, "cooldown_steps": 11, "lr": 0.003, "tokens_per_step": 2048,
             "world_size": 1, "device": "cpu", "bf16": False, "data_fingerprint": "12d3f16009fc5fa18988",
             "model": {"n_layers": 1, "aspect_ratio": 24, "head_dim": 24, "vocab_size": 512, "max_seq_len": 128},
             "fork": {"parent": "runs/p", "branch_step": 44}},
}


def test_an_old_run_config_loads_and_a_newer_one_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(OLD_RUN))
    record = RunRecord.load(path)
    assert record.schema_version == 1 and record.plan.fork.branch_step == 44
    assert record.plan.model.non_embedding_params > 0
    path.write_text(json.dumps(OLD_RUN | {"schema_version": RUN_SCHEMA_VERSION + 1}))
    with pytest.raises(UserError, match=f"run config schema version {RUN_SCHEMA_VERSION + 1}, newer than this "
                                        "distillscale reads"):
        RunRecord.load(path)
    path.write_text(json.dumps(OLD_RUN | {"plan": {"total_steps": 5}}))
    with pytest.raises(UserError, match="not a valid run config: plan.warmup_steps: Field required: check it"):
        RunRecord.load(path)


def test_files_written_by_the_landed_version_still_load(tmp_path):
    """law.json (a fitted law with its fit record, a preset's two laws), config.json and result.json as
    the version before the records were typed wrote them (tests/data/records)."""
    import distillscale as ds

    fitted = ds.load_laws(OLD_FILES / "law-fitted-2026-11-23.json").supervised
    prediction = fitted.prediction(1e9, 2e10)
    assert fitted.fit.form == "chinchilla"
    assert (prediction.value, prediction.low, prediction.high) == pytest.approx((2.47175, 2.42298, 2.51739), abs=1e-4)
    preset = ds.load_laws(OLD_FILES / "law-preset-2026-11-23.json")
    assert preset.supervised.predict(546e6, 20 * 546e6) == pytest.approx(2.515, abs=1e-3)
    assert preset.distillation is not None

    record = RunRecord.load(OLD_FILES / "config-2026-11-23.json")
    assert record.plan.token_budget is None and record.plan.total_steps == 150  # not kept before
    assert record.config.settings()["schedule"] == "wsd" and not record.config.distilled
    assert record.config.settings() == json.loads((OLD_FILES / "config-2026-11-23.json").read_text())["config"]
    TrainConfig.model_validate(record.config.settings())  # no teacher keys a train config refuses
    result = RunResult.load(OLD_FILES / "result-train-2026-11-23.json")
    assert result.completed and result.token_budget == 38400 and result.fork is None


# What each reader of a run directory's own files says when a file cannot be read. A read error may be
# passing (a disk, a mount): the message says what could not be read and how to check it, and never
# advises --overwrite, which deletes the run (issue 32, item 6).
def _unreadable_cases(tmp_path):
    from distillscale.training.config import TrainConfig
    from distillscale.training.run_dir import RunDirectory

    run = RunDirectory(tmp_path / "run")
    (run.path / "state").mkdir(parents=True)
    for path in (run.state_path, run.initial_weights_path, run.branch_path(5)):
        path.write_bytes(b"\x00 damaged")
    (run.path / "config.json").write_text(json.dumps({"config": {}, "config_hash": "x", "plan": {}}))
    run.result_path.write_text("{not json")
    config = TrainConfig(out=run.path, n_layers=1, tokens=1000)
    return [
        (run.state_path, run.load_state),
        (run.initial_weights_path, run.load_initial_weights),
        (run.branch_path(5), lambda: run.load_branch(5)),
        (run.result_path, lambda: run.plan_start(config)),
        (run.result_path, run.read_result),
    ]


def test_read_errors_say_what_could_not_be_read_and_never_advise_deletion(tmp_path):
    for path, read in _unreadable_cases(tmp_path):
        with pytest.raises(UserError) as error:
            read()
        message = str(error.value)
        assert "cannot read the" in message and str(path) in message and "ls -l" in message, message
        assert "--overwrite" not in message and "\n" not in message, message


def test_a_damaged_run_config_is_not_answered_with_overwrite(tmp_path):
    path = tmp_path / "config.json"
    for content in ("[1, 2]", json.dumps({"config": {}, "config_hash": 3})):
        path.write_text(content)
        with pytest.raises(UserError) as error:
            RunRecord.load(path)
        assert "--overwrite" not in str(error.value)
    path.write_text("{not json")
    with pytest.raises(UserError, match="cannot read the run config .*ls -l"):
        RunRecord.load(path)
