"""A throwaway certificate authority and server certificate for the bench.

trustme is used when installed (the ``bench`` extra). Without it, the same is
built with the ``cryptography`` package if that is present. Neither ever
touches a system trust store: the client trusts a temporary bundle made of
certifi's roots plus the throwaway CA.

The key type matters to what a TLS handshake costs, and so to what session
resumption saves. RSA-2048, the default, is what most public servers and
nginx test setups present: the server's signature in every full handshake is
the expensive part, and a resumed handshake skips it. With ECDSA P-256
(trustme's own default) a full handshake is cheap and resumption saves little.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from typing import Final

import certifi

__all__ = ["DEFAULT_KEY_TYPE", "KEY_TYPES", "BenchCertificates", "BenchSetupError", "make_certificates"]

#: The key types the bench can give its CA and server certificate, by ``--cert-key`` name.
KEY_TYPES: Final = {"rsa": "RSA-2048", "ecdsa": "ECDSA P-256"}
#: The key type of the bench certificates unless another is asked for: what most servers present.
DEFAULT_KEY_TYPE: Final = "rsa"
#: Bits of the RSA keys.
_RSA_BITS: Final = 2048


class BenchSetupError(RuntimeError):
    """The bench cannot prepare what it needs; the message says what to install."""


@dataclass(frozen=True, slots=True)
class BenchCertificates:
    """Paths of the PEM files the bench uses.

    Attributes:
        ca: the throwaway CA certificate alone.
        bundle: certifi's roots followed by the throwaway CA: what every client trusts.
        cert: the server certificate for 127.0.0.1 and localhost.
        key: the server certificate's private key.
        key_type: the key type of the CA and the server certificate, a key of :data:`KEY_TYPES`.
    """

    ca: str
    bundle: str
    cert: str
    key: str
    key_type: str = DEFAULT_KEY_TYPE

    @property
    def key_description(self) -> str:
        """The key type as the bench prints it, such as ``RSA-2048``."""
        return KEY_TYPES[self.key_type]


def make_certificates(directory: str, *, key_type: str = DEFAULT_KEY_TYPE) -> BenchCertificates:
    """Write a throwaway CA, a server certificate and a trust bundle into ``directory``.

    Args:
        directory: where the PEM files go.
        key_type: ``"rsa"`` (RSA-2048) or ``"ecdsa"`` (P-256), for the CA and the server certificate.

    Raises:
        BenchSetupError: neither trustme nor cryptography is installed.
        ValueError: ``key_type`` is not one of :data:`KEY_TYPES`.
    """
    if key_type not in KEY_TYPES:
        raise ValueError(f"--cert-key must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")
    try:
        ca_pem, cert_pem, key_pem = _with_trustme(key_type)
    except ImportError:
        try:
            ca_pem, cert_pem, key_pem = _with_cryptography(key_type)
        except ImportError:
            raise BenchSetupError(
                "the HTTPS bench needs trustme (or cryptography) to make a throwaway certificate: "
                "pip install 'session-presets[bench]', or run it with --scheme http"
            ) from None
    paths = {name: os.path.join(directory, f"{name}.pem") for name in ("ca", "bundle", "cert", "key")}
    with open(certifi.where(), "rb") as roots:
        bundle = roots.read()
    contents = {"ca": ca_pem, "bundle": bundle.rstrip(b"\n") + b"\n" + ca_pem, "cert": cert_pem, "key": key_pem}
    for name, data in contents.items():
        with open(paths[name], "wb") as out:
            out.write(data)
    return BenchCertificates(**paths, key_type=key_type)


def _with_trustme(key_type: str) -> tuple[bytes, bytes, bytes]:
    import trustme

    kind = trustme.KeyType.RSA if key_type == "rsa" else trustme.KeyType.ECDSA
    authority = trustme.CA(key_type=kind)
    issued = authority.issue_cert("127.0.0.1", "localhost", key_type=kind)
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
    return authority.cert_pem.bytes(), chain, issued.private_key_pem.bytes()


def _with_cryptography(key_type: str) -> tuple[bytes, bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    def new_key() -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        if key_type == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
        return ec.generate_private_key(ec.SECP256R1())

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
    ca_key = new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "session-presets bench CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca_cert.public_bytes(pem), cert.public_bytes(pem), key_pem
