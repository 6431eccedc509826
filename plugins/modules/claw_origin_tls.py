#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_origin_tls
short_description: Keep a claw's origin TLS key and certificate, the identity cloudflared and the health probes pin
version_added: 0.1.0
description:
  - A claw's gateway serves TLS on its loopback port with a key only its macOS user can read; the claw's ingress
    rule (C(originRequest.caPool), C(originServerName)) and the farm's health probes trust only its certificate.
    Another claw's code listening on that port while the gateway is stopped cannot complete a handshake, so no
    request and no token ever reaches it (docs/origin-tls.md).
  - Keeps C(<root>/<user>/cert.pem) (root, 0644) and C(<root>/<user>/key.pem) (the claw's user, 0400). A new ECDSA
    P-256 key and self-signed certificate for C(<user>.claws.internal) are made when either file is missing, does
    not parse, is not for that name, ends within O(renew_days) days, or the key is not the certificate's. A pair
    that is fine is kept as it is (owner and mode are corrected).
  - Root acts only in directories only root can change (the path resolved, then each component opened with
    C(O_NOFOLLOW) and checked to be root's and not writable by others), never in the claw's home. The claw owns its
    key file and may set file flags on it (macOS C(chflags uchg)); they are cleared before the file is renewed,
    repaired or removed, and a new key is given to the claw only once it is in place.
  - The key is generated on the Mini and never leaves it; it is never in the module's output.
  - Needs the C(cryptography) package (the farm venv on each Mini, role C(mini_python)).
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  user:
    description: The claw's macOS user (it owns the key). Must exist for O(state=present).
    type: str
    required: true
  group:
    description: The key file's group (numeric id).
    type: int
    default: 20
  root:
    description: The root-owned directory holding one directory per claw user.
    type: path
    default: /var/db/mirascope-claw-tls
  state:
    description: C(present) keeps a valid pair; C(absent) removes the claw's directory (deprovision, a migration's source).
    type: str
    choices: [present, absent]
    default: present
  valid_days:
    description: Validity of a new certificate, in days.
    type: int
    default: 825
  renew_days:
    description: A certificate ending within this many days is replaced.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Keep the claw's origin TLS key and certificate
  mirascope.clawfarm.claw_origin_tls:
    user: claw-1a2b3c4d
  vars:
    ansible_python_interpreter: /opt/mirascope/python/bin/python3
  become: true

- name: Remove them when the claw leaves the Mini
  mirascope.clawfarm.claw_origin_tls:
    user: claw-1a2b3c4d
    state: absent
  become: true
"""

RETURN = r"""
action:
  description: C(created) (no pair yet), C(renewed) (the pair could not be kept; RV(reason) says why), C(kept),
    C(removed) or C(absent).
  returned: always
  type: str
reason:
  description: Why an existing pair was replaced, or null.
  returned: always
  type: str
cert_path:
  description: The certificate (the pin; the gateway's C(certPath)).
  returned: always
  type: str
  sample: /var/db/mirascope-claw-tls/claw-1a2b3c4d/cert.pem
key_path:
  description: The private key (the gateway's C(keyPath)); its content is never returned.
  returned: always
  type: str
server_name:
  description: The certificate's DNS name (ingress C(originServerName), the probes' server name).
  returned: always
  type: str
  sample: claw-1a2b3c4d.claws.internal
fingerprint:
  description: C(sha256:<hex>) of the certificate in force (null in check mode before one exists, and when absent).
  returned: always
  type: str
not_after:
  description: When the certificate in force ends (ISO 8601 UTC), or null.
  returned: always
  type: str
"""

import os
import pwd
import shutil

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _origin_tls as tls

try:
    # only to say it is missing before anything is done
    import cryptography  # noqa: F401  # pylint: disable=unused-import
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

CERT_MODE = 0o644
DIR_MODE = 0o755
KEY_MODE = 0o400


def ensure(p: dict, uid: int, check_mode: bool) -> dict:
    """Keep or make the pair of ``p["user"]`` (uid ``uid``) under ``p["root"]`` (see DOCUMENTATION); the module's result."""
    where = tls.paths(p["user"], p["root"])
    result = {"changed": False, "action": "kept", "reason": None, "cert_path": where["cert"], "key_path": where["key"],
              "server_name": where["server_name"], "fingerprint": None, "not_after": None}
    root_fd = tls.open_root_dir(p["root"], create=not check_mode)
    dir_fd = None
    try:
        if root_fd is not None:
            dir_fd = _user_dir(root_fd, p["user"], create=not check_mode)
        for fd in (root_fd, dir_fd):  # the claw's gateway (its user) must traverse both
            if fd is not None and os.fstat(fd).st_mode & 0o7777 != DIR_MODE:
                result["changed"] = True
                if not check_mode:
                    os.fchmod(fd, DIR_MODE)
        cert = key = None
        if dir_fd is not None:
            cert, key = tls.read_file(dir_fd, tls.CERT_NAME), tls.read_file(dir_fd, tls.KEY_NAME)
        if cert is None or key is None:
            result["action"] = "created" if cert is None and key is None else "renewed"
            result["reason"] = None if result["action"] == "created" else "the certificate or the key is missing"
        else:
            result["reason"] = tls.pair_problem(cert, key, where["server_name"], renew_days=p["renew_days"])
            if result["reason"]:
                result["action"] = "renewed"
        if result["action"] != "kept":
            result["changed"] = True
            if check_mode:
                return result
            key, cert = tls.make_pair(where["server_name"], days=p["valid_days"])
            # the key first: a certificate is never in force without its key
            tls.write_file(dir_fd, tls.KEY_NAME, key, uid, p["group"], KEY_MODE, where["key"])
            tls.write_file(dir_fd, tls.CERT_NAME, cert, 0, 0, CERT_MODE, where["cert"])
        else:
            for name, owner, mode in ((tls.KEY_NAME, (uid, p["group"]), KEY_MODE), (tls.CERT_NAME, (0, 0), CERT_MODE)):
                current = tls.file_owner_mode(dir_fd, name)
                flagged = getattr(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), "st_flags", 0)
                if current != (owner[0], owner[1], mode) or flagged:
                    result["changed"] = True
                    if not check_mode:
                        tls.clear_flags(os.path.join(where["dir"], name))  # the claw may have frozen its key (uchg)
                        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
                        try:
                            os.fchown(fd, *owner)
                            os.fchmod(fd, mode)
                        finally:
                            os.close(fd)
        result.update(tls.describe(cert))
        return result
    finally:
        for fd in (dir_fd, root_fd):
            if fd is not None:
                os.close(fd)


def _user_dir(root_fd: int, user: str, create: bool):
    """The claw's directory under the root (root:wheel 0755), made when missing and ``create``; ``None`` if missing."""
    try:
        fd = os.open(user, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
    except FileNotFoundError:
        if not create:
            return None
        os.mkdir(user, 0o755, dir_fd=root_fd)
        fd = os.open(user, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o755)
    except OSError as exc:
        raise tls.OriginTlsError(f"{user} under the TLS root is not a directory: {exc.strerror} (remove it)") from None
    if os.fstat(fd).st_uid != 0:
        os.close(fd)
        raise tls.OriginTlsError(f"the TLS directory of {user} is not owned by root: refusing to use it")
    return fd


def remove(p: dict, check_mode: bool) -> dict:
    """Remove the claw's directory (only root can write under the root, so nothing in it is the tenant's)."""
    where = tls.paths(p["user"], p["root"])
    result = {"changed": False, "action": "absent", "reason": None, "cert_path": where["cert"], "key_path": where["key"],
              "server_name": where["server_name"], "fingerprint": None, "not_after": None}
    root_fd = tls.open_root_dir(p["root"], create=False)
    if root_fd is None:
        return result
    try:
        try:
            os.stat(p["user"], dir_fd=root_fd, follow_symlinks=False)
        except FileNotFoundError:
            return result
    finally:
        os.close(root_fd)
    result.update(changed=True, action="removed")
    if not check_mode:
        for name in (tls.KEY_NAME, tls.CERT_NAME):  # the claw may have frozen its key (chflags uchg): root clears it
            tls.clear_flags(os.path.join(where["dir"], name))
        shutil.rmtree(where["dir"])  # fd-based walk (rmtree's safe variant): never follows a link
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            user=dict(type="str", required=True),
            group=dict(type="int", default=20),
            root=dict(type="path", default=tls.ROOT),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            valid_days=dict(type="int", default=tls.VALID_DAYS),
            renew_days=dict(type="int", default=tls.RENEW_DAYS),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if "/" in p["user"] or p["user"] in ("", ".", ".."):
        module.fail_json(msg=f"user {p['user']!r} is not a macOS user name")
    if p["state"] == "present":
        if not HAS_CRYPTOGRAPHY:
            module.fail_json(msg=missing_required_lib("cryptography") + " (run with the farm venv's Python, role mini_python)")
        if p["valid_days"] <= p["renew_days"] or p["renew_days"] < 1:
            module.fail_json(msg=f"valid_days ({p['valid_days']}) must be greater than renew_days ({p['renew_days']}) >= 1")
    try:
        if p["state"] == "absent":
            module.exit_json(**remove(p, module.check_mode))
        try:
            uid = pwd.getpwnam(p["user"]).pw_uid
        except KeyError:
            module.fail_json(msg=f"no user {p['user']}: create the claw's user first (claw role, prepare.yml)")
        module.exit_json(**ensure(p, uid, module.check_mode))
    except (tls.OriginTlsError, OSError) as exc:
        module.fail_json(msg=f"claw origin TLS of {p['user']}: {exc}")


if __name__ == "__main__":
    main()
