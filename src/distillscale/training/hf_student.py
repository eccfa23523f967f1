"""Any Hugging Face causal LM as a student: `--student-init DIR` of an architecture the family does not
import (GPT-2, Mistral, Qwen2, ..., or a Llama/Qwen3 configuration it cannot reproduce).

The model is loaded with `AutoModelForCausalLM` (safetensors only; its own code only with
`--trust-remote-code`) and trained by the same recipe through `HFStudent`, the teacher side's
`HFCausalLM` adapter (`hidden_states` + `head` for the chunked losses) with what a student also needs:
plain AdamW groups (weight decay on matrices, none on vectors: no muP) and the output rows of the
tokenizer's ids, and on-policy sampling with the model's own KV cache. Its FLOPs are counted as the
family's (`model.hf_flops`: every matmul, output head included, and attention over the context from its
config), the same count a Hugging Face teacher gets. What the generic path does not have: muP. FSDP
shards the model's decoder layers (the `nn.ModuleList` of most parameters, as for a sharded teacher).

Checkpoints: `state.pt` holds the adapter's state dict, optimizer, scheduler and RNG as for the family
(resume is exact); the weights at the last checkpoint are also written as a Hugging Face directory
(`HF_STUDENT_DIR` in the run: config.json + model.safetensors), which `export-hf` copies.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from distillscale.errors import UserError
from distillscale.model.hf_export import HF_STUDENT_DIR
from distillscale.model.hf_flops import hf_forward_flops
from distillscale.model.hf_import import INDEX_FILE, SINGLE_FILE
from distillscale.model.pretrained import check_output_rows
from distillscale.training.records import HFStudentRecord
from distillscale.training.student import CountsFromRecord
from distillscale.training.teachers import HFCausalLM, check_logits_are_head_of_hidden, hf_load_error, load_hf_causal_lm

class HFStudent(CountsFromRecord, HFCausalLM):
    """A Hugging Face causal LM trained as a student (`StudentModel`): logits over the tokenizer's
    `vocab_size` ids (the first rows of a padded output layer)."""

    def __init__(self, model: torch.nn.Module, vocab_size: int):
        super().__init__(model)
        self.vocab_size = vocab_size

    def head(self, h: torch.Tensor) -> torch.Tensor:
        logits = super().head(h)
        return logits if logits.shape[-1] == self.vocab_size else logits[..., :self.vocab_size]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden_states(idx))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups at one learning rate (no muP): decay on matrices (>= 2-D), none on biases and norms."""
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim >= 2]
        rest = [p for p in self.parameters() if p.requires_grad and p.ndim < 2]
        return [group for group in ({"params": decay, "lr": lr, "weight_decay": weight_decay},
                                    {"params": rest, "lr": lr, "weight_decay": 0.0}) if group["params"]]

    @torch.no_grad()
    def sample_continuations(self, prompt: torch.Tensor, new_tokens: int, temperature: float,
                             uniforms: torch.Tensor) -> torch.Tensor:
        """Prompt [B, P] followed by `new_tokens` sampled tokens [B, P + C], as `model.generate` samples
        the family (same `sample`, token t of row b from uniforms[b, t] alone), with the model's own
        KV cache; in eval mode (no dropout in the policy's samples), the mode restored after."""
        from distillscale.model.generation import sample

        was_training = self.training
        self.eval()
        try:
            tokens, fed, past = prompt, prompt, None
            for step in range(new_tokens):
                output = self.model.base_model(input_ids=fed, past_key_values=past, use_cache=True)
                past = output.past_key_values
                token = sample(self.head(output.last_hidden_state[:, -1]), temperature, uniforms=uniforms[:, step])
                tokens = torch.cat([tokens, token.unsqueeze(-1)], dim=-1)
                fed = token.unsqueeze(-1)
            return tokens
        finally:
            self.train(was_training)

    def unsharded_copy(self) -> HFStudent:
        """A new student of the same architecture and configuration on CPU (its weights to be loaded)."""
        from transformers import AutoModelForCausalLM

        return HFStudent(AutoModelForCausalLM.from_config(self.model.config, dtype=torch.float32), self.vocab_size)

    def save(self, run_path: Path) -> None:
        """Its weights at a checkpoint: a Hugging Face directory in the run (`save_hf_student`)."""
        save_hf_student(self, run_path)

    def record(self) -> HFStudentRecord:
        counts = self.parameter_counts()
        return HFStudentRecord(architecture=type(self.model).__name__, non_embedding_params=counts.non_embedding,
                               total_params=counts.total, output_rows=counts.output_rows,
                               flops=hf_forward_flops(self.model),
                               d_model=getattr(self.model.config, "hidden_size", None))


def load_hf_student(path: Path, vocab_size: int, seq_len: int, trust_remote_code: bool = False) -> HFStudent:
    """The model in `path` as a student on CPU in float32 (the recipe moves it), checked against the
    tokenizer's `vocab_size` and the run's `seq_len`; one-line refusals otherwise."""
    check_hf_student(path, trust_remote_code)
    model = load_hf_causal_lm(path, trust_remote_code, dtype=torch.float32, use_safetensors=True)
    context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if context is not None and seq_len > context:
        raise UserError(f"--seq-len {seq_len} is longer than the context of --student-init {path} ({context} "
                        f"tokens): use --seq-len {context} or less")
    student = HFStudent(model, vocab_size)
    check_output_rows(path, student.parameter_counts().output_rows, vocab_size)
    check_logits_are_head_of_hidden(student, path, torch.device("cpu"))
    return student.train()


def check_hf_student(path: Path, trust_remote_code: bool = False) -> None:
    """Refuse, before the data is prepared, a generic start that needs its own code without the
    flag, an architecture transformers does not know, or weights not in safetensors."""
    import json

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if config.get("auto_map") and not trust_remote_code:
        raise UserError(f"--student-init {path} needs its own model code (auto_map in config.json), which "
                        f"distillscale does not run by default: pass --trust-remote-code (distill) if you "
                        f"trust it")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise hf_load_error(path, exc, trust_remote_code) from None
    if not ((path / SINGLE_FILE).is_file() or (path / INDEX_FILE).is_file()):
        raise UserError(f"--student-init {path} has no {SINGLE_FILE} (or {INDEX_FILE}): distillscale loads "
                        f"safetensors weights only (pickled .bin files are refused)")


def save_hf_student(model: HFStudent, run_path: Path) -> None:
    """The student's weights as a Hugging Face directory in the run (config.json + model.safetensors),
    written beside it and renamed: a reader sees the old directory or the new one."""
    target = run_path / HF_STUDENT_DIR
    for leftover in run_path.glob(".tmp-hf-*"):  # a save cut short by a kill
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-hf-", dir=run_path))
    try:
        model.model.save_pretrained(staging, safe_serialization=True)
        old = None
        if target.exists():
            old = run_path / f".old-{HF_STUDENT_DIR}"
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_generic_student_run(config: Any) -> None:
    """Refuse, in one line, what the generic student path does not have (`config`: a train or distill
    config whose --student-init is a generic Hugging Face directory)."""
    path = Path(config.student_init).expanduser()
    if config.dropout:
        raise UserError(f"--dropout is the family's: --student-init {path} trains through Hugging Face, with the "
                        f"dropout its own config sets; leave out --dropout")
    trust_remote_code = bool(getattr(config, "trust_remote_code", False))
    check_hf_student(path, trust_remote_code)
    if config.tokenizer is not None:  # the output layer against the tokenizer before the data is prepared
        from transformers import AutoConfig

        from distillscale.data.tokenizer import load_tokenizer, tokenizer_vocab_size

        rows = getattr(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), "vocab_size", None)
        check_output_rows(path, rows, tokenizer_vocab_size(load_tokenizer(config.tokenizer)[0]))
