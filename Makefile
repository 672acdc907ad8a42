# The verbs people type. Every target that needs Python depends on `install`,
# so each one works as the only command on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
IMAGE_REGISTRY ?= ghcr.io/perennial-dev
IMAGE_TAG ?= $(shell sed -n 's/__version__ = "\(.*\)"/\1/p' operator/perennial/_version.py)

.PHONY: install test lint fmt crds locks demo images deploy bench bench-serving bench-operator bench-ct chaos rollouts clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[operator,runtime,dev]'
	$(PY) -m pip check
	touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy -p perennial -p perennial_runtime
	PYTHONPATH=tests $(PY) -m mypy bench
	$(VENV)/bin/lint-imports

fmt: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

crds: install
	$(PY) -m perennial crds --output crds/
	$(PY) -m perennial.api.docgen

# Pin every dependency of the two images (they install with -c <lock>).
locks: install
	$(PY) scripts/lock_requirements.py

demo: install
	$(PY) -m perennial demo

images:
	docker build -f operator/Dockerfile -t $(IMAGE_REGISTRY)/perennial-operator:$(IMAGE_TAG) .
	docker build -f trainer-image/Dockerfile -t $(IMAGE_REGISTRY)/perennial-runtime:$(IMAGE_TAG) .

deploy:
	kubectl apply --server-side -k crds/
	kubectl apply --server-side -k manifests/base

bench: install
	$(PY) -m pytest tests/bench -p no:cacheprovider $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Our model server vs MLServer 1.7.1 on the same models, pinned, driven by wrk; rewrites
# docs/benchmarks.md (~15 min; installs wrk and MLServer's venv under .bench/ on first use).
bench-serving: install
	$(PY) -m bench.serving $(BENCH_ARGS)

# The operator at scale on the emulator (the tests' harness: tests/ on the path): N idle
# pipelines, requests/s at rest, CPU, RSS, trigger and rollout latencies; writes its
# section of docs/benchmarks.md. Smaller N:
# make bench-operator BENCH_ARGS="--sizes 100,1000 --window 60"
bench-operator: install
	PYTHONPATH=tests $(PY) -m bench.operator $(BENCH_ARGS)

# Continuous-training triggers on seeded drifting streams, driven through `perennial local`
# (predictions, feedback, data file updates); rewrites the table and plot in docs/ct.md
# (~20 min). Smoke test: make bench-ct BENCH_ARGS=--quick
bench-ct: install
	$(PY) -m bench.ct $(BENCH_ARGS)

# The operator killed with SIGKILL at 100 seeded random instants while a scenario plays on
# the emulator; invariants after every restart; the "Kill anywhere" section of
# docs/reliability.md (~10 min). Smaller: make chaos BENCH_ARGS="--kills 10"
chaos: install
	PYTHONPATH=tests $(PY) -m bench.chaos $(BENCH_ARGS)

# 200 requests/s through `perennial local`'s stable endpoint during a rolling update, a
# canary, an automatic and a manual rollback, then a 10-minute server soak with feedback;
# the "Rollouts under load" and "Server soak" sections of docs/reliability.md (~13 min).
# Shorter: make rollouts BENCH_ARGS="--soak-minutes 2"
rollouts: install
	$(PY) -m bench.rollouts $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
