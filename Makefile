# Two commands do all the set-up on a fresh machine (see README):
#   make demo   creates .venv, installs the project, runs the smoke sweep (synthetic set, local Ray, ./mlflow.db)
#   make test   creates .venv, installs the project with its test extras, runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/synthetic

.PHONY: demo train-demo test install install-test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -e .

install-test: $(BIN)/python
	$(BIN)/pip install -e ".[test]"

demo: install
	$(BIN)/farm sweep

train-demo: install
	$(BIN)/farm data synth --out $(DATA)
	$(BIN)/farm train --data $(DATA) --fusion amf --fold P1 --config cpu --out runs/demo/amf_P1.json

test: install-test
	$(BIN)/python -m pytest tests

lint: install-test
	$(BIN)/ruff check farm tests

clean:
	rm -rf $(VENV) runs data/synthetic mlflow.db mlartifacts
