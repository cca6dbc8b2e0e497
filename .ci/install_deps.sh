#!/usr/bin/env bash
# Installs what shardq's build and tests need on Debian 12 (run as root):
# the Debian packages in .ci/packages.txt and the Python test references in
# tests/python/requirements.txt and requirements-torch.txt (the LoRA tests'
# PyTorch/transformers/peft references).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
xargs -a .ci/packages.txt apt-get install -y -qq --no-install-recommends >/dev/null
python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages -r tests/python/requirements.txt
python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements-torch.txt 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages -r tests/python/requirements-torch.txt
