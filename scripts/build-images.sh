#!/usr/bin/env bash
# Build the images the platform's tests and samples use, without any image registry:
#   agent-platform/debian-python:bookworm  Debian bookworm minbase + Python, made by debootstrap
#   agent-samples/simple-python:latest     the sample agent, built FROM the base above
#   agent-platform/busybox:latest          static busybox on scratch, ~2 MB, for fast tests
#   agent-platform/node-base:<node version> this machine's Node.js and the shared libraries it
#                                          needs on an empty root (target platform-base; built
#                                          only when asked: the platform image starts FROM it)
# Usage: scripts/build-images.sh [base|simple-python|busybox|platform-base]...
#        (no argument: base simple-python busybox)
#
# Cached: each image carries a label with a hash of its inputs (recipe, Dockerfile, build
# context, parent image id); an image whose label matches is left alone. The debootstrap root
# is also kept as a tarball under .images/ so a removed base image re-imports in seconds.
set -euo pipefail
LOG_TAG=images
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE_DIR=${IMAGES_CACHE_DIR:-$ROOT/.images}
HASH_LABEL=org.agent-platform.inputs-hash
SUITE=bookworm
BASE_IMAGE=agent-platform/debian-python:$SUITE
SAMPLE_IMAGE=agent-samples/simple-python:latest
BUSYBOX_IMAGE=agent-platform/busybox:latest
NODE_BASE_REPO=agent-platform/node-base
# libpython3-stdlib gives the full standard library (json, sqlite3, urllib...), so a sample
# behaves the same here as on python:3.12-slim; python3-minimal alone lacks most of it.
BASE_PACKAGES=python3-minimal,libpython3-stdlib
IMPORT_PATH='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

# Only the legacy builder: it never pulls a FROM image that is present locally, and BuildKit
# needs buildx, which this CLI may lack.
export DOCKER_BUILDKIT=0

# debian_mirror: the Debian archive this machine's apt uses for $SUITE (only Debian's own
# mirror is reachable here), overridable with DEBIAN_MIRROR.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local found
  found=$(
    {
      cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                                             if ($(i + 1) == suite) print $i }'
      cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk -v suite="$SUITE" '
          function flush() { if (uris != "" && (" " suites " ") ~ (" " suite " ") && types ~ /(^| )deb( |$)/) print uris; uris = suites = types = "" }
          /^[ \t]*#/ { next }
          /^[ \t]*$/ { flush(); next }
          tolower($1) == "uris:" { $1 = ""; uris = $2 }
          tolower($1) == "suites:" { $1 = ""; suites = $0 }
          tolower($1) == "types:" { $1 = ""; types = $0 }
          END { flush() }'
    } | head -n 1
  )
  echo "${found:-http://deb.debian.org/debian}"
}

# inputs_hash TEXT...: a short content hash of everything that should trigger a rebuild.
inputs_hash() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

# dir_digest DIR: hash of every file's path and content in a build context.
dir_digest() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16; }

image_hash() { docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true; }
image_size_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.1f MB", $1 / 1e6 }'; }

# build_base: debootstrap a minimal bookworm with Python, strip it, and import it as an image.
build_base() {
  local mirror hash tarball
  mirror=$(debian_mirror)
  hash=$(inputs_hash "$(declare -f build_base debootstrap_rootfs)" "$mirror" "$SUITE" "$BASE_PACKAGES" "$IMPORT_PATH")
  [ "$(image_hash "$BASE_IMAGE")" = "$hash" ] && return 0
  tarball=$CACHE_DIR/debian-python-$SUITE-$hash.tar.gz
  if [ ! -s "$tarball" ]; then
    debootstrap_rootfs "$mirror" "$tarball"
  fi
  log "importing $BASE_IMAGE from ${tarball#"$ROOT"/}"
  docker import -c "$IMPORT_PATH" -c "LABEL $HASH_LABEL=$hash" "$tarball" "$BASE_IMAGE" >/dev/null
  log "$BASE_IMAGE ready ($(image_size_mb "$BASE_IMAGE"))"
}

# debootstrap_rootfs MIRROR TARBALL: make the stripped root file system tarball.
debootstrap_rootfs() {
  local mirror=$1 tarball=$2 rootfs
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap || die "could not install debootstrap"
  mkdir -p "$CACHE_DIR"
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/debian-python-rootfs.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
  trap "rm -rf '$rootfs'" EXIT
  log "debootstrap $SUITE from $mirror (about a minute)"
  if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$mirror" \
      >"$CACHE_DIR/debootstrap.log" 2>&1; then
    tail -n 20 "$CACHE_DIR/debootstrap.log" >&2
    die "debootstrap failed (full log: $CACHE_DIR/debootstrap.log)"
  fi
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/log/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian "$rootfs"/tmp/*
  # Older tarballs belong to recipes that no longer exist.
  rm -f "$CACHE_DIR"/debian-python-"$SUITE"-*.tar.gz
  tar --numeric-owner -C "$rootfs" -c . | gzip -1 >"$tarball.part"
  mv "$tarball.part" "$tarball"
  rm -rf "$rootfs"
  trap - EXIT
}

build_sample() {
  local context=$ROOT/agent-samples/simple-python hash base_id
  build_base
  base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
  hash=$(inputs_hash "$(declare -f build_sample)" "$(dir_digest "$context")" "$base_id")
  [ "$(image_hash "$SAMPLE_IMAGE")" = "$hash" ] && return 0
  log "building $SAMPLE_IMAGE"
  docker_build "$SAMPLE_IMAGE" "$hash" "$context" "$context/Dockerfile" --build-arg "BASE=$BASE_IMAGE"
}

build_busybox() {
  local hash context
  [ -x /bin/busybox ] && dpkg -s busybox-static >/dev/null 2>&1 || apt_install busybox-static || die "could not install busybox-static"
  hash=$(inputs_hash "$(declare -f build_busybox)" "$(dir_digest "$ROOT/agent-samples/busybox")" \
    "$(sha256sum /bin/busybox | cut -c1-64)")
  [ "$(image_hash "$BUSYBOX_IMAGE")" = "$hash" ] && return 0
  log "building $BUSYBOX_IMAGE"
  context=$(mktemp -d "${TMPDIR:-/tmp}/busybox-context.XXXXXX")
  cp "$ROOT"/agent-samples/busybox/* "$context"/
  cp /bin/busybox "$context"/busybox
  docker_build "$BUSYBOX_IMAGE" "$hash" "$context" "$context/Dockerfile"
  rm -rf "$context"
}

# build_node_base: agent-platform/node-base:<version> (and :<major>): the Node.js that runs
# here, with exactly the shared libraries `ldd` says it needs, on an empty root, distroless
# style. Why not the debootstrap minbase: that adds ~80 MB of shell, apt, dpkg and perl the
# platform never runs, which would put its image well over 200 MB; and Debian's own nodejs is
# 18, while the platform needs the 20 that runs on this machine. No shell: debug with
# `docker run --entrypoint node ...`. The binary is stripped of symbols (~99 -> ~86 MB):
# only native debuggers miss them.
build_node_base() {
  local node version major image hash rootfs lib libs
  node=$(readlink -f "$(command -v node)") || die "node is not installed"
  version=$("$node" -p 'process.versions.node') || die "$node does not run"
  major=${version%%.*}
  image=$NODE_BASE_REPO:$version
  # Every resolved library (and the ELF interpreter) by the path the loader asks for; a "not
  # found" line means the binary cannot run anywhere we copy it to.
  ldd "$node" | grep -q 'not found' && die "ldd $node: $(ldd "$node" | grep 'not found' | tr -s ' \t' ' ')"
  libs=$(ldd "$node" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | LC_ALL=C sort -u)
  [ -n "$libs" ] || die "$node is not a dynamically linked ELF (ldd found no libraries)"
  hash=$(inputs_hash "$(declare -f build_node_base)" "$IMPORT_PATH" "$version" \
    "$(for lib in "$node" $libs; do sha256sum "$(readlink -f "$lib")"; done)")
  if [ "$(image_hash "$image")" = "$hash" ]; then
    docker tag "$image" "$NODE_BASE_REPO:$major"
    return 0
  fi
  log "building $image from $node and $(echo "$libs" | wc -l) libraries"
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/node-base-rootfs.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
  trap "rm -rf '$rootfs'" EXIT
  mkdir -p "$rootfs"/usr/local/bin "$rootfs"/etc "$rootfs"/tmp "$rootfs"/root
  chmod 1777 "$rootfs"/tmp
  strip --strip-unneeded -o "$rootfs"/usr/local/bin/node "$node" 2>/dev/null || cp "$node" "$rootfs"/usr/local/bin/node
  for lib in $libs; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
  # Names for os.userInfo() and logs; the platform image runs as 10001.
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nagent-platform:x:10001:10001:agent-platform:/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$rootfs"/etc/passwd
  printf 'root:x:0:\nagent-platform:x:10001:\nnogroup:x:65534:\n' >"$rootfs"/etc/group
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs"/etc/nsswitch.conf
  tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -c . |
    docker import -c "$IMPORT_PATH" -c "LABEL $HASH_LABEL=$hash" -c "LABEL org.agent-platform.node-version=$version" \
      -c 'CMD ["node"]' - "$image" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  # The image must run its node (loader, libraries) before anything builds FROM it.
  docker run --rm --network none "$image" node -e 'process.exit(process.versions.node === process.argv[1] ? 0 : 1)' "$version" ||
    die "$image does not run node $version"
  docker tag "$image" "$NODE_BASE_REPO:$major"
  log "$image ready ($(image_size_mb "$image")), also tagged $NODE_BASE_REPO:$major"
}

# docker_build IMAGE HASH CONTEXT DOCKERFILE [ARGS...]: quiet build; the log shows only on failure.
docker_build() {
  local image=$1 hash=$2 context=$3 dockerfile=$4 out
  shift 4
  if ! out=$(docker build --pull=false --rm --force-rm --label "$HASH_LABEL=$hash" -t "$image" \
      -f "$dockerfile" "$@" "$context" 2>&1); then
    printf '%s\n' "$out" | tail -n 30 >&2
    die "docker build of $image failed"
  fi
  log "$image ready ($(image_size_mb "$image"))"
}

docker info >/dev/null 2>&1 || die "Docker does not answer; run scripts/ensure-docker.sh first"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(base simple-python busybox)
for target in "${targets[@]}"; do
  case "$target" in
    base) build_base ;;
    simple-python) build_sample ;;
    busybox) build_busybox ;;
    platform-base) build_node_base ;;
    *) die "unknown image '$target' (known: base simple-python busybox platform-base)" ;;
  esac
done
