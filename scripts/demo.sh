#!/usr/bin/env bash
# The main job on a fresh Debian machine (root): set up, boot a sandbox Mac Mini, provision a new
# claw on it with playbooks/bootstrap.yml + provision.yml, and print the claw's health, port and route.
#   scripts/demo.sh [mini-name]        (default: demo)
set -euo pipefail
cd "$(dirname "$0")/.."
MINI="${1:-demo}"
bash scripts/setup.sh
source .venv/bin/activate
echo "==> booting sandbox Mini '$MINI'"
python tests/sandbox/mini.py up "$MINI" --inventory "inventory/sandbox-$MINI.yml" >/dev/null
# The sandbox farm's settings: a locally managed tunnel whose connector is the sandbox stand-in (no
# Cloudflare account, no DNS, no R2 here). A real farm keeps these in inventory and a vaulted vars file.
VARS=".cache/sandbox-$MINI-vars.yml"
mkdir -p .cache
if [ ! -f "$VARS" ]; then
  TUNNEL_ID="$(python -c 'import uuid; print(uuid.uuid4())')"
  cat > "$VARS" <<EOF2
claws_domain: claws.sandbox.test
cf_tunnel_mode: local
cf_tunnel_id: $TUNNEL_ID
cloudflared_credentials: {AccountTag: sandbox, TunnelID: $TUNNEL_ID, TunnelSecret: c2FuZGJveA==}
cloudflared_binary: /usr/local/bin/cloudflared
cloudflared_binary_src: $PWD/tests/sandbox/cloudflared-standin.py
tailscale_enabled: false
EOF2
  chmod 600 "$VARS"
fi
# The claws' browser: Debian's chromium (scripts/setup.sh installs it), which the sandbox Mini sees at /usr/bin/chromium;
# role browser only checks it there (a real Mac downloads the pinned, sha256-verified browser instead, docs/browser.md).
grep -q '^browser_install:' "$VARS" || printf 'browser_install: preinstalled\nbrowser_executable_path: /usr/bin/chromium\nbrowser_version: ""\n' >> "$VARS"
echo "==> bootstrapping the Mini (farm Python, OpenClaw runtime, tunnel connector; the first run builds the runtime: about 2 minutes)"
ansible-playbook playbooks/bootstrap.yml -l "$MINI" -e "@$VARS" | sed -n '/PLAY RECAP/,$p'
CLAW_ID="$(python -c 'import uuid; print(uuid.uuid4())')"
echo "==> provisioning claw $CLAW_ID"
ansible-playbook playbooks/provision.yml -e "claw_id=$CLAW_ID" -e "mini=$MINI" -e "@$VARS"
echo "==> status"
ansible-playbook playbooks/status.yml -e "claw_id=$CLAW_ID" -e "mini=$MINI" -e "@$VARS" | sed -n '/Show the claw.s status/,/PLAY RECAP/p' | grep -E 'health|port|user|pid|listening|launchd_state|route|tunnel_hostname'
echo
echo "claw $CLAW_ID runs on sandbox Mini '$MINI'; its gateway token is in secrets/$CLAW_ID.token"
echo "try:   ansible-playbook playbooks/status.yml -e claw_id=$CLAW_ID -e mini=$MINI -e @$VARS"
echo "       ansible-playbook playbooks/deprovision.yml -e claw_id=$CLAW_ID -e mini=$MINI -e @$VARS -e archive=false  (no R2 in the demo)"
echo "stop:  python tests/sandbox/mini.py down $MINI --purge"
