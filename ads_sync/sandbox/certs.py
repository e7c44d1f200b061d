"""A self-signed certificate for the sandbox's TLS endpoint, generated once per state folder."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class CertPaths:
    cert: Path
    key: Path


def ensure_certificate(state_dir: Path, host: str = "127.0.0.1") -> CertPaths:
    """Reuse the folder's certificate, or create one valid for `host`, 127.0.0.1 and localhost.

    Reuse matters: gRPC reads its trust roots once per process, so a client that already trusts
    this file keeps working across sandbox restarts.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(cert=state_dir / "sandbox-cert.pem", key=state_dir / "sandbox-key.pem")
    if paths.cert.exists() and paths.key.exists():
        return paths
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Google Ads sandbox")])
    ips = {ipaddress.ip_address("127.0.0.1")}
    names = {"localhost"}
    try:
        ips.add(ipaddress.ip_address(host))
    except ValueError:
        names.add(host)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in sorted(names)] + [x509.IPAddress(i) for i in ips]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    tmp_key = paths.key.with_suffix(".tmp")
    # Only its owner may read the key from the moment the file exists: written and then made
    # 0600, it was readable by everyone in between under the usual umask (022). A leftover
    # with a wider mode is narrowed before the write; a symbolic link is not followed.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(tmp_key, flags, 0o600), "wb") as handle:
        if os.fstat(handle.fileno()).st_mode & 0o077:
            os.fchmod(handle.fileno(), 0o600)
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    tmp_key.replace(paths.key)
    tmp_cert = paths.cert.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp_cert.replace(paths.cert)
    return paths
