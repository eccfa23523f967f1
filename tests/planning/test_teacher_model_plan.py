"""`plan --teacher-model DIR` and `--student-model DIR` for Hugging Face directories: N and FLOPs per token
from the model's config (the engine's one count), L_T from its loss.json or measured on the law's split;
a teacher of another tokenizer, or a loss.json of another text, refused in one line; `--teacher-loss`
alone says what the law's losses are; bits per byte in `plan --json`."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import pytest

import distillscale as ds
from distillscale.data.loss_identity import prepared_loss_identity
from distillscale.data.loss_record import LossRecord
from distillscale.laws.lawset import ComputeSettings

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

RUN = ("--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32", "--vocab-size", "320", "--tokens", "10k",
       "--batch-size", "8", "--eval-tokens", "4k", "--eval-every", "0", "--device", "cpu", "--max-bytes", "300k",
       "--seq-len", "32")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny run exported as a Hugging Face directory with its tokenizer, and its corpus."""
    import random

    from distillscale.cli import main

    rng = random.Random(1)
    words = ["".join(rng.choice("etaoinshrdlucmfw") for _ in range(rng.randint(2, 7))) for _ in range(400)]
    corpus = tmp_path_factory.mktemp("corpus")
    for i in range(120):
        (corpus / f"{i:03d}.txt").write_text(" ".join(rng.choice(words[:60] if rng.random() < 0.6 else words)
                                                      for _ in range(rng.randint(400, 900))) + "\n")
    run = tmp_path_factory.mktemp("runs") / "teacher"
    assert main(["train", "--out", str(run), "--data", str(corpus), *RUN]) == 0
    exported = tmp_path_factory.mktemp("hf") / "teacher"
    assert main(["export-hf", str(run), str(exported)]) == 0
    return exported, corpus


@pytest.fixture(scope="module")
def law(teacher, tmp_path_factory):
    """busbridge2025's coefficients recorded as losses on the teacher's tokenizer and the corpus's split
    (what a sweep on the corpus in the teacher's tokenizer records), at the runs' context."""
    from distillscale.data import DataConfig, prepare_data

    exported, corpus = teacher
    prepared = prepare_data(DataConfig(path=str(corpus), tokenizer=str(exported), max_bytes=300_000), progress=False)
    laws = ds.load_laws("busbridge2025")
    laws.name, laws.losses = "mine", prepared_loss_identity(prepared)
    laws.compute = ComputeSettings(32, prepared.vocab_size, 64.0)
    # its losses halved, as a sweep on this corpus would find them: a 20K-parameter student near 3.9
    # nats/token, below a uniform guess over the 320 ids (5.77), where a plan may print it
    law = laws.supervised   # L = E + (A N^-alpha + B D^-beta)^gamma: each term halved
    supervised = dataclasses.replace(law, E=law.E / 2, A=law.A * 0.5 ** (1 / law.gamma),
                                     B=law.B * 0.5 ** (1 / law.gamma))
    laws.supervised = supervised
    laws.distillation = dataclasses.replace(laws.distillation, student_law=supervised)
    path = tmp_path_factory.mktemp("laws") / "law.json"
    laws.save(path)
    return path, prepared


@pytest.mark.slow
def test_a_teacher_model_is_counted_from_its_config_and_its_loss_found_where_loss_kept_it(cli, teacher, law, tmp_path):
    from distillscale.model.sizes import model_size

    exported, corpus = teacher
    path, prepared = law
    code, out, _ = cli("loss", exported, "--data", prepared.directory, "--seq-len", "32", "--json")
    assert code == 0 and not (exported / "loss.json").exists()
    record = LossRecord.model_validate({k: v for k, v in json.loads(out).items() if k != "written_to"})
    code, out, err = cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K", "--teacher-model",
                         exported, "--json")
    assert code == 0, err
    plan = json.loads(out)
    size = model_size(exported)
    assert plan["teacher_params"] == size.non_embedding_params and plan["teacher_loss"] == record.nats_per_token
    model = plan["teacher_model"]
    assert model["forward_flops_per_token"] == size.forward_flops_per_token(32)
    assert plan["flops"]["teacher_inference"] == pytest.approx(model["forward_flops_per_token"] * plan["student_tokens"])
    # the plan's losses in bits per byte of the law's text: nats/token x tokens/bytes / ln 2
    units = plan["losses"]
    text = units["identity"]["text"]
    assert units["bits_per_byte"]["teacher-inference"]["loss"] == pytest.approx(
        plan["student_loss"] * text["tokens"] / text["bytes"] / math.log(2))
    assert "distillscale's cache" in model["loss_source"]
    python = ds.plan(str(path), compute=1e13, student_params=20e3, teacher_model=exported)
    assert python.headline.student_loss == plan["student_loss"] and python.teacher_model.loss == record


@pytest.mark.slow
def test_without_a_measurement_the_teacher_is_measured_on_the_laws_split(cli, teacher, law):
    from distillscale.data.loss_record import MeasurementCache

    exported, _ = teacher
    path, prepared = law
    shutil.rmtree(MeasurementCache().root, ignore_errors=True)
    code, out, err = cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K", "--teacher-model",
                         exported, "--json")
    assert code == 0, err
    measured = json.loads(out)["teacher_model"]
    assert "measured now on the law's split" in measured["loss_source"] and not (exported / "loss.json").exists()
    from distillscale.evaluation.loss import evaluate_loss  # the same measurement as `distillscale loss`

    assert measured["loss"] == evaluate_loss(exported, prepared.directory, seq_len=32, progress=False).nats_per_token
    again = json.loads(cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K", "--teacher-model",
                           exported, "--json")[1])["teacher_model"]
    assert "distillscale's cache" in again["loss_source"] and again["loss"] == measured["loss"]


def test_a_teacher_in_other_units_is_refused_in_one_line(cli, teacher, law, tmp_path):
    from safetensors.torch import load_file, save_file

    exported, corpus = teacher
    path, _ = law

    def refused(*args, words):
        code, _, err = cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        for word in words:
            assert word in err, err

    base = ("plan", "--compute", "1e13", "--student-params", "20K", "--teacher-model", exported)
    # the preset's losses are the paper's tokenizer on C4: calibrate on the teacher's tokenizer
    refused(*base, words=["another tokenizer", "busbridge2025", "data prepare --data DIR --tokenizer",
                          "demo --data DIR --teacher"])
    other = tmp_path / "other"  # its loss.json measured on another split of the corpus
    shutil.copytree(exported, other)
    weights = str(other / "model.safetensors")  # other weights than the teacher measured on the law's split
    save_file({name: (value * 1.7).contiguous() for name, value in load_file(weights).items()}, weights)
    assert cli("loss", other, "--data", corpus, "--val-fraction", "0.1", "--max-bytes", "300k", "--seq-len", "32",
               "--out", other / "loss.json")[0] == 0
    refused(*base[:-1], other, "--law", path, words=["loss.json is the teacher's loss on text", "distillscale loss"])
    bare = tmp_path / "bare"
    shutil.copytree(exported, bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "loss.json"):
        (bare / name).unlink(missing_ok=True)
    refused(*base[:-1], bare, "--law", path, words=["has no tokenizer"])
    refused(*base, "--law", path, "--teacher-loss", "3", words=["--teacher-model or --teacher-loss"])


def test_a_teacher_model_url_no_server_answers_is_refused_in_one_line_naming_it_whole(cli):
    """A URL is not read as a path (`http://` would show as `http:/`): the server is asked, and one that
    does not answer is said in one line that names the URL whole, its credentials hidden (with retries,
    each retry said before it, as every command that asks a server says them)."""
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                         "--teacher-model", "http://me:secret@127.0.0.1:9/v1", "--teacher-retries", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not out, err
    assert err.startswith("distillscale: error: --teacher-model http://***@127.0.0.1:9/v1: asked "
                          "http://***@127.0.0.1:9/v1/models: connection refused") and \
        "secret" not in err
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                         "--teacher-model", "http://me:secret@127.0.0.1:9/v1", "--teacher-retries", "1")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2 and "secret" not in err and "try 2 of 2 in 0.5 s" in lines[0]
    assert "after 2 tries" in lines[1]


@pytest.mark.slow
def test_a_given_teacher_loss_is_said_to_be_in_the_laws_units(cli, law):
    path, _ = law
    code, out, err = cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K", "--teacher-params",
                         "200K", "--teacher-loss", "3.5")
    assert code == 0, err
    assert err.count("--teacher-loss 3.5 is taken as nats/token of tokenizer") == 1
    assert "Losses are nats/token of tokenizer" in out and "bits/byte" in " ".join(out.split())


def test_a_hugging_face_student_is_counted_as_the_engine_counts_it(tmp_path):
    """A generic causal LM (GPT-2: not imported as the family), counted on the meta device from its config,
    has the parameters and forward FLOPs the engine counts when it loads the model."""
    transformers = pytest.importorskip("transformers")
    from distillscale.model.hf_flops import hf_forward_flops
    from distillscale.model.sizes import hf_parameter_counts, model_size

    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=300, n_positions=64)
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(tmp_path / "gpt2")
    size = model_size(tmp_path / "gpt2")
    assert size.kind == "hf" and size.context == 64
    assert size.non_embedding_params == hf_parameter_counts(model).non_embedding
    assert size.forward_flops_per_token(64) == hf_forward_flops(model).forward_flops_per_token(64)
    plan = ds.plan("busbridge2025", compute=1e12, student_model=tmp_path / "gpt2", scenario="best-case")
    assert plan.headline.student_params == size.non_embedding_params
    assert plan.headline.flops.student == pytest.approx(3 * size.forward_flops_per_token(64) * plan.headline.student_tokens)


def test_the_planner_page_plans_a_teacher_model_it_was_given(teacher, law):
    """`serve --teacher-model DIR`: the page offers the model as the existing teacher and plans it as
    `plan --teacher-model` does, and lists the offered models ranked for the plan's student; a model
    it was not given is a message for the control."""
    from distillscale.serve.api import Planner, PlanQuery

    exported, _ = teacher
    path, _ = law
    page = Planner([str(path)], teacher_models=[exported])
    assert page.laws_info()["teacher_models"] == [str(exported)]
    query = PlanQuery(law=str(path), compute="1e13", student="20K", scenario="teacher-inference", teacher="model",
                      teacher_model=str(exported))
    answer = page.update(query)
    assert answer["ok"], answer
    expected = ds.plan(str(path), compute=1e13, student_params=20e3, teacher_model=exported)
    assert answer["plan"]["student_loss"] == expected.headline.student_loss
    assert answer["plan"]["teacher_model"]["path"] == str(exported) and "--teacher-model" in answer["cli"]
    # the loss-vs-compute figure draws this teacher's student (its size, loss and own FLOPs per token),
    # not the scenario's optimal teacher: at the plan's budget (the middle one) it is the plan printed
    assert expected.student_at(1e13).student_loss == pytest.approx(expected.headline.student_loss, rel=1e-12)
    curve = page.compute_curve(query, 20e3)
    assert curve["distilled"][8]["loss"] == pytest.approx(expected.headline.student_loss, rel=1e-9)
    # the page's teacher list: the offered models ranked for the plan's student at its budget, as
    # `teacher --compute` ranks them
    ranked = ds.rank_teachers_for(str(path), student_params=20e3, compute=1e13, candidates=[str(exported)])
    listed = answer["teachers"]["candidates"]
    assert [c["name"] for c in listed] == [str(exported)] and answer["teachers"]["best"] == str(exported)
    assert listed[0]["teacher_loss"] == ranked.candidates[0].loss and len(listed[0]["interval"]) == 2
    assert listed[0]["student_loss"] == ranked.student_losses[0]
    assert listed[0]["student_tokens"] == ranked.tokens_each[0]
    refused = page.update(PlanQuery(law=str(path), compute="1e13", student="20K", scenario="teacher-inference",
                                    teacher="model", teacher_model="/elsewhere"))
    assert not refused["ok"] and "not one the page offers" in refused["errors"]["teacher-model"]


def test_a_teacher_with_a_shorter_context_is_measured_and_priced_at_its_own(cli, teacher, law):
    from distillscale.model.sizes import model_size

    exported, _ = teacher
    path, _ = law
    own = model_size(exported).context
    code, out, err = cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K", "--teacher-model",
                         exported, "--n-ctx", str(2 * own), "--json")
    assert code == 0, err
    assert f"takes at most {own} tokens of context" in err and "--seq-len" not in err
    assert json.loads(out)["teacher_model"]["context"] == own
    # one of the plan's warnings: in --json's too
    assert any(f"takes at most {own} tokens of context" in w for w in json.loads(out)["warnings"])


def test_a_law_priced_with_another_vocabulary_than_its_losses_is_said(cli, law, tmp_path):
    """A law whose FLOP accounting keeps another vocabulary than its tokenizer's (a law written before
    `fit --tokenizer` recorded it) prices every output layer wrong: said once, with the flag that fixes it."""
    path, prepared = law
    laws = ds.load_laws(str(path))
    laws.compute = ComputeSettings()  # 32,168 ids, the preset's
    stale = tmp_path / "stale.json"
    laws.save(stale)
    code, out, err = cli("plan", "--law", stale, "--compute", "1e15", "--student-params", "20K", "--json")
    assert code == 0, err
    notes = [w for w in json.loads(out)["warnings"] if "output layer at 32,168 rows" in w]
    assert len(notes) == 1 and f"--vocab-size {prepared.vocab_size}" in notes[0], json.loads(out)["warnings"]
    fixed = json.loads(cli("plan", "--law", stale, "--compute", "1e15", "--student-params", "20K", "--vocab-size",
                           str(prepared.vocab_size), "--json")[1])
    assert not any("rows" in w for w in fixed["warnings"])
    assert not any("rows" in w for w in json.loads(cli("plan", "--law", path, "--compute", "1e15", "--student-params",
                                                        "20K", "--json")[1])["warnings"])


def test_demo_checks_a_teacher_runs_before_the_sweep(teacher, tmp_path):
    """`demo --teacher`: weights that do not load, or give non-finite logits, are refused in one line
    before the sweep (not after it and the fits); a context shorter than the sweep's windows is said."""
    from safetensors.torch import load_file, save_file

    from distillscale.model.sizes import model_size
    from distillscale.report.demo import check_teacher

    exported, _ = teacher
    own = model_size(exported).context
    said = []
    check_teacher(exported, False, "micro", said.append, 2 * own)
    assert any(f"takes at most {own} tokens of context" in message for message in said), said
    truncated = tmp_path / "truncated"
    shutil.copytree(exported, truncated)
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    with pytest.raises(ds.UserError, match="not a readable safetensors file|cannot be loaded and run") as refused:
        check_teacher(truncated, False, "micro", said.append, own)
    assert len(str(refused.value).splitlines()) == 1
    poisoned = tmp_path / "poisoned"
    shutil.copytree(exported, poisoned)
    tensors = load_file(str(poisoned / "model.safetensors"))
    save_file({name: value.fill_(float("nan")) for name, value in tensors.items()}, str(poisoned / "model.safetensors"))
    with pytest.raises(ds.UserError, match="not finite"):
        check_teacher(poisoned, False, "micro", said.append, own)


@pytest.mark.slow
def test_teacher_ranks_model_directories_measured_on_the_laws_text_beside_a_table(cli, teacher, law, tmp_path,
                                                                                     capsys):
    """`teacher --candidates DIR --candidates FILE ...`: each model measured through the one measurement
    path (the run and its Hugging Face export give the same L_T), ranked beside the table's rows;
    a model of another tokenizer is refused in one line naming what differs, before anything is ranked."""
    from distillscale.cli import main

    exported, corpus = teacher
    path, prepared = law
    # two more teachers of other sizes in the same tokenizer, runs of distillscale's own
    runs = []
    for layers, tokens in (("2", "20k"), ("1", "4k")):
        run = tmp_path / f"teacher-{layers}-{tokens}"
        args = [*RUN, "--n-layers", layers, "--tokens", tokens]
        assert main(["train", "--out", str(run), "--data", str(corpus), "--tokenizer", str(exported), *args]) == 0
        runs.append(run)
    capsys.readouterr()  # the runs' own output
    table = tmp_path / "more.csv"
    table.write_text("name,teacher_loss\nweak,5.5\n")   # below a uniform guess over its 320 ids (5.77)
    given = [exported, *runs]
    code, out, err = cli("teacher", "--law", path, "--student-params", "20K", "--student-tokens", "2M",
                         *[arg for model in given for arg in ("--candidates", model)], "--candidates", table, "--json")
    assert code == 0, err
    ranking = json.loads(out)
    names = [c["name"] for c in ranking["candidates"]]
    assert names == [*map(str, given), "weak"]
    for model, candidate in zip(given, ranking["candidates"]):   # each measured as `loss` measures it
        code, measured, _ = cli("loss", model, "--data", prepared.directory, "--seq-len", "32", "--json")
        assert code == 0 and candidate["teacher_loss"] == json.loads(measured)["nats_per_token"]
        assert candidate["teacher_params"] > 0 and candidate["teacher_flops_per_token"] > 0
        low, high = candidate["interval"]
        assert low < candidate["student_loss"] < high
    assert len({c["teacher_params"] for c in ranking["candidates"][:3]}) >= 2   # sizes differ
    assert ranking["candidates"][3]["teacher_params"] is None
    losses = [c["student_loss"] for c in ranking["candidates"]]
    assert ranking["best"] == names[losses.index(min(losses))]
    assert set(ranking["too_close_to_call"]) <= set(names) - {ranking["best"]}
    assert all(c["past_capacity_gap"] == (c["teacher_loss"] < ranking["optimal_teacher_loss"])
               for c in ranking["candidates"])
    # a teacher trained on another tokenizer (the builtin corpus's): refused, naming the tokenizer
    other = tmp_path / "other"
    assert main(["train", "--out", str(other), *RUN]) == 0
    code, out, err = cli("teacher", "--law", path, "--student-params", "20K", "--student-tokens", "2M",
                         "--candidates", exported, "--candidates", other)
    last = err.strip().splitlines()[-1]   # (the lines before are the other teacher's training, in this process)
    assert code == 2 and last.startswith(f"distillscale: error: --candidates {other} speaks another tokenizer"), err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_served_teacher_is_ranked_and_planned_for_as_its_model_directory_is(cli, teacher, law, tmp_path, capsys):
    """`teacher --candidates URL` and `plan --teacher-model URL`: a teacher behind `serve-teacher` is sized
    and priced as its server states it and measured through the server on the law's split, the same
    teacher and the same plan as its directory's; a server that states no size (vLLM) and one of
    another tokenizer are refused in one line."""
    import http.server
    import threading

    from distillscale.cli import main
    from distillscale.serve.teacher import TeacherService, make_teacher_server

    exported, corpus = teacher
    path, _ = law

    class Bare(http.server.BaseHTTPRequestHandler):   # what vLLM's /v1/models says: no size, no tokenizer
        def do_GET(self):  # noqa: N802
            body = json.dumps({"object": "list", "data": [{"id": "m", "object": "model", "max_model_len": 64}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    other = tmp_path / "other"   # a teacher of another tokenizer (the builtin corpus's)
    assert main(["train", "--out", str(other), *RUN]) == 0
    capsys.readouterr()  # the run's own output
    servers = [make_teacher_server(TeacherService(exported, top_k=4)), http.server.HTTPServer(("127.0.0.1", 0), Bare),
               make_teacher_server(TeacherService(other, top_k=4))]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    served, bare, foreign = (f"http://127.0.0.1:{server.server_address[1]}/v1" for server in servers)
    try:
        code, out, err = cli("teacher", "--law", path, "--student-params", "20K", "--compute", "1e12",
                             "--candidates", exported, "--candidates", served, "--json")
        assert code == 0, err
        local, remote = json.loads(out)["candidates"]
        assert remote["name"] == served and remote["teacher_params"] == local["teacher_params"]
        assert remote["teacher_flops_per_token"] == pytest.approx(local["teacher_flops_per_token"], rel=1e-9)
        assert remote["teacher_loss"] == pytest.approx(local["teacher_loss"], rel=1e-4)   # float32 both ways
        assert remote["student_tokens"] == pytest.approx(local["student_tokens"], rel=1e-9)
        # planned with as its directory is: `plan --teacher-model URL`
        code, out, err = cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K", "--teacher-model",
                             exported, "--json")
        assert code == 0, err
        code, remote_out, err = cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K",
                                    "--teacher-model", served, "--json")
        assert code == 0, err
        local, remote = json.loads(out), json.loads(remote_out)
        assert remote["teacher_model"]["url"] == served and remote["teacher_params"] == local["teacher_params"]
        assert remote["teacher_model"]["forward_flops_per_token"] == pytest.approx(
            local["teacher_model"]["forward_flops_per_token"], rel=1e-9)
        assert remote["teacher_loss"] == pytest.approx(local["teacher_loss"], rel=1e-4)
        assert remote["student_loss"] == pytest.approx(local["student_loss"], rel=1e-4)
        assert remote["flops"]["teacher_inference"] == pytest.approx(local["flops"]["teacher_inference"], rel=1e-4)
        code, text, err = cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K",
                              "--teacher-model", served)
        assert code == 0 and f"teacher {served}: N_T = " in " ".join(text.split()), err
        code, _, err = cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K",
                           "--teacher-model", bare)
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith(f"distillscale: error: --teacher-model {bare}: the server does not "
                                             "state its model's size") and "--teacher-params N" in last, err
        for url, words in ((bare, "does not state its model's size"), (foreign, "speaks another tokenizer")):
            code, _, err = cli("teacher", "--law", path, "--student-params", "20K", "--student-tokens", "2M",
                               "--candidates", url)
            last = err.strip().splitlines()[-1]
            assert code == 2 and last.startswith(f"distillscale: error: --candidates {url}") and words in last, err
            assert "Traceback" not in err
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def distilled(teacher, tmp_path_factory):
    """A finished `distill` run: a student distilled from the teacher's export on the teacher's corpus."""
    from distillscale.cli import main

    exported, corpus = teacher
    out = tmp_path_factory.mktemp("distilled") / "student"
    settings = [arg for arg in RUN if arg not in ("--vocab-size", "320")]
    settings[settings.index("--tokens") + 1] = "4k"
    assert main(["distill", "--out", str(out), "--teacher", str(exported), "--data", str(corpus), *settings]) == 0
    return out


@pytest.mark.slow
def test_a_distilled_run_is_measured_ranked_and_planned_as_any_finished_run(cli, distilled, law):
    """A `distill` run is a finished run like a `train` run: `loss` measures it (on its own data: its
    recorded val_loss again), `plan --teacher-model` plans with it and `teacher --candidates` ranks it,
    each with the one measurement."""
    path, prepared = law
    code, out, err = cli("loss", distilled, "--json")
    assert code == 0, err
    own = json.loads(out)
    assert own["nats_per_token"] == pytest.approx(json.loads((distilled / "result.json").read_text())["val_loss"],
                                                  abs=2e-6)
    assert own["seq_len"] == 32 and own["model_kind"] == "run"  # the run's own windows
    measured = _planned_with_its_measurement(cli, distilled, law)
    code, out, err = cli("teacher", "--law", path, "--student-params", "20K", "--student-tokens", "2M",
                         "--candidates", distilled, "--json")
    assert code == 0, err
    assert json.loads(out)["candidates"][0]["teacher_loss"] == measured


def _planned_with_its_measurement(cli, model, law) -> float:
    """`loss MODEL` on the law's split, and `plan --teacher-model MODEL` planning with that measurement."""
    path, prepared = law
    code, out, err = cli("loss", model, "--data", prepared.directory, "--seq-len", "32", "--json")
    assert code == 0, err
    measured = json.loads(out)["nats_per_token"]
    code, out, err = cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K", "--teacher-model",
                         model, "--json")
    assert code == 0, err
    assert json.loads(out)["teacher_loss"] == measured
    return measured


@pytest.mark.slow
def test_a_pruned_model_is_measured_and_planned_as_any_finished_run(cli, teacher, law, tmp_path):
    """A `prune` output (prune.json, no result.json: it appears whole once done) is a finished model."""
    exported, corpus = teacher
    pruned = tmp_path / "pruned"
    code, _, err = cli("prune", exported, "--out", pruned, "--d-ff", "64", "--seq-len", "32", "--calibration-tokens",
                       "1k", "--data", corpus, "--max-bytes", "300k", "--device", "cpu")
    assert code == 0, err
    _planned_with_its_measurement(cli, pruned, law)


def test_a_measured_teacher_worse_than_a_uniform_guess_is_named_as_measured(cli, teacher, law, tmp_path):
    """A teacher model whose measured loss is above ln V (weights that predict nothing) is refused in one
    line naming the model and its measurement, not a --teacher-loss the user never gave."""
    from safetensors.torch import load_file, save_file

    exported, _ = teacher
    path, prepared = law
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    save_file({name: (value * 40).contiguous() for name, value in tensors.items()}, str(broken / "model.safetensors"))
    # its loss measured on a few windows of the law's split, beside it as a loss.json (what the plan reads first)
    code, _, err = cli("loss", broken, "--data", prepared.directory, "--seq-len", "32", "--max-tokens", "256",
                       "--out", tmp_path / "loss.json")
    assert code == 0, err
    assert LossRecord.load(tmp_path / "loss.json").nats_per_token > math.log(320)
    shutil.copyfile(tmp_path / "loss.json", broken / "loss.json")
    code, out, err = cli("plan", "--law", path, "--compute", "1e13", "--student-params", "20K", "--teacher-model",
                         broken)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--teacher-loss" not in err and f"the loss of --teacher-model {broken}" in err
    assert "nats/token measured" in err and "uniform guess" in err


@pytest.mark.slow
def test_a_familys_cache_is_priced_at_its_teacher_models_vocabulary(cli, teacher, law):
    """`plan --students ... --teacher-model DIR`: the logit cache holds the teacher's own predictions, so it
    is priced at the teacher's output rows (what `cache-logits` encodes), not the law's recorded vocabulary."""
    from distillscale.model.sizes import model_size
    from distillscale.planning.family import bytes_per_token
    from distillscale.planning.family_plan import _Family
    from distillscale.planning.options import PlanSettings
    from distillscale.planning.plan import _teacher_model, planner_for

    exported, _ = teacher
    path, _ = law
    rows = model_size(exported).output_rows
    code, out, err = cli("plan", "--law", path, "--compute", "1e13", "--students", "5K,10K", "--teacher-model",
                         exported, "--cache-top-k", "16")
    assert code == 0, err
    laws = ds.load_laws(str(path))
    settings = PlanSettings.from_python(str(path), compute=1e13, students=(5e3, 10e3), teacher_model=exported,
                                        cache_top_k=16, vocab_size=4 * rows)   # the FLOPs at another vocabulary
    planner = planner_for(laws, vocab_size=4 * rows)
    model = _teacher_model(laws, settings, planner.flops.n_ctx)
    family = _Family(laws, planner, settings, ds.ExistingTeacher(model.params, loss=model.loss.nats_per_token), model,
                     planner.flops)
    cache = family.plans([0, 1], "cached").cache
    assert family.vocab == rows == model.output_rows
    assert cache.vocab_size == rows and cache.bytes_per_token == bytes_per_token(rows, 16)
