"""age v1 encryption, without subprocesses.

Interop is pinned by known-answer files written by the real ``age`` 1.1.1 CLI, and by ``craft``: an
independent, minimal age writer (straight from the spec) that can also produce the malformed shapes our
Encryptor never writes (empty final chunk, missing last flag, foreign stanzas...).
"""

from __future__ import annotations

import base64
import io
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dbrunbook.errors import EncryptionError, NoMatchingIdentityError, ObjectCorruptError
from dbrunbook.repository.crypto import (
    Decryptor,
    Encryptor,
    bech32_decode,
    bech32_encode,
    decrypt_chunks,
    encrypt_chunks,
    generate_identity,
    parse_identities,
    recipient_of,
)

CHUNK = 65536
CT_CHUNK = CHUNK + 16

# Written by `age-keygen -o kat.txt` (age 1.1.1); the recipient is what `age-keygen -y kat.txt` printed.
KAT_FILE = """\
# created: 2026-11-22T03:12:51Z
# public key: age1ded6vqcues8sk7kw00wuhkgvegl4elugr8y6xshrq0x6x0dmhdyqrkqlm2
AGE-SECRET-KEY-1ZQZM02TSFL4HCFVMYJ6QZ7R6UZ4DNHJDM4VQKEA92VFLQJ8KZAYQUR6RDQ
"""
KAT_IDENTITY = "AGE-SECRET-KEY-1ZQZM02TSFL4HCFVMYJ6QZ7R6UZ4DNHJDM4VQKEA92VFLQJ8KZAYQUR6RDQ"
KAT_RECIPIENT = "age1ded6vqcues8sk7kw00wuhkgvegl4elugr8y6xshrq0x6x0dmhdyqrkqlm2"
# `printf 'dbrunbook known-answer test\n' | age -r <another recipient> -r KAT_RECIPIENT`: ours is stanza 2.
KAT_TWO_STANZAS = base64.b64decode(
    "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBxV3pmU0tMazJDcHg3cDVNQlJMUU14T3NXcCtlaFViVUdRVmJUczZhb2c4"
    "CnB0UUlFRTFDeGVIeU9RSDB1a0FiYVJ1ZVJhbDZVdE1hSlNIRzl4V1NtbjgKLT4gWDI1NTE5IEM0UTlaQjNUeGV5L2VrWURYS244"
    "TnBjNVRDOC9tcUtieHl1b3lDaktVRzgKVElJWndiTUdURGM1UmVLdysvSHJMd2VQSHFHdlA0VUEzY25KQ2xVdVlkOAotLS0gakpj"
    "NTI1M0hCUHl3Y08vWExFcEdJdHhXN2dEenBIVHdTQ0J3MG9TVVRlNAphHNH0AbfzkXCGtZr7tBj4Mq2LkVEq0MtDttLeQYNIAwJW"
    "H/xEEq9iyupMrGJ2FTP9B8EijETP2MLYES0="
)
# `age -r KAT_RECIPIENT < /dev/null`
KAT_EMPTY = base64.b64decode(
    "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBjNHVYcjNIdXVNR2tZUEhOdnBKWHh4N25YQmMwcjZ3WWhub3ZnOW9nS1Vr"
    "CkF0bmkzUmZvS0x5VW9lUWNUbDUyaGkzYzk5VTlCTjRmTWZlV3RTZkgvaDQKLS0tIDc0cGl3V1UxRFExNlRVR0tOZC8wbzkvdjRm"
    "VlZtNi9MU3hNQko4N3JyNWMKsaWC/C10gckxp21gJT5i/EYtiVzWXv8PVwfZSxcrI8s="
)

SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, 3 * 1024 * 1024 + 4321]


# --- helpers -----------------------------------------------------------------------------------------


def encrypt(data: bytes, recipients: list[str], piece: int = 10_000) -> bytes:
    out = io.BytesIO()
    with Encryptor(out, recipients) as enc:
        for i in range(0, len(data), piece):
            assert enc.write(data[i : i + piece]) == len(data[i : i + piece])
    return out.getvalue()


def decrypt(blob: bytes, identities: list[str]) -> bytes:
    return Decryptor(io.BytesIO(blob), identities).read()


def payload_start(blob: bytes) -> int:
    """Offset of the first STREAM chunk: after the '--- MAC' line and the 16-byte nonce."""
    return blob.index(b"\n", blob.index(b"\n--- ") + 1) + 1 + 16


def flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]


def expected_size(blob: bytes, n: int) -> int:
    return payload_start(blob) + n + 16 * max(1, -(-n // CHUNK))


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def stanza(args: bytes, body: bytes) -> bytes:
    enc = _b64(body)
    lines = [enc[i : i + 64] for i in range(0, len(enc), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")  # a body always ends with a short line, empty if need be
    return b"-> " + args + b"\n" + b"".join(line + b"\n" for line in lines)


def craft(recipient: str, chunks: list[tuple[bytes, bool]], extra: bytes = b"", share: bytes | None = None) -> bytes:
    """An age file built straight from the spec, with the chunking and last flags given."""
    decoded = bech32_decode(recipient)
    assert decoded is not None
    public = decoded[1]
    file_key = os.urandom(16)
    eph = X25519PrivateKey.generate()
    eph_share = eph.public_key().public_bytes_raw()
    wrap = _hkdf(
        eph.exchange(X25519PublicKey.from_public_bytes(public)), eph_share + public, b"age-encryption.org/v1/X25519"
    )
    body = ChaCha20Poly1305(wrap).encrypt(bytes(12), file_key, None)
    header = b"age-encryption.org/v1\n" + extra + stanza(b"X25519 " + _b64(share or eph_share), body) + b"---"
    mac = hmac.HMAC(_hkdf(file_key, b"", b"header"), hashes.SHA256())
    mac.update(header)
    nonce = os.urandom(16)
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    payload = b"".join(
        aead.encrypt(i.to_bytes(11, "big") + (b"\x01" if last else b"\x00"), plain, None)
        for i, (plain, last) in enumerate(chunks)
    )
    return header + b" " + _b64(mac.finalize()) + b"\n" + nonce + payload


@pytest.fixture(scope="module")
def pair() -> tuple[str, str]:
    return generate_identity()


# --- keys and bech32 ---------------------------------------------------------------------------------


def test_known_answer_keys_from_age_keygen() -> None:
    assert parse_identities(KAT_FILE) == [KAT_IDENTITY]
    assert recipient_of(KAT_IDENTITY) == KAT_RECIPIENT


def test_bech32_bip173_vectors() -> None:
    for valid in [
        "A12UEL5L",
        "a12uel5l",
        "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
        "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
        "?1ezyfcl",
    ]:
        assert bech32_decode(valid) is not None, valid
    for invalid in ["pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3", "de1lg7wt\xff", "A1G7SGD8", "10a06t8"]:
        assert bech32_decode(invalid) is None, invalid
    assert bech32_decode("A12UEL5L") == ("A", b"")
    data = bytes(range(32))
    assert bech32_decode(bech32_encode("age", data)) == ("age", data)


def test_bech32_rejects_bad_checksum_and_mixed_case() -> None:
    assert bech32_decode(KAT_RECIPIENT) is not None
    body = KAT_RECIPIENT[:-1] + ("q" if KAT_RECIPIENT[-1] != "q" else "p")
    assert bech32_decode(body) is None
    assert bech32_decode(KAT_RECIPIENT[:10] + KAT_RECIPIENT[10:].upper()) is None


def test_generate_identity_shape_and_consistency() -> None:
    seen = set()
    for _ in range(5):
        identity, recipient = generate_identity()
        assert identity.startswith("AGE-SECRET-KEY-1") and identity == identity.upper() and len(identity) == 74
        assert recipient.startswith("age1") and recipient == recipient.lower() and len(recipient) == 62
        assert recipient_of(identity) == recipient
        assert parse_identities(f"# public key: {recipient}\n{identity}\n") == [identity]
        seen.add(identity)
    assert len(seen) == 5


def test_parse_identities_file_format() -> None:
    a, _ = generate_identity()
    b, _ = generate_identity()
    text = f"# created: 2026-01-01T00:00:00Z\n# public key: x\n{a}\n\n   \n# second\n{b}\r\n"
    assert parse_identities(text) == [a, b]


def test_parse_identities_errors_name_the_line_not_the_value() -> None:
    identity, _ = generate_identity()
    broken = identity[:-1] + ("Q" if identity[-1] != "Q" else "P")
    with pytest.raises(EncryptionError, match="line 3 of the identity file") as info:
        parse_identities(f"# c\n{identity}\n{broken}\n")
    assert broken not in str(info.value) and identity not in str(info.value)
    with pytest.raises(EncryptionError, match="no age identity"):
        parse_identities("# only comments\n\n")


def test_bad_recipients_are_shown_but_identities_never() -> None:
    identity, recipient = generate_identity()
    # The last character changed to one it is not (else 1 run in 32 "breaks" it into itself: seen once).
    changed = recipient[:-1] + ("y" if recipient[-1] == "x" else "x")
    for bad in ["age1notarecipient", recipient.upper(), changed, "ssh-ed25519 AAAA", ""]:
        with pytest.raises(EncryptionError, match="not an age recipient") as info:
            Encryptor(io.BytesIO(), [recipient, bad])
        assert bad in str(info.value)
    with pytest.raises(EncryptionError, match="not an age recipient") as info:
        Encryptor(io.BytesIO(), [identity])
    assert identity not in str(info.value) and identity[16:40] not in str(info.value)
    with pytest.raises(EncryptionError, match="no age recipients"):
        Encryptor(io.BytesIO(), [])


def test_bad_identities_never_echoed() -> None:
    identity, recipient = generate_identity()
    blob = encrypt(b"x", [recipient])
    # The last character changed (to one it is not, or the checksum could still hold): 1 in 32 runs flaked.
    last = "P" if identity[-1] == "Q" else "Q"
    for bad in [identity.lower(), identity[:-1] + last, recipient, "AGE-SECRET-KEY-1QQQQQQQ"]:
        with pytest.raises(EncryptionError, match="not an age identity") as info:
            Decryptor(io.BytesIO(blob), [bad])
        assert bad not in str(info.value) and identity not in str(info.value)
        with pytest.raises(EncryptionError):
            recipient_of(bad)
    with pytest.raises(EncryptionError, match="no age identities"):
        Decryptor(io.BytesIO(blob), [])


# --- known answers from the age CLI ------------------------------------------------------------------


def test_decrypts_age_cli_file_with_our_key_in_second_stanza() -> None:
    assert decrypt(KAT_TWO_STANZAS, [KAT_IDENTITY]) == b"dbrunbook known-answer test\n"
    assert b"".join(decrypt_chunks([KAT_TWO_STANZAS[i : i + 7] for i in range(0, 400, 7)], [KAT_IDENTITY])) == (
        b"dbrunbook known-answer test\n"
    )


def test_decrypts_age_cli_empty_file() -> None:
    dec = Decryptor(io.BytesIO(KAT_EMPTY), [KAT_IDENTITY])
    assert dec.read() == b"" and dec.read(10) == b""


def test_age_cli_file_with_other_identity_is_no_match() -> None:
    other, _ = generate_identity()
    with pytest.raises(NoMatchingIdentityError) as info:
        decrypt(KAT_TWO_STANZAS, [other])
    assert str(info.value) == ("no configured age identity can open this object (it was encrypted to other recipients)")


# --- round trips ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int, pair: tuple[str, str]) -> None:
    identity, recipient = pair
    data = random.randbytes(size)
    blob = encrypt(data, [recipient], piece=9_973)
    assert len(blob) == expected_size(blob, size)
    assert data not in blob or size < 16
    assert decrypt(blob, [identity]) == data
    # Generator forms, with odd piece sizes on both sides.
    pieces = [data[i : i + 50_000] for i in range(0, size, 50_000)]
    blob2 = b"".join(encrypt_chunks(iter(pieces), [recipient]))
    assert len(blob2) == len(blob) and blob2 != blob  # fresh file key and nonce every time
    ct_pieces = [blob2[i : i + 70_001] for i in range(0, len(blob2), 70_001)]
    assert b"".join(decrypt_chunks(ct_pieces, [identity])) == data
    assert b"".join(decrypt_chunks(io.BytesIO(blob2), [identity])) == data


@pytest.mark.parametrize("n", [1, 1000, 65536, 100_000])
def test_read_sizes(n: int, pair: tuple[str, str]) -> None:
    identity, recipient = pair
    data = random.randbytes(3 * CHUNK + 17)
    dec = Decryptor(io.BytesIO(encrypt(data, [recipient])), [identity])
    parts = []
    while part := dec.read(n):
        assert len(part) <= n
        parts.append(part)
    assert b"".join(parts) == data
    assert all(len(p) == n for p in parts[:-1])  # short reads only at the very end
    assert dec.read(n) == b"" and dec.read() == b""


def test_write_accepts_any_buffer_and_exact_chunks(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    data = random.randbytes(2 * CHUNK)
    out = io.BytesIO()
    with Encryptor(out, [recipient]) as enc:
        enc.write(bytearray(data[:CHUNK]))
        enc.write(b"")
        enc.write(memoryview(data)[CHUNK:])
    blob = out.getvalue()
    # A plaintext that is a whole number of chunks ends with a full final chunk, not an empty one.
    assert len(blob) == payload_start(blob) + 2 * CT_CHUNK
    assert decrypt(blob, [identity]) == data


def test_empty_plaintext_is_one_empty_final_chunk(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    blob = encrypt(b"", [recipient])
    assert len(blob) == payload_start(blob) + 16
    assert decrypt(blob, [identity]) == b""


def test_header_shape(pair: tuple[str, str]) -> None:
    _, recipient = pair
    _, recipient2 = generate_identity()
    blob = encrypt(b"hello", [recipient, recipient2])
    lines = blob[: payload_start(blob) - 16].split(b"\n")
    assert lines[0] == b"age-encryption.org/v1"
    assert lines[1].startswith(b"-> X25519 ") and len(lines[1]) == 10 + 43 and len(lines[2]) == 43
    assert lines[3].startswith(b"-> X25519 ") and len(lines[4]) == 43
    assert lines[1] != lines[3]  # one ephemeral share per recipient
    assert lines[5].startswith(b"--- ") and len(lines[5]) == 4 + 43 and lines[6] == b""


def test_multiple_recipients_each_identity_alone_decrypts() -> None:
    pairs = [generate_identity() for _ in range(3)]
    data = random.randbytes(CHUNK + 5)
    blob = encrypt(data, [r for _, r in pairs])
    assert blob.count(b"\n-> X25519 ") == 3
    for identity, _ in pairs:
        assert decrypt(blob, [identity]) == data
    stranger, _ = generate_identity()
    assert decrypt(blob, [stranger, pairs[2][0]]) == data
    with pytest.raises(NoMatchingIdentityError):
        decrypt(blob, [stranger])


def test_streaming_memory_is_bounded(pair: tuple[str, str]) -> None:
    identity, recipient = pair

    class CountingSink:
        def __init__(self) -> None:
            self.written = 0

        def write(self, data: bytes) -> None:
            self.written += len(data)

    sink = CountingSink()
    enc = Encryptor(sink, [recipient])
    head = sink.written
    enc.write(bytes(10 * CHUNK + 1))
    # Ten chunks are out already; only the one byte (that makes them "not last") is held back.
    assert sink.written == head + 10 * CT_CHUNK
    enc.write(bytes(CHUNK - 1))
    assert sink.written == head + 10 * CT_CHUNK
    enc.close()
    assert sink.written == head + 11 * CT_CHUNK

    class CountingSource(io.BytesIO):
        consumed = 0

        def read(self, n: int | None = -1, /) -> bytes:
            data = super().read(n)
            self.consumed += len(data)
            return data

    src = CountingSource(encrypt(bytes(50 * CHUNK), [recipient]))
    dec = Decryptor(src, [identity])
    assert dec.read(CHUNK) == bytes(CHUNK)
    assert src.consumed <= 4096 + 2 * CT_CHUNK


def test_sink_is_flushed_not_closed(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    out = io.BytesIO()
    enc = Encryptor(out, [recipient])
    enc.write(b"abc")
    enc.close()
    enc.close()  # idempotent
    assert not out.closed
    with pytest.raises(ValueError, match="closed"):
        enc.write(b"more")
    assert decrypt(out.getvalue(), [identity]) == b"abc"


def test_failed_writer_leaves_a_detectably_truncated_object(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    out = io.BytesIO()
    with pytest.raises(RuntimeError), Encryptor(out, [recipient]) as enc:
        enc.write(bytes(3 * CHUNK))
        raise RuntimeError("dump failed")
    with pytest.raises(ObjectCorruptError, match="truncated"):
        decrypt(out.getvalue(), [identity])


def test_no_secret_in_reprs(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    blob = encrypt(b"x", [recipient])
    dec = Decryptor(io.BytesIO(blob), [identity])
    enc = Encryptor(io.BytesIO(), [recipient])
    for obj in (dec, enc):
        text = repr(obj) + repr(vars(obj))
        assert identity not in text and identity.lower() not in text


# --- corruption, truncation, trailing data -------------------------------------------------------------


def test_flipped_header_bytes_never_decrypt(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    blob = encrypt(b"secret", [recipient])
    header_end = payload_start(blob) - 16
    for at in range(header_end):
        # Inside the (only) stanza a flip is indistinguishable from "sealed to someone else".
        with pytest.raises((ObjectCorruptError, NoMatchingIdentityError)):
            decrypt(flip(blob, at), [identity])
    mac_line = blob.index(b"\n--- ") + 1
    for at in [0, 5, 20, mac_line, mac_line + 2, mac_line + 4, mac_line + 30, header_end - 1]:
        with pytest.raises(ObjectCorruptError):
            decrypt(flip(blob, at), [identity])


def test_header_mac_covers_other_recipients_stanzas(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    _, other = generate_identity()
    blob = encrypt(b"secret", [recipient, other])
    second_body = blob.index(b"\n", blob.index(b"\n-> X25519 ", 30) + 1) + 1
    tampered = blob[:second_body] + (b"A" if blob[second_body] != ord("A") else b"B") + blob[second_body + 1 :]
    with pytest.raises(ObjectCorruptError, match="header MAC mismatch"):
        decrypt(tampered, [identity])


@pytest.mark.parametrize("where", ["nonce", "first", "middle", "last", "last-tag"])
def test_flipped_payload_byte(where: str, pair: tuple[str, str]) -> None:
    identity, recipient = pair
    blob = encrypt(random.randbytes(3 * CHUNK + 100), [recipient])
    start = payload_start(blob)
    at, index = {
        "nonce": (start - 3, 0),
        "first": (start + 10, 0),
        "middle": (start + CT_CHUNK + 500, 1),
        "last": (start + 3 * CT_CHUNK + 5, 3),
        "last-tag": (len(blob) - 1, 3),
    }[where]
    with pytest.raises(ObjectCorruptError, match=rf"chunk {index} \(byte offset \d+\) failed authentication"):
        decrypt(flip(blob, at), [identity])
    # The streaming reader hands out the verified chunks before the bad one, then fails.
    with pytest.raises(ObjectCorruptError):
        for _ in decrypt_chunks(io.BytesIO(flip(blob, at)), [identity]):
            pass


def test_truncations(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    blob = encrypt(random.randbytes(3 * CHUNK), [recipient])
    start = payload_start(blob)
    cuts = [0, 10, 40, start - 17, start - 16, start - 5, start, start + 8, start + 100, start + CT_CHUNK]
    cuts += [start + 2 * CT_CHUNK, start + 2 * CT_CHUNK + 100, len(blob) - 1]
    for cut in cuts:
        with pytest.raises(ObjectCorruptError):
            decrypt(blob[:cut], [identity])
    # Dropping whole chunks is named as such, not as damage.
    with pytest.raises(ObjectCorruptError, match="truncated: the final chunk after chunk 1 is missing"):
        decrypt(blob[: start + 2 * CT_CHUNK], [identity])
    with pytest.raises(ObjectCorruptError, match="header is truncated"):
        decrypt(blob[:40], [identity])


@pytest.mark.parametrize("size", [0, 100, CHUNK, 2 * CHUNK + 3])
@pytest.mark.parametrize("extra", [b"\x00", bytes(16), os.urandom(CT_CHUNK), os.urandom(CT_CHUNK + 20)])
def test_appended_bytes(size: int, extra: bytes, pair: tuple[str, str]) -> None:
    identity, recipient = pair
    blob = encrypt(random.randbytes(size), [recipient])
    with pytest.raises(ObjectCorruptError):
        decrypt(blob + extra, [identity])


def test_trailing_data_after_full_final_chunk_is_named(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    blob = encrypt(random.randbytes(CHUNK), [recipient])
    with pytest.raises(ObjectCorruptError, match="trailing data after its final chunk"):
        decrypt(blob + b"junk", [identity])


# --- hand-crafted files ---------------------------------------------------------------------------------


def test_crafted_baseline_decrypts(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    a, b = random.randbytes(CHUNK), random.randbytes(7)
    assert decrypt(craft(recipient, [(a, False), (b, True)]), [identity]) == a + b


def test_foreign_stanzas_are_skipped_but_authenticated(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    extra = stanza(b"grease-x Zm9v bar", os.urandom(100)) + stanza(b"scrypt c2FsdA 18", os.urandom(48))
    extra += stanza(b"empty-body", b"")
    blob = craft(recipient, [(b"ok", True)], extra=extra)
    assert decrypt(blob, [identity]) == b"ok"


def test_stanza_without_our_key_only_is_no_match(pair: tuple[str, str]) -> None:
    identity, _ = pair
    blob = KAT_EMPTY.replace(b"-> X25519 ", b"-> scrypt ", 1)
    with pytest.raises(NoMatchingIdentityError):
        decrypt(blob, [identity])


def test_empty_final_chunk_after_data_is_refused(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    blob = craft(recipient, [(bytes(CHUNK), False), (b"", True)])
    with pytest.raises(ObjectCorruptError, match="empty final chunk"):
        decrypt(blob, [identity])


def test_missing_last_flag_is_truncation(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    with pytest.raises(ObjectCorruptError, match="truncated"):
        decrypt(craft(recipient, [(bytes(CHUNK), False)]), [identity])
    with pytest.raises(ObjectCorruptError):
        decrypt(craft(recipient, [(b"short", False)]), [identity])
    with pytest.raises(ObjectCorruptError, match="truncated"):
        decrypt(craft(recipient, []), [identity])


def test_chunk_after_last_is_trailing_data(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    with pytest.raises(ObjectCorruptError, match="trailing data"):
        decrypt(craft(recipient, [(bytes(CHUNK), True), (b"x", True)]), [identity])


def test_short_non_final_chunk_is_refused(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    with pytest.raises(ObjectCorruptError, match="chunk 0"):
        decrypt(craft(recipient, [(b"abc", False), (b"def", True)]), [identity])


def test_low_order_share_is_corrupt(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    with pytest.raises(ObjectCorruptError, match="low-order"):
        decrypt(craft(recipient, [(b"x", True)], share=bytes(32)), [identity])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.replace(b"age-encryption.org/v1", b"age-encryption.org/v2", 1), "not an age v1 object"),
        (lambda b: b"-----BEGIN AGE ENCRYPTED FILE-----\n" + b, "ASCII-armored"),
        (lambda b: b.replace(b"\n-> X25519 ", b"\n->  X25519 ", 1), "bad stanza line"),
        (lambda b: b.replace(b"\n-> X25519 ", b"\n-> X25519\x7f ", 1), "bad stanza line"),
        (lambda b: b.replace(b"\n-> X25519 ", b"\n+> X25519 ", 1), "bad stanza line"),
        (lambda b: b.replace(b"\n--- ", b"\n---\n--- ", 1), "bad stanza line"),
        (lambda b: b.replace(b"\n-> X25519 ", b"\n-> X25519 AAAA ", 1), "invalid X25519 stanza"),
        (lambda b: b.replace(b"\n---", b"A" * 22 + b"\n---", 1), "longer than 64"),
        (lambda b: b.replace(b"\n--- ", b"\n--- =", 1), "base64"),
        (lambda b: b.replace(b"\n--- ", b"\n--- AAAA", 1), "MAC"),
        (lambda b: b[:60] + b"\x00" * (2 << 20), "no end of header"),
    ],
)
def test_malformed_headers(change: Any, message: str, pair: tuple[str, str]) -> None:
    identity, recipient = pair
    blob = change(encrypt(b"payload", [recipient]))
    with pytest.raises(ObjectCorruptError, match=message):
        decrypt(blob, [identity])


def test_non_canonical_base64_is_refused(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    blob = encrypt(b"payload", [recipient])
    body_start = blob.index(b"\n", blob.index(b"\n-> X25519 ") + 1) + 1
    last = body_start + 42  # 32 bytes = 43 columns; the last one carries 2 unused bits
    char = blob[last : last + 1]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sibling = alphabet[alphabet.index(char) ^ 1 : (alphabet.index(char) ^ 1) + 1]
    with pytest.raises(ObjectCorruptError, match="canonical base64"):
        decrypt(blob[:last] + sibling + blob[last + 1 :], [identity])


def test_decrypt_chunks_accepts_generators(pair: tuple[str, str]) -> None:
    identity, recipient = pair
    data = random.randbytes(200_000)

    def source() -> Iterator[bytes]:
        blob = b"".join(encrypt_chunks([data], [recipient]))
        yield b""  # empty pieces are not end of stream
        for i in range(0, len(blob), 1000):
            yield blob[i : i + 1000]
            yield b""

    assert b"".join(decrypt_chunks(source(), [identity])) == data
