"""The training config: TOML files, flag overrides, one-line errors naming the bad setting, the hash
that guards resumes, and the step and warmup arithmetic."""

from __future__ import annotations

import json
import math

import pytest

from distillscale.errors import UserError
from distillscale.settings import load_config, to_toml
from distillscale.training.config import DISTILL_LEFT_OUT, DistillConfig, TrainConfig
from distillscale.training.logit_cache.config import CacheConfig

from tests.conftest import TEST_DATA

REQUIRED = {"out": "run", "n_layers": 2, "tokens": "1M"}


def write_toml(tmp_path, text: str):
    path = tmp_path / "train.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_keys_may_use_flag_spelling_and_flags_override_them(tmp_path):
    path = write_toml(tmp_path, 'out = "from-file"\nn-layers = 4\ntokens = "2M"\nlr = 0.003\nbf16 = false\n')
    config = load_config(TrainConfig, path, {"lr": 0.02, "seed": None})
    assert config.n_layers == 4
    assert config.tokens == 2e6
    assert config.lr == 0.02           # the flag wins over the file
    assert config.seed == 0            # a flag left out (None) keeps the default
    assert config.bf16 is False


def test_quantities_accept_suffixes():
    config = load_config(TrainConfig, None, {**REQUIRED, "tokens": "7.5M", "max_bytes": "2M", "eval_tokens": "64k"})
    assert (config.tokens, config.max_bytes, config.eval_tokens) == (7.5e6, 2_000_000, 64_000)


@pytest.mark.parametrize("overrides, message", [
    ({"lr": -1.0}, "invalid --lr: Input should be greater than 0 (got -1.0)"),
    ({"tokens": "lots"}, "malformed --tokens 'lots'"),
    ({"device": "tpu"}, "invalid --device: Input should be 'auto', 'cpu' or 'cuda'"),
    ({"split": "val"}, "invalid --split: Input should be 'teacher' or 'student'"),
    ({"vocab_size": 100}, "invalid --vocab-size: Input should be greater than or equal to 257"),
    ({"tokens_per_param": 20}, "give exactly one token budget"),
    ({"tokens": None}, "give exactly one token budget"),
    ({"eval_tokens": 16, "seq_len": 64}, "--eval-tokens 16 is below one sequence of --seq-len 64"),
    ({"out": None}, "missing required setting --out"),
])
def test_bad_flags_are_one_line_errors_naming_the_flag(overrides, message):
    with pytest.raises(UserError) as excinfo:
        load_config(TrainConfig, None, {**REQUIRED, **overrides})  # a None flag counts as not given
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_unknown_and_bad_toml_keys_name_the_key_and_the_file(tmp_path):
    path = write_toml(tmp_path, 'out = "r"\nn_layers = 2\ntokens = "1M"\nlearning_rate = 0.1\n')
    with pytest.raises(UserError, match=rf"unknown setting 'learning_rate' in {path}"):
        load_config(TrainConfig, path)
    path = write_toml(tmp_path, 'out = "r"\nn_layers = 0\ntokens = "1M"\n')
    with pytest.raises(UserError, match=rf"invalid 'n_layers' in {path}: Input should be greater than or equal to 1"):
        load_config(TrainConfig, path)


@pytest.mark.parametrize("text, message", [
    ("n_layers = \n", "is not valid TOML"),
    ("[models]\nn_layers = 2\n", r"section \[models\] is not one of \[budget\], \[data\], .*\[model\]"),
    ("[optim]\nn_layers = 2\n", r"unknown setting 'n_layers' in \[optim\]; it belongs in \[model\]"),
])
def test_malformed_toml_files_are_clear_errors(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        load_config(TrainConfig, write_toml(tmp_path, text))


@pytest.mark.parametrize("config_class, settings", [
    (TrainConfig, REQUIRED | {"schedule": "wsd", "fork_tokens": "1M,2M", "lr": 3e-3, "bf16": False}),
    (DistillConfig, REQUIRED | {"teacher": "t", "kd": "jsd", "top_k": 8, "tie_embeddings": True}),
    (CacheConfig, {"teacher": "t", "out": "c", "top_k": 16, "tokens": "2M", "max_bytes": "1M"}),
])
def test_resolved_toml_reads_back_to_the_same_config(tmp_path, config_class, settings):
    """What a sweep writes for each run (`to_toml`, in [sections]) is the config `--config` reads."""
    config = load_config(config_class, None, settings)
    text = to_toml(config)
    assert "[model]" in text or config_class is CacheConfig
    again = load_config(config_class, write_toml(tmp_path, text), None)
    assert again == config
    if config_class is not CacheConfig:
        assert again.hash() == config.hash()


def test_flat_and_sectioned_files_are_the_same_config(tmp_path):
    flat = load_config(TrainConfig, write_toml(tmp_path, 'out = "r"\nn_layers = 2\ntokens = "1M"\nlr = 0.003\n'))
    sectioned = load_config(TrainConfig, write_toml(
        tmp_path, '[run]\nout = "r"\n[model]\nn-layers = 2\n[budget]\ntokens = "1M"\n[optim]\nlr = 0.003\n'))
    assert flat == sectioned


def test_every_setting_is_a_flag_of_its_command():
    """The flags are generated from the configs, so none can be missing or drift from the TOML keys."""
    from typer.testing import CliRunner

    from distillscale.cli import app

    for command, config_class, left_out in [("train", TrainConfig, set()),
                                            ("distill", DistillConfig, DISTILL_LEFT_OUT),
                                            ("cache-logits", CacheConfig, {"vocab_size"})]:
        help_text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "300"}).output
        for name in set(config_class.model_fields) - set(left_out):
            assert f"--{name.replace('_', '-')}" in help_text, (command, name)


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="config file .*nope.toml does not exist"):
        load_config(TrainConfig, tmp_path / "nope.toml")


def test_hash_ignores_bookkeeping_and_names_what_differs():
    base = TrainConfig(**REQUIRED)
    assert base.hash() == TrainConfig(**{**REQUIRED, "out": "elsewhere"}, save_every=7, log_every=3,
                                      overwrite=True).hash()
    changed = TrainConfig(**REQUIRED, lr=0.5, seed=3)
    assert changed.hash() != base.hash()
    assert base.differing_keys(changed) == ["lr", "seed"]


RECORDS = TEST_DATA / "records"


def test_recorded_configs_keep_their_hash():
    """Issue 36, item 3: the hash, derived from what each field declares, is the one the hand-kept key
    lists gave, so earlier runs still resume: config.json of a run of 2026-11-23, and 19 configs (one
    or more per rule: bookkeeping, WSD, forks, large batch, FSDP, a subset, the later recipe settings,
    on-policy, a served teacher) recorded with their hash by the code of commit dcd8910."""
    recorded = json.loads((RECORDS / "config-2026-11-23.json").read_text())
    assert TrainConfig(**recorded["config"]).hash() == recorded["config_hash"]
    configs = json.loads((RECORDS / "config-hashes-2026-11-23.json").read_text())["configs"]
    assert len(configs) == 19
    for case in configs:
        config = (DistillConfig if case["kind"] == "distill" else TrainConfig)(**case["config"])
        assert config.hash() == case["config_hash"], case["what"]


def test_a_field_declares_how_it_enters_the_hash():
    from pydantic import Field

    from distillscale.training.config import NOT_HASHED, hashed_unless_default

    class Later(TrainConfig):  # settings added after runs existed
        note: str = Field("", json_schema_extra=NOT_HASHED)
        mode: str = Field("a", json_schema_extra=hashed_unless_default())
        mode_knob: float = Field(1.0, json_schema_extra=hashed_unless_default("mode"))
        new: int = 0

    base = TrainConfig(**REQUIRED).hash()
    assert Later(**REQUIRED, note="x", mode_knob=2.0, new=0).hash() != base  # an undeclared field is hashed
    assert Later(**REQUIRED, note="x", mode_knob=2.0, new=0).hash() == Later(**REQUIRED, new=0).hash()
    assert Later(**REQUIRED, mode="b").hash() != Later(**REQUIRED, mode="b", mode_knob=2.0).hash()
    assert Later(**REQUIRED, mode="b").unhashed_keys() == {"note", *Later(**REQUIRED).unhashed_keys()} - {
        "mode", "mode_knob"}
    assert Later(**REQUIRED).differing_keys(Later(**REQUIRED, note="x", new=1)) == ["new"]


def test_steps_cover_the_token_budget_and_warmup_defaults_to_a_tenth():
    config = TrainConfig(**{**REQUIRED, "tokens": 10_000}, seq_len=32, batch_size=8, grad_accum=2)
    assert config.tokens_per_step == 512
    assert config.steps_for(config.token_budget(non_embedding_params=123)) == math.ceil(10_000 / 512) == 20
    per_param = TrainConfig(out="r", n_layers=2, tokens_per_param=20, seq_len=32, batch_size=8)
    assert per_param.steps_for(per_param.token_budget(non_embedding_params=1000)) == math.ceil(20_000 / 256)
    assert config.resolved_warmup_steps(20) == 2
    assert config.resolved_warmup_steps(100_000) == 2000
    assert TrainConfig(**REQUIRED, warmup_steps=0).resolved_warmup_steps(20) == 0


def test_cli_reports_bad_config_with_exit_status_2(cli, tmp_path):
    code, out, err = cli("train", "--out", tmp_path / "run", "--n-layers", "2", "--tokens", "1M",
                         "--lr", "0")
    assert code == 2
    assert err.strip() == "distillscale: error: invalid --lr: Input should be greater than 0 (got 0.0)"
    assert not (tmp_path / "run").exists()
    path = write_toml(tmp_path, 'out = "r"\nn_layers = 2\ntokens = "1M"\nbatch = 3\n')
    code, out, err = cli("train", "--config", path)
    assert code == 2 and f"unknown setting 'batch' in {path}" in err


def test_train_help_lists_the_flags(cli):
    code, out, _ = cli("train", "--help")
    assert code == 0
    for flag in ("--tokens-per-param", "--grad-accum", "--min-lr-ratio", "--bf16", "--compile",
                 "--overwrite", "--config", "--save-every"):
        assert flag in out


def test_the_cli_starts_without_torch():
    """Generating the flags from the configs must not pull torch into `distillscale --help`."""
    import subprocess
    import sys

    code = "import sys, distillscale.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("flags, words", [
    ({"teacher_timeout": 5}, "--teacher-timeout needs --teacher-url"),
    ({"teacher_retries": 0}, "--teacher-retries needs --teacher-url"),
    ({"jsd_beta": 0.9}, "--jsd-beta needs --kd jsd"),
    ({"jsd_beta": 0.9, "kd": "reverse-kl"}, "--jsd-beta needs --kd jsd"),
    ({"uld_weight": 2.0, "teacher": None, "teacher_cache": "cache"}, "--uld-weight needs --teacher"),
    ({"on_policy_start": 0.5}, "--on-policy-start needs --on-policy-fraction > 0"),
])
def test_a_flag_the_chosen_mode_does_not_use_is_refused_in_one_line(flags, words):
    """G8: they were ignored without a word, while the on-policy flags were refused."""
    with pytest.raises(UserError) as error:
        load_config(DistillConfig, None, {"teacher": "t", "out": "o", "n_layers": 1, "tokens": "1k", **flags})
    assert words in str(error.value) and "leave it out" in str(error.value) and "\n" not in str(error.value)
    load_config(DistillConfig, None, {"teacher": "t", "out": "o", "n_layers": 1, "tokens": "1k", "kd": "jsd",
                                      "jsd_beta": 0.9})  # in its mode, accepted


def test_config_errors_name_flags_not_python_fields():
    with pytest.raises(UserError) as error:
        load_config(DistillConfig, None, {"teacher": "t", "out": "o", "n_layers": 1, "tokens": "1k", "seq_len": 32,
                                          "on_policy_fraction": 0.5, "on_policy_prompt_tokens": 32,
                                          "on_policy_continuation_tokens": 8})
    assert "--on-policy-prompt-tokens 32 + --on-policy-continuation-tokens 8" in str(error.value)
    assert "on_policy" not in str(error.value)


def test_a_fork_may_differ_from_its_parent_in_the_settings_declared_its_own():
    """The settings a WSD fork may give otherwise than its parent come from their fields (FORK_OWN),
    not a hand-kept list: the same four as the list of commit 03d6351, and a new field declared so."""
    from pydantic import Field

    from distillscale.training.config import FORK_OWN, fork_own_keys
    from distillscale.training.fork import LENGTH_KEYS

    assert LENGTH_KEYS == {"tokens", "tokens_per_param", "fork_from", "fork_tokens"}

    class Later(TrainConfig):
        fork_note: str = Field("", json_schema_extra=FORK_OWN)

    assert fork_own_keys(Later) == LENGTH_KEYS | {"fork_note"}
