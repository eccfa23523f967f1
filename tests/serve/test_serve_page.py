"""The planner page (`distillscale serve`) driven in headless Chromium: the plan it shows is the
plan `distillscale plan --json` prints for the same inputs, bad input is reported beside its control,
and the page renders (a screenshot is taken and checked).

Uses the system's Chromium (Debian's `chromium`, which `.ci/run` installs) through playwright; the
browser tests skip where either is missing. The JSON API is tested without a browser as well."""

import json
import shlex
import shutil
import threading
from dataclasses import replace

import pytest

from distillscale.serve.api import Planner, PlanQuery
from distillscale.serve.server import make_server


@pytest.fixture(scope="module")
def server():
    httpd = make_server(Planner(), port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _cli_json(cli, *args) -> dict:
    code, out, err = cli("plan", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def _shown_plan(page) -> dict:
    """The plan JSON the page holds; JavaScript writes a large whole float as an integer, so every
    number is read back as a float (the same double)."""
    return json.loads(page.text_content("#plan-json"), parse_int=float)


def _settled(page, **controls) -> None:
    """Wait until the page shows the plan for these controls (all of them, by default any)."""
    wanted = " && ".join(f"window.planner.shown.{name} === {json.dumps(value)}" for name, value in controls.items())
    page.wait_for_function(f"document.body.dataset.state === 'ready' && window.planner.shown !== null"
                           f"{' && ' + wanted if wanted else ''}", timeout=30_000)


@pytest.mark.slow
def test_page_plan_matches_the_cli_after_changing_budget_and_scenario(server, browser, cli, tmp_path):
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    page.goto(server)
    _settled(page)
    assert page.locator("#u-curve path").count() >= 2 and page.locator("#u-curve circle").count() >= 1

    page.fill("#compute-slider", "21.5")                 # the log slider: 10^21.5 -> 3.16e21
    page.select_option("#scenario", "teacher-pretraining")
    _settled(page, compute="3.16e21", scenario="teacher-pretraining")
    assert page.input_value("#compute") == "3.16e21"
    shown = _shown_plan(page)
    expected = _cli_json(cli, "--law", "busbridge2025", "--compute", "3.16e21", "--student-params", "546M",
                         "--scenario", "teacher-pretraining")
    assert shown == expected
    cards = page.text_content("#cards")
    assert f"{expected['student_loss']:.4f}" in cards and expected["verdict"] in cards
    # "copy as CLI command" reproduces the plan
    command = shlex.split(page.text_content("#cli"))
    assert command[:2] == ["distillscale", "plan"]
    assert _cli_json(cli, *command[2:]) == expected
    assert "student loss L_S" in page.text_content("#plan-text")

    # The best student size, as the CLI's sweep finds it.
    page.select_option("#scenario", "best-case")
    page.select_option("#student-mode", "best")
    _settled(page, scenario="best-case", student="best")
    sweep = _cli_json(cli, "--compute", "3.16e21", "--scenario", "best-case")
    assert _shown_plan(page) == sweep

    screenshot = tmp_path / "planner.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 50_000  # a page with figures, not a blank one
    latency = page.evaluate("window.planner")
    print(f"browser: plan update {latency['lastUpdateMs']:.0f} ms (server {latency['serverMs']:.0f} ms)")


@pytest.mark.slow
def test_bad_input_shows_a_message_beside_its_control(server, browser):
    page = browser.new_page()
    page.goto(server)
    _settled(page)
    page.select_option("#teacher", "loss")
    page.fill("#teacher-params", "seven")
    page.wait_for_function("document.getElementById('teacher-params-error').textContent !== ''")
    assert "the teacher size must be a positive number" in page.text_content("#teacher-params-error")
    assert "invalid" in page.get_attribute("#teacher-params", "class")
    page.fill("#teacher-params", "7B")
    page.fill("#compute", "1e10")
    page.wait_for_function("document.getElementById('compute-error').textContent !== ''")
    assert "is too small" in page.text_content("#compute-error")
    assert page.text_content("#teacher-params-error") == ""


def test_api_names_the_control_of_a_bad_value_and_answers_with_the_cli_plan(cli):
    planner = Planner()
    query = PlanQuery(law="busbridge2025", compute="1e21", student="546M", scenario="best-case")
    response = planner.update(query)
    assert response["ok"] and response["plan"] == _cli_json(
        cli, "--compute", "1e21", "--student-params", "546M", "--scenario", "best-case")
    fresh, u_curve = response, response["u_curve"]
    assert min(u_curve["student_loss"]) == pytest.approx(u_curve["optimal_student_loss"], abs=1e-3)
    assert response["cli"] == "distillscale plan --law busbridge2025 --compute 1e+21 --student-params " \
                              "5.46e+08 --scenario best-case"
    for change, control in ((dict(compute="lots"), "compute"), (dict(student="0"), "student"),
                            (dict(teacher="tokens", teacher_params="7B", scenario="teacher-inference"), "teacher-tokens"),
                            (dict(teacher="loss", teacher_params="7B", teacher_loss="2"), "scenario"),
                            (dict(scenario="free"), "scenario"), (dict(law="mine.json"), "law")):
        response = planner.update(PlanQuery(**{**vars(query), **change}))
        assert not response["ok"] and list(response["errors"]) == [control], change
    again = planner.update(query)  # the same controls: the remembered answer
    assert again["remembered"] and again["plan"] == fresh["plan"] and "remembered" not in fresh
    curve = planner.compute_curve(query, 546e6)
    assert len(curve["budgets"]) == len(curve["distilled"]) == 17
    # distillation wins at small budgets for a 546M student in the best case; at large ones its point
    # value is above training alone's, but Delta's interval reaches 0: too close to call, not pretrain
    assert [(f["from"], f["to"]) for f in curve["flips"]] == [("distill", "too close to call")]
    _check_flips_read_the_verdicts(planner, query, curve)


def _check_flips_read_the_verdicts(planner, query, curve):
    """Each budget's verdict is its plan's, read off Delta's interval (not the sign of the point
    values); the curve flips exactly where two planned budgets' verdicts differ."""
    import distillscale as ds

    verdicts = curve["verdicts"]
    for budget, verdict in zip(curve["budgets"], verdicts):
        plan = ds.plan("busbridge2025", compute=budget, student_params=546e6, scenario="best-case")
        assert verdict == plan.verdict
    planned = [(b, v) for b, v in zip(curve["budgets"], verdicts) if v is not None]
    changes = [(a[1], b[1]) for a, b in zip(planned, planned[1:]) if a[1] != b[1]]
    assert [(f["from"], f["to"]) for f in curve["flips"]] == changes
    for flip in curve["flips"]:
        low, high = flip["between"]
        assert low < flip["budget"] < high
    # where a point value is below 0 but its interval reaches 0, the page does not say "distill"
    points = [d["loss"] - s["loss"] for d, s in zip(curve["distilled"], curve["supervised"])]
    assert any(p < 0 and v != "distill" for p, v in zip(points, verdicts))


def test_serve_command_prints_its_address_and_serves_the_page(tmp_path):
    import os
    import subprocess
    import sys
    import urllib.request

    from distillscale.laws import load_laws

    law = tmp_path / "mine.json"
    load_laws("epoch2024").save(law)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "distillscale.cli", "serve", "--port", "0", "--law", str(law)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        assert line.startswith("planner page at http://127.0.0.1:"), line + server.stderr.read()
        address = line.split()[3]
        page = urllib.request.urlopen(address, timeout=10).read().decode()
        assert "<title>distillscale planner</title>" in page and "https://" not in page  # offline
        laws = json.loads(urllib.request.urlopen(address + "api/laws", timeout=10).read())
        assert laws["default"] == str(law) and [law["id"] for law in laws["laws"]][-1] == str(law)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("controls", [
    dict(compute="1e21", student="546M", scenario="best-case"),
    dict(compute="3e22", student="best", scenario="teacher-inference"),
    dict(compute="1e21", student="546M", scenario="teacher-inference", teacher="loss", teacher_params="7.75B",
         teacher_loss="2.1"),
    dict(compute="3e21", students="500M,1B,3B", targets="cached", teacher="tokens", teacher_params="8B",
         teacher_tokens="2T"),
    dict(compute="3e21", students="500M,1B,3B", targets="online", teacher="tokens", teacher_params="8B",
         teacher_tokens="2T"),
])
def test_page_and_cli_make_the_same_plan_from_the_same_settings(cli, controls):
    """The page's controls become `PlanSettings`, the class `plan`'s flags are generated from: the
    command line the page shows (`to_argv`) parses back to the same settings, and runs to the same plan."""
    import typer

    from distillscale.cli import app
    from distillscale.cli_options import command_line, to_argv
    from distillscale.jsontext import json_text
    from distillscale.planning.options import PlanSettings

    planner = Planner()
    query = PlanQuery(law="busbridge2025", **controls)
    settings = planner.settings(query)
    argv = to_argv(settings)
    parsed = typer.main.get_command(app).commands["plan"].make_context("plan", list(argv)).params
    assert PlanSettings.from_flags(parsed) == settings
    response = planner.update(query)
    assert response["ok"] and response["cli"] == command_line(settings)
    assert json.loads(json_text(response["plan"])) == _cli_json(cli, *argv)  # NaN written as the CLI writes it
    if "students" in controls:   # the family's view: a row per student, as the plan's JSON has them
        rows = response["summary"]["family"]["rows"]
        assert [row["verdict"] for row in rows] == [s["verdict"] for s in response["plan"]["students"]]


def test_the_page_has_a_control_for_where_the_student_starts(cli):
    """`plan --student-init pruned` on the page: a select (scratch / pruned) in the page's control
    list, sent as `student_init`, planned as the CLI plans it; every control the API names an error
    after is one the page shows errors beside."""
    import re
    from importlib import resources

    from distillscale.serve.api import CONTROLS

    static = resources.files("distillscale.serve") / "static"
    html, script = (static / "index.html").read_text(), (static / "app.js").read_text()
    select = re.search(r'<select id="student-init">(.*?)</select>', html, re.S)
    assert select and re.findall(r'<option value="(\w+)"', select.group(1)) == ["scratch", "pruned"]
    page_controls = json.loads(re.search(r"const CONTROLS = (\[.*?\]);", script, re.S).group(1))
    assert "student-init" in page_controls and 'student_init: $("student-init").value' in script
    assert {control for control, _ in CONTROLS.values()} <= set(page_controls)
    assert 'id="student-init-error"' in html

    planner = Planner()
    query = PlanQuery(law="busbridge2025", compute="1e21", student="546M", scenario="teacher-inference",
                      student_init="pruned")
    response = planner.update(query)
    assert response["ok"] and "--student-init pruned" in response["cli"]
    assert response["plan"] == _cli_json(cli, "--compute", "1e21", "--student-params", "546M", "--scenario",
                                         "teacher-inference", "--student-init", "pruned")
    assert response["plan"] != planner.update(PlanQuery(**{**vars(query), "student_init": "scratch"}))["plan"]
    bad = planner.update(PlanQuery(**{**vars(query), "student_init": "grown"}))
    assert not bad["ok"] and list(bad["errors"]) == ["student-init"]
    assert "the student's start 'grown'" in bad["errors"]["student-init"]


def test_the_page_says_how_to_run_the_student_at_the_law_or_a_batch_you_fix(cli):
    """The page's API answers with each run's lr, batch, steps and warmup (the plan's `recipes`, as
    `plan --json` prints them) and the student's in its summary; the hyperparameter law and a fixed
    batch are controls, their bad values named beside them; the page reads no law file a request names."""
    import re
    from importlib import resources

    static = resources.files("distillscale.serve") / "static"
    html, script = (static / "index.html").read_text(), (static / "app.js").read_text()
    assert 'id="hyperparameter-law-error"' in html and 'id="batch-tokens-error"' in html
    assert 'batch_tokens: $("batch-tokens").value' in script and re.search(r"function runSheet", script)
    assert 'id="run-sheet"' in html

    planner = Planner()
    assert planner.laws_info()["hyperparameter_laws"] == {"default": "steplaw2025",
                                                          "presets": ["steplaw2025", "deepseek2024", "gpu-ladder-h200"]}
    query = PlanQuery(law="busbridge2025", compute="1e21", student="546M", scenario="best-case", batch_tokens="8M")
    response = planner.update(query)
    assert response["ok"] and "--batch-tokens 8e+06" in response["cli"]
    assert response["plan"] == _cli_json(cli, "--compute", "1e21", "--student-params", "546M", "--scenario",
                                         "best-case", "--batch-tokens", "8M")
    recipe = response["summary"]["recipe"]
    assert recipe == response["plan"]["recipes"]["best-case"] and recipe["batch_tokens"] == round(8e6 / 4096) * 4096
    assert recipe["batch_adaptation"]["loss_penalty"] > 0 and recipe["lr"] > 0 and recipe["steps"] > 0
    assert "Run sheet (hyperparameter law steplaw2025" in response["text"]
    assert response["plan"]["run_sheet"][0]["uses"] == ["best-case"]
    plain = planner.update(PlanQuery(**{**vars(query), "batch_tokens": ""}))["summary"]["recipe"]
    assert plain["batch_sequences"] == round(plain["optimal_batch_tokens"] / 4096) and plain["batch_adaptation"] is None
    assert plain["batch_tokens"] == plain["batch_sequences"] * 4096   # B* as the whole sequences the run takes
    for change, control, says in (({"batch_tokens": "lots"}, "batch-tokens", "the batch must be a positive number"),
                                  ({"hyperparameter_law": "/etc/hostname"}, "hyperparameter-law",
                                   "is not one the page offers: use one of steplaw2025, deepseek2024")):
        bad = planner.update(PlanQuery(**{**vars(query), **change}))
        assert not bad["ok"] and list(bad["errors"]) == [control] and says in bad["errors"][control]


@pytest.mark.slow
def test_choosing_a_pruned_start_on_the_page_plans_as_the_cli(server, browser, cli):
    page = browser.new_page()
    page.goto(server)
    _settled(page)
    page.select_option("#scenario", "teacher-inference")
    page.select_option("#student-init", "pruned")
    _settled(page, scenario="teacher-inference", student_init="pruned")
    assert _shown_plan(page) == _cli_json(cli, "--law", "busbridge2025", "--compute", "1e21", "--student-params",
                                          "546M", "--scenario", "teacher-inference", "--student-init", "pruned")
    assert "--student-init pruned" in page.text_content("#cli")


@pytest.fixture(scope="module")
def downstream_law(tmp_path_factory):
    """A loss-to-error law file (Gadre et al.'s form over losses 2.2-3.4, with bootstrap draws)."""
    import numpy as np

    import distillscale as ds

    losses = np.linspace(2.2, 3.4, 10)
    path = tmp_path_factory.mktemp("downstream") / "down.json"
    ds.fit_downstream(losses, 0.75 - 12 * np.exp(-1.3 * losses), task_set="tiny_mc", bootstrap=40).save(path)
    return path


def test_serve_with_a_downstream_law_shows_each_plans_predicted_error(cli, downstream_law):
    """`serve --downstream-law FILE`: the page's plan carries each model's downstream error, as `plan
    --downstream-law FILE` prints it, the student's in its summary (a card); its command names the file."""
    from importlib import resources

    script = (resources.files("distillscale.serve") / "static" / "app.js").read_text()
    assert "function downstreamCard" in script and "if (s.downstream) cards.push(downstreamCard(s.downstream))" in script
    planner = Planner(downstream_law=downstream_law)
    for scenario, student in (("teacher-pretraining", "546M"), ("best-case", "best")):
        response = planner.update(PlanQuery(law="busbridge2025", compute="1e21", student=student, scenario=scenario))
        assert response["ok"] and f"--downstream-law {downstream_law}" in response["cli"]
        sizes = () if student == "best" else ("--student-params", student)
        assert response["plan"] == _cli_json(cli, "--compute", "1e21", *sizes, "--scenario", scenario,
                                             "--downstream-law", str(downstream_law))
        assert response["summary"]["downstream"] == response["plan"]["downstream"]["models"][scenario]
        assert response["summary"]["downstream"]["task_set"] == "tiny_mc"
        assert "Downstream error on task set tiny_mc" in response["text"]
    assert Planner().update(PlanQuery(law="busbridge2025", compute="1e21"))["summary"]["downstream"] is None
    # a missing law file is refused in one line before the server starts
    code, out, err = cli("serve", "--downstream-law", str(downstream_law.with_name("missing.json")), "--port", "0")
    assert code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1


def test_the_page_shows_the_students_downstream_error_in_a_card(browser, downstream_law):
    httpd = make_server(Planner(downstream_law=downstream_law), port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/")
        _settled(page)
        error = _shown_plan(page)["downstream"]["models"][page.input_value("#scenario")]["error"]
        cards = " ".join(page.text_content("#cards").split())
        assert f"downstream error (tiny_mc){error:.3f}90%: " in cards  # title, value, interval
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow
def test_the_pages_run_sheet_flags_a_run_that_is_no_run_to_train(server, browser):
    """A batch of more tokens than a run trains on: the page's run sheet marks the run '!' and says
    why on hovering it, as the plan's text does (`RunRecipe.problems`)."""
    page = browser.new_page()
    page.goto(server)
    _settled(page)
    page.fill("#batch-tokens", "1T")
    _settled(page, batch_tokens="1T")
    sheet = page.text_content("#run-sheet")
    assert "no run to train" in sheet and "student!" in sheet.replace("*", "")
    assert "tokens it trains on" in page.get_attribute("#run-sheet tbody tr", "title")


@pytest.mark.slow
def test_a_family_on_the_page_plans_as_the_cli_with_a_row_per_student(server, browser, cli):
    page = browser.new_page()
    page.goto(server)
    _settled(page)
    page.select_option("#teacher", "tokens")
    page.fill("#teacher-params", "8B")
    page.fill("#teacher-tokens", "2T")
    page.fill("#compute", "3e21")
    page.fill("#students", "500M,1B,3B")
    _settled(page, students="500M,1B,3B", teacher_params="8B", teacher_tokens="2T", compute="3e21")
    plan = _shown_plan(page)
    expected = _cli_json(cli, "--law", "busbridge2025", "--compute", "3e21", "--students", "500M,1B,3B",
                         "--teacher-params", "8B", "--teacher-tokens", "2T")

    def same(value):   # the CLI writes a NaN as "NaN", the page's JSON as null
        if isinstance(value, dict):
            return {key: same(item) for key, item in value.items()}
        if isinstance(value, list):
            return [same(item) for item in value]
        return None if value == "NaN" else value

    assert same(plan) == same(expected)
    rows = page.locator("#family tr")
    assert rows.count() == 4   # a header and a row per student
    assert [page.locator("#family tr").nth(i + 1).locator("td").last.text_content() for i in range(3)] == \
        [s["verdict"] for s in plan["students"]]
    assert "--students 5e+08,1e+09,3e+09" in page.text_content("#cli")


def test_a_familys_view_on_the_page_is_its_answer_with_gpu_hours():
    """A family on the page with a GPU plans (no crash), its summary is the family's answer (not the first
    student's verdict), with what each verdict assumes, the figures beside it labelled as the first student's,
    and the family's GPU time and compute as answered."""
    planner = Planner()
    query = PlanQuery(law="busbridge2025", compute="9e20", students="1B,2B,3B", teacher="tokens", teacher_params="8B",
                      teacher_tokens="2T", gpu="h100")
    response = planner.update(query)
    assert response["ok"], response
    summary, plan = response["summary"], response["plan"]
    assert summary["verdict"] == plan["verdict"] == "distill 2B, 3B"
    family = summary["family"]
    assert family["distilling"] == plan["distilling"] == ["student 2B", "student 3B"]
    assert "2B, 3B distil" in family["answer"] and "each verdict assumes" in family["assumes"]
    assert family["first_student"] == "student 1B"
    assert summary["flops"]["teacher_inference"] == pytest.approx(plan["totals"]["teacher_forward"])
    assert summary["gpu_hours"]["gpu_hours"] > 0


def test_a_pool_on_the_page_shows_the_data_limited_comparison_as_the_cli_plans_it(cli):
    """The pool and generations controls plan as `plan --unique-tokens --generations`; the page's data-limited
    view carries each option, the best by the verdict rule, and the chain by generation and the ensemble's
    student by k with intervals, the figure `plan --plot` draws."""
    planner = Planner()
    query = PlanQuery(law="busbridge2025", compute="1.5e19", student="1.5B", scenario="teacher-inference",
                      teacher="tokens", teacher_params="1.5B", teacher_tokens="800M", unique_tokens="50M",
                      generations="2")
    answer = planner.update(query)
    assert answer["ok"], answer
    expected = _cli_json(cli, "--law", "busbridge2025", "--compute", "1.5e19", "--student-params", "1.5B",
                         "--teacher-params", "1.5B", "--teacher-tokens", "800M", "--unique-tokens", "50M",
                         "--generations", "2")["data_limited"]
    view = answer["data_limited"]
    assert [o["label"] for o in view["options"]] == [o["label"] for o in expected["options"]]
    for shown, printed in zip(view["options"], expected["options"]):
        assert shown["loss"] == printed["loss"] and shown["interval"] == printed["loss_interval"]
        assert shown["verdict"] == printed["verdict"]
    assert view["best"] == expected["best_choice"] and view["answer"].startswith("on the 50M pool")
    assert len(view["view"]["chain"]) == 7 and [p["members"] for p in view["view"]["ensemble_students"]] == list(
        range(1, 9))
    assert all(p["interval"][0] <= p["loss"] <= p["interval"][1] for p in view["view"]["chain"])
    assert "--unique-tokens 5e+07" in answer["cli"] and "--generations 2" in answer["cli"]
    fresh = planner.update(replace(query, unique_tokens="", generations=""))
    assert fresh["ok"] and fresh["data_limited"] is None


@pytest.mark.parametrize("controls, control, fragment", [
    ({"unique_tokens": "lots"}, "unique-tokens", "the pool of unique tokens must be a positive number"),
    ({"generations": "2"}, "generations", "give the pool of unique tokens too"),
    ({"unique_tokens": "50M", "generations": "two"}, "generations", "must be a whole number"),
])
def test_a_bad_pool_or_generations_is_named_beside_its_control(controls, control, fragment):
    answer = Planner().update(PlanQuery(law="busbridge2025", compute="1e21", student="546M", **controls))
    assert not answer["ok"] and fragment in answer["errors"][control]
