"""How fast the planner page updates (target: a plan update < 200 ms on 2 cores).

Measured side by side in one run, for each kind of update the page makes:
- server: the time `/api/plan` (the plan, its text and the U-curve) and `/api/curve` (17 budgets of
  loss against compute) spend, as the server reports it;
- round trip: the same requests over HTTP from this process;
- browser: in headless Chromium (when it and playwright are installed), from a slider move to the
  plan drawn (`window.planner.lastUpdateMs`) and to the compute figure drawn.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/planning/serve_latency.py
"""

import json
import shutil
import statistics
import threading
import time
import urllib.request

from distillscale.serve.api import Planner
from distillscale.serve.server import make_server

TARGET_MS = 200.0
REPEATS = 7
BUDGETS = ["3e19", "1e20", "3e20", "1e21", "3e21", "1e22", "3e22"]  # one slider sweep


def post(address: str, path: str, body: dict) -> tuple[dict, float]:
    request = urllib.request.Request(address + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        payload = json.loads(response.read())
    return payload, (time.perf_counter() - start) * 1e3


def measure(address: str, label: str, query: dict) -> None:
    plan_server, plan_trip, curve_server, curve_trip = [], [], [], []
    for budget in BUDGETS[:REPEATS]:  # each a first visit: no remembered answer
        payload, trip = post(address, "api/plan", dict(query, compute=budget))
        assert payload["ok"] and not payload.get("remembered"), payload
        plan_server.append(payload["elapsed_ms"])
        plan_trip.append(trip)
        curve, trip = post(address, "api/curve", dict(query, compute=budget,
                                                      student_params=payload["summary"]["student_params"]))
        curve_server.append(curve["elapsed_ms"])
        curve_trip.append(trip)
    plan_ms, curve_ms = statistics.median(plan_trip), statistics.median(curve_trip)
    print(f"{label:34s} plan {statistics.median(plan_server):6.1f} ms server, {plan_ms:6.1f} ms round trip "
          f"({plan_ms / TARGET_MS:4.2f}x target); compute figure {statistics.median(curve_server):6.1f} ms "
          f"server, {curve_ms:6.1f} ms round trip; max plan round trip {max(plan_trip):6.1f} ms")


def browser() -> None:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        print("browser: skipped (needs chromium and playwright)")
        return
    server = make_server(Planner(), port=0)  # a fresh server: nothing remembered
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}/"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        page = chromium.new_page(viewport={"width": 1360, "height": 1000})
        page.goto(address)
        page.wait_for_function("window.planner.updates > 0", timeout=30_000)
        for mode, scenario in (("given", "best-case"), ("given", "teacher-pretraining"),
                               ("best", "best-case"), ("best", "teacher-pretraining")):
            page.select_option("#student-mode", mode)
            page.select_option("#scenario", scenario)
            plans, curves = [], []
            for budget in BUDGETS:
                page.fill("#compute", budget)
                page.wait_for_function(f"document.body.dataset.state === 'ready' && window.planner.shown "
                                       f"&& window.planner.shown.compute === '{budget}'", timeout=30_000)
                latency = page.evaluate("window.planner")
                plans.append(latency["lastUpdateMs"])
                curves.append(latency["curveMs"])
            label = f"{'546M' if mode == 'given' else 'best size'}, {scenario}"
            plan_ms = statistics.median(plans)
            print(f"browser, {label:30s} plan drawn {plan_ms:6.1f} ms after the request "
                  f"({plan_ms / TARGET_MS:4.2f}x target), compute figure {statistics.median(curves):6.1f} ms "
                  f"later; max {max(plans):6.1f} ms")
        chromium.close()
    server.shutdown()


def main() -> None:
    start = time.perf_counter()
    server = make_server(Planner(), port=0)
    print(f"server start (laws loaded, solver warmed up): {(time.perf_counter() - start) * 1e3:.0f} ms")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}/"
    base = {"law": "busbridge2025", "student": "546M", "teacher": "none"}
    for scenario in ("best-case", "teacher-inference", "teacher-pretraining", "teacher-pretraining-inference"):
        measure(address, f"546M, {scenario}", dict(base, scenario=scenario))
    measure(address, "546M, existing 7.75B teacher", dict(base, scenario="teacher-inference", teacher="tokens",
                                                         teacher_params="7.75B", teacher_tokens="155B"))
    for scenario in ("best-case", "teacher-pretraining"):
        measure(address, f"best size, {scenario}", dict(base, student="best", scenario=scenario))
    measure(address, "supervised-only law (epoch2024)", dict(base, law="epoch2024", scenario="best-case"))
    server.shutdown()
    browser()


if __name__ == "__main__":
    main()
