# One command per check. `make help` lists them. Every target creates the virtualenv it needs.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Apache Kafka for the second broker tier: its jars come from Maven Central into a git-ignored folder.
KAFKA_VERSION ?= 4.4.0
GROUP_PROTOCOL ?= classic
KAFKA_JARS := $(CURDIR)/.kafka/kafka-$(KAFKA_VERSION)
export EVENT_BUS_TEST_KAFKA_VERSION := $(KAFKA_VERSION)
export EVENT_BUS_TEST_KAFKA_JARS := $(KAFKA_JARS)

.PHONY: help system-deps test test-apache kafka-jars test-all quality docs demo broker bench bench-outbox reference-venv upgrade requirements dev clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps re-install only when the pinned requirements or setup.py change.
$(VENV)/.installed-%: requirements/%.txt requirements/pip.txt setup.py | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements/pip.txt
	$(BIN)/python -m pip install -q -r requirements/$*.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

requirements: $(VENV)/.installed-test ## install the pinned test requirements into .venv

dev: $(VENV)/.installed-dev ## install every development tool into .venv

system-deps: ## install the system packages tests need (PostgreSQL) if missing
	scripts/ensure_system_deps.sh

test: $(VENV)/.installed-test system-deps ## run the whole test suite, real-broker tests included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

kafka-jars: $(KAFKA_JARS)/.fetched ## fetch the Apache Kafka broker's jars with Maven (once; needs Java 17+ to run)

$(KAFKA_JARS)/.fetched: edx_event_bus_kafka/testing/apache-kafka-pom.xml | $(VENV)/.installed-test
	rm -rf $(KAFKA_JARS)
	$(BIN)/python -m edx_event_bus_kafka.testing.apache_kafka fetch $(KAFKA_JARS)
	touch $@

test-apache: $(VENV)/.installed-test system-deps kafka-jars ## integration tests on Apache Kafka (GROUP_PROTOCOL=classic|consumer)
	$(BIN)/python -m pytest -m integration --kafka-broker=apache --kafka-group-protocol=$(GROUP_PROTOCOL) $(PYTEST_ARGS)

test-all: $(VENV)/.installed-dev ## run the suite under each supported Django version (tox)
	$(BIN)/tox

quality: $(VENV)/.installed-quality ## ruff and mypy over the package, tests and scripts
	$(BIN)/ruff check edx_event_bus_kafka tests scripts setup.py manage.py
	$(BIN)/mypy edx_event_bus_kafka tests scripts

docs: $(VENV)/.installed-doc $(VENV)/.installed-test ## build the Sphinx docs, warnings as errors
	$(BIN)/python scripts/render_settings_doc.py
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

demo: $(VENV)/.installed-test ## start the embedded broker and send an event through it end to end
	$(BIN)/python scripts/demo.py

broker: $(VENV)/.installed-test ## run an embedded broker on 127.0.0.1:9092 in the foreground
	$(BIN)/python manage.py run_embedded_broker --port 9092

bench: $(VENV)/.installed-test ## benchmark ours against the reference (installed in .venv-reference), same run
	$(BIN)/python scripts/benchmark.py $(BENCH_ARGS)

bench-outbox: $(VENV)/.installed-test system-deps ## outbox write rate, relay rate and commit-to-consumer latency
	$(BIN)/python scripts/bench_outbox.py $(BENCH_ARGS)

reference-venv: $(VENV)/.installed-test ## build .venv-reference with the reference edx-event-bus-kafka 6.x
	$(BIN)/python -m tests.support.reference_venv

upgrade: $(VENV)/.installed-dev ## re-pin requirements/*.txt from the .in files
	cd requirements && for layer in pip base test quality doc dev reference; do \
		../$(BIN)/pip-compile -q --upgrade --allow-unsafe --strip-extras --no-emit-index-url \
			--no-emit-find-links $$layer.in -o $$layer.txt || exit 1; done

clean: ## remove the virtualenv and build output
	rm -rf $(VENV) .tox build dist *.egg-info .mypy_cache .ruff_cache .kafka
