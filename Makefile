# The two commands: `make demo` and `make test`. Each bootstraps .venv first
# (idempotent: a second run takes a second or two).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap demo test bench docs mutants clean

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	@bash scripts/demo.sh

test: bootstrap
	@$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: bootstrap
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# deliberate bugs, each in a copy of the tree: every one must be killed by the tests (scripts/mutants.py)
mutants: bootstrap
	@$(PY) scripts/mutants.py

docs: bootstrap
	@$(PY) -m convscope.docs_build

clean:
	rm -rf .venv .pytest_cache test-artifacts
