# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
# One virtual environment per interpreter: `make test PYTHON=python3.12` gets
# .venv-python3.12 and never reuses the default .venv built by another Python.
VENV ?= $(if $(filter python3,$(PYTHON)),.venv,.venv-$(notdir $(PYTHON)))
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

# mypy --strict, configured in pyproject.toml [tool.mypy]. mypy cannot run the editable
# install's import hook that maps adwd.<layer> to the <layer>/ folder, so it reads the
# packages through a link tree, build/mypy/adwd/<layer> -> <layer>/ (mypy_path).
LAYERS := actors events projections transport service
MYPY_LINKS := $(addprefix build/mypy/adwd/,$(LAYERS))
MYPY_PACKAGES = $(BIN)/mypy -p adwd $(addprefix -p adwd.,$(LAYERS))
# The example workflows are scripts importing their sibling _adw: checked as top-level modules.
MYPY_EXAMPLES = MYPYPATH=service/examples/adws $(BIN)/mypy --explicit-package-bases \
	service/examples/adws/*.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/adwd serve

test: $(STAMP) $(MYPY_LINKS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MYPY_PACKAGES)
	$(MYPY_EXAMPLES)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) $(MYPY_LINKS)
	$(MYPY_PACKAGES)
	$(MYPY_EXAMPLES)

bench: $(STAMP)
	$(BIN)/python -m bench

$(MYPY_LINKS):
	mkdir -p $(@D)
	ln -sfn ../../../$(@F) $@

clean:
	rm -rf $(VENV) build *.egg-info
