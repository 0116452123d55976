#!/usr/bin/env bash
# A Debian bookworm base with Python 3.11 and venv, made locally with mmdebstrap from Debian's own packages, for
# building and smoke-running the images where no image registry can be reached (CI here). Users never need it: the
# Dockerfiles' defaults are the official images (python:3.11.15-slim-bookworm, nvidia/cuda:...), and this base only
# stands in for them through --build-arg PYTHON_IMAGE=... / CUDA_IMAGE=....
#
#   images/base.sh [TAG]        (default localhost/tts-cluster-base:bookworm)
#
# It is what python:*-slim-bookworm is in spirit: minbase, no recommends, no docs, man pages or translations, no
# apt lists. The tag carries a hash of this script, so an edit rebuilds it and an unchanged script reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
source images/podman.sh

TAG=${1:-localhost/tts-cluster-base:bookworm}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HASH=$(cksum < images/base.sh | cut -d' ' -f1)

if podman_ image exists "$TAG" && [ "$(podman_ image inspect --format '{{ index .Labels "io.tts-cluster.base-hash" }}' "$TAG")" = "$HASH" ]; then
  echo "base image $TAG is up to date"
  exit 0
fi

mkdir -p build/images
TAR=build/images/base-$SUITE.tar
start=$(date +%s)
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/var/log/apt/*' \
  "$SUITE" "$TAR" "$MIRROR" "$MIRROR-security bookworm-security main" "$MIRROR bookworm-updates main"
podman_ import --quiet \
  --change 'CMD ["/bin/bash"]' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL io.tts-cluster.base-hash=$HASH" \
  "$TAR" "$TAG" >/dev/null
rm -f "$TAR"
echo "base image $TAG built in $(( $(date +%s) - start )) s: $(podman_ image inspect --format '{{.Size}}' "$TAG") bytes"
