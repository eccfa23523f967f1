"""A teacher for the speed benches, as `load_teacher` gives it (bf16 weights on CUDA) but from random
weights: what a distillation step's teacher forward costs does not depend on what it learned."""

from __future__ import annotations

import torch

from distillscale.model.config import ModelConfig
from distillscale.model.transformer import Transformer
from distillscale.training.teachers import Teacher, TeacherInfo


def frozen_teacher(config: ModelConfig, device: torch.device) -> Teacher:
    """A teacher of `config`'s shape on `device`, random weights, its size counted as a run's is."""
    model = Transformer(config).to(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    info = TeacherInfo(path="(random weights)", kind="run", non_embedding_params=config.non_embedding_params,
                       total_params=config.total_params, output_rows=config.vocab_size,
                       forward_flops_per_token=config.forward_flops_per_token(), flops_method="exact",
                       count=config)
    return Teacher(model, config.vocab_size, info)
