#!/usr/bin/env bash
# The main job on a fresh Debian machine (root): set up, boot a sandbox Mac Mini, provision a new
# claw on it with playbooks/provision.yml, and print the claw's health and port.
#   scripts/demo.sh [mini-name]        (default: demo)
set -euo pipefail
cd "$(dirname "$0")/.."
MINI="${1:-demo}"
bash scripts/setup.sh
source .venv/bin/activate
echo "==> booting sandbox Mini '$MINI'"
python tests/sandbox/mini.py up "$MINI" --inventory "inventory/sandbox-$MINI.yml" >/dev/null
CLAW_ID="$(python -c 'import uuid; print(uuid.uuid4())')"
echo "==> provisioning claw $CLAW_ID (the first run builds the OpenClaw runtime bundle: about 2 minutes)"
ansible-playbook playbooks/provision.yml -e "claw_id=$CLAW_ID" -e "mini=$MINI"
echo "==> status"
ansible-playbook playbooks/status.yml -e "claw_id=$CLAW_ID" -e "mini=$MINI" | sed -n '/Show the claw.s status/,/PLAY RECAP/p' | grep -E 'health|port|user|pid|listening|launchd_state'
echo
echo "claw $CLAW_ID runs on sandbox Mini '$MINI'; its gateway token is in secrets/$CLAW_ID.token"
echo "try:   ansible-playbook playbooks/status.yml -e claw_id=$CLAW_ID -e mini=$MINI"
echo "stop:  python tests/sandbox/mini.py down $MINI --purge"
