"""Several teachers (issue 37): the target is the weighted mixture of their distributions; weights
(1, 0) equal distilling from the first teacher alone; bad mixtures are refused in one line."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from distillscale.training.kd_settings import DistillationLossConfig
from distillscale.training.losses import distillation_loss
from distillscale.training.mixture import MixtureTeacher, normalised_weights

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

VOCAB = 320
SHAPE = ("--aspect-ratio", "64", "--head-dim", "32", "--seq-len", "32", "--batch-size", "8",
         "--eval-tokens", "4k", "--eval-every", "0", "--device", "cpu")
TEACHER = ("--n-layers", "2", "--tokens", "10k", "--max-bytes", "300k", *SHAPE)
STUDENT = ("--n-layers", "1", "--tokens", "3k", "--log-every", "5", *SHAPE)
# A student of servers reads no teacher run, so it names the teachers' text itself: the whole default corpus
# (12 MB) took 46 s to tokenise, most of a served test's time
SERVED_STUDENT = ("--max-bytes", "300k", *STUDENT)


def run_cli(*args) -> None:
    from distillscale.cli import main

    assert main([str(a) for a in args]) == 0


def read_json(path) -> dict:
    return json.loads(path.read_text())


class _Linear(torch.nn.Module):
    """A stand-in teacher: hidden states an embedding, the head a linear map."""

    def __init__(self, seed: int, d: int, vocab: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.embed = torch.nn.Parameter(torch.randn(vocab, d, generator=generator))
        self.out = torch.nn.Parameter(torch.randn(vocab, d, generator=generator))
        self.vocab_size = vocab

    def hidden_states(self, idx):
        return self.embed[idx]

    def head(self, h):
        return h @ self.out.T


def test_the_head_gives_the_weighted_mixture_of_the_softened_distributions():
    a, b = _Linear(0, 8, 50), _Linear(1, 12, 50)
    idx = torch.randint(0, 50, (2, 5))
    for tau in (1.0, 2.0):
        mixture = MixtureTeacher([a, b], [0.25, 0.75], tau)
        logits = mixture.head(mixture.hidden_states(idx))
        expected = 0.25 * (a.head(a.hidden_states(idx)) / tau).softmax(-1) \
            + 0.75 * (b.head(b.hidden_states(idx)) / tau).softmax(-1)
        torch.testing.assert_close((logits / tau).softmax(-1), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kd,top_k", [("forward-kl", None), ("reverse-kl", None), ("jsd", None), ("forward-kl", 5)])
def test_weights_one_and_zero_give_the_first_teachers_loss_and_gradients(kd, top_k):
    a, b = _Linear(0, 8, 50), _Linear(1, 12, 50)
    student = _Linear(2, 6, 50)
    idx, targets = torch.randint(0, 50, (3, 7)), torch.randint(0, 50, (21,))
    config = DistillationLossConfig(kd=kd, temperature=2.0, kd_weight=0.7, top_k=top_k, chunk_size=8)
    mixture = MixtureTeacher([a, b], normalised_weights([1.0, 0.0], 2), config.temperature)

    def loss_and_grad(teacher):
        student.zero_grad()
        hidden = student.hidden_states(idx).flatten(0, 1)
        with torch.no_grad():
            teacher_hidden = teacher.hidden_states(idx).flatten(0, 1)
        output = distillation_loss(hidden, student.head, teacher_hidden, teacher.head, targets, config)
        output.loss.backward()
        return output.loss.item(), output.kd.item(), student.out.grad.clone(), student.embed.grad.clone()

    alone, mixed = loss_and_grad(a), loss_and_grad(mixture)
    assert mixed[0] == pytest.approx(alone[0], abs=1e-6) and mixed[1] == pytest.approx(alone[1], abs=1e-6)
    torch.testing.assert_close(mixed[2], alone[2], rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed[3], alone[3], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def teachers(runs):
    """Two teachers of one tokenizer (the second trained with the first's), of other seeds and sizes."""
    run_cli("train", "--out", runs / "a", "--vocab-size", VOCAB, *TEACHER)
    run_cli("train", "--out", runs / "b", "--tokenizer", runs / "a" / "tokenizer.json", "--seed", "1",
            *TEACHER)
    return runs / "a", runs / "b"


def test_a_mixture_weighted_one_and_zero_equals_the_first_teacher_alone(runs, teachers):
    a, b = teachers
    run_cli("distill", "--teacher", a, "--out", runs / "alone", *STUDENT)
    run_cli("distill", "--teacher", a, "--teacher", b, "--teacher-weight", "1", "--teacher-weight", "0",
            "--out", runs / "mixed", *STUDENT)
    alone, mixed = read_json(runs / "alone" / "result.json"), read_json(runs / "mixed" / "result.json")
    assert mixed["val_loss"] == pytest.approx(alone["val_loss"], abs=1e-6)
    # result.json: the mixture, and each teacher with its weight, loss and FLOPs
    record = mixed["teacher"]
    assert record["kind"] == "mixture"
    assert record["teacher_val_loss"] == pytest.approx(alone["teacher"]["teacher_val_loss"], abs=1e-6)
    first, second = record["teachers"]
    assert first["path"] == str(a.resolve()) and second["path"] == str(b.resolve())
    assert (first["weight"], second["weight"]) == (1.0, 0.0)
    assert first["teacher_val_loss"] == pytest.approx(alone["teacher"]["teacher_val_loss"], rel=1e-9)
    assert first["flops"] == alone["teacher"]["flops"] and second["flops"] > 0
    assert record["flops"] == first["flops"] + second["flops"]
    assert mixed["flops"] == alone["flops"] + second["flops"]


def test_an_equal_mixture_is_recorded_with_its_own_cross_entropy(runs, teachers):
    a, b = teachers
    run_cli("distill", "--teacher", a, "--teacher", b, "--out", runs / "equal", *STUDENT)
    record = read_json(runs / "equal" / "result.json")["teacher"]
    first, second = record["teachers"]
    assert (first["weight"], second["weight"]) == (0.5, 0.5)
    # the mixture's cross-entropy is at most the weighted mean of the teachers' (log is concave)
    assert record["teacher_val_loss"] <= 0.5 * (first["teacher_val_loss"] + second["teacher_val_loss"]) + 1e-9


def test_a_mixture_distils_on_policy_too(runs, teachers):
    a, b = teachers
    run_cli("distill", "--teacher", a, "--teacher", b, "--teacher-weight", "3", "--teacher-weight", "1",
            "--on-policy-fraction", "0.5", "--out", runs / "on_policy", *STUDENT)
    result = read_json(runs / "on_policy" / "result.json")
    assert result["on_policy"]["sequences"] > 0
    assert [t["weight"] for t in result["teacher"]["teachers"]] == [0.75, 0.25]


@pytest.mark.parametrize("args,message", [
    (("--teacher-weight", "0", "--teacher-weight", "0"), "sum to a positive finite number"),
    # each finite, their sum not: an OverflowError after data preparation
    (("--teacher-weight", "1e308", "--teacher-weight", "1e308"), "sum to a positive finite number"),
    (("--teacher-weight", "1", "--teacher-weight", "-1"), "none negative"),
    (("--teacher-weight", "1"), "1 --teacher-weight for 2 --teacher"),
    # the same teacher twice was accepted silently, under another name too
    (("--teacher", "{a}"), "is given twice"),
    (("--teacher", "x={a}/"), "--teacher x={a} is given twice"),
])
def test_bad_weights_are_refused_in_one_line(cli, tmp_path, teachers, args, message):
    a, b = teachers
    args, message = [arg.format(a=a) for arg in args], message.format(a=a)
    code, _, err = cli("distill", "--teacher", a, "--teacher", b, *args, "--out", tmp_path / "s", *STUDENT)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_a_weight_without_a_mixture_is_refused(cli, tmp_path, teachers):
    code, _, err = cli("distill", "--teacher", teachers[0], "--teacher-weight", "1", "--out", tmp_path / "s",
                       *STUDENT)
    assert code == 2 and "--teacher-weight needs several --teacher" in err


def test_a_second_teacher_cache_is_refused_not_dropped(cli, tmp_path):
    """Given twice, a plain option keeps the last value without a word; --teacher-cache says it mixes not."""
    code, _, err = cli("distill", "--teacher-cache", tmp_path / "a", "--teacher-cache", tmp_path / "b",
                       "--out", tmp_path / "s", *STUDENT)
    assert code == 2 and "--teacher-cache is given 2 times" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


def test_teachers_of_another_tokenizer_are_refused(cli, runs, tmp_path, teachers):
    run_cli("train", "--out", runs / "other", "--vocab-size", "300", *TEACHER)
    cli("--version")  # drops what the training printed
    code, _, err = cli("distill", "--teacher", teachers[0], "--teacher", runs / "other", "--out",
                       tmp_path / "s", *STUDENT)
    assert code == 2 and "speaks another tokenizer" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# --- routing by a field of the data (--teacher NAME=PATH --teacher-route FIELD) ---------------------

def test_a_routed_head_gives_each_position_its_own_teachers_distribution():
    a, b = _Linear(0, 8, 50), _Linear(1, 12, 50)
    idx = torch.randint(0, 50, (2, 5))
    route = torch.tensor([[0, 0, 1, 1, 0], [1, 1, 1, 0, 0]])
    mixture = MixtureTeacher([a, b], [0.5, 0.5], 2.0)
    mixture.route = route
    logits = mixture.head(mixture.hidden_states(idx))
    own = torch.where(route.unsqueeze(-1) == 0, (a.head(a.hidden_states(idx)) / 2).softmax(-1),
                      (b.head(b.hidden_states(idx)) / 2).softmax(-1))
    torch.testing.assert_close((logits / 2).softmax(-1), own, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def routed_data(runs):
    """A jsonl corpus of two kinds of documents, its `source` naming each one's teacher."""
    import sysconfig
    from pathlib import Path

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    rows = []
    for index, path in enumerate(sorted(stdlib.glob("*.py"))[:80]):
        text = path.read_text(encoding="utf-8", errors="ignore")[:3000]
        rows.append({"text": text, "source": "a" if index % 2 else "b"})
    path = runs / "routed.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_routing_by_a_field_distils_each_document_from_its_teacher(runs, teachers, routed_data):
    a, b = teachers
    tokenizer = a / "tokenizer.json"
    common = ("--data", routed_data, "--tokenizer", tokenizer, *STUDENT)
    run_cli("distill", "--teacher", f"a={a}", "--teacher", f"b={b}", "--teacher-route", "source",
            "--out", runs / "routed", *common)
    routed = read_json(runs / "routed" / "result.json")
    record = routed["teacher"]
    assert record["kind"] == "mixture" and record["route"] == "source"
    first, second = record["teachers"]
    assert (first["name"], second["name"]) == ("a", "b")
    assert first["weight"] + second["weight"] == pytest.approx(1) and 0 < first["weight"] < 1
    # every document routed to one teacher equals distilling from that teacher alone
    with open(routed_data) as rows:
        only_a = [json.loads(line) | {"source": "a"} for line in rows]
    all_a = runs / "all_a.jsonl"
    all_a.write_text("".join(json.dumps(row) + "\n" for row in only_a))
    run_cli("distill", "--teacher", f"a={a}", "--teacher", f"b={b}", "--teacher-route", "source",
            "--out", runs / "routed_a", "--data", all_a, *common[2:])
    run_cli("distill", "--teacher", a, "--out", runs / "alone_a", "--data", all_a, *common[2:])
    routed_a, alone_a = read_json(runs / "routed_a" / "result.json"), read_json(runs / "alone_a" / "result.json")
    assert routed_a["val_loss"] == pytest.approx(alone_a["val_loss"], abs=1e-5)
    assert routed_a["teacher"]["teacher_val_loss"] == pytest.approx(alone_a["teacher"]["teacher_val_loss"], abs=1e-5)
    assert routed_a["teacher"]["teachers"][0]["weight"] == 1.0


def test_a_long_route_value_is_cut_in_the_message(cli, tmp_path, teachers, routed_data):
    """A route value of a whole document was quoted whole in the one-line refusal."""
    a, b = teachers
    rows = [json.loads(line) for line in routed_data.read_text().splitlines()]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps({**row, "source": "a" if i % 2 else "x" * 5000}) + "\n"
                            for i, row in enumerate(rows)))
    code, _, err = cli("distill", "--teacher", f"a={a}", "--teacher", f"b={b}", "--teacher-route", "source",
                       "--data", data, "--tokenizer", a / "tokenizer.json", "--out", tmp_path / "s", *STUDENT)
    last = err.strip().splitlines()[-1]
    assert code == 2 and f"'{'x' * 40}...' names no teacher" in last and len(last) < 400, err


@pytest.mark.parametrize("teacher_args,extra,message", [
    (("--teacher", "a={a}", "--teacher", "c={b}"), (), "'b' names no teacher"),
    (("--teacher", "{a}", "--teacher", "{b}"), (), "needs every teacher named"),
    (("--teacher", "a={a}", "--teacher", "a={b}"), (), "repeat"),
    (("--teacher", "a={a}", "--teacher", "b={b}"), ("--teacher-weight", "1", "--teacher-weight", "1"),
     "exclude each other"),
])
def test_bad_routes_are_refused_in_one_line(cli, tmp_path, teachers, routed_data, teacher_args, extra, message):
    a, b = teachers
    filled = [arg.format(a=a, b=b) for arg in teacher_args]
    code, _, err = cli("distill", *filled, "--teacher-route", "source", *extra, "--data", routed_data,
                       "--tokenizer", a / "tokenizer.json", "--out", tmp_path / "s", *STUDENT)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "s" / "result.json").exists()


# --- served teachers (--teacher-url given several times): top-k merged on the union of ids -----------

def test_top_k_targets_merge_on_the_union_of_ids_with_weighted_probabilities():
    from distillscale.training.mixture import merge_top_k

    a_ids, a_p = torch.tensor([[5, 3, 9]]), torch.tensor([[0.5, 0.2, 0.1]])
    b_ids, b_p = torch.tensor([[3, 7, 5]]), torch.tensor([[0.6, 0.2, 0.1]])
    ids, log_probs = merge_top_k([a_ids, b_ids], [a_p.log(), b_p.log()], [0.5, 0.5], 50)
    assert ids.shape == (1, 6) and len(set(ids[0].tolist())) == 6
    probs = dict(zip(ids[0].tolist(), log_probs[0].exp().tolist()))
    assert probs[3] == pytest.approx(0.4) and probs[5] == pytest.approx(0.3)
    assert probs[7] == pytest.approx(0.1) and probs[9] == pytest.approx(0.05)
    # the two free slots: ids outside the union, each an even share of the tail (0.15 over 46 ids)
    assert all(probs[i] == pytest.approx(0.15 / 46) for i in ids[0, 4:].tolist())
    assert (log_probs[0, :-1] >= log_probs[0, 1:]).all()
    # weights (1, 0): the first teacher's own targets
    same_ids, same = merge_top_k([a_ids, b_ids], [a_p.log(), b_p.log()], [1.0, 0.0], 50)
    assert torch.equal(same_ids, a_ids) and torch.equal(same, a_p.log())


@pytest.fixture(scope="module")
def servers(teachers):
    """`serve-teacher` for each teacher (top-8), in threads on 127.0.0.1."""
    import threading

    from distillscale.serve.teacher import TeacherService, make_teacher_server

    running = []
    for teacher in teachers:
        httpd = make_teacher_server(TeacherService(teacher, top_k=8))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        running.append(httpd)
    yield [f"http://127.0.0.1:{httpd.server_address[1]}/v1" for httpd in running]
    for httpd in running:
        httpd.shutdown()
        httpd.server_close()


def test_served_teachers_weighted_one_and_zero_equal_the_first_server_alone(runs, teachers, servers):
    tokenizer = teachers[0] / "tokenizer.json"
    served = ("--tokenizer", tokenizer, "--top-k", "8", *SERVED_STUDENT)
    run_cli("distill", "--teacher-url", servers[0], "--out", runs / "served_alone", *served)
    run_cli("distill", "--teacher-url", servers[0], "--teacher-url", servers[1], "--teacher-weight", "1",
            "--teacher-weight", "0", "--out", runs / "served_mixed", *served)
    alone, mixed = read_json(runs / "served_alone" / "result.json"), read_json(runs / "served_mixed" / "result.json")
    assert mixed["val_loss"] == pytest.approx(alone["val_loss"], abs=1e-6)
    record = mixed["teacher"]
    assert record["kind"] == "mixture"
    assert record["teacher_val_loss"] == pytest.approx(alone["teacher"]["teacher_val_loss"], abs=1e-6)
    first, second = record["teachers"]
    assert (first["weight"], second["weight"]) == (1.0, 0.0) and first["kind"] == "server"
    assert first["flops"] == alone["teacher"]["flops"] and first["server"]["requests"] > 0
    # the zero-weight server is never asked for training tokens, so not charged for them (it was: 1.02e9
    # instead of 4.70e8); only the validation requests reach it
    assert second["flops"] == 0 and record["flops"] == alone["teacher"]["flops"] and mixed["flops"] == alone["flops"]


def test_an_equal_mixture_of_servers_reads_the_union_of_their_top_k(runs, teachers, servers):
    run_cli("distill", "--teacher-url", servers[0], "--teacher-url", servers[1], "--tokenizer",
            teachers[0] / "tokenizer.json", "--top-k", "8", "--out", runs / "served_equal", *SERVED_STUDENT)
    result = read_json(runs / "served_equal" / "result.json")
    record = result["teacher"]
    assert result["distillation"]["top_k"] == 16  # the union's slots: 8 ids from each server
    first, second = record["teachers"]
    assert record["teacher_val_loss"] <= 0.5 * (first["teacher_val_loss"] + second["teacher_val_loss"]) + 1e-9
    assert record["flops"] == first["flops"] + second["flops"] > 0
    # the merged targets' top-k mass is checked and recorded, as one server's is (it was skipped: null)
    targets = result["top_k_targets"]
    assert targets["path"] == "served" and targets["top_k"] == 16 and targets["checked_tokens"] > 0
    assert 0 < targets["mean_top_k_mass"] <= 1 and targets["tail"] == "known"


def test_in_process_and_served_teachers_do_not_mix(cli, tmp_path, teachers, servers):
    a, b = teachers
    code, _, err = cli("distill", "--teacher", a, "--teacher", b, "--teacher-url", servers[0], "--top-k", "8",
                       "--tokenizer", a / "tokenizer.json", "--out", tmp_path / "s", *STUDENT)
    assert code == 2 and "cannot be mixed with --teacher-url" in err and "Traceback" not in err


def test_routes_are_read_a_batch_at_a_time_not_copied_whole(tmp_path):
    """M5: the routed mixture built int64 copies of the routes of the whole train and val splits, 8 bytes per
    token (OOM at billions of tokens). The shares and the mixture's loss read the memory-mapped one-byte
    routes a chunk or a batch at a time; same numbers."""
    import tracemalloc

    import numpy as np

    from distillscale.training.mixture import route_shares, routed_loss

    tokens = 1 << 24
    path = tmp_path / "routes.bin"
    rng = np.random.default_rng(0)
    np.memmap(path, dtype=np.uint8, mode="w+", shape=(tokens,))[:] = rng.integers(0, 3, tokens, dtype=np.uint8)
    routes = np.memmap(path, dtype=np.uint8, mode="r")
    teacher_of = np.array([1, 0, 1])  # three route values, two teachers
    tracemalloc.start()
    shares = route_shares(routes, teacher_of, 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    expected = np.bincount(teacher_of[np.asarray(routes)], minlength=2) / tokens
    assert shares == pytest.approx(expected.tolist(), rel=1e-12)
    assert peak < tokens, f"{peak / tokens:.1f} bytes per token"  # was 16 (the int64 copy, then bincount's)

    a, b = _Linear(0, 8, 50), _Linear(1, 12, 50)
    mixture = MixtureTeacher([a, b], [0.5, 0.5], 1.0)
    text = rng.integers(0, 50, tokens, dtype=np.uint16)
    tracemalloc.start()
    loss = routed_loss(mixture, text, routes, teacher_of, 16, 4, 256, torch.device("cpu"), contextlib.nullcontext())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    whole = torch.from_numpy(teacher_of[np.asarray(routes)])
    assert loss == pytest.approx(routed_loss(mixture, text, whole.numpy(), np.arange(2), 16, 4, 256,
                                             torch.device("cpu"), contextlib.nullcontext()), rel=1e-12)
    assert peak < tokens, f"{peak / tokens:.2f} bytes per token"  # was 8 (eval_windows' starts: 8 per window)


def test_a_served_mixture_too_wide_for_the_vocabulary_is_one_line(cli, tmp_path, teachers):
    """Two servers' top-100 on a 320-id vocabulary raised a bare ValueError from the merge."""
    import threading

    from distillscale.serve.teacher import TeacherService, make_teacher_server

    running = [make_teacher_server(TeacherService(teacher, top_k=100)) for teacher in teachers]
    for httpd in running:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        urls = [arg for httpd in running for arg in ("--teacher-url", f"http://127.0.0.1:{httpd.server_address[1]}/v1")]
        code, _, err = cli("distill", *urls, "--tokenizer", teachers[0] / "tokenizer.json", "--top-k", "100",
                           "--out", tmp_path / "s", *SERVED_STUDENT)
    finally:
        for httpd in running:
            httpd.shutdown()
            httpd.server_close()
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err and "--top-k 100 from 2 servers merges up to 200 ids" in last, err
    assert "use --top-k 80 or less" in last and not (tmp_path / "s").exists()


def timed(client, calls: list, delay: float = 0.3):
    """`client` with its answers `delay` seconds slower, each call's (url, start, end) appended to `calls`."""
    import time

    ask = client.top_logprobs

    def top_logprobs(prompts):
        started = time.monotonic()
        time.sleep(delay)
        answer = ask(prompts)
        calls.append((client.base, started, time.monotonic()))
        return answer

    client.top_logprobs = top_logprobs
    return client


def one_after_another(clients, prompts, weights=None):
    """The old way of asking a mixture's servers: one round trip after another."""
    return [client.top_logprobs(prompts) if weights is None or weights[i] > 0 else None
            for i, client in enumerate(clients)]


def overlapped(calls) -> bool:
    (_, _, first_end), (_, second_start, _) = sorted(calls, key=lambda call: call[1])
    return second_start < first_end


def test_a_served_mixture_asks_its_servers_at_once_for_the_same_answers(servers, monkeypatch):
    """A mixture of K servers waited K round trips per batch (asked one after another): both its training
    batches and its validation losses now ask every server at once, and get the same numbers, bit for bit."""
    import numpy as np

    from distillscale.training import mixture
    from distillscale.training.remote_teacher import TeacherClient

    prompts = torch.randint(0, VOCAB, (4, 17), generator=torch.Generator().manual_seed(0))
    tokens = np.random.default_rng(0).integers(0, VOCAB, 200).astype(np.uint16)
    clients = [TeacherClient(url, 8) for url in servers]
    calls: list = []
    for client in clients:
        client.connect()
        timed(client, calls)

    def both():
        calls.clear()
        merged = mixture.served_mixture_top_k(clients, [0.5, 0.5], prompts, VOCAB)
        top_k_overlapped = overlapped(calls)
        calls.clear()
        losses = mixture.served_mixture_losses(clients, [0.5, 0.5], tokens, 16, 4, 64)  # one batch of 4
        return merged, losses, top_k_overlapped, overlapped(calls)

    (ids, log_probs), losses, top_k_overlapped, losses_overlapped = both()
    assert top_k_overlapped and losses_overlapped  # the second server was asked before the first answered
    monkeypatch.setattr(mixture, "ask_servers", one_after_another)
    (old_ids, old_log_probs), old_losses, old_top_k_overlapped, _ = both()
    assert not old_top_k_overlapped  # (what the test would see of the old code)
    assert torch.equal(ids, old_ids) and torch.equal(log_probs, old_log_probs) and losses == old_losses

    # a server of weight 0 is still never asked for a batch
    monkeypatch.undo()
    calls.clear()
    requests = clients[1].requests
    mixture.served_mixture_top_k(clients, [1.0, 0.0], prompts, VOCAB)
    assert [call[0] for call in calls] == [clients[0].base] and clients[1].requests == requests


def test_a_failing_server_of_a_mixture_gives_its_own_one_line_error(servers):
    """Asked at once, a failing server still stops the batch with the client's own one-line error (the first
    failing server's, in server order, as when asked one after another), once every thread has ended."""
    import socket
    import threading

    from distillscale.errors import UserError
    from distillscale.training.mixture import served_mixture_top_k
    from distillscale.training.remote_teacher import TeacherClient

    def dead_url() -> str:
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            return f"http://127.0.0.1:{free.getsockname()[1]}/v1"

    prompts = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    dead = [TeacherClient(dead_url(), 8, retries=0) for _ in range(2)]
    alone = []
    for client in dead:
        with pytest.raises(UserError) as error:
            client.top_logprobs(prompts)
        alone.append(str(error.value))
    assert alone[0] != alone[1] and "connection refused" in alone[0] and "\n" not in alone[0]

    calls: list = []
    slow = timed(TeacherClient(servers[0], 8), calls)
    for clients, expected in (([slow, dead[0]], alone[0]), ([dead[1], slow, dead[0]], alone[1])):
        calls.clear()
        with pytest.raises(UserError) as error:
            served_mixture_top_k(clients, [1.0] * len(clients), prompts, VOCAB)
        assert str(error.value) == expected
        assert len(calls) == 1  # the slow server's answer came before the error: no thread was left behind
        assert not [thread for thread in threading.enumerate() if thread.name.startswith("served-teacher")]
