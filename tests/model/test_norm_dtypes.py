"""bf16 end to end in a frozen teacher (issue 65): every RMSNorm gets input of its weights' dtype, so
rms_norm keeps its fused kernel; a float32 model still normalises q and k in float32 under autocast."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from distillscale.model import ModelConfig, Transformer
from distillscale.training.distillation import DistillationObjective
from distillscale.training.losses import DistillationLossConfig
from distillscale.training.teachers import Teacher, TeacherInfo


def model(dtype: torch.dtype, qk_norm: bool = True) -> Transformer:
    torch.manual_seed(0)
    config = ModelConfig(n_layers=2, aspect_ratio=32, head_dim=32, vocab_size=96, max_seq_len=16, qk_norm=qk_norm)
    return Transformer(config).to(dtype)


def norm_inputs(net: Transformer) -> list[tuple[torch.dtype, torch.dtype]]:
    """(input dtype, weight dtype) of every RMSNorm call, recorded as the forward runs."""
    seen = []
    for module in net.modules():
        if isinstance(module, torch.nn.RMSNorm):
            module.register_forward_pre_hook(lambda mod, args: seen.append((args[0].dtype, mod.weight.dtype)))
    return seen


@pytest.mark.parametrize("qk_norm", [True, False])
def test_a_bf16_model_under_autocast_feeds_its_norms_bf16(qk_norm):
    net = model(torch.bfloat16, qk_norm)
    seen = norm_inputs(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Mismatch dtype between input and weight" is a UserWarning
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            net.hidden_states(torch.arange(8).reshape(1, 8))
    assert len(seen) == 2 * 2 + 1 + (2 * 2 if qk_norm else 0)
    assert all(given == weight == torch.bfloat16 for given, weight in seen), seen


def test_a_float32_model_under_autocast_still_normalises_q_and_k_in_float32():
    net = model(torch.float32)
    seen = norm_inputs(net)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net.hidden_states(torch.arange(8).reshape(1, 8))
    qk = [given for given, _ in seen[1:3]]  # block 0: attn_norm, then q_norm and k_norm
    assert qk == [torch.float32, torch.float32]
    assert all(weight == torch.float32 for _, weight in seen)


def test_a_live_bf16_teacher_step_gives_no_dtype_mismatch_warning():
    """The live-teacher objective as a GPU run has it (bf16 teacher weights, bf16 autocast), on the CPU."""
    teacher_net = model(torch.bfloat16).eval().requires_grad_(False)
    config = teacher_net.config
    info = TeacherInfo(path="(test)", kind="run", non_embedding_params=config.non_embedding_params,
                       total_params=config.total_params, output_rows=config.vocab_size,
                       forward_flops_per_token=config.forward_flops_per_token(), flops_method="exact", count=config)
    objective = DistillationObjective(Teacher(teacher_net, config.vocab_size, info),
                                      DistillationLossConfig(kd_weight=0.5, chunk_size=4), teacher_val_loss=math.nan)
    student = model(torch.float32)
    seen = norm_inputs(teacher_net)
    inputs = torch.arange(16).reshape(2, 8) % config.vocab_size
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = objective(student, inputs, (inputs + 1) % config.vocab_size)
        output.loss.backward()
    assert seen and all(given == weight == torch.bfloat16 for given, weight in seen), seen
    assert math.isfinite(output.loss.item())
