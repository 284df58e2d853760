# Tsunagu — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | sha1sum | cut -c1-12)

.PHONY: run test setup system lint typecheck pytest bench clean

run: setup system ## start the whole platform on embedded defaults and run the demo story (Ctrl-C stops)
	$(BIN)/tsunagu dev up --demo

test: setup system lint typecheck pytest ## set up, then lint, type-check and run every test

setup: $(STAMP) ## the virtualenv with the project and its dev tools

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,signer,idp,consent,broker,examples]'
	rm -f $(VENV)/.installed-* && touch $@

system: ## SoftHSM2 and PostgreSQL (installed/started when missing)
	tools/setup-system.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	tools/typecheck.sh

pytest: setup system
	$(BIN)/python -m pytest

bench: setup system ## benchmarks; figures go to bench/results and BENCHMARKS.md
	$(BIN)/python -m bench.outbox
	$(BIN)/python -m bench.signer
	$(BIN)/python -m bench.jlis_crl
	$(BIN)/python -m bench.ca
	$(BIN)/python -m bench.idp
	$(BIN)/python -m bench.consent
	$(BIN)/python -m bench.broker
	$(BIN)/python -m bench.broker_ngsild
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .tsunagu .pytest_cache .mypy_cache .ruff_cache
