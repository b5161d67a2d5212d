# memsys: `make run` starts the dashboard, `make test` runs the tests; both set up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements.stamp
PORT ?= 8501

.PHONY: setup weaviate browser run test bench clean

setup: $(STAMP) weaviate

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $(STAMP)

weaviate: $(STAMP)
	$(BIN)/python tools/install_weaviate.py

browser:
	bash tools/install_browser.sh

run: setup
	$(BIN)/python -m streamlit run app.py --server.port $(PORT)

test: setup browser
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
