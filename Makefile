# Two commands for a fresh clone: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DRFHQ  := $(VENV)/bin/drfhq
TFJS   := @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-backend-cpu@4.22.0 @tensorflow/tfjs-converter@4.22.0
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml Makefile | sha256sum | cut -c1-12)

.PHONY: setup demo transfer test bench clean-demo

setup: $(STAMP)
	@$(DRFHQ) models setup-offline >/dev/null 2>&1 || $(DRFHQ) models setup-offline; echo "weights home ready: $$($(PY) -c 'from drfhq_tools.models.weights import home; print(home())')"

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps anny==0.6.2   # its warp-lang dependency is optional for heads: skip it
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	# TensorFlow.js (pure JS, CPU): the yardstick tests/test_tfjs_graph.py checks our TF.js graph reader against
	if command -v npm >/dev/null; then npm install -s --no-audit --no-fund --prefix $(VENV)/node $(TFJS); fi
	rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(PY) -m drfhq_tools.demo

# The paper's method on the demo renders with MobileStyleGAN as G_real: about an hour on 2 CPU cores
# (train 0.6 kimg ~35 min, 8 renders x 3 methods ~25 min). Re-running continues where it stopped.
REAL ?= $(if $(wildcard ../shared/fixtures/real),../shared/fixtures/real,demo-out/reference)
transfer: setup
	test -f demo-out/dataset/manifest.parquet || $(PY) -m drfhq_tools.demo
	$(DRFHQ) train demo-out/dataset --out demo-out/transfer --config manifests/examples/train.json $$(test -f demo-out/transfer/checkpoint.pt && echo --resume)
	$(DRFHQ) translate demo-out/dataset --ckpt demo-out/transfer --out demo-out/translated --method transfer,project-real,layer-swap --steps 30 --lpips-net alex --limit 8
	$(DRFHQ) bench --dataset demo-out/dataset --real $(REAL) --out demo-out/bench-transfer --limit 8 --identity dlib-torch \
	  --baselines input,color-transfer,transfer=demo-out/translated/transfer,project-real=demo-out/translated/project-real,layer-swap=demo-out/translated/layer-swap

test: setup
	$(PY) -m pytest -q -ra --durations=20 tests

bench: setup
	$(PY) benchmarks/bench_align.py

clean-demo:
	rm -rf demo-out
