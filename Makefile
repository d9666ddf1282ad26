# The two commands of the README: `make demo` runs the main job, `make test`
# runs the tests. Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kres-installed

.PHONY: demo test test-all lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kres summary cifar_resnet20 --classes 10
	$(BIN)/kres models 'cifar_*' 'resnet50*' 'resnext50*'

test: $(STAMP)
	$(BIN)/python -m pytest -n 2

# Everything, the tests marked slow included.
test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m ''

lint: $(STAMP)
	$(BIN)/ruff check kres tests benchmarks examples

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
