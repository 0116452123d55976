#!/usr/bin/env bash
# Build both images without a daemon: `make images` (then images/smoke.sh runs them).
#
#   images/build.sh [router|worker]...     (default: both)
#
# Environment:
#   VERSION      image tag and OCI label (default: the project's version from pyproject.toml)
#   REGISTRY     tag prefix (default localhost/tts-cluster); push with `podman push REGISTRY/router:VERSION`
#   BASE_IMAGE   the base of every stage (default: images/base.sh's Debian bookworm + Python, made locally, since no
#                image registry may be reachable). Give an official image (python:3.11.15-slim-bookworm) to build
#                from it instead; the Dockerfiles' own defaults are what `docker build` uses.
#   TORCH_WHEELS a directory holding a torch CPU wheel (default /opt/wheels if it has one): the worker's CPU
#                variant takes torch from there, else from download.pytorch.org/whl/cpu
#   PIP_CA       CA bundle pip trusts inside the build (default: this machine's, /etc/ssl/certs/ca-certificates.crt),
#                passed as a build secret: never written into a layer
set -euo pipefail
cd "$(dirname "$0")/.."
source images/podman.sh

VERSION=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)}
REGISTRY=${REGISTRY:-localhost/tts-cluster}
PIP_CA=${PIP_CA:-/etc/ssl/certs/ca-certificates.crt}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
SOURCE_URL=${SOURCE_URL:-$(git remote get-url origin 2>/dev/null || true)}
if [ -z "${BASE_IMAGE:-}" ]; then
  BASE_IMAGE=localhost/tts-cluster-base:bookworm
  images/base.sh "$BASE_IMAGE"
fi
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(router worker)

common=(--build-arg "VERSION=$VERSION" --build-arg "SOURCE_URL=$SOURCE_URL")
[ -s "$PIP_CA" ] && common+=(--secret "id=pip_ca,src=$PIP_CA")

for kind in "${kinds[@]}"; do
  start=$(date +%s)
  case $kind in
    router)
      buildah_bud "${common[@]}" --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
        -f Dockerfile.router -t "$REGISTRY/router:$VERSION" . ;;
    worker)
      torch=(--build-arg TORCH_VARIANT=cpu)
      wheels=${TORCH_WHEELS:-/opt/wheels}
      if compgen -G "$wheels/torch-$TORCH_VERSION+cpu-*.whl" > /dev/null; then
        torch+=(--volume "$wheels:/torch-wheels:ro" --build-arg TORCH_FIND_LINKS=/torch-wheels
                --build-arg "TORCH_SPEC=torch==$TORCH_VERSION+cpu")
      fi
      buildah_bud "${common[@]}" "${torch[@]}" --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
        --build-arg "CUDA_IMAGE=$BASE_IMAGE" -f Dockerfile.worker -t "$REGISTRY/worker:$VERSION-cpu" . ;;
    *) echo "images/build.sh: unknown image $kind (router or worker)" >&2; exit 2 ;;
  esac
  echo "built $kind in $(( $(date +%s) - start )) s"
done
podman_ images --filter "reference=$REGISTRY/*" --format '{{.Repository}}:{{.Tag}} {{.Size}}'
