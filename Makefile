# sdcli developer entry points. Every target sets up .venv itself on first use.
PYTHON ?= python3
VENV ?= .venv
# torch goes in first and pinned: a local CPU wheel on CI machines, the CUDA build
# from PyPI on a Linux GPU machine. Override e.g. TORCH_SPEC="torch==2.14.1".
TORCH_SPEC ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.sdcli-installed

.PHONY: install demo test test-fast test-js test-quant lint fmt bench bench-gpu parity clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e ".[dev]"
	# spandrel (ESRGAN-family upscalers) without its torchvision requirement: see sdcli/models/upscalers.py
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) --no-deps spandrel einops
	touch $(STAMP)

demo: install
	$(BIN)/sdcli txt2img "a lighthouse at dusk, (oil painting:1.2)" --steps 8 --seed 1 --output outputs/demo

# Two pytest workers (pytest-xdist), each test file kept on one worker so its module fixtures and the README's
# blocks run in order; TEST_WORKERS=1 runs everything in one process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

# The edit-test loop: everything but the `slow` (tests/slow_tests.txt) and `parity` (tests/reference) tests.
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not parity" -q $(PYTEST_ARGS)

# The WebUI API driven by a JavaScript client from npm (modelfusion, tests/server/js) under node; part of `make test`
# too (slow). The client installs with `npm ci` into ~/.cache/sdcli-tests (or $SDCLI_JS_CACHE).
test-js: install
	$(BIN)/python -m pytest -q -rs tests/server/test_js_client.py $(PYTEST_ARGS)

# --quantize loaded and run on this CPU (tests marked `quant`, tests/quant_cpu.py): bitsandbytes and torchao go into
# a scratch folder on PYTHONPATH, never into the venv (--no-deps: torch, numpy and packaging come from the venv).
QUANT_PKGS ?= /tmp/sdcli-quant-pkgs
QUANT_SPEC ?= bitsandbytes==0.50.2 torchao==0.18.0
test-quant: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target $(QUANT_PKGS) \
		$(QUANT_SPEC)
	PYTHONPATH=$(QUANT_PKGS) $(BIN)/python -m pytest -m quant -q -rs $(PYTEST_ARGS)

# sdcli vs hand-written diffusers code, interleaved repetitions (see bench/README.md).
# Full run: several minutes (builds a full-size SD1.5-architecture model once, ~4 GB).
# BENCH_ARGS=--quick for a CI-scale run; "--only startup,grid" for a subset.
# Then single-file vs diffusers-folder load time of a full-size random SD 1.5 (bench-out/load.json).
bench: install
	$(BIN)/python bench/bench.py $(BENCH_ARGS)
	$(BIN)/python bench/load_bench.py $(LOAD_BENCH_ARGS)

# On a CUDA machine: the GPU rows of docs/benchmarks.md (bench-out/gpu.json and a table).
bench-gpu: install
	$(BIN)/python bench/gpu.py $(BENCH_ARGS)

# sdcli vs an independent reference of the WebUI's pipeline, per sampler x schedule type.
parity: install
	$(BIN)/python bench/webui_parity.py $(PARITY_ARGS)

lint: install
	$(BIN)/ruff check sdcli tests
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix sdcli tests

clean:
	rm -rf $(VENV) outputs .pytest_cache
