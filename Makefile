# One command per check. `make help` lists them. Every target creates the virtualenv it needs.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTEST_ARGS ?=
# Apache Kafka for the second broker tier: its jars come from Maven Central into a git-ignored folder.
KAFKA_VERSION ?= 4.4.0
GROUP_PROTOCOL ?= classic
KAFKA_JARS := $(CURDIR)/.kafka/kafka-$(KAFKA_VERSION)
export EVENT_BUS_TEST_KAFKA_VERSION := $(KAFKA_VERSION)
export EVENT_BUS_TEST_KAFKA_JARS := $(KAFKA_JARS)
# Apicurio Registry, the real schema registry test-apache runs the registry-path tests on (besides our
# stand-in): Maven fetches it once into a git-ignored folder; it runs on Java 21+, found by
# tests/support/apicurio.py (EVENT_BUS_TEST_REGISTRY_JAVA_HOME, JAVA_HOME, PATH, /usr/lib/jvm).
APICURIO_VERSION ?= 3.3.3
APICURIO_DIR := $(CURDIR)/.apicurio/apicurio-registry-$(APICURIO_VERSION)
export EVENT_BUS_TEST_APICURIO_VERSION := $(APICURIO_VERSION)
export EVENT_BUS_TEST_APICURIO_DIR := $(APICURIO_DIR)
# Which registry test-apache uses: apicurio, or standin (no fetch, no Java 21). A name unlikely to be
# set in the environment already, where make would pick it up.
TEST_REGISTRY ?= apicurio

# The interpreter, by name, version or path: make test PYTHON=python3.11 (or PYTHON=3.13, or
# PYTHON=/path/to/python3.13). scripts/find_python.sh resolves it (PATH, then pyenv) and explains
# what it tried when it cannot. The default is the Python the current Open edX release runs.
DEFAULT_PYTHON := 3.12
SUPPORTED_PYTHONS := 3.11 3.12 3.13
PYTHON ?= python$(DEFAULT_PYTHON)
PY_FOUND := $(shell scripts/find_python.sh '$(PYTHON)' 2>/dev/null)
PY_BIN := $(word 1,$(PY_FOUND))
PY_VERSION := $(word 2,$(PY_FOUND))
# .venv belongs to the default Python; the others get .venv-py311, .venv-py313 beside it.
VENV := $(if $(PY_VERSION),$(if $(filter $(DEFAULT_PYTHON),$(PY_VERSION)),.venv,.venv-py$(subst .,,$(PY_VERSION))),.venv-no-python)
BIN := $(VENV)/bin
# Pins per interpreter: requirements/*.txt are compiled on 3.12 and serve 3.12 and 3.13; Python 3.11
# (openedx-events 10.x, Django up to 5.2) has its own requirements/py311/*.txt.
REQS := $(if $(filter 3.11,$(PY_VERSION)),requirements/py311,requirements)

# The supported matrix (tox.ini): Python x Django where Django supports the pair. py312-django60 is
# the default combination, which `make test` runs in full; the others run MATRIX_TESTS.
DEFAULT_ENV := py312-django60
MATRIX_ENVS := py311-django42,py311-django52,py312-django42,py312-django52,py313-django52,py313-django60,py312-django60-newest
MATRIX_TESTS ?= tests/unit tests/integration/test_interop.py tests/integration/test_reference_venv.py
TOX_ARGS ?=
comma := ,

.PHONY: help system-deps test test-apache kafka-jars test-matrix test-all quality docs demo broker bench bench-outbox bench-latency bench-parallel bench-inbox soak reference-venv upgrade requirements dev clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

# The venv is (re)built when missing or made by another Python (an older .venv of Python 3.11).
$(VENV)/.python-$(PY_VERSION):
	@scripts/find_python.sh '$(PYTHON)' >/dev/null
	@if [ -z "$(filter $(PY_VERSION),$(SUPPORTED_PYTHONS))" ]; then \
		echo "Python $(PY_VERSION) is not supported; choose one of $(SUPPORTED_PYTHONS)" >&2; exit 1; fi
	rm -rf $(VENV)
	$(PY_BIN) -m venv $(VENV)
	touch $@

# Stamps re-install only when the pinned requirements or setup.py change.
$(VENV)/.installed-%: $(REQS)/%.txt $(REQS)/pip.txt setup.py $(VENV)/.python-$(PY_VERSION)
	$(BIN)/python -m pip install -q -r $(REQS)/pip.txt
	$(BIN)/python -m pip install -q -r $(REQS)/$*.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# A layer not pinned for this Python (quality, docs and dev tools are pinned for the default only).
$(REQS)/%.txt:
	@echo "$@ does not exist: requirements/$*.in is not pinned for Python $(PY_VERSION)." \
		"Run this target with the default Python ($(DEFAULT_PYTHON))." >&2; exit 1

requirements: $(VENV)/.installed-test ## install the pinned test requirements into .venv (or .venv-pyXY)

dev: $(VENV)/.installed-dev ## install every development tool into .venv

system-deps: ## install the system packages tests need (PostgreSQL) if missing
	scripts/ensure_system_deps.sh

test: $(VENV)/.installed-test system-deps ## run the whole test suite, real-broker tests included (PYTHON=python3.11 etc.)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

kafka-jars: $(KAFKA_JARS)/.fetched ## fetch the Apache Kafka broker's jars with Maven (once; needs Java 17+ to run)

$(KAFKA_JARS)/.fetched: edx_event_bus_kafka/testing/apache-kafka-pom.xml | $(VENV)/.installed-test
	rm -rf $(KAFKA_JARS)
	$(BIN)/python -m edx_event_bus_kafka.testing.apache_kafka fetch $(KAFKA_JARS)
	touch $@

.PHONY: apicurio
apicurio: $(APICURIO_DIR)/quarkus-run.jar ## fetch Apicurio Registry with Maven (once; needs Java 21+ to run)

$(APICURIO_DIR)/quarkus-run.jar: | $(VENV)/.installed-test
	$(BIN)/python -m tests.support.apicurio fetch $(APICURIO_DIR)

test-apache: $(VENV)/.installed-test system-deps kafka-jars $(filter apicurio,$(TEST_REGISTRY)) ## integration tests on Apache Kafka and Apicurio (GROUP_PROTOCOL=classic|consumer, TEST_REGISTRY=apicurio|standin)
	$(BIN)/python -m pytest -m integration --kafka-broker=apache --kafka-group-protocol=$(GROUP_PROTOCOL) \
		--schema-registry=$(TEST_REGISTRY) $(PYTEST_ARGS)

# tox finds the interpreters through --discover, so pyenv's shims need no PYENV_VERSION.
define tox_run
	@set -e; discover=""; for version in $(SUPPORTED_PYTHONS); do \
		found="$$(scripts/find_python.sh $$version)"; discover="$$discover $${found% *}"; done; \
	echo "+ tox run --discover$$discover -e $(1) $(TOX_ARGS) -- $(2)"; \
	$(BIN)/tox run --discover $$discover -e $(1) $(TOX_ARGS) -- $(2)
endef

test-matrix: $(VENV)/.installed-dev ## unit, interop and byte-identity tests on every other supported Python x Django
	$(call tox_run,$(MATRIX_ENVS),$(MATRIX_TESTS))

test-all: $(VENV)/.installed-dev system-deps ## the whole suite on every supported Python x Django (tox; long)
	$(call tox_run,$(DEFAULT_ENV)$(comma)$(MATRIX_ENVS),$(PYTEST_ARGS))

quality: $(VENV)/.installed-quality ## ruff and mypy over the package, tests and scripts
	$(BIN)/ruff check edx_event_bus_kafka tests scripts benchmarks setup.py manage.py
	$(BIN)/mypy edx_event_bus_kafka tests scripts benchmarks

docs: $(VENV)/.installed-doc $(VENV)/.installed-test ## build the Sphinx docs, warnings as errors
	$(BIN)/python scripts/render_settings_doc.py
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

demo: $(VENV)/.installed-test ## start the embedded broker and send an event through it end to end
	$(BIN)/python scripts/demo.py

broker: $(VENV)/.installed-test ## run an embedded broker on 127.0.0.1:9092 in the foreground
	$(BIN)/python manage.py run_embedded_broker --port 9092

# Benchmarks take BROKER=tansu (default) or BROKER=apache (fetches Kafka's jars first).
BROKER ?= tansu
BROKER_DEPS := $(if $(filter apache,$(BROKER)),kafka-jars,)

bench: $(VENV)/.installed-test $(BROKER_DEPS) ## benchmark ours against the reference (BROKER=tansu|apache), same run
	$(BIN)/python benchmarks/producer_consumer.py --broker $(BROKER) $(BENCH_ARGS)

bench-outbox: $(VENV)/.installed-test system-deps $(BROKER_DEPS) ## outbox write rate, relay rate, commit-to-consumer latency
	$(BIN)/python benchmarks/outbox.py --broker $(BROKER) $(BENCH_ARGS)

bench-parallel: $(VENV)/.installed-test $(BROKER_DEPS) ## concurrency 16 vs 1 vs the reference, 5 ms receiver; memory under a backlog
	$(BIN)/python benchmarks/parallel.py --broker $(BROKER) $(BENCH_ARGS)

soak: $(VENV)/.installed-test system-deps kafka-jars ## chaos soak on Apache Kafka: kills, a broker restart, a registry outage; nothing lost
	$(BIN)/python scripts/soak.py $(SOAK_ARGS)

bench-latency: $(VENV)/.installed-test $(BROKER_DEPS) ## end-to-end latency at a steady rate, ours vs bare librdkafka
	$(BIN)/python benchmarks/latency.py --broker $(BROKER) $(BENCH_ARGS)

bench-inbox: $(VENV)/.installed-test system-deps $(BROKER_DEPS) ## deduplication's cost per event and purging's share, vs off
	$(BIN)/python benchmarks/inbox.py --broker $(BROKER) $(BENCH_ARGS)

reference-venv: $(VENV)/.installed-test ## build .venv-reference-pyXY: the reference release for this Python
	$(BIN)/python -m tests.support.reference_venv

upgrade: ## re-pin requirements/*.txt (Python 3.12) and requirements/py311/*.txt (3.11)
	scripts/upgrade_requirements.sh

clean: ## remove the virtualenvs and build output
	rm -rf .venv .venv-py* .venv-pip-compile-* .tox build dist *.egg-info .mypy_cache .ruff_cache .kafka .apicurio
