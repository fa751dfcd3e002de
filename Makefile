# `make demo` and `make test` do all the set-up on a fresh machine: they create .venv when it
# is missing and install the package with every extra (`.[all,test]`). Re-running is fast:
# the install is redone only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU wheel pinned, from PyTorch's CPU index (plain PyPI's Linux torch is the CUDA build, 17
# nvidia/cuda wheels); when that index does not answer, pip's own indexes are used only if a dry
# run shows no CUDA package (tools/install_torch.py). GPU users install their own torch into
# .venv first; it is then left alone.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: test demo lint format-check bench clean install sdist

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) tools/install_torch.py \
		--spec "$(TORCH_SPEC)" --index "$(TORCH_INDEX)" --with ".[all,test]"
	$(PY) -m pip install -q -e ".[all,test]"
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples tools
	$(PY) -m ruff format --check src tests benchmarks examples tools
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/lossreweight demo $(DEMO_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples tools

# `ruff format` and the 100-column line length (pyproject [tool.ruff]); part of `test`.
format-check: $(STAMP)
	$(PY) -m ruff format --check src tests benchmarks examples tools
	$(PY) -m ruff check --select E501 src tests benchmarks examples tools

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py

# The source distribution and wheel, into dist/ (what `pip install lossreweight` gets).
sdist: $(STAMP)
	$(PY) -m build --no-isolation --outdir dist .

clean:
	rm -rf $(VENV) build dist src/*.egg-info
