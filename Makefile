# sdcli developer entry points. Every target sets up .venv itself on first use.
PYTHON ?= python3
VENV ?= .venv
# torch goes in first and pinned: a local CPU wheel on CI machines, the CUDA build
# from PyPI on a Linux GPU machine. Override e.g. TORCH_SPEC="torch==2.14.1".
TORCH_SPEC ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.sdcli-installed

.PHONY: install demo test lint fmt bench parity clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/sdcli txt2img "a lighthouse at dusk, (oil painting:1.2)" --steps 8 --seed 1 --output outputs/demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Same prompts via `sdcli batch`, separate `sdcli txt2img` runs and a hand-written diffusers
# loop; prints ratios, writes bench-out/bench.json. BENCH_ARGS e.g. "--prompts 20 --steps 20".
bench: install
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

# sdcli vs an independent reference of the WebUI's pipeline, per sampler x schedule type.
parity: install
	$(BIN)/python bench/webui_parity.py $(PARITY_ARGS)

lint: install
	$(BIN)/ruff check sdcli tests

fmt: install
	$(BIN)/ruff check --fix sdcli tests

clean:
	rm -rf $(VENV) outputs .pytest_cache
