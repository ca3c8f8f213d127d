"""Manifest signatures: only the controller can make a set of objects a backup.

Every database host holds the age recipients and write access to the repository, and age does not say who
encrypted an object. So encryption alone cannot tell a manifest the controller wrote from one a compromised
host wrote (one with a stop time in 2999 would become "latest" and steer retention). The controller signs
what it writes with an Ed25519 key that only it holds (``encryption.signing_key``); readers trust a manifest
only when it carries a valid signature by one of the inventory's ``encryption.signers``.

The signature covers the object's key and its exact plaintext, so a signed manifest cannot be moved to
another backup's folder. It travels inside the encrypted object, as one last line after the JSON:

    {...the manifest...}
    #dbrunbook-signature ed25519 <key id> <base64 signature>

A raw newline cannot occur inside JSON strings, so the JSON ends exactly where that line starts. Manifests
written before signing existed get the same line as a separate object beside them (``backup.sign``), since
nothing in the repository is ever rewritten.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from dbrunbook.errors import ConfigError

MARK = b"\n#dbrunbook-signature "
DOMAIN = b"dbrunbook-signed-object-v1\n"
PUBLIC_PREFIX = "ed25519:"
PUBLIC_PATTERN = r"^ed25519:[A-Za-z0-9+/]{43}=$"
_LINE = re.compile(rb"^ed25519 ([0-9a-f]{16}) ([A-Za-z0-9+/]{86}==)\n?$")


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def public_text(public_raw: bytes) -> str:
    """How a public key is written in the inventory (``encryption.signers``)."""
    return PUBLIC_PREFIX + base64.b64encode(public_raw).decode()


def parse_public(text: str) -> bytes:
    if not re.fullmatch(PUBLIC_PATTERN, text.strip()):
        raise ConfigError(f"{text[:60]!r} is not a signing public key (expected ed25519:<base64 of 32 bytes>)")
    return base64.b64decode(text.strip()[len(PUBLIC_PREFIX) :])


def _message(key: str, body: bytes) -> bytes:
    return DOMAIN + key.encode() + b"\n" + body


class Signer:
    """The controller's private signing key (PEM, as ``openssl genpkey -algorithm ed25519`` writes it)."""

    def __init__(self, pem: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

        try:
            key = load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            # The value is secret: say what is wrong, never show it.
            raise ConfigError(
                "the manifest signing key is not an unencrypted Ed25519 private key in PEM form (value withheld)",
                hint="make one with: invoke keys.signing-init --out FILE",
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("the manifest signing key is not an Ed25519 key (value withheld)")
        self._key = key
        self.public_raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public(self) -> str:
        return public_text(self.public_raw)

    def line(self, key: str, body: bytes) -> bytes:
        """The signature line for ``body`` stored under ``key`` (without the leading newline)."""
        signature = base64.b64encode(self._key.sign(_message(key, body)))
        return b"ed25519 " + key_id(self.public_raw).encode() + b" " + signature + b"\n"

    def sign(self, key: str, body: bytes) -> bytes:
        """``body`` with its signature line appended: what is stored."""
        return body + MARK + self.line(key, body)


def generate() -> tuple[str, str]:
    """A new signing key: (PEM private key, public key text for the inventory)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return pem, Signer(pem).public


def split(data: bytes) -> tuple[bytes, bytes | None]:
    """(body, signature line) of a stored document; the line is None when it carries none."""
    at = data.find(MARK)
    if at < 0:
        return data, None
    return data[:at], data[at + len(MARK) :]


@dataclass(frozen=True)
class Trust:
    """The public keys whose signatures make a manifest a backup, by key id."""

    keys: dict[str, bytes]

    @classmethod
    def of(cls, publics: Iterable[bytes]) -> Trust:
        return cls({key_id(p): p for p in publics})

    def check(self, key: str, body: bytes, line: bytes | None) -> str | None:
        """None when ``line`` is a valid signature of ``body`` under ``key`` by a trusted key; else why not."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if line is None:
            return "it is not signed"
        m = _LINE.match(line.strip() + b"\n")
        if m is None:
            return "its signature line is malformed"
        kid = m.group(1).decode()
        public = self.keys.get(kid)
        if public is None:
            return f"it is signed by key {kid}, which is not among encryption.signers"
        try:
            signature = base64.b64decode(m.group(2), validate=True)
            Ed25519PublicKey.from_public_bytes(public).verify(signature, _message(key, body))
        except (InvalidSignature, binascii.Error, ValueError):
            return f"its signature by key {kid} does not match its content"
        return None
