"""Any Hugging Face causal LM as a student (`--student-init DIR` of an architecture the family does not
import): it trains by the same recipe, resumes exactly after kill -9, and exports.

Two tiny random students, created here (no download): GPT-2 (learned positions, LayerNorm, tied
embeddings, dropout) and Mistral as the "Llama-style" one (RMSNorm, RoPE, SwiGLU, grouped-query
attention; its architecture is not Llama's, so it is not imported into the family and takes the
generic path, as any Llama-like model of another name does).
"""

from __future__ import annotations

import inspect
import json
import math

import pytest
import safetensors.torch
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
)

from distillscale.data.tokenizer import END_OF_TEXT, train_byte_level_bpe
from distillscale.model.hf_flops import hf_forward_flops
from distillscale.planning.flops import generation_flops
from distillscale.training.hf_student import HFStudent

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

VOCAB = 320
EXACT_GENERIC = "forward_flops_per_token of the generic Hugging Face student: exact"


def student_record(model):
    return HFStudent(model, VOCAB).record()
RUN = ("--max-bytes", "100k", "--seq-len", "32", "--batch-size", "8", "--eval-tokens", "1k", "--device", "cpu",
       "--eval-every", "0", "--lr", "0.003")


@pytest.fixture(scope="module")
def tokenizer():
    return train_byte_level_bpe([inspect.getsource(json) * 50], vocab_size=VOCAB)


def save_gpt2(directory, tokenizer, vocab_size=VOCAB, seed=0):
    config = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                        bos_token_id=0, eos_token_id=0, architectures=["GPT2LMHeadModel"])
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(directory)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT).save_pretrained(directory)
    return directory


def save_mistral(directory, tokenizer, vocab_size=384, seed=1):
    """Padded vocabulary (more output rows than the tokenizer's ids), untied embeddings."""
    config = MistralConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                           architectures=["MistralForCausalLM"])
    torch.manual_seed(seed)
    MistralForCausalLM(config).save_pretrained(directory)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("save", [save_gpt2, save_mistral], ids=["gpt2", "mistral"])
def test_a_generic_student_trains_and_exports(cli, tmp_path, tokenizer, save):
    teacher = save_gpt2(tmp_path / "teacher", tokenizer)
    start = save(tmp_path / "start", tokenizer, seed=1)
    out = tmp_path / "student"
    code, stdout, err = cli("distill", "--teacher", teacher, "--student-init", start, "--out", out, *RUN,
                            "--tokens", "1k", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["status"] == "completed" and math.isfinite(result["val_loss"])
    started = AutoModelForCausalLM.from_pretrained(start)
    embeddings = {id(started.get_input_embeddings().weight), id(started.get_output_embeddings().weight)}
    expected_n = sum(p.numel() for p in started.parameters() if id(p) not in embeddings)
    assert result["non_embedding_params"] == expected_n
    # FLOPs as the family counts them (every matmul, the output head included, attention over the context),
    # the same count the GPT-2 teacher gets: 2 x non-embedding parameters missed the head and the attention
    forward = hf_forward_flops(started).forward_flops_per_token(32)
    assert result["forward_flops_per_token"] == forward > 2 * expected_n
    assert result["teacher"]["forward_flops_per_token"] == hf_forward_flops(
        AutoModelForCausalLM.from_pretrained(teacher)).forward_flops_per_token(32)
    assert result["flops"] == 3 * forward * result["tokens"] + result["teacher"]["flops"]
    assert EXACT_GENERIC in result["flops_method"]
    # The student moved away from its start.
    trained = AutoModelForCausalLM.from_pretrained(out / "hf_model")
    assert not torch.equal(trained.lm_head.weight, started.lm_head.weight)

    code, _, err = cli("export-hf", out, tmp_path / "export")
    assert code == 0, err
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "export")
    ids = torch.tensor([hf_tokenizer("def load(s):\n    return json.loads(s)")["input_ids"]])
    # the export keeps the tokenizer's rows only: a padded vocabulary's untrained rows (Mistral's 384 for 320
    # ids) were exported, and sampling the export could give ids no tokenizer has
    assert exported.config.vocab_size == VOCAB and exported.get_output_embeddings().weight.shape[0] == VOCAB
    with torch.no_grad():
        assert torch.equal(exported(ids).logits, trained.eval()(ids).logits[..., :VOCAB])


ON_POLICY = ("--on-policy-fraction", "0.5", "--on-policy-prompt-tokens", "8", "--on-policy-continuation-tokens",
             "8", "--on-policy-start", "0.25", "--kd", "jsd")


@pytest.mark.parametrize("save, extra", [(save_gpt2, ()), (save_mistral, ON_POLICY)], ids=["gpt2", "mistral-on-policy"])
def test_a_generic_student_resumes_exactly_after_kill_9(cli, tmp_path, tokenizer, kill_after_checkpoint, save, extra):
    teacher = save_gpt2(tmp_path / "teacher", tokenizer)
    start = save(tmp_path / "start", tokenizer, seed=1)
    args = ("--teacher", teacher, "--student-init", start, *RUN, "--tokens", "10k", "--save-every", "4", *extra)
    code, _, err = cli("distill", "--out", tmp_path / "whole", *args)
    assert code == 0, err

    out = tmp_path / "killed"
    killed_at = kill_after_checkpoint(out, "distill", "--out", out, *args)
    assert 4 <= killed_at < 40
    code, _, err = cli("distill", "--out", out, *args)
    assert code == 0, err
    assert f"resuming {out} from step {killed_at}/" in err
    resumed, whole = (json.loads((run / "result.json").read_text()) for run in (out, tmp_path / "whole"))
    assert resumed["val_loss"] == whole["val_loss"]
    weights = [safetensors.torch.load_file(run / "hf_model" / "model.safetensors") for run in (out, tmp_path / "whole")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    if extra:
        on_policy = resumed["on_policy"]
        assert on_policy["sequences"] > 0 and on_policy["generation_flops"] > 0
        student = AutoModelForCausalLM.from_pretrained(start)
        assert on_policy["generation_flops"] == generation_flops(student_record(student), 8, 8, on_policy["sequences"])
        assert EXACT_GENERIC in resumed["flops_method"]


def test_sampling_with_the_models_cache_is_sampling_without_it(tokenizer, tmp_path):
    """At temperature 0 the cached sampling loop continues as argmax over full forward passes does."""
    from distillscale.training.hf_student import load_hf_student

    student = load_hf_student(save_mistral(tmp_path / "mistral", tokenizer), VOCAB, 32)
    prompt = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(1))
    sampled = student.sample_continuations(prompt, 6, 0.0, torch.rand(2, 6, generator=torch.Generator().manual_seed(0)))
    tokens = prompt
    with torch.no_grad():
        for _ in range(6):
            tokens = torch.cat([tokens, student.eval()(tokens)[:, -1].argmax(-1, keepdim=True)], dim=-1)
    assert torch.equal(sampled, tokens) and sampled.max() < VOCAB


def one_line_refusal(cli, tmp_path, *args, message: str):
    code, _, err = cli(*args)
    assert code == 2 and message in err, err
    lines = [line for line in err.splitlines() if line.strip() and "Writing model shards" not in line]
    assert len(lines) == 1, err
    assert not (tmp_path / "student").exists()


def test_generic_student_refusals_are_one_line(cli, tmp_path, tokenizer):
    start = save_gpt2(tmp_path / "gpt2", tokenizer)
    run = ("--teacher", start, "--out", tmp_path / "student", *RUN, "--tokens", "1k")
    remote = save_gpt2(tmp_path / "remote", tokenizer)
    config = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoModelForCausalLM": "x.Y"}}))
    unknown = save_gpt2(tmp_path / "unknown", tokenizer)
    (unknown / "config.json").write_text(json.dumps(config | {"model_type": "no-such-architecture"}))
    small = save_gpt2(tmp_path / "small", tokenizer, vocab_size=VOCAB - 64)
    for extra, message in [
        (("--student-init", remote), "needs its own model code (auto_map in config.json)"),
        (("--student-init", unknown), "cannot load the Hugging Face model"),
        (("--student-init", small), f"the tokenizer has {VOCAB} token ids but --student-init"),
        (("--student-init", start, "--no-mup"), "--mup does not mix with --student-init"),
    ]:
        one_line_refusal(cli, tmp_path, "distill", *run, *extra, message=message)


@pytest.mark.slow
def test_a_generic_student_under_fsdp_matches_one_process(tmp_path, tokenizer, rounding_drift):
    """Two FSDP ranks (the decoder layers sharded) train the Mistral student as one process does with
    the same global batch, across a kill -9 of both ranks after a sharded checkpoint and the resume;
    the final model is written whole, as a Hugging Face directory."""
    from tests.training.test_fsdp import kill_after_first_checkpoint, launch, records, run_here

    teacher = save_gpt2(tmp_path / "teacher", tokenizer)
    start = save_mistral(tmp_path / "start", tokenizer)
    args = ("distill", "--teacher", str(teacher), "--student-init", str(start), *map(str, RUN), "--tokens", "5120",
            "--grad-accum", "2", "--log-every", "1", "--save-every", "5")
    run_here(*args, "--out", str(tmp_path / "one"))  # the one process: this one
    two = tmp_path / "two"
    step = kill_after_first_checkpoint(*args, "--out", str(two), "--parallel", "fsdp", run=two, ranks=2)
    assert 5 <= step < 10
    launch(*args, "--out", str(two), "--parallel", "fsdp", ranks=2)
    one, resumed = records(tmp_path / "one"), records(two)
    assert len(one) == 10 and [r["step"] for r in resumed] == [r["step"] for r in one]
    for a, b in zip(one, resumed):
        assert b["loss"] == pytest.approx(a["loss"], abs=rounding_drift.loss)
    results = [json.loads((tmp_path / run / "result.json").read_text()) for run in ("one", "two")]
    assert results[1]["world_size"] == 2
    assert results[1]["val_loss"] == pytest.approx(results[0]["val_loss"], abs=rounding_drift.loss)
    weights = [safetensors.torch.load_file(tmp_path / run / "hf_model" / "model.safetensors") for run in ("one", "two")]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        torch.testing.assert_close(weights[1][name], weights[0][name], rtol=1e-4, atol=1e-5)


def test_a_generic_student_trains_supervised_and_from_a_logit_cache(cli, tmp_path, tokenizer):
    """The other objectives reach the student through the same adapter: plain `train`, and `distill
    --teacher-cache` (top-k logits of a GPT-2 teacher cached by `cache-logits`)."""
    start = save_mistral(tmp_path / "start", tokenizer)
    tokenizer_file = tmp_path / "tokenizer.json"
    tokenizer.save(str(tokenizer_file))
    code, stdout, err = cli("train", "--student-init", start, "--tokenizer", tokenizer_file, "--out", tmp_path / "sup",
                            *RUN, "--tokens", "1k", "--json")
    assert code == 0, err
    assert json.loads(stdout).get("teacher") is None and (tmp_path / "sup" / "hf_model" / "model.safetensors").is_file()

    teacher = save_gpt2(tmp_path / "teacher", tokenizer)
    code, _, err = cli("cache-logits", "--teacher", teacher, "--out", tmp_path / "cache", "--top-k", "16",
                       "--seq-len", "32", "--tokens", "2048", "--shard-tokens", "512", "--batch-size", "16",
                       "--max-bytes", "100k", "--eval-tokens", "1k", "--device", "cpu")
    assert code == 0, err
    code, stdout, err = cli("distill", "--teacher-cache", tmp_path / "cache", "--student-init", start,
                            "--out", tmp_path / "cached", *RUN, "--tokens", "1k", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["status"] == "completed" and result.get("teacher_cache") is not None
    assert EXACT_GENERIC in result["flops_method"]


def test_a_generic_student_distils_from_a_served_teacher(cli, tmp_path, tokenizer):
    """`distill --teacher-url`: the GPT-2 teacher's top-k served over HTTP (in a thread), the Mistral student."""
    from distillscale.serve.teacher import TeacherService, make_teacher_server

    from tests.training.test_served_teacher import Serving

    teacher = save_gpt2(tmp_path / "teacher", tokenizer)
    start = save_mistral(tmp_path / "start", tokenizer)
    serving = Serving(make_teacher_server(TeacherService(teacher, top_k=8)))
    try:
        code, stdout, err = cli("distill", "--teacher-url", serving.url, "--top-k", "8", "--tokenizer",
                                teacher / "tokenizer.json", "--student-init", start, "--out", tmp_path / "served",
                                *RUN, "--tokens", "1k", "--json")
    finally:
        serving.stop()
    assert code == 0, err
    result = json.loads(stdout)
    assert result["status"] == "completed" and result.get("teacher_server") is not None
    assert EXACT_GENERIC in result["flops_method"]


def test_a_generic_student_distils_from_a_teacher_of_another_tokenizer(cli, tmp_path, tokenizer):
    """Cross-tokenizer distillation: the GPT-2 teacher speaks the module's tokenizer, the Mistral
    student another one (its own, saved with it)."""
    other = train_byte_level_bpe([inspect.getsource(inspect) * 5], vocab_size=VOCAB)
    teacher = save_gpt2(tmp_path / "teacher", tokenizer)
    start = save_mistral(tmp_path / "start", other)
    code, stdout, err = cli("distill", "--teacher", teacher, "--tokenizer", start, "--student-init", start,
                            "--out", tmp_path / "cross", *RUN, "--tokens", "1k", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["distillation"]["mode"] == "cross-tokenizer"
    assert result["status"] == "completed" and math.isfinite(result["val_loss"])
    assert EXACT_GENERIC in result["flops_method"]


def test_a_wsd_fork_of_a_generic_student_equals_its_run_from_scratch(cli, tmp_path, tokenizer):
    """A cooldown forked from a longer WSD run's stable phase is the WSD run of its length from scratch."""
    teacher = save_gpt2(tmp_path / "teacher", tokenizer)
    start = save_mistral(tmp_path / "start", tokenizer)
    common = ("distill", "--teacher", teacher, "--student-init", start, *RUN, "--schedule", "wsd",
              "--warmup-steps", "2", "--save-every", "5", "--json")
    code, _, err = cli(*common, "--out", tmp_path / "parent", "--tokens", "10240", "--fork-tokens", "5120")
    assert code == 0, err
    runs = {}
    for name, extra in (("fork", ("--fork-from", tmp_path / "parent")), ("scratch", ())):
        code, stdout, err = cli(*common, "--out", tmp_path / name, "--tokens", "5120", *extra)
        assert code == 0, err
        runs[name] = json.loads(stdout)
    assert runs["fork"]["fork"]["parent"] == str(tmp_path / "parent") and runs["scratch"].get("fork") is None
    assert abs(runs["fork"]["val_loss"] - runs["scratch"]["val_loss"]) < 1e-4


def test_truncated_safetensors_weights_are_one_line_in_every_command(cli, tmp_path, tokenizer):
    """CRASH: a generic Hugging Face directory with a truncated model.safetensors gave a 50-line SafetensorError
    traceback as a student, a teacher, a served teacher and a cached one (one loader now, `load_hf_causal_lm`)."""
    truncated = save_gpt2(tmp_path / "truncated", tokenizer)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    good = save_gpt2(tmp_path / "gpt2", tokenizer)
    run = ("--out", tmp_path / "student", *RUN, "--tokens", "1k")
    for args in [("distill", "--teacher", good, "--student-init", truncated, *run),
                 ("distill", "--teacher", truncated, "--n-layers", "1", *run),
                 ("serve-teacher", truncated, "--port", "0", "--device", "cpu"),
                 ("cache-logits", "--teacher", truncated, "--out", tmp_path / "student", "--max-bytes", "100k",
                  "--seq-len", "32", "--tokens", "1k", "--device", "cpu", "--top-k", "8")]:
        code, _, err = cli(*args)  # the lines before the error: preparing the data
        assert code == 2 and "Traceback" not in err and err.count("error:") == 1, (args[0], err)
        last = err.strip().splitlines()[-1]
        assert f"cannot load the Hugging Face model in {truncated}: its safetensors weights are truncated" in last
        assert not (tmp_path / "student").exists()


def test_a_generic_start_named_with_a_tilde_in_a_config_file_takes_the_generic_path(cli, tmp_path, tokenizer,
                                                                                  monkeypatch):
    """`~` in a config file (no shell expands it) was not expanded before the student-kind check: a GPT-2
    in ~/gpt2 was taken for a family model and refused."""
    monkeypatch.setenv("HOME", str(tmp_path))
    save_gpt2(tmp_path / "gpt2", tokenizer)
    config = tmp_path / "run.toml"
    config.write_text('[model]\nstudent_init = "~/gpt2"\n')
    code, out, err = cli("train", "--config", config, "--tokenizer", tmp_path / "gpt2", "--out", tmp_path / "s",
                         *RUN, "--tokens", "512", "--json")
    assert code == 0, err
    assert EXACT_GENERIC in json.loads(out)["flops_method"]
    assert (tmp_path / "s" / "hf_model" / "model.safetensors").is_file()
