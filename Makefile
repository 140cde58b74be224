# The commands README.md and .ci/run rely on. Debian-like machine, Python >= 3.11.
#
# Everything runs from a project virtualenv, .venv/, made from the system's `python3`: nothing is
# ever installed into the interpreter's own site-packages (Debian's python3 refuses that anyway,
# PEP 668). `make demo` needs no root; `make test` installs Debian packages and so needs root or
# sudo.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Real components the integration tests start: a real exporter, two real remote-write receivers,
# a real browser for the web UI, and hadolint's binary comes from the dev extra.
DEBIAN_TEST_PACKAGES := prometheus prometheus-node-exporter victoria-metrics chromium

.PHONY: venv install install-dev install-debian test check lint typecheck imports dockerlint \
        bench demo image clean-venv

## The project venv. Debian splits `venv`/`ensurepip` into python3-venv: install it when it is
## missing and we may (root or sudo); otherwise say what to install.
$(PY):
	@if ! $(PYTHON) -m venv $(VENV) >/dev/null 2>&1; then \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; then \
	    echo "make: $(PYTHON) cannot create a venv; installing python3-venv with apt-get" >&2; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      $(SUDO) apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; \
	    $(PYTHON) -m venv $(VENV); \
	  else \
	    echo "make: $(PYTHON) cannot create a venv: install python3-venv (apt-get install python3-venv)" >&2; \
	    exit 1; \
	  fi; \
	fi

venv: $(PY)

# Stamps: reinstall only when pyproject.toml changes (the installs are editable).
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

install-debian:
	@missing=""; for p in $(DEBIAN_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

install-dev: install-debian $(VENV)/.installed-dev
	# A real kube-apiserver v1.20.2 (built once from Debian's source package, cached outside
	# the repository) and etcd, for the Kubernetes discovery and API-server-proxy tests.
	bash scripts/kube-apiserver.sh >/dev/null

## The whole test suite, with everything it needs installed first; then all of it again with
## COLLECTOR_NATIVE=0, so the pure-Python twin of every C extension step (the reference) runs
## everywhere too. The editable install builds collector/_native*.so in place; its stamp only
## follows pyproject.toml, so C sources newer than the built module are rebuilt here first.
test: install-dev
	@so=$$(ls collector/_native*.so 2>/dev/null | head -n 1); \
	if [ -z "$$so" ] || [ -n "$$(find collector -maxdepth 1 -name '_native*.[ch]' -newer "$$so")" ]; then \
	  $(PY) -m pip install -q -e '.[dev]'; \
	fi
	$(PY) -m pytest -q
	COLLECTOR_NATIVE=0 $(PY) -m pytest -q

## Static checks: format, lint, types, import layers, Dockerfile.
check: lint typecheck imports dockerlint

lint: $(VENV)/.installed-dev
	$(PY) -m ruff format --check collector tests benchmarks
	$(PY) -m ruff check collector tests benchmarks

typecheck: $(VENV)/.installed-dev
	$(PY) -m mypy

imports: $(VENV)/.installed-dev
	$(VENV)/bin/lint-imports

dockerlint: $(VENV)/.installed-dev
	$(VENV)/bin/hadolint Dockerfile

bench: install-dev
	$(PY) -m benchmarks.parser

## The whole pipeline on loopback, nothing else needed (no root). Ctrl-C stops it.
demo: install
	$(VENV)/bin/collector demo

## Build the container image with podman/buildah (chroot isolation) and smoke-test it.
image:
	bash scripts/ci-image.sh

clean-venv:
	rm -rf $(VENV)
