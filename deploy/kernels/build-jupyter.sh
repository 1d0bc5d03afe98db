#!/usr/bin/env bash
# Build the Jupyter Notebook kernel image offline: the base image's recipe
# (build-base.sh: mmdebstrap + docker import, the same runner files) plus
# Debian's jupyter-notebook, labelled with its app for start_service
# (ai.backend.service-ports=jupyter:http:8080, docs/service-ports.rst; the
# app's command is deploy/kernels/python/service-defs/jupyter.json).
#
#   bash deploy/kernels/build-jupyter.sh       # IMAGE=... for another tag
#
# Every other build-base.sh variable (FORCE, CACHE_DIR, PUSH_REGISTRY, ...) applies.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export IMAGE=${IMAGE:-lablup/kernel-python:3-jupyter}
export EXTRA_PACKAGES="${EXTRA_PACKAGES:-} jupyter-notebook python3-notebook"
export SERVICE_PORTS=${SERVICE_PORTS:-jupyter:http:8080}
exec bash "$HERE/build-base.sh"
