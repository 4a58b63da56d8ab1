# The two commands a new user runs first. Each sets up .venv on a fresh machine.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast demo install bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the versions that install from local disk on the project's machines
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --timeout 1800 -q

# the daily tier: everything but the end-to-end tests marked slow (about 3 minutes on 2 cores)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --timeout 600 -q -m "not slow"

demo: $(STAMP)
	$(BIN)/dfer demo

bench: $(STAMP)
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/midas_overhead.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/shift_overhead.py
	$(BIN)/python benchmarks/still_face_epoch.py
	$(BIN)/python benchmarks/predict_speed.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
