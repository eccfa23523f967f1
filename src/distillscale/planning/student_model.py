"""A model directory as the plan's student (`plan --student-model DIR`: a run, a prune output or a
Hugging Face directory): its N and FLOPs per token, counted as the engine counts every model it
trains (`model.sizes`), at the plan's context.

    n_s, flops_per_token, size = student_size("models/small", n_ctx=None, context=2048)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from distillscale.errors import ParameterError

if TYPE_CHECKING:
    from distillscale.model.sizes import ModelSize


def student_size(path: str | Path, n_ctx: int | None, context: int, trust_remote_code: bool = False
                 ) -> tuple[float, float, ModelSize]:
    """(N_S, F(N_S), its size) of a student model directory (a run, a prune output or a Hugging Face
    directory), priced at the plan's context `context` (the law's, or `n_ctx` when given), at most the
    model's own."""
    from distillscale.model.sizes import model_size

    size = model_size(path, trust_remote_code, given_as="--student-model")
    longest = size.context
    if n_ctx is not None and longest is not None and n_ctx > longest:
        raise ParameterError(("n_ctx", "student_model", "n_ctx"), f"{{}} {n_ctx} is longer than the context of {{}} "
                             f"({longest} tokens): give {{}} {longest} or less")
    at = min(context, longest) if longest else context
    return float(size.non_embedding_params), float(size.forward_flops_per_token(at)), size
