# Two commands for a fresh clone:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test install install-dev system-deps nltk-data bench fuzz load clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed nltk-data

install-dev: $(VENV)/.installed-dev nltk-data

# WordNet comes from Debian's wordnet-base (see packages.txt); Chromium (with an emoji font for the
# page icons in screenshots) drives the browser test.
system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  need=""; for p in $$(grep -v '^#' packages.txt) chromium fonts-noto-color-emoji; do dpkg -s $$p >/dev/null 2>&1 || need="$$need $$p"; done; \
	  if [ -n "$$need" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; fi; \
	else echo "not root or no apt-get: install $$(grep -v '^#' packages.txt | tr '\n' ' ')chromium yourself"; fi

nltk-data: $(VENV)/.installed
	$(PY) -c "from demo_core.poem.nltk_resources import build_wordnet_from_debian as b; print('WordNet:', b() or 'missing (install wordnet-base)')"

run: system-deps install
	$(PY) -m streamlit run streamlit_app.py --server.port $(PORT)

test: system-deps install-dev
	$(PY) -m pytest -q

bench: install-dev
	$(PY) bench/run.py

fuzz: install-dev
	$(PY) bench/fuzz.py --cases 10000

load: install-dev
	$(PY) bench/load.py --sessions 10

clean:
	rm -rf $(VENV) .nltk_data .pytest_cache
