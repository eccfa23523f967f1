"""`plan --student-model DIR`: the student's exact N_S and F(N_S), priced at the context it trains
at (the plan's), not the longest its config allows (issue 57, M2)."""

import json

import pytest

import distillscale as ds
from distillscale.errors import ParameterError
from distillscale.model.config import ModelConfig

SHAPE = dict(vocab_size=32000, d_model=1024, n_layers=16, n_heads=16)


def _model_dir(tmp_path, max_seq_len: int):
    directory = tmp_path / f"student-{max_seq_len}"
    directory.mkdir()
    config = ModelConfig(**SHAPE, max_seq_len=max_seq_len)
    (directory / "model_config.json").write_text(json.dumps(config.model_dump()))
    return directory, config


def _flops_per_token(plan) -> float:
    p = plan.headline
    return p.flops.student / (3 * p.student_tokens)


def test_a_long_context_student_is_priced_at_the_plans_context(tmp_path):
    """A student pruned from an imported Qwen3 keeps max_seq_len 40,960: priced at the law's 4,096,
    its plan is the plan of the same shape saved with a 4,096 context."""
    long_dir, long_config = _model_dir(tmp_path, 40960)
    law_dir, _ = _model_dir(tmp_path, 4096)
    long_plan, law_plan = (ds.plan("busbridge2025", compute=1e21, student_model=d, scenario="best-case")
                           for d in (long_dir, law_dir))
    assert _flops_per_token(long_plan) == pytest.approx(long_config.forward_flops_per_token(4096), rel=1e-12)
    assert long_plan.headline.student_tokens == pytest.approx(law_plan.headline.student_tokens, rel=1e-12)
    assert long_plan.headline.student_loss == law_plan.headline.student_loss
    # at its maximum it would cost several times more per token
    assert long_config.forward_flops_per_token() > 3 * _flops_per_token(long_plan)
    # --n-ctx chooses the context
    short = ds.plan("busbridge2025", compute=1e21, student_model=long_dir, scenario="best-case", n_ctx=1024)
    assert _flops_per_token(short) == pytest.approx(long_config.forward_flops_per_token(1024), rel=1e-12)


def test_a_short_context_student_is_priced_at_its_own_context(tmp_path):
    """A run trained at 256 tokens saves max_seq_len 256: it cannot train at the law's 4,096."""
    directory, config = _model_dir(tmp_path, 256)
    plan = ds.plan("busbridge2025", compute=1e21, student_model=directory, scenario="best-case")
    assert _flops_per_token(plan) == pytest.approx(config.forward_flops_per_token(256), rel=1e-12)
    with pytest.raises(ParameterError) as caught:
        ds.plan("busbridge2025", compute=1e21, student_model=directory, n_ctx=1024)
    assert "n_ctx 1024 is longer than the context of student_model (256 tokens" in str(caught.value)
    assert "give --n-ctx 256 or less" in caught.value.for_cli()


def test_the_cli_prices_the_student_at_the_plans_context(cli, tmp_path):
    directory, config = _model_dir(tmp_path, 40960)
    code, out, err = cli("plan", "--student-model", str(directory), "--compute", "1e21", "--scenario",
                         "best-case", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["flops"]["student"] / (3 * record["student_tokens"]) == pytest.approx(
        config.forward_flops_per_token(4096), rel=1e-9)
    code, out, err = cli("plan", "--student-model", str(directory), "--compute", "1e21", "--n-ctx", "50000")
    assert code == 2 and "--n-ctx 50000 is longer than the context of --student-model" in err
