# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A claw's origin TLS identity: the key and certificate its gateway serves, pinned by cloudflared and the probes
(PRIVATE to the collection).

Why: a claw's gateway listens on a loopback port, and loopback is shared by every user of the Mini. While a gateway
is stopped (every nightly backup stops it, a migration, a restart, a crash's throttle interval) any other claw's code
can listen on its port. Over plain HTTP the Mini's cloudflared would then deliver the claw's traffic - its customer's
requests, the gateway token in them - to that tenant. With TLS the connector checks who answers: each claw's gateway
serves its own certificate (``gateway.tls``, OpenClaw docs ``gateway/config-gateway.md``), and the claw's ingress rule
trusts only that certificate (``originRequest.caPool``, the certificate itself; ``originServerName``, its name). A
tenant cannot read another claw's key (0400, owned by that claw's user), so it cannot complete the handshake, and
cloudflared answers 502 instead of sending it anything (docs/origin-tls.md).

Layout (``root`` = ``/var/db/mirascope-claw-tls`` by default; outside the tenant's home, so no step here acts through
a path a tenant controls; not under ``/var/db/mirascope``, which is root-only 0700, because each gateway - running as
its claw's user - must reach its own files)::

    <root>/                 root:wheel 0755
    <root>/<user>/          root:wheel 0755
    <root>/<user>/cert.pem  root:wheel 0644  the pin: cloudflared's caPool, the probes' cafile, the gateway's certPath
    <root>/<user>/key.pem   <user>:20  0400  the gateway's keyPath; never leaves the Mini, never in any output

The certificate is self-signed (the pin is the certificate itself, no CA to guard), ECDSA P-256, for the DNS name
``<user>.claws.internal`` (``.internal`` is reserved for private use: no public CA issues for it, and cloudflared
adds its caPool to the system's roots), valid :data:`VALID_DAYS` days and renewed :data:`RENEW_DAYS` days before it
ends. Key generation uses the ``cryptography`` package of the Mini's farm venv.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import stat

ROOT = "/var/db/mirascope-claw-tls"
CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
SERVER_NAME_SUFFIX = ".claws.internal"
VALID_DAYS = 825
RENEW_DAYS = 30
MAX_PEM_BYTES = 64 * 1024  # read at most this much of either file; a bigger file is not ours
MAX_KEY_BYTES = 4096  # a P-256 PKCS#8 PEM key is ~240 bytes
MAX_CERT_BYTES = 8192  # ours is ~600 bytes


class OriginTlsError(Exception):
    """The TLS material cannot be read or written safely (the message says what and where)."""


def server_name(user: str) -> str:
    """The TLS server name of a claw's gateway, ``<user>.claws.internal`` (e.g. ``claw-1a2b3c4d.claws.internal``)."""
    return f"{user}{SERVER_NAME_SUFFIX}"


def paths(user: str, root: str = ROOT) -> dict:
    """Where a claw's TLS material lives: ``{"dir", "cert", "key", "server_name"}`` (absolute paths, str)."""
    directory = os.path.join(root, user)
    return {"dir": directory, "cert": os.path.join(directory, CERT_NAME), "key": os.path.join(directory, KEY_NAME),
            "server_name": server_name(user)}


def probe_tls(user: str, root: str = ROOT):
    """The TLS settings a probe of ``user``'s gateway uses, or ``None`` for a claw that has no pinned certificate yet.

    Returns:
        ``{"cafile": <cert path>, "server_name": str}`` when ``<root>/<user>/cert.pem`` is a regular file owned by root
        (``lstat``: a claw provisioned before origin TLS has none and is probed over plain WebSocket, with the
        listener check alone); otherwise ``None``.
    """
    where = paths(user, root)
    try:
        info = os.lstat(where["cert"])
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_uid != 0:
        return None
    return {"cafile": where["cert"], "server_name": where["server_name"]}


def make_pair(name: str, now: datetime.datetime | None = None, days: int = VALID_DAYS):
    """A new ECDSA P-256 key and a self-signed certificate for DNS name ``name``.

    Args:
        name: the server name (:func:`server_name`), also the subject's common name.
        now: the start of validity (aware datetime; default: now, UTC); the certificate is valid from 5 minutes
            before it (clock skew) for ``days`` days.
        days: validity in days.

    Returns:
        ``(key_pem, cert_pem)``, both ``bytes`` (PKCS#8 PEM, unencrypted - the file's mode protects it; X.509 PEM).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _not_after(cert) -> datetime.datetime:
    value = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42
    if value is None:
        value = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return value


def pair_problem(cert_pem: bytes, key_pem: bytes, name: str, now: datetime.datetime | None = None,
                 renew_days: int = RENEW_DAYS):
    """Why the pair cannot be kept (a short reason), or ``None`` when it can.

    Kept only when the certificate parses, names ``name`` in its subjectAltName, is valid for more than
    ``renew_days`` more days, and ``key_pem`` is the private key of its public key. Never includes key material.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    now = now or datetime.datetime.now(datetime.timezone.utc)
    if len(cert_pem) > MAX_CERT_BYTES:
        return "the certificate is too big"
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except Exception:  # noqa: BLE001 - whatever the parser raises on what a tenant wrote, the pair is replaced
        return "the certificate does not parse"
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if name not in names:
        return f"the certificate is not for {name}"
    if _not_after(cert) - now <= datetime.timedelta(days=renew_days):
        return f"the certificate ends {_not_after(cert).strftime('%Y-%m-%d')} (renewed {renew_days} days before)"
    # The claw's user owns its key file and may write anything there (up to MAX_PEM_BYTES): only a small P-256 key is
    # loaded (no big RSA key to validate), and any error of the parser means "replace it", never a failed run.
    if len(key_pem) > MAX_KEY_BYTES:
        return "the key is too big"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None, unsafe_skip_rsa_key_validation=True)
    except Exception:  # noqa: BLE001 - see above
        return "the key does not parse"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        return "the key is not an ECDSA P-256 key"
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            != cert.public_key().public_bytes(serialization.Encoding.DER, spki)):
        return "the key is not the certificate's"
    return None


def describe(cert_pem: bytes) -> dict:
    """``{"fingerprint": "sha256:<hex of the DER>", "not_after": ISO 8601 UTC}`` of a PEM certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return {"fingerprint": "sha256:" + hashlib.sha256(der).hexdigest(),
            "not_after": _not_after(cert).strftime("%Y-%m-%dT%H:%M:%SZ")}


# ---- files (root acts only in root-owned directories; nothing is followed) ----

def open_root_dir(path: str, create: bool, mode: int = 0o755) -> int | None:
    """An ``O_DIRECTORY|O_NOFOLLOW`` descriptor of ``path``, a real directory that only root can change.

    ``path`` is resolved first (``realpath``: on macOS ``/var`` is root's link to ``private/var``); then every component
    of the resolved path is opened with ``O_NOFOLLOW`` and must be owned by root and not writable by group or others
    (unless sticky, as ``/private/tmp``: then no one else can replace root's entries in it). Missing components are
    created (``create``) with ``mode``, owned by root. Returns ``None`` when it is missing and ``create`` is false.
    Raises :class:`OriginTlsError` when a component is a link, not a directory, or could be changed by someone else.
    """
    parts = [part for part in os.path.realpath(path).split("/") if part]
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index, part in enumerate(parts):
            where = "/" + "/".join(parts[:index + 1])
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(part, mode, dir_fd=fd)
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.fchown(child, 0, 0)
                os.fchmod(child, mode)
            except OSError as exc:
                raise OriginTlsError(f"{where} is not a directory that can be used: {exc.strerror} "
                                     "(it changed while it was opened, or it is a file)") from None
            os.close(fd)
            fd = child
            info = os.fstat(fd)
            if info.st_uid != 0:
                raise OriginTlsError(f"{where} is owned by uid {info.st_uid}, not root: refusing to keep TLS keys under it")
            if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
                raise OriginTlsError(f"{where} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}): "
                                     "refusing to keep TLS keys under it")
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def clear_flags(path: str) -> bool:
    """Clear the BSD file flags of ``path`` (not following a link) when it has any; returns whether it had some.

    On macOS the owner of a file may set ``uchg``/``uappnd`` (``chflags``), and then not even root can rename over it,
    change its mode or delete it. A claw owns its key file: root clears the flags before it renews, repairs or removes
    it (root may clear the user flags). A no-op where the system has no file flags (``os.chflags`` missing).
    """
    chflags = getattr(os, "chflags", None)
    try:
        flags = getattr(os.lstat(path), "st_flags", 0)
    except FileNotFoundError:
        return False
    if not flags or chflags is None:
        return False
    chflags(path, 0, follow_symlinks=False)
    return True


def read_file(dir_fd: int, name: str):
    """The bytes of regular file ``name`` in ``dir_fd`` (``O_NOFOLLOW``, at most :data:`MAX_PEM_BYTES`), or ``None``
    when it is missing, not a regular file or too big (it is then replaced)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0), dir_fd=dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PEM_BYTES:
            return None
        data = os.read(fd, MAX_PEM_BYTES + 1)
        return data if len(data) <= MAX_PEM_BYTES else None
    finally:
        os.close(fd)


def write_file(dir_fd: int, name: str, data: bytes, uid: int, gid: int, mode: int, path: str | None = None) -> None:
    """Write ``data`` as ``name`` in ``dir_fd`` atomically: a new root-owned file (``O_EXCL``) with ``mode``, flushed,
    renamed over ``name``, and only then given to ``uid:gid`` through its descriptor - so a claw never owns a file of
    root's before it is in place (an owner could set ``uchg`` on it and make the rename fail). ``path`` (the full
    path of ``name``): the file flags of the file it replaces are cleared first (:func:`clear_flags`), again if the
    rename is refused (a claw that set them again in between), at most 3 times."""
    temp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        for attempt in range(3):
            if path:
                clear_flags(path)
            try:
                os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                break
            except PermissionError:
                if attempt == 2 or not path:
                    raise
        if (uid, gid) != (0, 0):
            os.fchown(fd, uid, gid)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    finally:
        os.close(fd)


def file_owner_mode(dir_fd: int, name: str):
    """``(uid, gid, mode bits)`` of ``name`` in ``dir_fd`` without following it, or ``None`` when missing."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)
