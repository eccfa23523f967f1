"""`distillscale demo --quick`, the main job, end to end, with a teacher (`--data DIR --teacher MODEL`):
a tiny Hugging Face teacher made here and saved with its own tokenizer; the pipeline tests' design
(tests/report/conftest.py, run as `demo --quick`) on the corpus in that tokenizer, both laws fitted and
checked on held-out runs, the report; the teacher measured on the laws' validation split and planned
for; then the planned student distilled from it, its loss checked against the plan's interval; the
demo run again, reusing its runs. One demo serves every check (a demo without a teacher runs the same
sweep and report on the builtin corpus). And a teacher the demo cannot calibrate for refused in one
line before the sweep starts."""

from __future__ import annotations

import io
import json
import random
import re
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from distillscale.data.loss_identity import LossIdentity
from tests.report.conftest import pipeline_design, pipeline_runs

# The user's teacher, trained briefly: its loss lies above the irreducible loss E of the laws that the
# pipeline design's runs give, so that the demo plans a student from it.
TEACHER = ("--n-layers", "2", "--aspect-ratio", "24", "--head-dim", "24", "--vocab-size", "512", "--seq-len", "128",
           "--batch-size", "16", "--lr", "0.003", "--schedule", "wsd", "--tokens", "30K", "--eval-tokens", "64K",
           "--eval-every", "0", "--device", "cpu")


def markov_corpus(folder: Path, documents: int = 400, words: int = 800) -> Path:
    """Text with structure to learn: each word of a 3,000-word vocabulary has six likely successors."""
    rng = random.Random(0)
    letters = "etaoinshrdlcumwfgypbvk"
    vocabulary = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(1, 8))) for _ in range(3000)})
    successors = {word: rng.sample(vocabulary, 6) for word in vocabulary}
    folder.mkdir(parents=True)
    for document in range(documents):
        word, text = rng.choice(vocabulary), []
        for i in range(words):
            text.append(word + (" .\n" if i % 17 == 16 else ""))
            word = rng.choice(successors[word]) if rng.random() < 0.85 else rng.choice(vocabulary)
        (folder / f"doc{document:04d}.txt").write_text(" ".join(text) + "\n")
    return folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory, pipeline_spec):
    """One `demo --quick --data CORPUS --teacher MODEL` (the main job with a teacher: the pipeline tests'
    sweep, both fits, the held-out checks, the report, the teacher measured and planned for), shared
    by the tests below: the demo's own checks (the same command without a teacher runs the same sweep
    and report on the builtin corpus) and the teacher's."""
    from distillscale.cli import main

    root = tmp_path_factory.mktemp("own-teacher")
    with pytest.MonkeyPatch.context() as patch, pipeline_design(pipeline_spec):
        patch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
        corpus = markov_corpus(root / "corpus", documents=200)
        # the user's teacher: trained with its own BPE, saved as a Hugging Face Llama directory with its tokenizer
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            assert main(["train", "--data", str(corpus), "--out", str(root / "teacher-run"), *TEACHER]) == 0
            assert main(["export-hf", str(root / "teacher-run"), str(root / "teacher")]) == 0
        sweep, out, err = root / "sweep", io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["demo", "--quick", "--data", str(corpus), "--teacher", str(root / "teacher"),
                         "--out", str(sweep)])
    assert code == 0, err.getvalue()[-3000:]
    return {"root": root, "corpus": corpus, "sweep": sweep, "out": out.getvalue(), "err": err.getvalue(),
            "report": json.loads((sweep / "report.json").read_text())}


@pytest.mark.slow
def test_the_demo_fits_checks_and_reports_the_laws(demo, pipeline_spec):
    report, stdout, stderr, sweep = demo["report"], demo["out"], demo["err"], demo["sweep"]
    sweep_name, runs = pipeline_runs(pipeline_spec)
    assert report["runs"]["supervised"] == runs["teacher"] + runs["baseline"]
    assert report["runs"]["students"] == runs["student"]
    assert report["supervised"] is not None and report["distillation"] is not None
    assert "supervised" in report["extrapolation_check"]
    page = (sweep / "report.html").read_text()
    assert 'id="coefficients-supervised"' in page and 'id="learning-curves"' in page
    assert f"report: {sweep / 'report.html'}" in " ".join(stdout.split())
    assert "supervised law, form " in stdout and "(90% intervals): E = " in stdout
    # No coefficient gets a zero-width interval: one the runs cannot pin down says so instead.
    for law in ("supervised", "distillation"):
        fit = report[law]
        for name, (low, high) in fit["intervals"].items():
            assert high - low > 1e-4 * abs(fit["coefficients"][name]) or name in fit["not_identified"], (law, name)
    printed = re.findall(r"\[([^,\]]+), ([^\]]+)\]", stdout)
    assert printed and all(low != high for low, high in printed)
    for check in report["extrapolation_check"].values():
        assert "skipped" in check or all(run["covered"] is not None for run in check["runs"])
    assert re.search(rf"sweep {sweep_name}-\S+: {sum(runs.values())} runs", " ".join(stderr.split())), stderr[-3000:]


@pytest.mark.slow
def test_running_the_demo_again_reuses_its_finished_runs(demo, cli, monkeypatch, pipeline_demo, pipeline_spec):
    """The second `demo` on the same --out trains nothing (the runs' result.json untouched); its report
    is stubbed here: the fits of the same runs are the first report's (their independence of the runs'
    order and of the CPU: tests/laws/test_fit.py and CI's emulated-CPU run)."""
    from distillscale.report import demo as demo_module

    monkeypatch.setenv("DISTILLSCALE_CACHE", str(demo["root"] / "cache"))
    results = sorted(demo["sweep"].glob("runs/*/result.json"))
    assert len(results) == sum(pipeline_runs(pipeline_spec)[1].values())  # the planned student is another test's
    before = {path: path.stat().st_mtime_ns for path in results}
    monkeypatch.setattr(demo_module, "write_report", lambda *args, **kwargs: (None, demo["report"]))
    code, _, err = cli("demo", "--quick", "--data", demo["corpus"], "--teacher", demo["root"] / "teacher", "--out",
                       demo["sweep"])
    assert code == 0, err[-3000:]
    assert {path: path.stat().st_mtime_ns for path in results} == before, "finished runs were redone"


@pytest.mark.slow
def test_demo_with_your_teacher_plans_a_student_whose_loss_the_plan_predicts(demo, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(demo["root"] / "cache"))
    report, sweep, out = demo["report"], demo["sweep"], demo["out"]
    section = report["teacher"]
    # the laws and the teacher's loss in the same units: the teacher's tokenizer, the corpus's split
    laws = LossIdentity.model_validate(report["laws"]["losses"])
    measured = LossIdentity.model_validate(section["loss"]["losses"])
    assert laws.given and laws.differs(measured) is None
    assert laws.tokenizer.vocab_sha256 == measured.tokenizer.vocab_sha256 and laws.text.split == "val"
    assert section["loss"]["seq_len"] == 128 and section["loss"]["bits_per_byte"] > 0
    # the whole split fits the teacher run's evaluation cap: its loss is the run's recorded val_loss
    recorded = json.loads((demo["root"] / "teacher-run" / "result.json").read_text())["val_loss"]
    assert section["loss"]["nats_per_token"] == pytest.approx(recorded, abs=1e-5)
    assert f"--law {sweep / 'report.json'}" in section["plan_command"]
    assert 'id="your-teacher"' in (sweep / "report.html").read_text()
    assert "your teacher" in " ".join(out.split()) and "distillscale distill --config" in out
    assert section["plan"]["teacher_model"]["loss"] == section["loss"]["nats_per_token"]
    low, high = section["student_interval"]
    # the planned student's config names every path absolutely: it runs the same from any directory
    import tomllib

    config = tomllib.loads(Path(section["student_config"]).read_text())
    assert all(Path(p).is_absolute() for p in (config["run"]["out"], config["teacher"]["teacher"],
                                               config["data"]["data"], config["data"]["tokenizer"]))
    if section["epochs"] > 1:  # the budget repeats the corpus: said beside the verdict
        assert f"{section['epochs']:.1f} epochs" in " ".join(out.split())
    # the planned student, distilled from the teacher on the planned tokens
    monkeypatch.chdir(tmp_path)
    assert cli("distill", "--config", section["student_config"])[0] == 0
    result = json.loads((sweep / "planned-student" / "result.json").read_text())
    assert result["tokens"] == pytest.approx(section["student_tokens"], rel=0.05)  # whole steps
    assert result["non_embedding_params"] == section["student_params"]
    assert low <= result["val_loss"] <= high, (low, result["val_loss"], high, section["student_loss"])
    assert not any(tmp_path.iterdir())  # nothing made where it was run from


@pytest.mark.slow
def test_the_plan_under_the_demos_law_runs_its_models_as_the_sweep_ran_its_own(demo, cli, monkeypatch):
    """The law fitted on the sweep carries the sweep's recipe (its spec's rate, batch rule and schedule);
    the plan's run sheet follows it, not a hyperparameter law read ~1000x below its data, and the
    planned student's config takes the sheet's batch."""
    import tomllib

    from distillscale.sweeps.recipe import sweep_recipe

    monkeypatch.setenv("DISTILLSCALE_CACHE", str(demo["root"] / "cache"))
    report, sweep = demo["report"], demo["sweep"]
    spec = tomllib.loads((sweep / "spec.toml").read_text())
    recipe = report["laws"]["recipe"]
    assert recipe == sweep_recipe(sweep).model_dump(mode="json")
    assert (recipe["lr"], recipe["schedule"], recipe["batch_size"]) == (
        spec["model"]["lr"], spec["model"]["schedule"], spec["model"]["batch_size"])
    section = report["teacher"]
    rows = section["plan"]["run_sheet"]
    assert all(row["train_lr"] == spec["model"]["lr"] and row["schedule"] == spec["model"]["schedule"]
               and row["follows"] == "the sweep's recipe" for row in rows)
    student = next(row for row in rows if row["role"] == "student")
    config = tomllib.loads(Path(section["student_config"]).read_text())
    batch = next(part["batch_size"] for part in config.values() if isinstance(part, dict) and "batch_size" in part)
    assert batch == student["batch_sequences"]
    code, out, err = cli(*section["plan_command"].split()[1:], "--explain")
    assert code == 0, err
    assert "Run sheet (the sweep's recipe" in out and "--schedule wsd" in " ".join(out.split())


def test_a_teacher_the_demo_cannot_use_is_refused_in_one_line_before_the_sweep(tmp_path, cli, monkeypatch, capsys):
    import transformers

    from distillscale.data.tokenizer import END_OF_TEXT, train_byte_level_bpe
    from distillscale.evaluation import cost as cost_module

    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    corpus = markov_corpus(tmp_path / "corpus", documents=4, words=100)
    teacher = tmp_path / "teacher"  # untrained: nothing here gets as far as measuring it
    tokenizer = train_byte_level_bpe([path.read_text() for path in sorted(corpus.iterdir())], 300)
    config = transformers.LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64)
    transformers.LlamaForCausalLM(config).save_pretrained(teacher)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT).save_pretrained(teacher)
    capsys.readouterr()  # transformers' progress bars

    def refused(model, *words, options=()):
        code, out, err = cli("demo", "--quick", "--data", corpus, "--teacher", model, "--out", tmp_path / "sweep",
                             *options)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert all(word in err for word in words), err
        assert not (tmp_path / "sweep").exists()  # nothing written, nothing trained

    refused(corpus, "--teacher")  # text, not a model
    bare = tmp_path / "bare"
    shutil.copytree(teacher, bare)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bare / name).unlink()
    refused(bare, "has no tokenizer", "save it there")
    remote = tmp_path / "remote"
    shutil.copytree(teacher, remote)
    settings = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**settings, "auto_map": {"AutoModelForCausalLM": "x.Model"}}))
    refused(remote, "needs its own code", "--trust-remote-code")
    broken = tmp_path / "broken"  # weights cut short: refused by a forward before the sweep, not after it
    shutil.copytree(teacher, broken)
    weights = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    refused(broken, "model.safetensors", "safetensors")
    monkeypatch.setattr(cost_module, "available_memory", lambda device: 1e3)
    refused(teacher, "too large for this machine", "MB", "distillscale loss")
