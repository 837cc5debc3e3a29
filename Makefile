# agent-platform: `make run` starts the platform, `make test` runs every test.
# Each set-up target is idempotent and quiet when everything is already in place.

SHELL := /bin/bash
.DEFAULT_GOAL := help

NODE_MODULES_STAMP := node_modules/.package-lock.json

# Test steps run in order by `make test`; add a target and list it here.
TEST_STEPS := test-typecheck test-vitest

.PHONY: help deps build docker services prometheus podman kubectl images platform-image run test $(TEST_STEPS) clean

help:
	@echo "make run       install, build, set up Docker and images, start the platform"
	@echo "make test      install, build, set up Docker, services and images, run every test"
	@echo "make platform-image  the platform's own image, agent-platform/platform:latest (docs/deploy.md)"
	@echo "make deps | build | docker | services | prometheus | podman | kubectl | images | clean"

# npm writes node_modules/.package-lock.json on every install, so it is the stamp that the
# installed tree matches package-lock.json.
deps: $(NODE_MODULES_STAMP)
	@:
$(NODE_MODULES_STAMP): package-lock.json
	@echo "==> deps: npm ci"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

build: deps
	@echo "==> build: tsc"
	@npm run --silent build

docker:
	@echo "==> docker"
	@scripts/ensure-docker.sh
	@scripts/ensure-gvisor.sh

services:
	@echo "==> services: postgresql, redis"
	@scripts/ensure-services.sh

# prometheus + promtool for the metrics tests (a real Prometheus scrapes the platform).
prometheus:
	@scripts/ensure-prometheus.sh

images: docker
	@echo "==> images"
	@scripts/build-images.sh

# The platform's own image from local base images only (scripts/build-platform-image.sh;
# cached: a second run with nothing changed takes seconds). test/deploy builds it too.
platform-image: deps docker
	@echo "==> platform-image"
	@scripts/build-platform-image.sh >/dev/null

run: deps build docker images
	@echo "==> run: agent-platform serve"
	node bin/agent-platform.js serve

# podman (+ catatonit, cgroup and ulimit fixes) for the `podman kube play` test of the
# Kubernetes Pod manifests (test/kubernetes/podman-kube-play.test.ts).
podman:
	@scripts/ensure-podman.sh

# kubectl (for `kubectl kustomize`) for the deploy/kubernetes overlay test
# (test/kubernetes/deploy-manifests.test.ts); Debian's is too old, see the script.
kubectl:
	@scripts/ensure-kubectl.sh

test: deps build docker services prometheus podman kubectl images
	@$(MAKE) --no-print-directory $(TEST_STEPS)

# Tests and benchmarks are type-checked too (the build compiles src only).
test-typecheck:
	@echo "==> test: typecheck (src, test, bench)"
	@npx tsc -p tsconfig.json --noEmit

test-vitest:
	@echo "==> test: vitest"
	@npx vitest run

clean:
	@echo "==> clean: dist/ .images/"
	@rm -rf dist .images
