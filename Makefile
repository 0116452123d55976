# Two commands from a fresh clone: `make demo` and `make test`. Each creates or refreshes .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# pyproject.toml keeps ranges; requirements.lock pins every package (`make lock` refreshes it), and every install
# (make, CI, both Dockerfiles) takes its versions from the lock. The stamp changes whenever either file does, so a
# stale .venv is refreshed.
LOCK   := requirements.lock
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
EXTRAS ?= worker,piper,bench,test,deploy,docs
HOST   ?= 127.0.0.1
PORT   ?= 9880
WORKERS ?= 2
PYTEST_ARGS ?=
# pytest-xdist processes for `make test` (each test file runs whole on one of them: module fixtures stay shared)
TEST_WORKERS ?= 2

# The GPT-SoVITS engine's test setup: torch first, at exactly this version (the one requirements.lock pins: to
# change it, change it here and in Dockerfile.worker, then run `make lock`) (pip takes a local CPU build; a range
# would fetch a CUDA build of several GB), then GPT-SoVITS's code without its web-UI dependencies.
TORCH_VERSION ?= 2.13.0
GPT_SOVITS_DIST ?= gpt-sovits-cpufast==0.1.0 g2p_en==2.1.0 tokenizers==0.23.3
GSV_STAMP := $(VENV)/.gpt-sovits-$(shell echo "$(TORCH_VERSION) $(GPT_SOVITS_DIST)" | cat - pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help setup setup-gpt-sovits test unit check demo bench chaos voices manifests lock clean nginx e2e prometheus \
	prometheus-check images image-tools docs docs-reference

help:
	@echo "make demo   - set up .venv, then a router and $(WORKERS) workers with the bundled voice on http://$(HOST):$(PORT)"
	@echo "make test   - set up .venv, then run every check and every test (all tiers, in parallel)"
	@echo "make unit   - the unit tier alone: in-process tests, no mypy (about 2 minutes)"
	@echo "make check  - mypy (strict), ruff and the import contracts only"
	@echo "make bench  - set up .venv, then run the benchmarks (table + JSON in bench/results/)"
	@echo "make chaos  - set up .venv, then inject faults into real processes; fails if any request is lost"
	@echo "make prometheus-check - a real Prometheus answers every dashboard query; promtool tests every alert"
	@echo "make images - build the router and worker (CPU) images with buildah, no daemon, then smoke-run them"
	@echo "make e2e    - the end-to-end suite: helm install to uninstall, on the emulator or on E2E_KUBECONFIG's cluster"
	@echo "make manifests - regenerate manifests/ from helm/tts-cluster"
	@echo "make docs   - build the docs site (mkdocs build --strict) into build/site"
	@echo "make docs-reference - regenerate the reference pages (docs/reference/) from the code"
	@echo "make lock   - re-resolve requirements.lock from pyproject.toml's ranges (needs PyPI)"
	@echo "make clean  - remove .venv and caches"

setup: $(STAMP) voices/reference.wav

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c $(LOCK) -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

setup-gpt-sovits: $(GSV_STAMP)

$(GSV_STAMP): $(STAMP)
	$(PIP) install --quiet -c $(LOCK) torch==$(TORCH_VERSION)
	$(PIP) install --quiet --no-deps $(GPT_SOVITS_DIST)
	$(PIP) install --quiet -c $(LOCK) -e ".[$(EXTRAS),gpt-sovits]"
	rm -f $(VENV)/.gpt-sovits-*
	touch $@

voices/reference.wav: $(STAMP)
	$(VENV)/bin/tts-cluster voices init --voice-dir voices

voices: voices/reference.wav

test: setup setup-gpt-sovits nginx prometheus image-tools check
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The in-process tests alone (tests/support/tiers.py: a unit test that starts a process or connects a socket fails).
unit: setup setup-gpt-sovits
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

# Each component folder appears under its import name in build/typecheck (operator/ is tts_operator, never
# `operator`), which is how mypy and import-linter see the packages as the code imports them.
TYPECHECK := build/typecheck
PACKAGES  := common:tts_common worker:tts_worker router:tts_router operator:tts_operator cli:tts_cli bench:tts_bench
check: setup
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)
	for p in $(PACKAGES); do ln -s ../../$${p%%:*} $(TYPECHECK)/$${p##*:}; done
	cd $(TYPECHECK) && ../../$(PY) -m mypy --config-file ../../pyproject.toml $(foreach p,$(PACKAGES),-p $(lastword $(subst :, ,$(p))))
	$(PY) -m ruff check .
	cd $(TYPECHECK) && PYTHONPATH=. ../../$(VENV)/bin/lint-imports --config ../../pyproject.toml

demo: setup
	$(VENV)/bin/tts-cluster up --workers $(WORKERS) --host $(HOST) --port $(PORT) --voice-dir voices

manifests: setup
	$(PY) helm/render_manifests.py

# The docs site (mkdocs.yml, docs/): strict, so a broken link or anchor, or a page left out of the nav, fails.
# `make test` builds it too (tests/deploy/test_docs_site.py), as it checks the generated pages are up to date.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

# The reference pages generated from the code: HTTP (OpenAPI), CLI (argparse), metrics (Prometheus), TTSCluster (CRD)
docs-reference: setup
	$(PY) docs/gen_reference.py

# One resolution for every platform the images and CI use (Python 3.11 and 3.12, Linux x86_64/aarch64), with
# torch held at TORCH_VERSION: the version the Makefile and the images install.
UV_VERSION ?= 0.13.8
# Only uv is needed (not the locked environment, which may no longer fit new ranges in pyproject.toml).
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet uv==$(UV_VERSION)
	mkdir -p build && echo "torch==$(TORCH_VERSION)" > build/lock-constraints.txt
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
	  --constraint build/lock-constraints.txt --custom-compile-command "make lock" --quiet -o $(LOCK)

bench: setup setup-gpt-sovits nginx
	$(VENV)/bin/tts-cluster bench worker
	$(VENV)/bin/tts-cluster bench router
	$(VENV)/bin/tts-cluster bench cluster
	$(VENV)/bin/tts-cluster bench voices
	$(VENV)/bin/tts-cluster bench batching

# Faults injected into real workers, routers and the operator (bench/chaos.py): exits 1 if any request was lost.
chaos: setup
	$(VENV)/bin/tts-cluster bench chaos

# The end-to-end suite (docs/e2e.md): against the cluster E2E_KUBECONFIG names, else the API-server emulator.
E2E_KUBECONFIG ?=
e2e: setup
	E2E_KUBECONFIG=$(E2E_KUBECONFIG) $(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# nginx is the peer balancer the cluster benchmark compares against (Debian's nginx-light).
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q nginx-light >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q nginx-light >/dev/null 2>&1; } || \
	  echo "could not install nginx-light: the benchmarks' nginx comparison needs it"; }

# Prometheus and promtool (Debian's prometheus package): the dashboards' and alerts' checks, and
# `tts-cluster up --prometheus`.
prometheus:
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null 2>&1 && \
	    $$SUDO apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; } || \
	  echo "could not install prometheus: the monitoring checks need it"; }

# A real Prometheus scrapes a local cluster under load; every dashboard query must answer, every alert pass promtool.
prometheus-check: setup prometheus
	$(PY) -m pytest tests/monitoring $(PYTEST_ARGS)

# Daemonless image builds and runs (Debian's buildah, podman, mmdebstrap for a local base, runc: images/podman.sh
# says why runc). uidmap and fuse-overlayfs let containers/storage use overlay where the kernel allows it.
IMAGE_TOOLS := buildah podman mmdebstrap runc uidmap fuse-overlayfs
image-tools:
	@for p in buildah podman mmdebstrap runc; do command -v $$p >/dev/null 2>&1 || missing=1; done; \
	[ -z "$$missing" ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q --no-install-recommends $(IMAGE_TOOLS) >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null 2>&1 && \
	    $$SUDO apt-get install -y -q --no-install-recommends $(IMAGE_TOOLS) >/dev/null 2>&1; } || \
	  echo "could not install $(IMAGE_TOOLS): the images tier needs them"; }

# Both images (router; worker, CPU variant) built daemonlessly on a Debian base made here, then the images tier:
# sizes, labels, contents, and a smoke run (router container -> worker container, health checks, SIGTERM).
images: setup image-tools
	images/build.sh
	$(PY) -m pytest tests/images $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
