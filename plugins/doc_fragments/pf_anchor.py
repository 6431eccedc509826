# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of pf_anchor and pf_anchor_info: where the Mini's claws and its pf anchor are (PRIVATE to the collection)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  uid_range:
    description:
      - First and last claw UID (the farm role's C(claw_uid_range)). No process of these UIDs reaches the tailnet
        (100.64.0.0/10, fd7a:115c:a1e0::/48).
    type: list
    elements: int
    required: true
  gateway_clients:
    description:
      - UIDs besides the claw's own that may connect to a claw's gateway port (never to its browser control or CDP ports).
      - Root (V(0)) runs the health probes and the tunnel connector (cloudflared's LaunchDaemon).
    type: list
    elements: int
    default: [0]
  claim_dir:
    description: The Mini's port claims (M(mirascope.clawfarm.claw_port)); the anchor has one block of rules per claim.
    type: path
    default: /var/db/mirascope/ports
  label_prefix:
    description: Prefix of the claws' launchd labels (the claw role's C(claw_label_prefix)).
    type: str
    default: com.mirascope.claw
  anchor:
    description:
      - The pf anchor the rules are loaded into. Under C(com.apple/), which macOS's C(/etc/pf.conf) evaluates
        (C(anchor "com.apple/*")), so C(/etc/pf.conf) is never edited.
    type: str
    default: com.apple/com.mirascope.clawfarm
  path:
    description: The anchor file (root, 0644), loaded at boot by the LaunchDaemon C(com.mirascope.pf).
    type: path
    default: /etc/pf.anchors/com.mirascope.clawfarm
notes:
  - Needs root (C(become=true)). Rules and their reasons are in docs/tenant-network.md.
seealso:
  - name: pf.conf(5)
    description: Packet filter rules; C(user) matches the owner of a packet's socket.
    link: https://man.openbsd.org/pf.conf
  - name: pfctl(8)
    description: Loads anchors (C(-a ANCHOR -f FILE)) and enables pf with a reference (C(-E)).
    link: https://keith.github.io/xcode-man-pages/pfctl.8.html
"""
