# hotline: two commands on a fresh machine — `make serve` and `make test` — each installs what it needs.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# Byte-compiled caches make every test process start in seconds instead of recompiling torch and mlflow.
unexport PYTHONDONTWRITEBYTECODE

CORPUS ?= data/corpus/default
SIZE ?= default

.PHONY: install test test-fast serve corpus lab clean-corpus help

help:
	@echo "make serve   set up, train the quick intent model if missing, start the service on 127.0.0.1:3000"
	@echo "make test    set up and run the test suite (notebooks included)"
	@echo "make corpus  synthesise the default corpus into $(CORPUS) (SIZE=tiny|small|default)"
	@echo "make lab     JupyterLab on 127.0.0.1"

install: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

# tests/test_stream.py runs in a pytest process of its own: a second in-process service app in one process hangs
# its stream (known issue, see the closing note of the live-stream work); every other test shares one process.
test: install
	$(BIN)/pytest -q --ignore=tests/test_stream.py
	$(BIN)/pytest -q tests/test_stream.py

test-fast: install
	$(BIN)/pytest -q -m "not slow"

$(CORPUS)/stats.json: | install
	$(BIN)/hotline data synth --size $(SIZE) --out $(CORPUS)

corpus: $(CORPUS)/stats.json

# The service needs no audio corpus: `hotline serve` trains the quick intent recipe from generated text when the
# registry has no intent champion, bootstraps whisper-base, prepares the database and a developer key, then serves.
serve: install
	$(BIN)/hotline serve

lab: install
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser notebooks/

clean-corpus:
	rm -rf $(CORPUS)
