"""A throw-away PKI for the fake portal: a CA, the portal's server certificate, user certificates.

A user certificate is written like CloudLab's ``cloudlab.pem``: the certificate and its private
key in one PEM file, the key optionally encrypted with a passphrase.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nfvlab fake portal"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, ca: bool, san: list | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem_key(key, password: str | None) -> bytes:
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


class CertificateAuthority:
    def __init__(self, directory: Path, name: str = "nfvlab-fake-ca") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = _cert(name, self.key, name, self.key, ca=True)
        self.path = self.dir / f"{name}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def server(self, cn: str = "localhost") -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = _cert(cn, key, self.name, self.key, ca=False, san=san)
        cpath, kpath = self.dir / f"{cn}-server.pem", self.dir / f"{cn}-server.key"
        cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kpath.write_bytes(_pem_key(key, None))
        kpath.chmod(0o600)
        return cpath, kpath

    def user(self, cn: str, password: str | None = None) -> Path:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(cn, key, self.name, self.key, ca=False)
        path = self.dir / f"{cn}-{self.name}{'-encrypted' if password else ''}.pem"
        path.write_bytes(_pem_key(key, password) + cert.public_bytes(serialization.Encoding.PEM))
        path.chmod(0o600)
        return path
