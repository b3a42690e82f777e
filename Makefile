# Every target creates .venv when missing: a fresh clone needs only `make demo` / `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,train]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/approxtvm demo --out reports/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -x -rs -p no:cacheprovider

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider -m slow

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check approxtvm tests benchmarks
	$(BIN)/ruff format --check approxtvm tests benchmarks

clean:
	rm -rf $(VENV) reports build *.egg-info
