# The two commands of the README. Each installs what it needs first (idempotent, fast when done).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo test test-faults lint bench browser prometheus

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(VENV)/bin/herald demo

# Headless Chromium and its driver for the report's browser test (Debian packages; where apt
# is absent the test is skipped, and pytest -rs prints why in the summary).
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { command -v apt-get >/dev/null && \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	  echo "chromium or chromedriver not installed: the report's browser test will be skipped"; }

# Prometheus and promtool for the scrape, PromQL panel and alert-rule tests (Debian's
# prometheus package ships both; without apt the tests are skipped and say why).
prometheus:
	@{ command -v prometheus && command -v promtool; } >/dev/null || { command -v apt-get >/dev/null && \
	  (apt-get update -qq && apt-get install -y -qq prometheus >/dev/null) || \
	  echo "prometheus or promtool not installed: the Prometheus tests will be skipped"; }

test: install browser prometheus
	$(PY) -m ruff check herald tests
	$(PY) -m mypy herald
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -rs -m "not faults"

# The fault scenarios (docs/architecture.md, Faults): about 8 minutes more; .ci/run runs both.
test-faults: install
	$(PY) -m pytest -q -rs -m faults

lint: install
	$(PY) -m ruff check herald tests
	$(PY) -m mypy herald
	$(VENV)/bin/lint-imports

bench: install
	$(VENV)/bin/herald bench
