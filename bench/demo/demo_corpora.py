"""The full micro demo (`distillscale demo --data DIR`) on corpora it was never tuned on, built from
what a Debian/Ubuntu machine already holds (no download), and the per-corpus table of its held-out
checks (issue 38: a design checked on several corpora, never tuned on one).

Corpora (each a directory of one text file per source document, at most --cap bytes, ~13 MB, taken
in sorted path order; exact duplicates and files that are not UTF-8 text are left out):

- man-en      English: man pages of sections 1, 5, 7 and 8 rendered to plain text by groff
- doc-en      English: /usr/share/doc's prose (README, NEWS, *.txt, *.md, *.rst, gzipped or not;
              no changelogs, copyright files, HTML or code) and /usr/share/common-licenses
- pkgdoc-en   English: the GNU info manuals (/usr/share/info), the POD documentation of the
              installed Perl modules (=pod ... =cut blocks of *.pod/*.pm) and the descriptions
              (METADATA) and README/*.md/*.rst files of the Python packages in this venv
- c-include   code: the C/C++ headers under /usr/include
- perl-code   code: the installed Perl modules and scripts with their POD left out
- js-code     code: the installed node modules' JavaScript (minified files left out)
- py-site     code: the third-party Python of this venv's site-packages (numpy, torch, ...)

`stdlib` names `make demo`'s own corpus (this Python's standard library, `demo` without --data) for
`run` and `table`; it is the default's, so it is not among the unseen ones `build` makes.

Usage:
    python bench/demo/demo_corpora.py build [NAME ...]   [--root /work/corpora] [--cap 13M]
    python bench/demo/demo_corpora.py run   [NAME ...]   [--root /work/corpora] [--sweeps /work/sweeps3]
    python bench/demo/demo_corpora.py table [NAME ...]   [--sweeps /work/sweeps3] [--rereport]

`run` runs `distillscale demo --data ROOT/NAME --out SWEEPS/NAME --json` for each corpus in turn (a
finished sweep only redoes its report) and records its wall time and the load average around it in
SWEEPS/NAME/demo_wall.json. `table` reads each sweep's report.json (`--rereport` first runs
`distillscale report SWEEPS/NAME --out SWEEPS/NAME/rereport`, e.g. with newer code, without training
anything, and reads that one) and prints the markdown table; the wall's load is the mean of
SWEEPS/load.log's 1-minute load averages over the demo, where such a log was kept (lines
"EPOCH LOAD1 LOAD5 LOAD15", e.g. `while true; do echo "$(date +%s) $(cut -d' ' -f1-3 /proc/loadavg)";
sleep 30; done >> SWEEPS/load.log`).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.runs import distillscale  # noqa: E402

DEFAULT_CORPUS = "stdlib"
SITE_PACKAGES = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
PERL_ROOTS = ["/usr/share/perl", "/usr/share/perl5", "/usr/lib/x86_64-linux-gnu/perl",
              "/usr/lib/x86_64-linux-gnu/perl5", "/usr/lib/x86_64-linux-gnu/perl-base"]
PROSE_NAMES = re.compile(r"^(README|NEWS|AUTHORS|THANKS|TODO|FAQ|HACKING|BUGS|CONTRIBUTING|USAGE|INSTALL)"
                         r"|\.(txt|md|rst|text)$", re.IGNORECASE)
POD_START = re.compile(r"^=[a-zA-Z]")


def walk(*roots: str, keep: Callable[[Path], bool] = lambda path: True) -> Iterator[Path]:
    """Regular files under the roots in sorted order (symlinked duplicates left out)."""
    seen = set()
    for root in roots:
        for directory, subdirectories, names in sorted(os.walk(root)):
            subdirectories.sort()
            for name in sorted(names):
                path = Path(directory, name)
                if path.is_file() and not path.is_symlink() and keep(path):
                    real = path.resolve()
                    if real not in seen:
                        seen.add(real)
                        yield path


def read_text(path: Path, nul: bool = False) -> str | None:
    """The file's text (gunzipped if .gz), or None when it is not UTF-8 text (holds NUL, unless `nul`:
    then NULs are dropped, e.g. an info manual's tag table)."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return None
    return text.replace("\x00", "") if nul else None if "\x00" in text else text


def man_en() -> Iterator[tuple[str, str]]:
    for section in ("man1", "man5", "man7", "man8"):
        for path in walk(f"/usr/share/man/{section}"):
            source = read_text(path)
            if source is None or source.lstrip().startswith(".so "):  # a page that only includes another
                continue
            rendered = subprocess.run(["groff", "-mandoc", "-Tutf8", "-P-cbou", "-rLL=80n"], input=source,
                                      capture_output=True, text=True, errors="replace").stdout
            yield path.name, rendered


def doc_en() -> Iterator[tuple[str, str]]:
    def prose(path: Path) -> bool:
        name = path.name.removesuffix(".gz")
        return not name.lower().startswith(("changelog", "copyright")) and bool(PROSE_NAMES.search(name))

    for path in [*walk("/usr/share/doc", keep=prose), *walk("/usr/share/common-licenses")]:
        if (text := read_text(path)) is not None:
            yield str(path), text


def pod_of(text: str, keep_pod: bool) -> str:
    """The POD blocks of a Perl file (keep_pod) or everything else."""
    kept, in_pod = [], False
    for line in text.splitlines(keepends=True):
        if in_pod and line.startswith("=cut"):
            in_pod = False
            continue
        if not in_pod and POD_START.match(line):
            in_pod = True
        if in_pod == keep_pod:
            kept.append(line)
    return "".join(kept)


def perl_files() -> Iterator[tuple[Path, str]]:
    for path in walk(*PERL_ROOTS, keep=lambda p: p.suffix in (".pm", ".pod", ".pl")):
        if (text := read_text(path)) is not None:
            yield path, text


def pkgdoc_en() -> Iterator[tuple[str, str]]:
    for path in walk("/usr/share/info", keep=lambda p: p.name != "dir"):
        if (text := read_text(path, nul=True)) is not None:
            yield str(path), text
    for path, text in perl_files():
        yield str(path), pod_of(text, keep_pod=True)
    for path in walk(str(SITE_PACKAGES), keep=lambda p: p.name == "METADATA" or (
            p.suffix.lower() in (".md", ".rst") or p.name.upper().startswith("README"))):
        if (text := read_text(path)) is not None:
            if path.name == "METADATA":  # the long description follows the headers' blank line
                text = text.partition("\n\n")[2]
            yield str(path), text


def c_include() -> Iterator[tuple[str, str]]:
    for path in walk("/usr/include", keep=lambda p: p.suffix in (".h", ".hpp", ".hh", "")):
        if (text := read_text(path)) is not None:
            yield str(path), text


def perl_code() -> Iterator[tuple[str, str]]:
    for path, text in perl_files():
        yield str(path), pod_of(text, keep_pod=False)


def js_code() -> Iterator[tuple[str, str]]:
    for path in walk("/usr/lib/node_modules", "/usr/share/javascript", "/usr/share/nodejs",
                     keep=lambda p: p.suffix in (".js", ".mjs", ".cjs") and not p.name.endswith(".min.js")):
        if (text := read_text(path)) is not None:
            yield str(path), text


def py_site() -> Iterator[tuple[str, str]]:
    for path in walk(str(SITE_PACKAGES), keep=lambda p: p.suffix == ".py"):
        if (text := read_text(path)) is not None:
            yield str(path), text


CORPORA: dict[str, tuple[str, Callable[[], Iterator[tuple[str, str]]]]] = {
    "man-en": ("English: man pages, sections 1/5/7/8, rendered to text", man_en),
    "doc-en": ("English: /usr/share/doc prose + common-licenses", doc_en),
    "pkgdoc-en": ("English: GNU info manuals + Perl module POD + Python package descriptions/READMEs", pkgdoc_en),
    "c-include": ("code (C): /usr/include headers", c_include),
    "perl-code": ("code (Perl): installed modules, POD left out", perl_code),
    "js-code": ("code (JavaScript): the installed node modules, minified files left out", js_code),
    "py-site": ("code (Python, third-party): the .py files of this venv's site-packages", py_site),
}


def parse_bytes(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def build(name: str, root: Path, cap: int) -> None:
    """Write corpus `name` into root/name (refusing a directory this script did not make)."""
    directory = root / name
    marker = root / f"{name}.json"  # beside the corpus, not a document of it
    if directory.exists() and not marker.is_file():  # a corpus's marker is written last
        sys.exit(f"{directory} exists and was not built by this script: give another --root")
    if marker.is_file():
        print(f"{name}: already built ({json.loads(marker.read_text())['bytes']:,} bytes)")
        return
    partial = root / f".{name}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    for old in partial.iterdir():
        old.unlink()
    written, documents, seen, start = 0, 0, set(), time.perf_counter()
    for source, text in CORPORA[name][1]():
        text = text.strip()
        encoded = text.encode("utf-8")
        digest = hashlib.sha256(encoded).hexdigest()
        if not text or digest in seen:
            continue
        if written + len(encoded) > cap:
            break
        seen.add(digest)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.strip("/"))[-120:]
        (partial / f"{documents:05d}-{safe}.txt").write_bytes(encoded + b"\n")
        written, documents = written + len(encoded) + 1, documents + 1
    partial.rename(directory)
    marker.write_text(json.dumps(
        {"name": name, "description": CORPORA[name][0], "bytes": written, "documents": documents,
         "cap": cap, "seconds": round(time.perf_counter() - start, 1)}, indent=1))
    print(f"{name}: {written:,} bytes in {documents:,} documents ({time.perf_counter() - start:.0f} s)")


def run(name: str, root: Path, sweeps: Path) -> None:
    out = sweeps / name
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    data = [] if name == DEFAULT_CORPUS else ["--data", str(root / name)]
    print(f"{name}: demo {' '.join(data)} --out {out} (started {time.strftime('%H:%M:%S')})", flush=True)
    result = subprocess.run([*distillscale(), "demo", *data, "--out", str(out), "--json"],
                            stdout=subprocess.PIPE, text=True)
    wall = time.time() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the demo and its workers, all waited for
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    (out / "demo_stdout.json").write_text(result.stdout)
    record = {"corpus": name, "wall_s": round(wall, 1), "exit": result.returncode, "cpu_s": round(cpu, 1),
              "load_before": load_before, "load_after": os.getloadavg(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start))}
    walls = out / "demo_wall.json"
    history = json.loads(walls.read_text()) if walls.is_file() else []
    walls.write_text(json.dumps([*history, record], indent=1))
    print(f"{name}: exit {result.returncode} in {wall:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build", "run", "table"])
    parser.add_argument("names", nargs="*", help=f"corpora (default all: {', '.join(CORPORA)})")
    parser.add_argument("--root", type=Path, default=Path("/work/corpora"))
    parser.add_argument("--sweeps", type=Path, default=Path("/work/sweeps3"))
    parser.add_argument("--cap", default="13M", help="bytes per corpus")
    parser.add_argument("--rereport", action="store_true", help="table: redo each report first")
    args = parser.parse_args(argv)
    names = args.names or list(CORPORA)
    known = [*CORPORA] if args.action == "build" else [DEFAULT_CORPUS, *CORPORA]
    if unknown := [name for name in names if name not in known]:
        parser.error(f"unknown corpus {', '.join(unknown)}: choose from {', '.join(known)}")
    for name in names:
        if args.action == "build":
            build(name, args.root, parse_bytes(args.cap))
        elif args.action == "run":
            if name != DEFAULT_CORPUS:
                build(name, args.root, parse_bytes(args.cap))
            run(name, args.root, args.sweeps)
    if args.action == "table":
        print_table(names, args.root, args.sweeps, args.rereport)


def corpus_tokens(sweep: Path) -> int:
    """The prepared corpus's tokens (all three splits), as the sweep's runs read it (the cache is reused)."""
    import tomllib

    from distillscale.data import prepare_data
    from distillscale.training.config import TrainConfig
    from distillscale.sweeps.spec import resolve_sweep_spec

    spec = resolve_sweep_spec(tomllib.loads((sweep / "spec.toml").read_text()), source=str(sweep / "spec.toml"),
                              base_dir=sweep)
    settings = {key: value for key, value in spec.runs[0].settings.items() if key in TrainConfig.model_fields}
    data = prepare_data(TrainConfig.model_validate({**settings, "out": "."}).data_config(), progress=False)
    return sum(split["tokens"] for split in data.manifest["splits"].values())


def run_results(sweep: Path) -> list[dict]:
    """Each finished run's result.json, with its seed, depth and tokens from its config."""
    import tomllib

    results = []
    for path in sorted((sweep / "runs").glob("*/result.json")):
        result = json.loads(path.read_text())
        config = tomllib.loads((sweep / "configs" / f"{path.parent.name}.toml").read_text())
        results.append({**result, "run_id": path.parent.name, "seed": config["run"]["seed"],
                        "n_layers": config["model"]["n_layers"], "tokens_planned": config["budget"]["tokens"]})
    return results


def seed_spread(results: list[dict]) -> list[float]:
    """|loss(seed 1) / loss(seed 0) - 1| of every teacher (depth, tokens) trained with two seeds."""
    cells: dict[tuple, dict[int, float]] = {}
    for result in results:
        if result["run_id"].startswith("t-") and result.get("val_loss") is not None:
            cells.setdefault((result["n_layers"], result["tokens_planned"]), {})[result["seed"]] = result["val_loss"]
    return [abs(losses[1] / losses[0] - 1) for losses in cells.values() if {0, 1} <= set(losses)]


def mean_load(start: float, end: float, log: Path) -> float | None:
    """The mean 1-minute load average between start and end (epoch seconds) in the load log
    (lines "EPOCH LOAD1 LOAD5 LOAD15", e.g. sampled every 30 s), if any."""
    if not log.is_file():
        return None
    samples = []
    for line in log.read_text().splitlines():
        try:  # a line that is not a sample (a killed sampler's shell message) is skipped
            stamp, load = (float(x) for x in line.split()[:2])
        except ValueError:
            continue
        if start <= stamp <= end:
            samples.append(load)
    return sum(samples) / len(samples) if samples else None


def check_cells(check: dict | None) -> str:
    """Mean / max |relative error| of the held-out runs, the signed mean and how many were predicted above
    what they reached ("over"), and how many lie inside their 90% intervals."""
    if not isinstance(check, dict) or check.get("mean_abs_relative_error") is None:
        return "- | - | - | -"
    covered = sum(bool(run["covered"]) for run in check["runs"])
    n = len(check["runs"])
    return (f"{check['mean_abs_relative_error']:.2%} | {check['max_abs_relative_error']:.2%} | "
            f"{check['mean_relative_error']:+.2%}, {check['n_over_predicted']}/{n} | {covered}/{n}")


def print_table(names: list[str], root: Path, sweeps: Path, rereport: bool) -> None:
    import calendar

    rows = []
    for name in names:
        sweep = sweeps / name
        if not (sweep / "spec.toml").is_file():
            print(f"{name}: no sweep in {sweep} (run it first)", file=sys.stderr)
            continue
        report_dir = sweep / "rereport" if rereport else sweep  # the demo's own report is kept
        if rereport:
            subprocess.run([*distillscale(), "report", str(sweep), "--out", str(report_dir), "--overwrite"],
                           check=True, stdout=subprocess.DEVNULL)
        report_path = report_dir / "report.json"
        if not report_path.is_file():
            print(f"{name}: {sweep} has no report.json yet (the demo is still running?)", file=sys.stderr)
            continue
        report = json.loads(report_path.read_text())
        checks = report.get("extrapolation_check", {})
        results = run_results(sweep)
        epochs = max((r["epochs"] for r in results if r.get("epochs") is not None), default=float("nan"))
        spread = seed_spread(results)
        walls = json.loads((sweep / "demo_wall.json").read_text()) if (sweep / "demo_wall.json").is_file() else []
        first = walls[0] if walls else None  # the run that trained the sweep (later ones only re-report)
        if first:
            start = calendar.timegm(time.strptime(first["started"], "%Y-%m-%d %H:%M:%S"))
            load = mean_load(start, start + first["wall_s"], sweeps / "load.log")
            cpu = f", {first['cpu_s'] / 60:.1f} CPU-min" if first.get("cpu_s") else ""
            wall = f"{first['wall_s'] / 60:.1f} min{cpu}" + (f" (load {load:.1f})" if load is not None else "")
        else:
            wall = "-"
        marker = root / f"{name}.json"
        meta = json.loads(marker.read_text()) if marker.is_file() else None
        size = f"{meta['bytes'] / 1e6:.1f} MB, " if meta else ""
        kind = CORPORA[name][0].split(":")[0] if name in CORPORA else "code (Python), the default"
        rows.append(f"| {name} ({kind}) | {size}{corpus_tokens(sweep) / 1e6:.2f}M tokens | "
                    f"{check_cells(checks.get('supervised'))} | {check_cells(checks.get('distillation'))} | "
                    f"{epochs:.2f} | " + (f"{sum(spread) / len(spread):.2%} ({len(spread)})" if spread else "-")
                    + f" | {wall} |")
    print("| corpus | size | supervised mean | max | signed, over | inside 90% | distillation mean | max "
          "| signed, over | inside 90% | max epochs | seed spread (pairs) | wall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
