# Two commands for a fresh clone:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test screenshots install install-dev system-deps test-system-deps nltk-data bench fuzz load clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed nltk-data

install-dev: $(VENV)/.installed-dev nltk-data

# The app needs only WordNet, from Debian's wordnet-base (packages.txt). The tests also need Chromium (with an
# emoji font for the page icons in screenshots) for the browser test.
APT_APP  = $$(grep -v '^\#' packages.txt)
APT_TEST = chromium fonts-noto-color-emoji
define apt_install
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  need=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || need="$$need $$p"; done; \
	  if [ -n "$$need" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; fi; \
	else echo "not root or no apt-get: install $(1) yourself"; fi
endef

system-deps:
	$(call apt_install,$(APT_APP))

test-system-deps: system-deps
	$(call apt_install,$(APT_TEST))

nltk-data: $(VENV)/.installed
	$(PY) -c "from demo_core.poem.nltk_resources import build_wordnet_from_debian as b; print('WordNet:', b() or 'missing (install wordnet-base)')"

run: system-deps install
	$(PY) -m streamlit run streamlit_app.py --server.port $(PORT)

test: test-system-deps install-dev
	$(PY) -m pytest -q

# Refreshes the README's screenshots on purpose (make test writes its own to tests/artifacts/).
screenshots: test-system-deps install-dev
	SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest -q tests/test_browser.py

bench: install-dev
	$(PY) bench/run.py

fuzz: install-dev
	$(PY) bench/fuzz.py --cases 10000

load: install-dev
	$(PY) bench/load.py --sessions 10

clean:
	rm -rf $(VENV) .nltk_data .pytest_cache *.egg-info
