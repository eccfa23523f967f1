"""One student interface (`training.student.StudentModel`) for the family's Transformer and a generic Hugging
Face student, and one FLOPs count (`model.hf_flops`) for any Hugging Face model, teacher or student."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from distillscale.model import ModelConfig, load_pretrained
from distillscale.model.hf_export import HF_STUDENT_DIR
from distillscale.planning.flops import generation_flops
from distillscale.training.hf_student import HFStudent, load_hf_student
from distillscale.training.records import RunRecord
from distillscale.training.run_dir import RunDirectory
from distillscale.training.student import FamilyStudent

from tests.training.test_hf_student import VOCAB, save_gpt2, tokenizer  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")


def test_a_served_generic_teacher_states_its_attention_per_context_token(tmp_path, tokenizer):  # noqa: F811
    """A served GPT-2 stated 2 x parameters as its base cost and 0 per context token: now the family's count,
    the matmuls (the head included) as base and 4 x n_layers x d_model per token of context."""
    from distillscale.serve.teacher import TeacherService

    service = TeacherService(save_gpt2(tmp_path / "gpt2", tokenizer), top_k=8)
    flops = service.models()["data"][0]["distillscale"]["forward_flops_per_token"]
    d, layers, vocab = 32, 2, 320  # save_gpt2's shape; tied embeddings: the input table is the head
    assert flops == {"base": 2 * (layers * (3 * d * d + d * d + 2 * d * 4 * d) + vocab * d),
                     "per_context_token": 4 * layers * d}


FAMILY = ModelConfig(n_layers=1, aspect_ratio=32, head_dim=16, vocab_size=VOCAB, max_seq_len=64)


def family_student(tmp_path, tokenizer):  # noqa: F811
    torch.manual_seed(0)
    return FamilyStudent(FAMILY)


def gpt2_student(tmp_path, tokenizer):  # noqa: F811
    return load_hf_student(save_gpt2(tmp_path / "gpt2", tokenizer), VOCAB, 32)


def saved_copy(student, run_path):
    """The student as the run directory holds it after `save`, read back by its own loader."""
    if isinstance(student, HFStudent):
        return HFStudent(AutoModelForCausalLM.from_pretrained(run_path / HF_STUDENT_DIR), VOCAB)
    return load_pretrained(run_path)


@pytest.mark.parametrize("make", [family_student, gpt2_student], ids=["family", "gpt2"])
def test_both_kinds_of_student_answer_the_same_interface(tmp_path, tokenizer, make):  # noqa: F811
    """Each StudentModel call means the same for the family and a generic student: FLOPs from its record
    (the run's formula), a save its loader reads back, an unsharded copy that takes its weights, sampling
    with a KV cache that a seed repeats and that greedy decoding over full forwards confirms."""
    student = make(tmp_path, tokenizer).eval()
    record = student.record()
    assert student.forward_flops_per_token(32) == record.forward_flops_per_token(32) > 2 * record.non_embedding_params
    assert student.generation_flops(8, 8, 3) == generation_flops(record, 8, 8, 3)
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = student(ids)
        run_path = tmp_path / "run"
        run_path.mkdir()
        student.save(run_path)
        assert torch.equal(saved_copy(student, run_path).eval()(ids)[..., :VOCAB], logits)
        copy = student.unsharded_copy()
        copy.load_state_dict(student.state_dict())
        assert torch.equal(copy.eval()(ids), logits)

    prompt = ids[:, :5]
    uniforms = torch.rand(2, 6, generator=torch.Generator().manual_seed(3))
    sampled = student.sample_continuations(prompt, 6, 0.9, uniforms)
    assert sampled.shape == (2, 11) and torch.equal(sampled[:, :5], prompt) and sampled.max() < VOCAB
    assert torch.equal(student.sample_continuations(prompt, 6, 0.9, uniforms.clone()), sampled)
    # a row's continuation depends on its own uniforms alone, not on the other rows of its batch
    assert torch.equal(student.sample_continuations(prompt[1:], 6, 0.9, uniforms[1:]), sampled[1:])
    greedy, tokens = student.sample_continuations(prompt, 6, 0.0, uniforms), prompt
    with torch.no_grad():
        for _ in range(6):
            tokens = torch.cat([tokens, student(tokens)[:, -1].argmax(-1, keepdim=True)], dim=-1)
    assert torch.equal(greedy, tokens)


RUN = ("--max-bytes", "100k", "--seq-len", "32", "--batch-size", "8", "--eval-tokens", "1k", "--device", "cpu",
       "--eval-every", "0", "--lr", "0.003", "--tokens", "6144", "--save-every", "4",
       "--on-policy-fraction", "0.5", "--on-policy-prompt-tokens", "8", "--on-policy-continuation-tokens", "8",
       "--on-policy-start", "0.25", "--kd", "jsd")


class Crash(Exception):
    pass


@pytest.mark.parametrize("kind", ["family", "gpt2"])
def test_both_kinds_distil_on_policy_resume_exactly_and_export(cli, tmp_path, tokenizer, monkeypatch,  # noqa: F811
                                                               kind):
    """One recipe through the interface: distil with on-policy sampling, stop after a checkpoint (in this
    process: a crash right after the checkpoint's state was written) and resume to the same loss, FLOPs by
    one formula (student, teacher and generation), export a Hugging Face model whose logits are the run's."""
    teacher = save_gpt2(tmp_path / "teacher", tokenizer)
    student = (("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16") if kind == "family"
               else ("--student-init", save_gpt2(tmp_path / "start", tokenizer, seed=1)))
    args = ("distill", "--teacher", teacher, *student, *RUN)
    code, _, err = cli(*args, "--out", tmp_path / "whole")
    assert code == 0, err
    save_state, saved = RunDirectory.save_state, []

    def crash_after_the_second_checkpoint(run, state):
        save_state(run, state)
        saved.append(state["progress"]["step"])
        if len(saved) == 2:
            raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(RunDirectory, "save_state", crash_after_the_second_checkpoint)
        with pytest.raises(Crash):
            cli(*args, "--out", tmp_path / "killed")
    assert not (tmp_path / "killed" / "result.json").exists()
    code, _, err = cli(*args, "--out", tmp_path / "killed")
    assert code == 0 and f"from step {saved[-1]}/" in err, err
    whole, resumed = (json.loads((tmp_path / run / "result.json").read_text()) for run in ("whole", "killed"))
    assert resumed["val_loss"] == whole["val_loss"]

    plan = RunRecord.load(tmp_path / "whole" / "config.json").plan
    on_policy = whole["on_policy"]
    assert on_policy["sequences"] > 0
    assert on_policy["generation_flops"] == generation_flops(plan.student, 8, 8, on_policy["sequences"])
    assert whole["forward_flops_per_token"] == plan.student.forward_flops_per_token(32)
    # the teacher's forward on every token (its scoring of the rollouts among them) and the student's sampling
    assert whole["flops"] == pytest.approx(3 * whole["forward_flops_per_token"] * whole["tokens"]
                                           + whole["teacher"]["flops"] + on_policy["generation_flops"], rel=1e-12)

    code, _, err = cli("export-hf", tmp_path / "killed", tmp_path / "export")
    assert code == 0, err
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    run_model = (load_pretrained(tmp_path / "whole") if kind == "family"
                 else AutoModelForCausalLM.from_pretrained(tmp_path / "whole" / HF_STUDENT_DIR))
    ids = torch.randint(0, VOCAB, (1, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = run_model.eval()(ids)
        expected = expected if torch.is_tensor(expected) else expected.logits
        torch.testing.assert_close(exported(ids).logits, expected[..., :VOCAB], rtol=1e-5, atol=1e-5)
