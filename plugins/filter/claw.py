# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that validate claw input on the control node, before anything reaches a Mini."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw, _ingress, _origin_tls


def _wrap(func):
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (_claw.ClawInputError, _ingress.IngressError) as exc:
            raise AnsibleFilterError(str(exc))
    run.__doc__ = func.__doc__
    return run


def claw_tunnel_hostname(claw_id, claws_domain) -> str:
    """The claw's public hostname ``claw-<claw_id>.<claws_domain>``, validated (UUID id, DNS domain).

    Raises:
        AnsibleFilterError: invalid claw id or claws domain.
    """
    canonical = _claw.validate_claw_id(claw_id)
    return _ingress.validate_hostname(f"claw-{canonical}.{_ingress.validate_domain(claws_domain)}", claws_domain)


class FilterModule:
    """``claw_identity``, ``claw_port``, ``claw_env``, ``claw_gateway_config``, ``claw_tunnel_hostname``,
    ``claw_origin_tls_paths``."""

    def filters(self):
        return {
            "claw_identity": _wrap(_claw.claw_identity),
            "claw_port": _wrap(_claw.validate_port),
            "claw_env": _wrap(_claw.validate_env),
            "claw_gateway_config": _wrap(_claw.gateway_config),
            "claw_tunnel_hostname": _wrap(claw_tunnel_hostname),
            "claw_origin_tls_paths": _wrap(_origin_tls.paths),
        }
