# Turnout: `make serve` runs the platform on its embedded default, `make test` runs the tests.
# Both create the virtual environment when it is missing (ENGINE=gpu for CUDA vLLM).
VENV ?= .venv
ENGINE ?= cpu
PY := $(VENV)/bin/python
CONFIG ?=
PYTEST_ARGS ?=

.PHONY: venv serve test lint bench clean redis chromium

venv:
	@deploy/venv.sh $(VENV) $(ENGINE)

serve: venv
	$(VENV)/bin/turnout serve $(if $(CONFIG),--config $(CONFIG),)

redis:
	@deploy/redis.sh

chromium:
	@deploy/chromium.sh

test: venv redis chromium
	$(VENV)/bin/ruff check .
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
