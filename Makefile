# memsys: `make run` starts the dashboard, `make test` runs the tests; both set up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements.stamp
PORT ?= 8501
# The HTTP API (`memsys api`) beside the dashboard, on the same address.
API_PORT ?= 8502
# Where the dashboard listens: loopback unless the operator says otherwise (then sign-in is required).
MEMSYS_SERVER_ADDRESS ?= 127.0.0.1

.PHONY: setup weaviate system versitygw browser oidc run serve test bench clean

setup: $(STAMP) weaviate system versitygw

# The pinned packages, then memsys itself in editable mode: `import memsys` works from any
# directory in the environment and the `memsys` command is on the venv's PATH.
$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-test.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

weaviate: $(STAMP)
	$(BIN)/python tools/install_weaviate.py

system:
	bash tools/install_system_packages.sh

# The S3 server the S3 source tests run on loopback (built with Go once, cached).
versitygw: $(STAMP)
	$(BIN)/python tools/install_versitygw.py

browser:
	bash tools/install_browser.sh

# The memsys server (embedded Weaviate of the data directory) starts first and outlives
# the dashboard; it stops after MEMSYS_SERVER_IDLE_SECONDS without clients. The dashboard
# prints the address to open, with its token when it runs without sign-in. The API runs
# beside it (its address printed; off loopback it needs API tokens, or it says so and the
# dashboard runs alone) and stops with it.
run: setup
	$(BIN)/python -m memsys server start
	$(BIN)/python -m memsys api --host $(MEMSYS_SERVER_ADDRESS) --port $(API_PORT) & api=$$!; \
	trap 'kill $$api 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python -m components.serve --server.address $(MEMSYS_SERVER_ADDRESS) --server.port $(PORT)

# For a team: listens on every interface; refuses to run until sign-in is configured.
serve:
	$(MAKE) run MEMSYS_SERVER_ADDRESS=0.0.0.0

# The OpenID Connect provider the sign-in tests run on loopback (node's oidc-provider).
oidc:
	cd tools/oidc && npm ci --silent --no-audit --no-fund

# Two test files at a time (pytest-xdist; each file keeps its own servers and fixtures on one
# worker): most of a test's time is a server starting or a browser waiting, so two workers
# use the two cores. TEST_WORKERS=0 runs them one after another.
TEST_WORKERS ?= 2
test: setup browser oidc
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# Every benchmark step with its figures and how long it took; `make bench ARGS=--quick`
# the headline figures only (a few minutes on a quiet 2-core machine), and
# `make bench ARGS="pipeline:cold server"` the named steps.
bench: setup
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts *.egg-info
