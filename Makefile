# The commands README.md and .ci/run rely on. Debian-like machine, Python >= 3.11, root or sudo.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Real components the integration tests start: a real exporter, two real remote-write receivers,
# and a real browser for the web UI.
DEBIAN_TEST_PACKAGES := prometheus prometheus-node-exporter victoria-metrics chromium

.PHONY: install install-dev install-debian test check lint typecheck imports bench demo image

install:
	$(PYTHON) -m pip install -q -e .

install-debian:
	@missing=""; for p in $(DEBIAN_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

install-dev: install-debian
	$(PYTHON) -m pip install -q -e '.[dev]'
	# A real kube-apiserver v1.20.2 (built once from Debian's source package, cached outside
	# the repository) and etcd, for the Kubernetes discovery and API-server-proxy tests.
	bash scripts/kube-apiserver.sh >/dev/null

## The whole test suite, with everything it needs installed first.
test: install-dev
	$(PYTHON) -m pytest -q

## Static checks: format, lint, types, import layers.
check: lint typecheck imports

lint:
	$(PYTHON) -m ruff format --check collector tests benchmarks
	$(PYTHON) -m ruff check collector tests benchmarks

typecheck:
	$(PYTHON) -m mypy

imports:
	lint-imports

bench: install-dev
	$(PYTHON) -m benchmarks.parser

demo: install
	collector demo

## Build the container image with podman/buildah (chroot isolation) and smoke-test it.
image:
	bash scripts/ci-image.sh
