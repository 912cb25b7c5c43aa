# code-server-multi: the commands a person needs. `make help` lists them.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
CSM   := $(VENV)/bin/csm
PYTEST := $(PY) -m pytest

.PHONY: help deps test test-fast image demo down bench docs docs-screenshots

help:
	@echo "make demo        bring up one user (examples/demo.nix) and print the address and password"
	@echo "make down        stop the demo (workspaces are kept)"
	@echo "make test        everything that runs on this host (image build, live stack, browser)"
	@echo "make test-fast   tier 0 and unit tests: no containers"
	@echo "make image       build (or reuse) the portable image"
	@echo "make bench       benchmarks of the live stack"
	@echo "make docs        regenerate docs/options.md from the module"
	@echo "make docs-screenshots  retake the onboarding pictures from a live stack"

deps:
	@scripts/install-deps

test-fast: deps
	$(PYTEST) -m "not live" tests

image: deps
	$(CSM) image build

test: deps image
	$(PYTEST) tests

# A fresh host has no demo password: --create-passwords makes one and prints it.
# (tests/e2e/test_demo_path.py runs this target with its own DEMO_SETTINGS,
# DEMO_PORT and CSM_STATE_DIR.)
DEMO_SETTINGS ?= examples/demo.nix
DEMO_PORT ?= 8080
demo: deps image
	$(CSM) up --create-passwords --http-port $(DEMO_PORT) $(DEMO_SETTINGS)

down: deps
	$(CSM) down

bench: deps image
	$(PY) -m csm.bench.stack
	$(PY) -m csm.bench.idle
	$(PY) -m csm.bench.memory
	$(PY) -m csm.bench.gate
	$(PY) -m csm.bench.disk

docs: deps
	$(PY) scripts/options-doc.py > docs/options.md

# The pictures of docs/onboarding.md, taken from a throwaway stack (user ada) in
# Chromium; everything it starts is stopped again.
.PHONY: docs-screenshots
docs-screenshots: deps image
	$(PY) scripts/docs-screenshots.py
