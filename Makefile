# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the tests).
# Both run `make setup` first; a second setup takes seconds.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# --- settings (override on the command line or in the environment) -------------------
# Python 3.11 for the project environment.
PYTHON311   ?= $(or $(shell command -v python3.11 2>/dev/null),$(firstword $(wildcard $(HOME)/.pyenv/versions/3.11.*/bin/python)),python3)
# Python 3.10 for the Rasa server's own environment (Rasa 3.6 needs it).
RASA_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python) $(shell command -v python3.10 2>/dev/null))
RASA_VENV   ?= .venv-rasa
# `cpu` (faiss-cpu) or `gpu` (faiss-gpu-cu12, for machines with a CUDA GPU).
FAISS       ?= cpu
PYTEST_ARGS ?=

VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE ?= hardlink

.PHONY: browser bench-quality bench-quality-production bench-quality-gpu bench-onnx bench-sentiment bench-stream bench-recommender bench-recommender-env bench-recommender-speed bench-recommender-reuse bench-bot help setup venv rasa-env kafka-jars test test-fast lint demo up down status kafka-up kafka-down kafka-status clean datastores web-assets

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: venv rasa-env kafka-jars web-assets  ## create both Python environments, fetch the Kafka jars and the web chat's socket.io client (no browser: only `make test` needs one)

browser:  ## Debian's candidate chromium for the web-chat browser test (idempotent; apt as root; version recorded in var/browser/)
	infra/browser/install-chromium.sh

web-assets: venv  ## the web chat's socket.io client from npm (pinned version and sha512; var/web/, served by the action server)
	$(PY) -m infra.web_assets fetch

datastores:  ## Debian's candidate PostgreSQL and Redis for the bot's optional tracker and lock stores (idempotent; apt as root; versions in var/apt/)
	infra/apt-install.sh postgresql='/usr/lib/postgresql/*/bin/postgres' redis-server=redis-server

.tools/bin/uv:
	$(PYTHON311) -m venv .tools
	.tools/bin/pip install -q uv==$(UV_VERSION)

venv: $(UV)  ## the project environment (.venv, Python 3.11) from uv.lock
	$(UV) sync --frozen --extra $(FAISS) --python $(PYTHON311) --quiet

rasa-env: $(UV)  ## the Rasa 3.6 server environment ($(RASA_VENV), Python 3.10)
	@test -n "$(RASA_PYTHON)" || { echo "error: no Python 3.10 found for Rasa; set RASA_PYTHON=/path/to/python3.10" >&2; exit 1; }
	@test -x $(RASA_VENV)/bin/python || $(UV) venv --quiet --python $(RASA_PYTHON) $(RASA_VENV)
	@cmp -s infra/rasa/requirements.lock $(RASA_VENV)/.installed.lock || { \
	  VIRTUAL_ENV=$(RASA_VENV) $(UV) pip sync --quiet infra/rasa/requirements.lock && \
	  cp infra/rasa/requirements.lock $(RASA_VENV)/.installed.lock; }

kafka-jars: venv  ## the Kafka broker's jars from Maven Central (var/kafka/lib)
	$(PY) -m infra.kafka fetch

test: setup browser datastores  ## run the test suite (starts and stops the services its tests need)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv  ## unit tests only (no broker, no Rasa training)
	$(PY) -m pytest -m "not slow and not kafka and not rasa" $(PYTEST_ARGS)

lint: venv  ## ruff
	$(VENV)/bin/ruff check core apps infra tests

bench-quality: venv  ## fine-tune and test the four classifiers of ../shared/BENCHMARKS.md -> var/bench/quality.json
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.quality $(BENCH_ARGS)

bench-quality-production: venv  ## rebuild the production models behind quality.json from their recipes (about 3 h on 2 CPU cores; resumes where it stopped)
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.recipes $(or $(RECIPES),all) $(BENCH_ARGS)

bench-quality-gpu: venv  ## the same benchmark with bf16 on a CUDA GPU, examples/s against the CPU -> var/bench/quality-gpu.json
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.quality_gpu $(BENCH_ARGS)

bench-onnx: venv  ## int8 ONNX serving path of the bench-quality classifiers: accepted only within 1 point
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.onnx_serving $(BENCH_ARGS)

bench-sentiment: venv  ## the finance stream's production sentiment model (PhraseBank + Twitter train splits) -> var/bench/sentiment_model.json
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.sentiment_model $(BENCH_ARGS)

bench-stream: venv  ## finance stream: inference vs end-to-end msgs/s through Kafka, p50/p95 latency, peak RSS -> var/bench/stream.json
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.stream $(BENCH_ARGS)

# The recommender benchmark's peers (implicit, LensKit, RecBole) in an environment of their own: RecBole 1.2.1 pins
# colorlog/colorama and needs setuptools<81, LensKit 2025.8 needs pandas<3. It sees the project's packages through a
# .pth file (torch, numpy, the app), and its own exact pins win where they differ.
BENCH_REC_VENV := var/venv-bench-recommender
BENCH_REC_PY   := $(BENCH_REC_VENV)/bin/python
bench-recommender-env: venv  ## the benchmark-only peers of bench-recommender (pins: benchmarks/requirements-recommender.txt) -> var/venv-bench-recommender
	@test -x $(BENCH_REC_PY) || $(UV) venv --quiet --python $(PY) $(BENCH_REC_VENV)
	@$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
	  "$$($(BENCH_REC_PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz_textml_project.pth"
	@cmp -s benchmarks/requirements-recommender.txt $(BENCH_REC_VENV)/.installed.txt || { \
	  VIRTUAL_ENV=$(BENCH_REC_VENV) $(UV) pip install --quiet --no-deps -r benchmarks/requirements-recommender.txt && \
	  cp benchmarks/requirements-recommender.txt $(BENCH_REC_VENV)/.installed.txt; }

bench-recommender: bench-recommender-env  ## MovieLens protocols A and B with every peer + serving speed of the recommender -> var/bench/recommender.json
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TEXTML_NUM_THREADS=1 $(BENCH_REC_PY) -m benchmarks.recommender $(BENCH_ARGS)

bench-recommender-speed: venv  ## recommender serving speed only (10k/100k items) -> var/bench/recommender.json
	HF_HUB_OFFLINE=1 TEXTML_NUM_THREADS=1 $(PY) -m benchmarks.recommender --skip-quality $(BENCH_ARGS)

RECOMMENDER_EMBEDDER ?= var/models/recommender-embedder-movielens/v1
bench-recommender-reuse: bench-recommender-env  ## bench-recommender plus text_finetuned rows from a fine-tuned MovieLens embedder saved earlier
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TEXTML_NUM_THREADS=1 $(BENCH_REC_PY) -m benchmarks.recommender --embedder-artifact $(RECOMMENDER_EMBEDDER) $(BENCH_ARGS)

bench-bot: venv rasa-env  ## support bot: intent accuracy, FAQ retrieval, REST latency -> var/bench/bot.json
	HF_HUB_OFFLINE=1 TEXTML_NUM_THREADS=1 $(PY) -m benchmarks.bot $(BENCH_ARGS)

demo: setup  ## the main job on embedded defaults
	$(PY) -m infra.demo

up: setup  ## start every long-lived service under supervisord (Kafka first, then its clients); returns when all answer
	$(PY) -m infra.stack up

down:  ## stop every service: supervisord's, a `make kafka-up` broker, and the same commands started by hand
	@if [ -x $(PY) ]; then $(PY) -m infra.stack down; else echo "nothing to stop (no environment yet)"; fi

status:  ## each service's state, pid, uptime, restart count and health
	@$(PY) -m infra.stack status || true

kafka-up: venv kafka-jars  ## start the local Kafka broker (KAFKA_BROKERS=3: a 3-broker cluster, replication 3); returns when it answers
	$(PY) -m infra.kafka up

kafka-down:  ## stop the local Kafka broker or cluster
	@if [ -x $(PY) ]; then $(PY) -m infra.kafka down; else echo "nothing to stop (no environment yet)"; fi

kafka-status:  ## say whether Kafka answers (KAFKA_BROKERS=3: each broker of the cluster)
	@$(PY) -m infra.kafka status || true

clean: down  ## remove runtime state (broker data, logs, models under var/); keeps the environments
	rm -rf var/
