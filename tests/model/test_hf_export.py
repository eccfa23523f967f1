"""`distillscale export-hf`: the exported directory loads in transformers with the same logits."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from distillscale.data.tokenizer import train_byte_level_bpe
from distillscale.model import ModelConfig, Transformer, save_pretrained

TEXT = "def add(x, y):\n    return x + y\n\nprint(add(1, 2))  # three\n"


@pytest.fixture(scope="module")
def tokenizer():
    return train_byte_level_bpe([TEXT * 20], vocab_size=300)


def make_run(directory, tokenizer, **overrides):
    """A run directory as training leaves it: weights, model config, tokenizer."""
    config = ModelConfig(**{"n_layers": 2, "aspect_ratio": 32, "head_dim": 16, "vocab_size": 320,
                            "max_seq_len": 64, "mup_base_width": 96, **overrides})
    torch.manual_seed(0)
    model = Transformer(config)
    save_pretrained(model, directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    return model


@pytest.mark.parametrize("mup", [True, False], ids=["mup", "sp"])
@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("qk_norm, architecture", [(True, "Qwen3ForCausalLM"), (False, "LlamaForCausalLM")])
def test_export_round_trips_logits(tmp_path, cli, tokenizer, qk_norm, architecture, tie, mup):
    model = make_run(tmp_path / "run", tokenizer, qk_norm=qk_norm, tie_embeddings=tie, mup=mup)
    code, out, err = cli("export-hf", tmp_path / "run", tmp_path / "hf", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["architecture"] == architecture
    # The muP multiplier (96 / 64) must be folded into an untied lm_head.
    assert summary["tie_word_embeddings"] == (tie and not mup)

    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert type(hf_model).__name__ == architecture
    idx = torch.randint(0, 320, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf_model(idx).logits, model(idx), rtol=0, atol=1e-4)


def test_exported_tokenizer_matches_the_run_tokenizer(tmp_path, cli, tokenizer):
    make_run(tmp_path / "run", tokenizer)
    assert cli("export-hf", tmp_path / "run", tmp_path / "hf")[0] == 0
    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tokenizer(TEXT)["input_ids"] == tokenizer.encode(TEXT).ids
    assert hf_tokenizer.eos_token == "<|endoftext|>"
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["eos_token_id"] == tokenizer.token_to_id("<|endoftext|>")
    assert config["rope_parameters"]["rope_theta"] == 500_000.0
    assert (config["head_dim"], config["intermediate_size"], config["rms_norm_eps"]) == (16, 192, 1e-6)


def test_a_foreign_directory_is_never_replaced_an_earlier_export_only_with_overwrite(tmp_path, cli, tokenizer):
    make_run(tmp_path / "run", tokenizer)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        code, _, err = cli("export-hf", tmp_path / "run", tmp_path / "hf", *extra)
        assert code == 2 and "is not empty and is not a distillscale export" in err
        assert [p.name for p in (tmp_path / "hf").iterdir()] == ["notes.txt"]
        assert (tmp_path / "hf" / "notes.txt").read_text() == "mine"

    assert cli("export-hf", tmp_path / "run", tmp_path / "export")[0] == 0
    code, _, err = cli("export-hf", tmp_path / "run", tmp_path / "export")
    assert code == 2 and "holds an earlier export: pass --overwrite" in err
    assert cli("export-hf", tmp_path / "run", tmp_path / "export", "--overwrite")[0] == 0
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "config.json", "distillscale_export.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_overwrite_keeps_the_files_a_user_added_to_an_earlier_export(tmp_path, cli, tokenizer):
    make_run(tmp_path / "run", tokenizer)
    export = tmp_path / "export"
    assert cli("export-hf", tmp_path / "run", export)[0] == 0
    (export / "README.md").write_text("# my model card")
    (export / "eval").mkdir()
    (export / "eval" / "results.txt").write_text("accuracy 0.5")
    (export / "model.safetensors").write_bytes(b"stale")  # ours: replaced
    code, _, err = cli("export-hf", tmp_path / "run", export, "--overwrite")
    assert code == 0, err
    assert (export / "README.md").read_text() == "# my model card"
    assert (export / "eval" / "results.txt").read_text() == "accuracy 0.5"
    assert (export / "model.safetensors").stat().st_size > 1000
    assert AutoModelForCausalLM.from_pretrained(export) is not None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_overwrite_never_replaces_a_user_file_of_the_same_name(tmp_path, cli, tokenizer):
    """A file the earlier export's record does not list is the user's, even under an export's name."""
    make_run(tmp_path / "run", tokenizer)
    export = tmp_path / "export"
    assert cli("export-hf", tmp_path / "run", export)[0] == 0
    marker = export / "distillscale_export.json"
    record = json.loads(marker.read_text())
    record["files"].remove("tokenizer_config.json")
    marker.write_text(json.dumps(record))
    (export / "tokenizer_config.json").write_text("mine")
    code, _, err = cli("export-hf", tmp_path / "run", export, "--overwrite")
    assert code == 2 and "Traceback" not in err and "is not a file distillscale wrote" in err, err
    assert (export / "tokenizer_config.json").read_text() == "mine"


def test_export_help_says_what_overwrite_replaces(cli):
    code, out, _ = cli("export-hf", "--help")
    assert code == 0 and "files you added there stay" in " ".join(out.split())


def test_an_empty_output_directory_is_filled(tmp_path, cli, tokenizer):
    make_run(tmp_path / "run", tokenizer)
    (tmp_path / "hf").mkdir()
    assert cli("export-hf", tmp_path / "run", tmp_path / "hf")[0] == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file()


def test_export_never_replaces_the_run_directory(tmp_path, cli, tokenizer):
    make_run(tmp_path / "run", tokenizer)
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    for target in (tmp_path / "run", tmp_path):
        code, _, err = cli("export-hf", tmp_path / "run", target, "--overwrite")
        assert code == 2
        assert "would replace the run directory" in err
    # nor inside it: the export's files changed the run (it was written there)
    code, _, err = cli("export-hf", tmp_path / "run", tmp_path / "run" / "hf")
    assert code == 2 and "is inside" in err and "an input of this command" in err, err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before


@pytest.mark.parametrize("breakage, message", [
    ("no-run", "does not exist, not a run directory: give a directory written by `distillscale train`"),
    ("no-tokenizer", "tokenizer.json is missing: export needs the run's tokenizer"),
    ("no-config", "model_config.json is missing"),
    ("no-weights", "model.safetensors is missing"),
    ("small-vocab", "the tokenizer does not belong to this model"),
    ("out-is-file", "exists and is not a directory"),
])
def test_bad_inputs_give_one_line_errors(tmp_path, cli, tokenizer, breakage, message):
    run, out = tmp_path / "run", tmp_path / "hf"
    make_run(run, tokenizer, vocab_size=128 if breakage == "small-vocab" else 320)
    if breakage == "no-run":
        run = tmp_path / "missing"
    elif breakage == "no-tokenizer":
        (run / "tokenizer.json").unlink()
    elif breakage == "no-config":
        (run / "model_config.json").unlink()
    elif breakage == "no-weights":
        (run / "model.safetensors").unlink()
    elif breakage == "out-is-file":
        out.write_text("")
    code, _, err = cli("export-hf", run, out)
    assert code == 2
    assert err.startswith("distillscale: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.is_dir()


def test_export_is_readable_like_normally_created_files(tmp_path, cli, tokenizer):
    make_run(tmp_path / "run", tokenizer)
    assert cli("export-hf", tmp_path / "run", tmp_path / "hf")[0] == 0
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference.txt").write_text("")
    assert (tmp_path / "hf").stat().st_mode == (tmp_path / "reference").stat().st_mode
    modes = {path.stat().st_mode for path in (tmp_path / "hf").iterdir()}
    assert modes == {(tmp_path / "reference.txt").stat().st_mode}
