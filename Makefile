# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA ?= ../shared/data/binance_spot_2024

.PHONY: run replay backtest test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,sweep]'
	touch $(STAMP)

# The daemon in PAPER mode on Binance's public market data: no keys, simulated fills.
run: $(STAMP)
	$(BIN)/vigil run --mode PAPER

# The real daemon over recorded candles, 3000x real time. Its state lives in data/replay/,
# apart from `make run`'s data/; a second `make replay` continues the first, FRESH=1 starts over.
replay: $(STAMP)
	$(BIN)/vigil run --mode PAPER --replay $(DATA) --speed 3000 $(if $(FRESH),--fresh)

backtest: $(STAMP)
	mkdir -p reports
	$(BIN)/vigil backtest --data $(DATA) --timeframe 5m --output reports/backtest.json \
		--html reports/backtest.html

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python tools/check_layers.py
	$(BIN)/python tools/export_schema.py --check
	$(BIN)/python tools/gen_cli_docs.py --check

bench: $(STAMP)
	$(BIN)/python tools/bench_cycle.py
	$(BIN)/python tools/bench_killswitch.py
	$(BIN)/python tools/bench_backtest.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
