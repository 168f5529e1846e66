# Two entry points: `make run` (the whole stack on embedded defaults) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench endpoint catalogue clean

# pip's own progress is shown (no -q): the first install takes minutes and should look alive.
$(STAMP): requirements.txt gpu_worker/requirements.txt requirements-dev.txt
	@echo "== 1/2 creating the virtual environment in $(VENV) (once)"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "== 2/2 installing the requirements into $(VENV): several minutes the first time"
	$(BIN)/pip install --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)
	@echo "== installed; next: the pipeline catalogue, then the stack"

# The app reads pipeline declarations from app/pipelines.json, generated from gpu_worker/pipelines.
catalogue: $(STAMP)
	$(BIN)/python -m gpu_worker.pipelines catalogue --output app/pipelines.json

run: catalogue
	$(BIN)/python -m app.devserver

endpoint: $(STAMP)
	$(BIN)/python -m deploy local

test: $(STAMP)
	sh tests/support/ensure_chromium.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench endpoint
	$(BIN)/python -m bench pipeline
	$(BIN)/python -m bench worker

clean:
	rm -rf $(VENV) instance var .pytest_cache .ruff_cache
