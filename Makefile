# Two entry points: `make demo` (the main job) and `make test`. Each builds .venv itself.
# `make docs` builds the documentation site (mkdocs.yml, docs/) into site/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# constraints.txt pins every dependency (the lock): installs take exactly these versions, so a new
# release reaches users only after `make lock` is run, reviewed and committed.
CONSTRAINTS := constraints.txt

.PHONY: install test test-fast test-slow test-last-bits docs demo bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Everything (the core and every extra), torch first and pinned, so pip takes the local CPU wheel
# instead of a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -c $(CONSTRAINTS) -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

# Python may write its bytecode caches (__pycache__, ignored by git) even where the environment says not
# to (PYTHONDONTWRITEBYTECODE): the test suite starts many Python processes (sweep workers, ranks,
# commands), each of which would otherwise compile the package anew, and each pytest worker would
# rewrite every test file's asserts again (half of its collection time).
unexport PYTHONDONTWRITEBYTECODE

# --durations=30: the slowest tests, printed by every run (CI's too), so a slow one is seen when it lands.
test: $(STAMP)
	$(BIN)/lint-imports
	$(MKDOCS)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=30

# The inner loop: the tests marked fast (the laws, the planner and the CLI's parsing), in about two minutes.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m fast --durations=10

# The whole-pipeline tests (the demo with a teacher, end to end) on the builtin quick design itself, as
# `demo --quick` trains it (about twice their time in `make test`, which runs them on a smaller design
# of their own, tests/data/pipeline_sweep.toml, making the same checks).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --pipeline-design quick --durations=10 \
	    tests/report/test_own_teacher.py tests/report/test_demo_teacher_split.py

# The tests whose outcome turns on the last bits of floating point, as on an x86 CPU without AVX-512:
# numpy dispatches AVX-512 as the X86_V4 group (naming AVX512F etc. disables nothing there), torch takes
# its AVX2 kernels, OpenBLAS its Haswell ones. CI runs them after `make test`.
test-last-bits: $(STAMP)
	NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" ATEN_CPU_CAPABILITY=avx2 OPENBLAS_CORETYPE=Haswell \
	    $(BIN)/python -m pytest -q -n 2 -p no:cacheprovider -m last_bits

# The documentation site, offline: --strict fails on a broken link or anchor, a page left out of the
# nav, a missing README section that a page includes, or a docstring the API reference cannot read.
# (NO_MKDOCS_2_WARNING silences mkdocs-material's banner about a future MkDocs.)
MKDOCS = NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs: $(STAMP)
	$(MKDOCS)

# The main job: the built-in micro sweep on Python's standard library, the laws fitted to it, and
# sweeps/micro/report.html (about 10 minutes on 2 cores; run again, it reuses the finished runs).
demo: $(STAMP)
	$(BIN)/distillscale demo

# Every bench script with its defaults, folder by folder (bench/README.md: the question each answers,
# its inputs and how long it runs); bench/common/ holds what they share, nothing to run.
bench: $(STAMP)
	for f in bench/*/*.py bench/*.py; do case $$f in bench/common/*) ;; *) $(BIN)/python $$f || exit 1 ;; esac; done

# Refresh the lock: resolve the newest allowed versions in a scratch environment and write them down
# (torch is pinned above, on its own).
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --disable-pip-version-check -q torch==2.13.0
	.lock-venv/bin/pip install --disable-pip-version-check -q '.[all,dev]'
	echo "# Every dependency's version, written by make lock; make install takes them with pip -c." > $(CONSTRAINTS).tmp
	.lock-venv/bin/pip freeze --disable-pip-version-check --exclude distillscale | grep -v "^torch==" >> $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)
	rm -rf .lock-venv build

clean:
	rm -rf $(VENV) build site src/*.egg-info .pytest_cache
