"""`plan --student-model DIR`: the student's exact N_S and F(N_S), priced at the context it trains
at (the plan's), not the longest its config allows (issue 57, M2)."""

import json

import pytest

import distillscale as ds
from distillscale.errors import ParameterError
from distillscale.model.config import ModelConfig
from distillscale.units import format_quantity

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


def test_a_law_without_distillation_plans_the_student_model_given(cli, tmp_path):
    """A law with no distillation part answers the supervised question: for --student-model, about that
    model (its N and exact FLOPs per token), not the compute-optimal size of another."""
    directory, config = _model_dir(tmp_path, 4096)
    from distillscale.model.sizes import model_size

    plan, counted = ds.plan("epoch2024", compute=1e17, student_model=directory), model_size(directory)
    assert plan.kind == "supervised" and plan.supervised.student_params == counted.non_embedding_params
    assert plan.supervised.tokens == pytest.approx(1e17 / (3 * config.forward_flops_per_token(4096)), rel=1e-12)
    code, out, err = cli("plan", "--law", "epoch2024", "--student-model", str(directory), "--compute", "1e17")
    assert code == 0, err
    text = " ".join(out.split())
    assert "Training without a teacher" in text and "Compute-optimal" not in text
    assert f"params N │ {format_quantity(counted.non_embedding_params)} │" in text


def test_a_mixture_of_experts_student_says_every_expert_is_counted(cli, tmp_path):
    """A mixture of experts is planned at N_S with every expert counted (the laws' dense N) and priced
    at the FLOPs of the experts a token is routed to: the plan says so, with the laws with and without
    a distillation part."""
    transformers = pytest.importorskip("transformers")
    from distillscale.model.sizes import model_size

    transformers.MixtralForCausalLM(transformers.MixtralConfig(
        vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=False,
        max_position_embeddings=4096)).save_pretrained(tmp_path / "moe")
    size = model_size(tmp_path / "moe")
    for law, kwargs in (("busbridge2025", {"scenario": "best-case"}), ("epoch2024", {})):
        plan = ds.plan(law, compute=1e17, student_model=tmp_path / "moe", **kwargs)
        said = [w for w in plan.warnings if "mixture of experts" in w]
        assert len(said) == 1 and f"{size.non_embedding_params:,} non-embedding parameters, every expert counted" in said[0]
        assert f"{size.active_params:,} active per token" in said[0] and "routed" in said[0]
    code, out, err = cli("plan", "--student-model", str(tmp_path / "moe"), "--compute", "1e17", "--scenario",
                         "best-case")
    assert code == 0, err
    assert "is a mixture of experts: planned at N_S" in " ".join(err.split())
    dense, _ = _model_dir(tmp_path, 4096)
    assert not [w for w in ds.plan("busbridge2025", compute=1e21, student_model=dense, scenario="best-case").warnings
                if "mixture of experts" in w]
