"""Export a run's model and tokenizer as a Hugging Face directory that `AutoModelForCausalLM` and
`AutoTokenizer` load without custom code, with the same logits.

The architecture is chosen so that the export is exact: Qwen3 (q_norm / k_norm per head before RoPE)
when the model has QK-norm, Llama otherwise; both use the same half-split RoPE layout as ours, so
weights are copied as they are, apart from splitting the fused qkv and gate_up matrices. The muP
output multiplier is folded into `lm_head`; a tied matrix is untied in the export when the multiplier
is not 1, since the embedding itself must stay unscaled.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from distillscale.data.tokenizer import load_tokenizer, tokenizer_vocab_size
from distillscale.errors import UserError, path_kind
from distillscale.io import check_output_dir, publish_files
from distillscale.model.checkpoint import load_pretrained
from distillscale.model.config import ModelConfig
from distillscale.model.transformer import Transformer

TOKENIZER_FILE = "tokenizer.json"
# Marks a directory as an export, which --overwrite may replace: a Hugging Face directory of the
# user's own has the same config.json, model.safetensors and tokenizer.json, and is never replaced.
EXPORT_MARKER = "distillscale_export.json"
# A run of a generic Hugging Face student keeps its model here (config.json + model.safetensors, written by
# `save_pretrained`); the export copies it as it is, with the run's tokenizer.
HF_STUDENT_DIR = "hf_model"


def export_hf(run_dir: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False) -> dict:
    """Write `out_dir` (config.json, model.safetensors, tokenizer files) from `run_dir` and return a
    summary. A new directory appears complete or not at all; in an earlier export, `overwrite`
    replaces the files that export wrote (each atomically, once the new export is written) and keeps
    any file the user added."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} {path_kind(run_dir)}, not a run directory: give a directory written by "
                        "`distillscale train`")
    _check_out_dir(run_dir, out_dir, overwrite)
    tokenizer_file = run_dir / TOKENIZER_FILE
    if not tokenizer_file.is_file():
        raise UserError(f"{tokenizer_file} is missing: export needs the run's tokenizer beside its weights")

    tokenizer, end_of_text = load_tokenizer(tokenizer_file)
    if (run_dir / HF_STUDENT_DIR).is_dir():
        return _export_hf_student(run_dir, out_dir, tokenizer, end_of_text)
    model = load_pretrained(run_dir)
    config = model.config
    if tokenizer_vocab_size(tokenizer) > config.vocab_size:
        raise UserError(f"{tokenizer_file} has {tokenizer_vocab_size(tokenizer)} token ids but the model only "
                        f"{config.vocab_size}: the tokenizer does not belong to this model")

    state_dict = hf_state_dict(model)
    tied = "lm_head.weight" not in state_dict
    hf_config = hf_config_for(config, tied=tied, dtype=model.embed.weight.dtype,
                              eos_token_id=tokenizer.token_to_id(end_of_text))

    def write_model(staging: Path) -> None:
        hf_config.save_pretrained(staging)
        save_file(state_dict, staging / "model.safetensors", metadata={"format": "pt"})

    _publish(run_dir, out_dir, write_model, tokenizer, end_of_text, config.max_seq_len)
    return {"run_dir": str(run_dir), "out_dir": str(out_dir), "architecture": hf_config.architectures[0],
            "non_embedding_params": config.non_embedding_params, "total_params": config.total_params,
            "vocab_size": config.vocab_size, "tie_word_embeddings": tied,
            "eos_token": end_of_text}


def hf_config_for(config: ModelConfig, *, tied: bool, dtype: torch.dtype, eos_token_id: int | None):
    """The Qwen3Config (QK-norm) or LlamaConfig describing the same network as `config`."""
    from transformers import LlamaConfig, Qwen3Config

    config_class, architecture = ((Qwen3Config, "Qwen3ForCausalLM") if config.qk_norm
                                  else (LlamaConfig, "LlamaForCausalLM"))
    return config_class(
        architectures=[architecture],
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.d_ff,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_kv_heads,
        head_dim=config.head_dim,
        hidden_act="silu",
        max_position_embeddings=config.max_seq_len,
        rms_norm_eps=config.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_base},
        attention_bias=False,
        tie_word_embeddings=tied,
        initializer_range=config.init_std,
        bos_token_id=None,
        eos_token_id=eos_token_id,
        dtype=str(dtype).removeprefix("torch."),
    )


def hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under Llama/Qwen3 names; `lm_head.weight` is absent when the export stays tied."""
    config = model.config
    state = {"model.embed_tokens.weight": model.embed.weight, "model.norm.weight": model.norm.weight}
    for i, block in enumerate(model.blocks):
        prefix = f"model.layers.{i}"
        q, k, v = block.attn.qkv.weight.split(block.attn.split, dim=0)
        gate, up = block.ffn.gate_up.weight.chunk(2, dim=0)
        state |= {
            f"{prefix}.input_layernorm.weight": block.attn_norm.weight,
            f"{prefix}.self_attn.q_proj.weight": q,
            f"{prefix}.self_attn.k_proj.weight": k,
            f"{prefix}.self_attn.v_proj.weight": v,
            f"{prefix}.self_attn.o_proj.weight": block.attn.out.weight,
            f"{prefix}.post_attention_layernorm.weight": block.ffn_norm.weight,
            f"{prefix}.mlp.gate_proj.weight": gate,
            f"{prefix}.mlp.up_proj.weight": up,
            f"{prefix}.mlp.down_proj.weight": block.ffn.down.weight,
        }
        if config.qk_norm:
            state[f"{prefix}.self_attn.q_norm.weight"] = block.attn.q_norm.weight
            state[f"{prefix}.self_attn.k_norm.weight"] = block.attn.k_norm.weight
    if not (config.tie_embeddings and config.mup_multiplier == 1.0):
        state["lm_head.weight"] = model.lm_head.weight * config.mup_multiplier
    # safetensors stores each tensor on its own: no views, no shared storage.
    return {name: tensor.detach().contiguous().clone() for name, tensor in state.items()}


def _export_hf_student(run_dir: Path, out_dir: Path, tokenizer, end_of_text: str) -> dict:
    """A generic Hugging Face student's run: its model directory as it is, and the run's tokenizer."""
    from transformers import AutoConfig

    model_dir = run_dir / HF_STUDENT_DIR
    config = AutoConfig.from_pretrained(model_dir)  # written by this run: no remote code to run
    with safe_open(model_dir / "model.safetensors", "pt") as weights:
        shapes = {name: weights.get_slice(name).get_shape() for name in weights.keys()}
    total = sum(math.prod(shape) for shape in shapes.values())
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    vocab_size = tokenizer_vocab_size(tokenizer)
    embeddings = _padded_embeddings(model_dir, config, vocab_size)

    def write_model(staging: Path) -> None:
        for entry in model_dir.iterdir():
            if entry.is_file():
                shutil.copyfile(entry, staging / entry.name)
        if embeddings:  # the rows past the tokenizer's ids were never trained: a user would sample them
            with safe_open(model_dir / "model.safetensors", "pt") as weights:
                tensors = {name: weights.get_tensor(name)[:vocab_size].clone() if name in embeddings
                           else weights.get_tensor(name) for name in weights.keys()}
            save_file(tensors, staging / "model.safetensors", metadata={"format": "pt"})
            values = json.loads((staging / "config.json").read_text(encoding="utf-8"))
            (staging / "config.json").write_text(json.dumps(values | {"vocab_size": vocab_size}, indent=2) + "\n",
                                                 encoding="utf-8")

    _publish(run_dir, out_dir, write_model, tokenizer, end_of_text, context)
    if embeddings:
        total -= sum(math.prod(shapes[name][1:]) * (shapes[name][0] - vocab_size) for name in embeddings)
    return {"run_dir": str(run_dir), "out_dir": str(out_dir), "architecture": (config.architectures or ["?"])[0],
            "non_embedding_params": _result_value(run_dir, "non_embedding_params"), "total_params": total,
            "vocab_size": tokenizer_vocab_size(tokenizer),
            "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)), "eos_token": end_of_text}


def _padded_embeddings(model_dir: Path, config, vocab_size: int) -> set[str]:
    """The names of the input and output embeddings in `model_dir`/model.safetensors when they have
    more rows than the tokenizer's `vocab_size` ids (Hugging Face pads its vocabularies; the run trains
    the tokenizer's rows only): the export keeps the first `vocab_size` rows. Empty when there is
    nothing to cut, or the model cannot be laid out without running its own code (auto_map) or is
    sharded over several files (then exported as it is)."""
    rows = getattr(config, "vocab_size", None)
    if not isinstance(rows, int) or rows <= vocab_size or getattr(config, "auto_map", None) \
            or not (model_dir / "model.safetensors").is_file():
        return set()
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # the parameter names and shapes, no weights
        model = AutoModelForCausalLM.from_config(config)
    tables = [module.weight for module in (model.get_input_embeddings(), model.get_output_embeddings())
              if module is not None]
    names = {name for name, param in model.named_parameters() if any(param is table for table in tables)}
    with safe_open(model_dir / "model.safetensors", "pt") as weights:
        return {name for name in weights.keys() if name in names and weights.get_slice(name).get_shape()[0] == rows}


def _result_value(run_dir: Path, key: str) -> int | None:
    try:
        return json.loads((run_dir / "result.json").read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _publish(run_dir: Path, out_dir: Path, write_model, tokenizer, end_of_text: str, context: int | None) -> None:
    """Write the model (`write_model(staging)`) and the tokenizer in a directory beside `out_dir`,
    then publish its files in `out_dir` (a new directory appears complete or not at all)."""
    from transformers import PreTrainedTokenizerFast

    limit = {"model_max_length": context} if context else {}
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=end_of_text, **limit)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out_dir.parent))  # short: out_dir.name may be long
    try:
        write_model(staging)
        hf_tokenizer.save_pretrained(staging)
        files = sorted([entry.name for entry in staging.iterdir()] + [EXPORT_MARKER])
        (staging / EXPORT_MARKER).write_text(json.dumps({"run_dir": str(run_dir.resolve()),
                                                         "files": files}) + "\n")
        _apply_umask(staging)
        publish_files(staging, out_dir, earlier=_earlier_files(out_dir, files))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_out_dir(run_dir: Path, out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a directory: choose another output directory")
    run, out = run_dir.resolve(), out_dir.resolve()
    if out == run or out in run.parents:
        raise UserError(f"output directory {out_dir} would replace the run directory {run_dir}: "
                        "choose another output directory")
    check_output_dir(out_dir, is_ours=lambda path: (path / EXPORT_MARKER).is_file(), flag="OUT_DIR",
                     what="distillscale export", inputs=[run_dir])  # nor inside the run: the output rule
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"output directory {out_dir} holds an earlier export: pass --overwrite to replace "
                        "it, or choose another one")


def _earlier_files(out_dir: Path, files: list[str]) -> list[str]:
    """The files an earlier export wrote in `out_dir` (its marker lists them; a marker from before
    the list: the files this export writes)."""
    try:
        listed = json.loads((out_dir / EXPORT_MARKER).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
        return files
    return listed


def _apply_umask(directory: Path) -> None:
    """mkdtemp and safetensors create private (0700 / 0600) entries: give the export the permissions
    of normally created files, since it is meant to be shared."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.iterdir():
        path.chmod(0o666 & ~umask)
