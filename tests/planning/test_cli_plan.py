"""`distillscale plan`, `teacher`, `capacity-gap` and `distill-map` on the command line."""

import json

import pytest

PLAN_KEYS = {"student_loss", "student_tokens", "teacher_params", "teacher_tokens", "teacher_loss",
             "supervised_loss", "verdict", "flops"}


def test_plan_json_contract(cli):
    code, out, _ = cli("plan", "--law", "busbridge2025", "--student-params", "546M",
                       "--compute", "1e21", "--scenario", "teacher-inference", "--json")
    assert code == 0
    plan = json.loads(out)
    assert PLAN_KEYS <= set(plan)
    assert {"student", "teacher_inference", "teacher_pretraining"} <= set(plan["flops"])
    assert plan["verdict"] in ("distill", "pretrain", "too close to call")
    assert plan["teacher_tokens"] == pytest.approx(1e17)
    assert sum(plan["flops"][k] for k in ("student", "teacher_inference",
                                          "teacher_pretraining")) == pytest.approx(1e21)


@pytest.mark.slow
def test_plan_all_scenarios_human_table_and_svg_plot(cli, tmp_path):
    figure = tmp_path / "plan.svg"
    code, out, err = cli("plan", "--student-params", "546M", "--compute", "1e21",
                         "--plot", str(figure))
    assert code == 0, err
    flat = " ".join(out.split())
    for text in ("best-case", "distilled", "alone", "Δ", "verdict", "too close to call", "losses in nats/token"):
        assert text in flat
    assert figure.read_text().lstrip().startswith("<?xml")


def test_plan_with_an_existing_teacher(cli):
    code, out, _ = cli("plan", "--student-params", "546M", "--compute", "1e21", "--json",
                       "--teacher-params", "7.75B", "--teacher-tokens", "155B")
    assert code == 0
    plan = json.loads(out)
    assert plan["scenario"] == "teacher-inference"
    assert plan["teacher_loss"] == pytest.approx(2.004, abs=1e-3)


def test_plan_without_student_size_sweeps_every_scenario(cli, tmp_path):
    code, out, _ = cli("plan", "--compute", "1e20", "--scenario", "teacher-pretraining", "--json")
    assert code == 0
    sweep = json.loads(out)["sweeps"]["teacher-pretraining"]
    assert PLAN_KEYS <= set(sweep["best"])
    assert sweep["best"]["student_loss"] <= min(s["student_loss"] for s in sweep["students"])


def test_plan_sweep_searches_the_law_data_and_flags_edge_optima(cli):
    code, out, err = cli("plan", "--compute", "1e21", "--json")
    assert code == 0
    sweeps = json.loads(out)["sweeps"]
    for name, sweep in sweeps.items():
        best = sweep["best"]
        assert 143e6 * (1 - 1e-9) <= best["student_params"] <= 12.6e9 * (1 + 1e-9), name
        assert 1.0 * (1 - 1e-6) <= best["student_tokens"] / best["student_params"] <= 5000.0, name
        assert sweep["searched"]["tokens_per_param"] == [1.0, 5000.0]
    assert sweeps["best-case"]["best_on_edge"]
    assert sweeps["best-case"]["edges"] == ["min_tokens_per_param"]
    assert not sweeps["teacher-pretraining"]["best_on_edge"]
    # The teacher-inference teacher runs to the 1e17-token cap, 1e5x the data's largest, but the scenario
    # does not train it: not a number the user acts on, so not warned about (issue 66)
    assert "teacher-inference teacher" not in err and "best-case teacher" not in err


def test_plan_sweep_table_footnote_and_search_options(cli):
    code, out, _ = cli("plan", "--compute", "1e21", "--scenario", "best-case", "--explain")
    assert code == 0
    assert "12.4B*" in out and "on the edge of the search" in out
    assert "widen with --min-tokens-per-param" in out
    code, out, _ = cli("plan", "--compute", "1e21", "--scenario", "best-case")   # one screen: the same warning
    assert "12.4B+" in out and "widen with --min-tokens-per-param" in " ".join(out.split())
    code, out, _ = cli("plan", "--compute", "1e21", "--scenario", "best-case", "--json",
                       "--min-params", "1B", "--max-params", "2B", "--max-tokens-per-param", "300")
    sweep = json.loads(out)["sweeps"]["best-case"]
    assert sweep["searched"]["params"][0] == pytest.approx(1e9)
    assert sweep["searched"]["limits"] == ["min_params", "max_params"]
    assert sweep["best"]["student_params"] == pytest.approx(2e9, rel=1e-2)
    assert sweep["edges"] == ["max_params"]


def test_plan_sweep_with_a_law_of_unknown_data_range_warns(cli, tmp_path):
    from dataclasses import replace

    from distillscale.laws import load_laws

    path = tmp_path / "mine.json"
    preset = load_laws("busbridge2025")
    supervised = replace(preset.supervised, fit=None)  # a law without a record: no data range
    distillation = replace(preset.distillation, fit=None, student_law=supervised)
    replace(preset, name="mine", supervised=supervised, distillation=distillation).save(path)
    code, out, err = cli("plan", "--law", str(path), "--compute", "1e21", "--scenario",
                         "teacher-pretraining", "--json")
    assert code == 0
    assert "law 'mine' records no data range" in err
    assert json.loads(out)["sweeps"]["teacher-pretraining"]["searched"]["tokens_per_param"] is None


def test_plan_warns_when_extrapolating(cli):
    code, _, err = cli("plan", "--student-params", "5T", "--compute", "1e26",
                       "--scenario", "best-case")
    assert code == 0
    assert "warning" in err and "extrapolation" in err


def test_teacher_ranks_candidates_from_a_file_and_plots_the_u_curve(cli, tmp_path):
    candidates = tmp_path / "teachers.csv"
    candidates.write_text("name,teacher_params,teacher_tokens,teacher_loss\n"
                          "small,1.09B,21.8B,\nbig,70B,1.4T,\ngiven,,,2.0\n")
    figure = tmp_path / "u.png"
    code, out, _ = cli("teacher", "--student-params", "546M", "--student-tokens", "10.92B",
                       "--candidates", str(candidates), "--json", "--plot", str(figure))
    assert code == 0
    ranking = json.loads(out)
    assert [c["name"] for c in ranking["candidates"]] == ["small", "big", "given"]
    best = min(ranking["candidates"], key=lambda c: c["student_loss"])
    assert ranking["best"] == best["name"]
    assert ranking["capacity_gap_teacher_loss"] == pytest.approx(1.315 * 2.515, abs=2e-3)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_teacher_ladder_human_output(cli):
    code, out, _ = cli("teacher", "--student-params", "546M", "--student-tokens", "10.92B")
    assert code == 0
    assert "*" in out and "optimal teacher loss L_T*" in out and "capacity gap" in out


def test_capacity_gap_from_runs_and_from_the_law(cli, tmp_path):
    runs = tmp_path / "runs.jsonl"
    rows = [{"student_params": s, "teacher_params": s * m, "student_loss": 2 + abs(m - 3) / 10}
            for s in (1e8, 1e9, 1e10) for m in (1, 3, 9)]
    runs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, out, _ = cli("capacity-gap", "--runs", str(runs), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["runs"]["ratio"] == pytest.approx(3.0)
    assert len(result["law"]["best_teachers"]) == 3
    code, out, _ = cli("capacity-gap")
    assert code == 0 and "N_T* = k N_S" in out


def test_distill_map_writes_a_figure(cli, tmp_path):
    figure = tmp_path / "map.png"
    code, out, _ = cli("distill-map", "--out", str(figure), "--resolution", "3", "--json")
    assert code == 0
    grid = json.loads(out)
    assert len(grid["distilled_minus_alone"]) == 3 and figure.exists()
    # each cell's verdict is its plan's, read off its Delta's interval (not the sign of the point value)
    import distillscale as ds

    tokens, sizes = grid["supervised_tokens"], grid["student_params"]
    for i, row in enumerate(grid["verdicts"]):
        for j, verdict in enumerate(row):
            if verdict is None:
                continue
            plan = ds.plan("busbridge2025", student_params=sizes[i], scenario="teacher-inference",
                           compute=3 * float(ds.plan("busbridge2025", student_params=sizes[i], compute=1e21,
                                                     scenario="teacher-inference").planner.flops(sizes[i])) * tokens[j])
            assert plan.verdict == verdict
    code, out, _ = cli("distill-map", "--out", str(figure), "--resolution", "3", "--overwrite")
    assert "each read off its Δ's interval" in " ".join(out.split())


def test_the_distill_map_draws_each_cells_verdict_not_the_sign_of_its_point_value():
    """Two cells whose point values say "distil" (Delta < 0) but whose intervals reach 0 are drawn as
    too close to call; nothing on the figure reads the sign of the point value."""
    import numpy as np

    import distillscale as ds
    from distillscale.planning.plots import MAP_VERDICTS, plot_distill_map

    planner = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="teacher-inference").planner
    verdicts = [["too close to call", "distill"], ["pretrain", None]]
    figure = plot_distill_map(planner, "teacher-inference", np.array([1e8, 1e9]), np.array([1e10, 1e11]), verdicts)
    mesh = figure.axes[0].collections[0]
    names = list(MAP_VERDICTS)
    drawn = np.ma.filled(mesh.get_array(), np.nan).reshape(2, 2)   # tokens by size
    assert drawn[0, 0] == names.index("too close to call") and drawn[1, 0] == names.index("distill")
    assert drawn[0, 1] == names.index("pretrain") and np.isnan(drawn[1, 1])
    texts = [t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text"))]
    assert not any(">0" in t for t in texts) and "verdict (Δ's interval)" in texts
    assert {"too close to call", "distill", "pretrain"} <= set(texts)


@pytest.mark.parametrize("args, fragment", [
    (["plan", "--student-params", "546M", "--compute", "1e10"], "budget 1e+10 FLOPs is too small"),
    (["plan", "--student-params", "546M", "--compute", "1e21", "--scenario", "cheap"],
     "unknown scenario 'cheap'"),
    (["plan", "--student-params", "lots", "--compute", "1e21"], "malformed --student-params 'lots'"),
    (["plan", "--student-params", "546M", "--compute", "1e21x"], "malformed --compute '1e21x'"),
    (["teacher", "--student-params", "546M", "--student-tokens", "11B", "--law", "epoch2024"],
     "has no distillation law"),
    (["plan", "--student-params", "546M", "--compute", "1e21", "--plot", "out.pdf"],
     "use a .png or .svg file name"),
    (["plan", "--student-params", "546M", "--compute", "1e21", "--flops", "exact"],
     "unknown FLOP method 'exact'"),
    (["plan", "--student-params", "546M", "--compute", "1e21", "--teacher-loss", "2.0"],
     "give the existing teacher's size with --teacher-params"),
    (["plan", "--student-params", "546M", "--compute", "1e21", "--teacher-params", "7B"],
     "give exactly one of --teacher-tokens or --teacher-loss"),
    (["plan", "--student-params", "546M", "--compute", "1e21", "--teacher-params", "7B",
      "--teacher-loss", "2", "--scenario", "best-case"], "planned under teacher-inference cost"),
    (["plan", "--compute", "1e21", "--teacher-params", "7B", "--teacher-loss", "2"],
     "needs --student-params"),
    (["plan", "--student-model", "/nonexistent", "--compute", "1e21"], "--student-model /nonexistent does not exist"),
    (["teacher", "--student-params", "546M", "--student-tokens", "11B", "--candidates",
      "/nonexistent.csv"], "--candidates /nonexistent.csv does not exist: give a model directory, a CSV or JSONL"),
    (["distill-map", "--out", "map.txt"], "use a .png or .svg file name"),
    (["plan", "--compute", "1e21", "--min-params", "10B", "--max-params", "1B"],
     "the smallest student (10B) must be below the largest (1B)"),
    (["plan", "--compute", "1e21", "--min-tokens-per-param", "0"],
     "--min-tokens-per-param must be positive, got 0"),
    (["plan", "--compute", "1e21", "--min-tokens-per-param", "500", "--max-tokens-per-param", "50"],
     "the fewest tokens per parameter (500) must be below the most (50)"),
    (["plan", "--compute", "1e21", "--max-params", "big"], "malformed --max-params 'big'"),
    (["plan", "--compute", "1e21", "--student-params", "546M", "--min-params", "1B"],
     "the student-size search options (--min-params) do not combine with --student-params"),
    (["plan", "--compute", "1e15"], "cannot train any model of 143M to 12.6B parameters"),
])
def test_bad_input_is_one_line_exit_2(cli, args, fragment):
    code, _, err = cli(*args)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1


def test_bad_candidate_files(cli, tmp_path):
    no_columns = tmp_path / "a.csv"
    no_columns.write_text("name,size\nx,1\n")
    half_row = tmp_path / "b.csv"
    half_row.write_text("name,teacher_params,teacher_tokens\nx,7B,\n")
    bad_number = tmp_path / "c.csv"
    bad_number.write_text("teacher_loss\nabc\n")
    for path, fragment in ((no_columns, "needs a teacher_loss column"),
                           (half_row, "line 2 of"), (bad_number, "malformed teacher_loss")):
        code, _, err = cli("teacher", "--student-params", "546M", "--student-tokens", "11B",
                           "--candidates", str(path))
        assert code == 2 and fragment in err


def test_capacity_gap_bad_runs(cli, tmp_path):
    runs = tmp_path / "runs.csv"
    runs.write_text("student_params,teacher_params,student_loss\n1e8,2e8,2.0\n1e8,4e8,1.9\n")
    code, _, err = cli("capacity-gap", "--runs", str(runs))
    assert code == 2 and "at least two student sizes" in err
    runs.write_text("student_params,student_loss\n1e8,2.0\n")
    code, _, err = cli("capacity-gap", "--runs", str(runs))
    assert code == 2 and "missing column 'teacher_params'" in err


def test_planning_commands_have_help(cli):
    for command in ("plan", "teacher", "capacity-gap", "distill-map"):
        code, out, _ = cli(command, "--help")
        assert code == 0 and "Usage" in out


def test_plan_with_a_supervised_only_law_plans_the_supervised_question(cli, tmp_path):
    import numpy as np

    from distillscale.laws import load_laws

    truth = load_laws("epoch2024").supervised
    N, M = (x.ravel() for x in np.meshgrid(1e8 * 2.0 ** np.arange(6), [5, 20, 80], indexing="ij"))
    loss = truth.predict(N, M * N) * np.exp(0.003 * np.random.default_rng(0).standard_normal(len(N)))
    runs = tmp_path / "runs.csv"
    runs.write_text("params,tokens,loss\n" + "".join(f"{n},{m * n},{l}\n" for n, m, l in zip(N, M, loss)))
    law = tmp_path / "law.json"
    # The form the runs were drawn from (the default fit is tested in test_cli_fit and test_api).
    code, _, err = cli("fit", "supervised", runs, "--form", "chinchilla", "--bootstrap", "20", "--out", law)
    assert code == 0, err
    code, out, err = cli("plan", "--law", law, "--compute", "1e21", "--json")
    assert code == 0, err
    plan = json.loads(out)["supervised"]
    # The compute-optimal model of the fitted law is near the optimum of the law it was drawn from.
    from distillscale.laws import ComputeSettings
    from distillscale.planning.flops import ForwardFlops

    sizes = np.geomspace(1e8, 1e11, 2000)
    flops = ForwardFlops.from_settings(ComputeSettings())
    best = sizes[np.argmin(truth.predict(sizes, 1e21 / (3 * flops(sizes))))]
    assert plan["student_params"] == pytest.approx(best, rel=0.3)
    low, high = plan["interval"]
    assert low < plan["loss"] < high
    code, out, _ = cli("plan", "--law", law, "--compute", "1e21")
    text = " ".join(out.split())
    assert "Compute-optimal training without a teacher" in text
    assert "distillation planning needs one: fit it with `distillscale fit distillation`" in text
