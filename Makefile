# Herald developer entry points. `make run` and `make test` install what is missing.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/herald/v1/*.proto)

.PHONY: run stop test test-unit chaos fuzz lint protos bench deps venv tools clean

$(VPY):
	$(PY) -m venv $(VENV)

# Re-install when pyproject.toml changes.
$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Checkers of the deployment files (Dockerfile, manifests, policies) in a venv of their own.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
$(TOOLS_STAMP): deploy/tools/requirements.txt
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --upgrade pip
	$(TOOLS)/bin/python -m pip install -q -r deploy/tools/requirements.txt
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# System binaries (nats-server, redis-server; PostgreSQL tools for tests) via apt when absent.
deps: venv
	@bash deploy/local/ensure-deps.sh

protos: venv
	$(VPY) -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos \
		--grpc_python_out=protos $(PROTOS)

run: deps
	$(VPY) -m cli.devstack

stop:
	@$(VPY) -m cli.devstack --stop

lint: venv
	$(VPY) -m ruff check .

# Two pytest-xdist workers, each with its own servers and databases; a module stays on one
# worker, and the modules go out in collection order (not fewest tests last): the long
# stacks (chaos, cli, contract, e2e) first, the short unit files fill the end.
test: deps tools
	bash deploy/local/ensure-deps.sh --test
	HERALD_TEST_NEEDS_PG=1 bash deploy/local/with-postgres.sh $(VPY) -m pytest -q -p no:cacheprovider \
		-n 2 --dist loadfile --no-loadscope-reorder

# The fault-injection suite at full size (make test runs it reduced: a few thousand messages).
chaos: deps
	HERALD_CHAOS_SCALE=full HERALD_TEST_NEEDS_PG=1 bash deploy/local/with-postgres.sh \
		$(VPY) -m pytest -q -p no:cacheprovider -m chaos tests/chaos

# Long fuzzing run of the parsers (make test runs a bounded number of examples).
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(VPY) -m pytest -q -p no:cacheprovider tests/fuzz

test-unit: venv
	$(VPY) -m pytest -q tests/unit

bench: deps
	bash deploy/local/ensure-deps.sh --bench
	$(VPY) -m pip install -q -e '.[dev,bench]'
	$(VPY) -m bench

clean:
	rm -rf var build *.egg-info $(TOOLS)
