# Two commands for a fresh clone: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DRFHQ  := $(VENV)/bin/drfhq
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml Makefile | sha256sum | cut -c1-12)

.PHONY: setup demo test bench clean-demo

setup: $(STAMP)
	@$(DRFHQ) models setup-offline >/dev/null 2>&1 || $(DRFHQ) models setup-offline; echo "weights home ready: $$($(PY) -c 'from drfhq_tools.models.weights import home; print(home())')"

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps anny==0.6.2   # its warp-lang dependency is optional for heads: skip it
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(PY) -m drfhq_tools.demo

test: setup
	$(PY) -m pytest -q -ra tests

bench: setup
	$(PY) benchmarks/bench_align.py

clean-demo:
	rm -rf demo-out
