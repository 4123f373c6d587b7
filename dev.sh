#!/usr/bin/env bash
# One command per job on a fresh Debian machine (run as root, or with sudo):
#   ./dev.sh demo   - install everything, then run `virtsdk demo` on the embedded default
#   ./dev.sh test   - install everything, then the checks of `lint`, the docs and the whole
#                     test suite
#                     (including the libvirt lab tests, which start and stop their own hosts)
#   ./dev.sh lint   - only the checks: ruff, mypy (strict for virtsdk/) and import-linter
#                     (the core never imports a driver, arrows point down, no cycles)
#   ./dev.sh docs   - build the Sphinx site (doc/ -> doc/_build/html), warnings are errors
#   ./dev.sh conformance - run the conformance kit on the shipped drivers (libvirt and qemu
#                     on the real two-host lab), record the results in doc/conformance/ and
#                     regenerate the README's support matrix from them
# Other jobs: ./dev.sh setup | bench | shell
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${VIRTSDK_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

DEB_PACKAGES=(
  # the two-host lab: libvirt + QEMU emulation, namespaces, guest image tools
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
  libvirt-dev pkg-config iproute2 cpio busybox-static
  # disk transports and the tools they are benchmarked against
  rsync openssh-client openssh-server netcat-openbsd zstd openssl
  # the tests start private RabbitMQ nodes and PostgreSQL clusters of their own
  # (virtsdk/testing/services.py); the system-wide services are not started
  rabbitmq-server postgresql
)

apt_install() {
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo ">> apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  # keep the packages' own services (a system RabbitMQ, PostgreSQL's main cluster) from
  # starting: tests start private ones on free ports and stop them
  local policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" || { [ -z "$own_policy" ] || $sudo rm -f "$policy"; return 1; }
  [ -z "$own_policy" ] || $sudo rm -f "$policy"
}

venv_install() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.virtsdk-installed"
  local newest
  newest=$(ls -t requirements-dev.txt setup.cfg drivers/*/setup.cfg contrib/*/setup.cfg | head -1)
  if [ ! -f "$stamp" ] || [ "$newest" -nt "$stamp" ]; then
    echo ">> pip install -r requirements-dev.txt (into $VENV)"
    # PYTHONWARNINGS reaches the build back-ends pip runs: no pages of setuptools
    # editable-install banners on a newcomer's first screen; -qq: pip's errors only (not
    # one warning per package for a configured index or find-links directory that does
    # not exist on this machine)
    PYTHONWARNINGS=ignore "$VENV/bin/pip" install -qq --upgrade pip
    PYTHONWARNINGS=ignore "$VENV/bin/pip" install -qq -r requirements-dev.txt
    touch "$stamp"
  fi
}

setup() { apt_install; venv_install; }

lint() {
  "$VENV/bin/ruff" check .
  "$VENV/bin/mypy"                      # configuration: [tool.mypy] in pyproject.toml
  "$VENV/bin/lint-imports"              # contracts: [tool.importlinter] in pyproject.toml
}

# the conformance kit's test classes of the shipped drivers
CONFORMANCE_TESTS=(
  drivers/fake/tests/test_contract.py
  drivers/libvirt/tests/test_libvirt_conformance.py::TestLibvirtConformance
  contrib/qemu/tests/test_qemu_contract.py
)

conformance() {
  local status=0
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${CONFORMANCE_TESTS[@]}" \
    --conformance-report doc/conformance "$@" || status=$?
  # the README's matrix is this command's output, between its two marker lines
  MATRIX=$("$VENV/bin/virtsdk" drivers matrix --results doc/conformance) \
  "$VENV/bin/python" - <<'PY'
import os
import re
from pathlib import Path

readme = Path("README.md")
table = os.environ["MATRIX"].strip()
begin, end = "<!-- support matrix: ./dev.sh conformance -->", "<!-- end of support matrix -->"
text, n = re.subn(re.escape(begin) + r".*?" + re.escape(end),
                  lambda _m: f"{begin}\n{table}\n{end}", readme.read_text(), flags=re.S)
assert n == 1, "README.md lacks the support matrix markers"
readme.write_text(text)
PY
  return "$status"
}

docs() {
  "$VENV/bin/sphinx-build" -q -E -W --keep-going -b html doc doc/_build/html  # ~6 s
}

job=${1:-help}
shift || true
case "$job" in
  setup) setup ;;
  demo) setup; exec "$VENV/bin/virtsdk" demo "$@" ;;
  lint) venv_install; lint ;;
  docs) venv_install; docs ;;
  conformance) setup; conformance "$@" ;;
  test)
    setup
    lint
    docs
    exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
    ;;
  bench) setup; exec "$VENV/bin/python" -m pytest benchmarks -q "$@" ;;
  shell) setup; exec bash --rcfile <(echo "source $VENV/bin/activate") ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
