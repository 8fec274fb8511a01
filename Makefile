# `make demo` and `make test` set up .venv from nothing: torch 2.13.0 (CPU) first, then flowforge
# in editable mode with the extras each needs (docs/install.md). flowforge asks for torch>=2.4,
# which the installed torch satisfies, so pip keeps it and no CUDA build is pulled in; every
# set-up step checks that afterwards.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH_VERSION := 2.13.0
PYTEST  := $(BIN)/python -m pytest
# extra pytest arguments, e.g. `make test PYTEST_ARGS="-x -k spline"`
PYTEST_ARGS ?=
CHECK_TORCH := $(BIN)/python -c "from importlib.metadata import version; v = version('torch'); \
	assert v.split('+')[0] == '$(TORCH_VERSION)', f'pip replaced torch $(TORCH_VERSION) by {v}'"

.PHONY: demo test test-slow test-browser chromium test-all lint package-check docs setup setup-test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.torch: $(BIN)/python
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	touch $@

# the command-line tool's extra: YAML configs, progress bars, plots
$(VENV)/.installed: $(VENV)/.torch pyproject.toml src/flowforge/version.py
	$(BIN)/pip install --quiet -e '.[cli]'
	$(CHECK_TORCH)
	touch $@

# every optional part the tests cover, and the test tools
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	$(CHECK_TORCH)
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[docs]'
	$(CHECK_TORCH)
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

demo: setup
	$(BIN)/flowforge train

# The fast tier (the README's test command): everything not marked slow, <= 5 minutes on 2 cores.
test: setup-test
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

# Debian's chromium for the browser tests (never a browser downloaded at run time): installed
# with apt on CI when running as root; elsewhere the browser tests skip, naming the reason.
chromium:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$CI" = "true" ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "chromium not installed: the browser tests will skip (apt-get install chromium)"; fi

# The report and playground in headless Chromium (tests/test_report.py, tests/test_serve.py).
test-browser: setup-test chromium
	$(PYTEST) tests/test_report.py tests/test_serve.py $(PYTEST_ARGS)

# The slow tier alone (the browser tests among them, so chromium first). pytest exits 5 when
# it collects nothing (e.g. PYTEST_ARGS selects no slow test): that is not a failure here.
test-slow: setup-test chromium
	$(PYTEST) -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Both tiers in one run.
test-all: setup-test
	$(PYTEST) $(PYTEST_ARGS)

lint: setup-test
	$(BIN)/ruff check src tests benchmarks scripts docs/hooks

# Wheel and sdist, pip keeps an installed torch, and the wheel works in a clean venv.
package-check:
	PY=$(PY) bash .ci/package-check

# The documentation site (mkdocs.yml) into site/; any warning fails it.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) runs .pytest_cache dist build site
