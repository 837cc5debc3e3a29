#!/usr/bin/env bash
# Build the platform's own image, agent-platform/platform:latest (and :<package version>),
# from local images only: no registry is needed or reachable.
#
#   1. agent-platform/node-base:<node version>  scripts/build-images.sh platform-base: this
#      machine's node and the libraries it needs on an empty root (no shell, no apt).
#   2. on the host, into .images/platform-app/ (the only part of the repository the Docker
#      build context sends; see .dockerignore):
#        dist/          tsc of src/ (incremental, own output directory: the shared dist/ that
#                       tests may be reading is never rewritten)
#        node_modules/  the production dependencies: a copy of ./node_modules pruned with
#                       `npm prune --omit=dev` and trimmed of type declarations, source maps,
#                       docs and better-sqlite3's build leftovers
#   3. docker build with the repository's Dockerfile (stage 1 loads the native addon and the
#      CLI with the image's own node and libraries; stage 2 is the runtime).
#
# Why build on the host: the image then needs no npm, python3, make or g++, and no network;
# better-sqlite3's native addon is the one `npm ci` already compiled here (no prebuilt binary
# can be downloaded on these machines, and compiling SQLite takes minutes on two cores). The
# cost: the host must match the image (same architecture and glibc: both come from this
# machine, so they do), and the image is only as reproducible as the host's node_modules,
# which `make deps` keeps equal to package-lock.json.
#
# Cached: the image carries a hash of its inputs and is left alone when they have not changed
# (a second run takes a few seconds); the pruned dependencies are redone only when
# package-lock.json or the compiled addon changes.
#
# Usage: scripts/build-platform-image.sh      (prints the image name on stdout when done)
set -euo pipefail
LOG_TAG=platform-image
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${PLATFORM_IMAGE:-agent-platform/platform:latest}
HASH_LABEL=org.agent-platform.inputs-hash
# Fixed (not IMAGES_CACHE_DIR): the Dockerfile and .dockerignore name this very path.
APP_DIR=$ROOT/.images/platform-app
BUILD_INFO=$ROOT/.images/platform-app.tsbuildinfo
DEPS_STAMP=$ROOT/.images/platform-app.deps-hash
# The legacy builder never pulls a FROM image that is present locally; BuildKit needs buildx,
# which this CLI may lack.
export DOCKER_BUILDKIT=0

inputs_hash() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
dir_digest() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -c1-16; }
image_hash() { docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true; }
image_size_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.1f MB", $1 / 1e6 }'; }

# compile: src/ -> $APP_DIR/dist. Incremental, so an unchanged tree costs seconds; a missing
# output directory invalidates the build info (tsc would otherwise think it is up to date).
compile() {
  [ -d "$APP_DIR/dist" ] || rm -f "$BUILD_INFO"
  if ! (cd "$ROOT" && npx --no-install tsc -p tsconfig.build.json --outDir "$APP_DIR/dist" \
      --incremental --tsBuildInfoFile "$BUILD_INFO" >&2); then
    die "tsc failed: the image is built only from code that compiles"
  fi
}

# trim_modules DIR: drop what node never loads at run time. License files stay.
trim_modules() {
  local dir=$1 sqlite=$1/better-sqlite3
  find "$dir" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \
    -o \( -name '*.ts' ! -name '*.d.ts' \) -o -iname '*.md' -o -iname '*.markdown' \) -delete
  # better-sqlite3 loads build/Release/better_sqlite3.node; the SQLite sources and the
  # object files are ~25 MB.
  if [ -d "$sqlite/build/Release" ]; then
    find "$sqlite/build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
    find "$sqlite/build/Release" -mindepth 1 -maxdepth 1 ! -name better_sqlite3.node -exec rm -rf {} +
    rm -rf "$sqlite/deps" "$sqlite/src"
  fi
}

# stage_modules: the pruned production node_modules, redone only when its inputs change.
stage_modules() {
  local addon hash tmp
  [ -f "$ROOT/node_modules/.package-lock.json" ] || die "node_modules is missing: run make deps"
  addon=$ROOT/node_modules/better-sqlite3/build/Release/better_sqlite3.node
  [ -f "$addon" ] || die "$addon is missing: better-sqlite3 was not built (run make deps)"
  hash=$(inputs_hash "$(declare -f stage_modules trim_modules)" "$(sha256sum "$ROOT/package-lock.json" "$ROOT/package.json" "$addon")")
  if [ -d "$APP_DIR/node_modules" ] && [ "$(cat "$DEPS_STAMP" 2>/dev/null)" = "$hash" ]; then
    return 0
  fi
  log "staging production node_modules (npm prune --omit=dev on a copy)"
  tmp=$(mktemp -d "$ROOT/.images/platform-deps.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
  trap "rm -rf '$tmp'" EXIT
  cp "$ROOT/package.json" "$ROOT/package-lock.json" "$tmp"/
  cp -a "$ROOT/node_modules" "$tmp/node_modules"
  (cd "$tmp" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2) ||
    die "npm prune --omit=dev failed"
  trim_modules "$tmp/node_modules"
  rm -rf "$APP_DIR/node_modules"
  mv "$tmp/node_modules" "$APP_DIR/node_modules"
  rm -rf "$tmp"
  trap - EXIT
  echo "$hash" >"$DEPS_STAMP"
}

build() {
  local base version hash out start=$SECONDS
  "$ROOT/scripts/build-images.sh" platform-base
  version=$(node -p 'process.versions.node')
  base=agent-platform/node-base:$version
  mkdir -p "$APP_DIR/bin"
  compile
  stage_modules
  cp "$ROOT/package.json" "$APP_DIR/package.json"
  cp "$ROOT/bin/agent-platform.js" "$ROOT/bin/agentctl.js" "$APP_DIR/bin/"
  hash=$(inputs_hash "$(declare -f build)" "$(cat "$ROOT/Dockerfile" "$ROOT/.dockerignore")" \
    "$(docker image inspect -f '{{.Id}}' "$base")" "$(cat "$DEPS_STAMP")" "$(dir_digest "$APP_DIR/dist")" \
    "$(sha256sum "$APP_DIR/package.json" "$APP_DIR"/bin/*)")
  if [ "$(image_hash "$IMAGE")" = "$hash" ]; then
    echo "$IMAGE"
    return 0
  fi
  log "building $IMAGE FROM $base"
  # --network none: RUN steps need no network, and the default bridge may be absent.
  if ! out=$(docker build --pull=false --network none --rm --force-rm --build-arg "NODE_BASE=$base" \
      --label "$HASH_LABEL=$hash" --label "org.agent-platform.node-version=$version" \
      -t "$IMAGE" -t "agent-platform/platform:$(node -p "require('$ROOT/package.json').version")" \
      -f "$ROOT/Dockerfile" "$ROOT" 2>&1); then
    printf '%s\n' "$out" | tail -n 30 >&2
    die "docker build of $IMAGE failed"
  fi
  log "$IMAGE ready ($(image_size_mb "$IMAGE")) in $((SECONDS - start)) s"
  echo "$IMAGE"
}

docker info >/dev/null 2>&1 || die "Docker does not answer; run scripts/ensure-docker.sh first"
mkdir -p "$ROOT/.images"
# One build at a time: the test and `make platform-image` share the staging directory.
exec 9>"$ROOT/.images/platform-image.lock"
flock 9
build
