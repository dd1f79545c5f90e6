#!/usr/bin/env python3
"""Independent verifier for a C2SP tiled transparency log.

This is a second implementation, written only from the public specifications,
so that it can catch bugs in the primary (Rust) implementation.  It uses only
the Python 3.11 standard library.

Specifications implemented:
  * C2SP signed-note        https://c2sp.org/signed-note
  * C2SP tlog-checkpoint    https://c2sp.org/tlog-checkpoint
  * C2SP tlog-tiles         https://c2sp.org/tlog-tiles
  * C2SP tlog-cosignature   https://c2sp.org/tlog-cosignature (cosignature/v1, Ed25519)
  * RFC 9162 section 2.1    Merkle Tree Hash, inclusion and consistency proofs
  * RFC 8032 section 5.1    Ed25519 (key derivation, signing, verification)

Usage:
  c2sp_check.py check --url http://127.0.0.1:PORT --vkey VKEY_FILE
                      [--prev PREV_NOTE_FILE] [--json]
  c2sp_check.py selftest --vectors VECTORS_DIR
  c2sp_check.py cosign --seed HEX --name NAME --time SECONDS --body BODY_FILE
  c2sp_check.py check-cosigned --note NOTE_FILE --log-vkey VKEY_FILE
                      [--witness COSIGNER_VKEY ...] --quorum K

Exit status of `check`: 0 everything verified, 1 something failed
verification, 2 could not check (network error, bad input).
Exit status of `selftest`: 0 all self-checks passed, 1 a self-check failed,
2 the vectors could not be read.
`cosign` prints the witness's cosigner vkey, then its cosignature/v1 line
(exit 2 on bad input).  `check-cosigned` prints one JSON object and exits 0
verified with a quorum, 1 failed verification, 2 bad input.

For safety the checker only talks to http://127.0.0.1 (no proxies, no
redirects).
"""

import argparse
import base64
import contextlib
import dataclasses
import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request


class VerificationError(Exception):
    """The data could be checked and is wrong (exit status 1)."""


class UnableToCheck(Exception):
    """The data could not be checked: network failure or bad input (exit 2)."""


# ---------------------------------------------------------------------------
# Ed25519, RFC 8032 section 5.1 (pure-Python big-integer arithmetic).
# Points are kept in extended homogeneous coordinates (X, Y, Z, T) with
# x = X/Z, y = Y/Z, x*y = T/Z (RFC 8032 section 5.1.4).
# ---------------------------------------------------------------------------

ED_P = 2**255 - 19                                            # 5.1: field prime p
ED_L = 2**252 + 27742317777372353535851937790883648493        # 5.1: group order L
ED_D = (-121665 * pow(121666, ED_P - 2, ED_P)) % ED_P         # 5.1: d = -121665/121666
ED_SQRT_M1 = pow(2, (ED_P - 1) // 4, ED_P)                    # 5.1.3 step 3: 2^((p-1)/4)
ED_IDENTITY = (0, 1, 1, 0)


def _ed_inv(x):
    """Field inversion x^(p-2) mod p (RFC 8032 section 5.1.1 note on inversion)."""
    return pow(x, ED_P - 2, ED_P)


def ed_point_add(p1, p2):
    """Add two points in extended coordinates (RFC 8032 section 5.1.4)."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % ED_P
    b = (y1 + x1) * (y2 + x2) % ED_P
    c = t1 * 2 * ED_D * t2 % ED_P
    d = z1 * 2 * z2 % ED_P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % ED_P, g * h % ED_P, f * g % ED_P, e * h % ED_P)


def ed_scalar_mult(scalar, point):
    """Compute [scalar]point by double-and-add using the complete addition law
    of RFC 8032 section 5.1.4."""
    result = ED_IDENTITY
    addend = point
    while scalar > 0:
        if scalar & 1:
            result = ed_point_add(result, addend)
        addend = ed_point_add(addend, addend)
        scalar >>= 1
    return result


def ed_point_equal(p1, p2):
    """Projective point equality: X1*Z2 == X2*Z1 and Y1*Z2 == Y2*Z1."""
    x1, y1, z1, _ = p1
    x2, y2, z2, _ = p2
    return (x1 * z2 - x2 * z1) % ED_P == 0 and (y1 * z2 - y2 * z1) % ED_P == 0


def ed_point_encode(point):
    """Encode a point as 32 bytes: little-endian y with the sign of x in bit
    255 (RFC 8032 section 5.1.2)."""
    x, y, z, _ = point
    zi = _ed_inv(z)
    x, y = x * zi % ED_P, y * zi % ED_P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def ed_point_decode(data):
    """Decode a 32-byte point (RFC 8032 section 5.1.3).  Returns None if the
    encoding is invalid (y >= p, no square root, or x = 0 with sign bit 1)."""
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    x_0 = y >> 255
    y &= (1 << 255) - 1
    if y >= ED_P:                                                   # step 1
        return None
    u = (y * y - 1) % ED_P                                          # step 2
    v = (ED_D * y * y + 1) % ED_P
    x = u * pow(v, 3, ED_P) * pow(u * pow(v, 7, ED_P), (ED_P - 5) // 8, ED_P) % ED_P
    vxx = v * x * x % ED_P                                          # step 3
    if vxx == u:
        pass
    elif vxx == (-u) % ED_P:
        x = x * ED_SQRT_M1 % ED_P
    else:
        return None
    if x == 0 and x_0 == 1:                                         # step 4
        return None
    if x & 1 != x_0:
        x = ED_P - x
    return (x, y, 1, x * y % ED_P)


# Base point B: y = 4/5, x positive (even) (RFC 8032 section 5.1).
ED_B = ed_point_decode((4 * _ed_inv(5) % ED_P).to_bytes(32, "little"))


def _ed_secret_scalar(seed):
    """Hash the 32-byte seed and prune the first half into the secret scalar
    s; return (s, prefix) (RFC 8032 section 5.1.5 steps 1-3)."""
    h = hashlib.sha512(seed).digest()
    a = bytearray(h[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return int.from_bytes(a, "little"), h[32:]


def ed25519_public_key(seed):
    """Derive the 32-byte public key A = [s]B from a seed (RFC 8032 5.1.5)."""
    s, _ = _ed_secret_scalar(seed)
    return ed_point_encode(ed_scalar_mult(s, ED_B))


def ed25519_sign(seed, message):
    """Sign message with the seed's key, deterministically (RFC 8032 5.1.6).
    Used only by the selftest, to prove the arithmetic reproduces Go's bytes
    and to forge test checkpoints for negative tests."""
    s, prefix = _ed_secret_scalar(seed)
    public = ed_point_encode(ed_scalar_mult(s, ED_B))
    r = int.from_bytes(hashlib.sha512(prefix + message).digest(), "little") % ED_L
    r_enc = ed_point_encode(ed_scalar_mult(r, ED_B))
    k = int.from_bytes(hashlib.sha512(r_enc + public + message).digest(), "little") % ED_L
    return r_enc + ((r + k * s) % ED_L).to_bytes(32, "little")


def ed25519_verify(public, message, signature):
    """Verify an Ed25519 signature (RFC 8032 section 5.1.7).

    Step 1 decodes R and A and rejects S >= L; step 2 computes
    k = SHA-512(R || A || M); step 3 checks the group equation.  We use the
    cofactorless form [S]B = R + [k]A, which the RFC allows ("sufficient, but
    not required") and which is the stricter of the two."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a_point = ed_point_decode(public)
    r_point = ed_point_decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a_point is None or r_point is None or s >= ED_L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(),
                       "little") % ED_L
    return ed_point_equal(ed_scalar_mult(s, ED_B),
                          ed_point_add(r_point, ed_scalar_mult(k, a_point)))


# ---------------------------------------------------------------------------
# C2SP signed-note (https://c2sp.org/signed-note)
# ---------------------------------------------------------------------------

SIG_TYPE_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "      # em dash U+2014 then space U+0020
MAX_SIGNATURES = 100              # spec: MUST accept at least 16


@dataclasses.dataclass(frozen=True)
class VerifierKey:
    """A parsed `<name>+<hex key id>+<base64(0x01 || public key)>` key."""
    name: str
    key_id: bytes
    public_key: bytes


def b64decode_strict(text):
    """Decode standard RFC 4648 section 4 base64 (padding required), rejecting
    any character outside the alphabet or any non-canonical encoding."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as e:
        raise ValueError(f"invalid base64: {e}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


def is_valid_key_name(name):
    """Key names MUST be non-empty and contain no Unicode spaces or '+'
    (signed-note, Format)."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def compute_key_id(name, public_key):
    """key ID = SHA-256(key name || 0x0A || 0x01 || public key)[:4]
    (signed-note, Ed25519 signatures)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([SIG_TYPE_ED25519])
                          + public_key).digest()[:4]


def parse_verifier_key(text):
    """Parse a verifier key string `<name>+<8 hex key id>+<base64(0x01||key)>`
    and check that the key id is the one the signed-note spec derives."""
    name, sep1, rest = text.partition("+")
    id_hex, sep2, key_b64 = rest.partition("+")
    if not (sep1 and sep2):
        raise ValueError("verifier key must be <name>+<hex id>+<base64 key>")
    if not is_valid_key_name(name):
        raise ValueError(f"invalid key name {name!r}")
    if len(id_hex) != 8 or any(c not in "0123456789abcdefABCDEF" for c in id_hex):
        raise ValueError("key id must be 8 hex digits")
    key = b64decode_strict(key_b64)
    if len(key) != 33 or key[0] != SIG_TYPE_ED25519:
        raise ValueError("key must be 0x01 || 32-byte Ed25519 public key")
    vkey = VerifierKey(name, bytes.fromhex(id_hex), key[1:])
    if compute_key_id(vkey.name, vkey.public_key) != vkey.key_id:
        raise ValueError("key id does not match SHA-256(name || 0x0A || 0x01 || key)[:4]")
    return vkey


def split_note(note):
    """Split a signed note into (text, [(name, key_id, signature)]).

    signed-note, Format: valid UTF-8, no ASCII control characters other than
    newline; the text ends in a newline and is separated from one or more
    signature lines by the LAST blank line; each signature line is
    U+2014, space, key name, space, base64(4-byte key ID || signature), newline.
    Raises VerificationError on any malformation."""
    try:
        s = note.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationError("note is not valid UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in s):
        raise VerificationError("note contains an ASCII control character")
    cut = s.rfind("\n\n")
    if cut < 0:
        raise VerificationError("note has no blank line before the signatures")
    text, block = s[:cut + 1], s[cut + 2:]
    if not block or not block.endswith("\n"):
        raise VerificationError("note has no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError("note has too many signatures")
    sigs = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise VerificationError(f"malformed signature line (must start with U+2014 and a space): {line[:40]!r}")
        name, sep, b64 = line[len(SIGNATURE_PREFIX):].partition(" ")
        if not sep or not is_valid_key_name(name):
            raise VerificationError(f"malformed signature line: {line[:40]!r}")
        try:
            raw = b64decode_strict(b64)
        except ValueError as e:
            raise VerificationError(f"malformed signature from {name}: {e}") from None
        if len(raw) < 5:
            raise VerificationError(f"signature from {name} is too short")
        sigs.append((name, raw[:4], raw[4:]))
    return text.encode("utf-8"), sigs


def open_note(note, vkey):
    """Verify a signed note against one trusted key and return its text.

    signed-note, Signatures: signatures from unknown keys (name and id not
    both matching) are ignored; a known-key signature that fails to verify
    rejects the whole note; a note with no verified known-key signature is
    rejected."""
    text, sigs = split_note(note)
    verified = False
    for name, key_id, sig in sigs:
        if name != vkey.name or key_id != vkey.key_id:
            continue
        if not ed25519_verify(vkey.public_key, text, sig):
            raise VerificationError(f"signature by {name} does not verify")
        verified = True
    if not verified:
        raise VerificationError(f"note carries no signature by {vkey.name}+{vkey.key_id.hex()}")
    return text


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A parsed tlog-checkpoint note text."""
    origin: str
    size: int
    root: bytes
    extensions: tuple


def parse_checkpoint(text):
    """Parse a checkpoint body (tlog-checkpoint, Note text): at least three
    non-empty lines: origin, decimal size without leading zeroes, base64 of
    the 32-byte RFC 6962 root hash; then optional non-empty extension lines."""
    s = text.decode("utf-8")
    if not s.endswith("\n"):
        raise VerificationError("checkpoint text does not end in a newline")
    lines = s[:-1].split("\n")
    if len(lines) < 3 or any(line == "" for line in lines):
        raise VerificationError("checkpoint needs at least 3 lines, none empty")
    origin, size_text, root_text = lines[:3]
    if (not size_text or any(c not in "0123456789" for c in size_text)
            or (size_text != "0" and size_text.startswith("0"))):
        raise VerificationError(f"bad checkpoint size line {size_text!r}")
    size = int(size_text)
    if size >= 2**63:
        raise VerificationError("checkpoint size too large")
    try:
        root = b64decode_strict(root_text)
    except ValueError as e:
        raise VerificationError(f"bad checkpoint root line: {e}") from None
    if len(root) != 32:
        raise VerificationError("checkpoint root is not 32 bytes")
    return Checkpoint(origin, size, root, tuple(lines[3:]))


def verify_checkpoint(note, vkey):
    """Open a checkpoint note with vkey, parse it, and require that its origin
    equals the key name (tlog-checkpoint, Signatures)."""
    cp = parse_checkpoint(open_note(note, vkey))
    if cp.origin != vkey.name:
        raise VerificationError(f"checkpoint origin {cp.origin!r} is not the key name {vkey.name!r}")
    return cp


def format_signed_note(text, vkey, signature):
    """Serialize a note with one signature line (signed-note, Format)."""
    sig_b64 = base64.b64encode(vkey.key_id + signature).decode("ascii")
    return text + f"\n{SIGNATURE_PREFIX}{vkey.name} {sig_b64}\n".encode("utf-8")


# ---------------------------------------------------------------------------
# C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), Ed25519 type
# ---------------------------------------------------------------------------

SIG_TYPE_COSIGNATURE_V1 = 0x04    # signed-note, Signature types: 0x04
MAX_COSIGNATURE_TIME = 2**63 - 1  # Format: the timestamp "MUST NOT exceed 2^63 - 1"
COSIGNATURE_BYTES = 8 + 64        # Format: timestamped_signature = u64 timestamp || signature[64]


def compute_cosigner_key_id(name, public_key):
    """key ID = SHA-256(<name> || "\\n" || 0x04 || 32-byte Ed25519 public key)[:4]
    (tlog-cosignature, Format)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([SIG_TYPE_COSIGNATURE_V1])
                          + public_key).digest()[:4]


def format_cosigner_vkey(name, public_key):
    """A vkey "with signature type 0x04 and the 32-byte Ed25519 witness public
    key as the public key material" (tlog-cosignature, Format), in the
    signed-note vkey form <name>+<hex key ID>+<base64(type || key)>."""
    key_id = compute_cosigner_key_id(name, public_key)
    material = base64.b64encode(bytes([SIG_TYPE_COSIGNATURE_V1]) + public_key).decode("ascii")
    return f"{name}+{key_id.hex()}+{material}"


def parse_cosigner_vkey(text):
    """Parse a cosigner vkey; only signature type 0x04 is accepted, and the
    key id must be the one tlog-cosignature derives."""
    name, sep1, rest = text.partition("+")
    id_hex, sep2, key_b64 = rest.partition("+")
    if not (sep1 and sep2):
        raise ValueError("cosigner key must be <name>+<hex id>+<base64 key>")
    if not is_valid_key_name(name):
        raise ValueError(f"invalid key name {name!r}")
    if len(id_hex) != 8 or any(c not in "0123456789abcdef" for c in id_hex):
        raise ValueError("key id must be 8 lower-case hex digits")
    key = b64decode_strict(key_b64)
    if len(key) != 33 or key[0] != SIG_TYPE_COSIGNATURE_V1:
        raise ValueError("key must be 0x04 || 32-byte Ed25519 public key")
    if ed_point_decode(key[1:]) is None:
        raise ValueError("key is not a valid Ed25519 point")
    wkey = VerifierKey(name, bytes.fromhex(id_hex), key[1:])
    if compute_cosigner_key_id(wkey.name, wkey.public_key) != wkey.key_id:
        raise ValueError("key id does not match SHA-256(name || 0x0A || 0x04 || key)[:4]")
    return wkey


def cosignature_v1_message(timestamp, body):
    """tlog-cosignature, Ed25519 signed message: the header line
    "cosignature/v1", the line "time" SP <decimal, no leading zeroes>, both
    newline-terminated, then the whole checkpoint note body (with its final
    newline, without signature lines)."""
    if not 0 <= timestamp <= MAX_COSIGNATURE_TIME:
        raise ValueError(f"timestamp {timestamp} is outside 0..2^63-1")
    if not body.endswith(b"\n"):
        raise ValueError("a note body ends with a newline")
    return b"cosignature/v1\n" + b"time " + str(timestamp).encode("ascii") + b"\n" + body


def cosignature_v1_line(seed, name, timestamp, body):
    """The note signature line "— <name> base64(key ID || timestamped_signature)"
    where timestamped_signature is the big-endian u64 timestamp followed by
    the Ed25519 signature (RFC 8446 section 3.3 serialisation)."""
    public = ed25519_public_key(seed)
    signature = ed25519_sign(seed, cosignature_v1_message(timestamp, body))
    raw = compute_cosigner_key_id(name, public) + timestamp.to_bytes(8, "big") + signature
    return f"{SIGNATURE_PREFIX}{name} {base64.b64encode(raw).decode('ascii')}\n"


def verify_cosignature_v1(wkey, body, sig):
    """Verify the bytes after the key id of a cosignature line by wkey on the
    note body; return the timestamp or raise VerificationError."""
    if len(sig) != COSIGNATURE_BYTES:
        raise VerificationError(f"cosignature by {wkey.name} is {len(sig)} bytes, not 72")
    timestamp = int.from_bytes(sig[:8], "big")
    if timestamp > MAX_COSIGNATURE_TIME:
        raise VerificationError(f"cosignature by {wkey.name} has a timestamp above 2^63-1")
    if not ed25519_verify(wkey.public_key, cosignature_v1_message(timestamp, body), sig[8:]):
        raise VerificationError(f"cosignature by {wkey.name}+{wkey.key_id.hex()} does not verify")
    return timestamp


def check_cosigned(note, log_vkey, witness_keys, quorum):
    """Verify a checkpoint note under the log key, then require cosignatures
    by at least `quorum` of the witness keys.

    signed-note, Signatures: lines whose (name, key ID) match no witness are
    ignored; a matching line that fails to verify rejects the note.
    tlog-cosignature: "The Ed25519 signed message format doesn't commit to
    the cosigner name", so witnesses are counted by public key.  Returns
    (checkpoint, [(name, key id hex, timestamp)])."""
    cp = verify_checkpoint(note, log_vkey)
    text, sigs = split_note(note)
    known = {(w.name, w.key_id): w for w in witness_keys}
    counted, valid = set(), []
    for name, key_id, sig in sigs:
        wkey = known.get((name, key_id))
        if wkey is None:
            continue
        timestamp = verify_cosignature_v1(wkey, text, sig)
        if wkey.public_key not in counted:
            counted.add(wkey.public_key)
            valid.append((name, key_id.hex(), timestamp))
    if len(valid) < quorum:
        raise VerificationError(f"{len(valid)} valid cosignatures by listed witnesses, {quorum} needed")
    return cp, valid


# ---------------------------------------------------------------------------
# Merkle trees, RFC 9162 section 2.1
# ---------------------------------------------------------------------------

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry):
    """MTH({d0}) = SHA-256(0x00 || d0) (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    """Interior node: SHA-256(0x01 || left || right) (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n):
    """k = the largest power of two smaller than n, for n > 1 (RFC 9162 2.1.1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def mth_of_hashes(hashes):
    """MTH over a list whose items are already hashes (used for a tile's
    subtree, tlog-tiles "Merkle Tree"): the RFC 9162 2.1.1 recursion with
    the leaf step replaced by the identity."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = split_point(n)
    return node_hash(mth_of_hashes(hashes[:k]), mth_of_hashes(hashes[k:]))


class MerkleTree:
    """The leaf hashes of a log, with RFC 9162 MTH, PATH and PROOF over any
    prefix.  Subtree hashes are memoized by (start, end)."""

    def __init__(self, leaf_hashes):
        self.leaves = list(leaf_hashes)
        self._cache = {}

    def mth(self, lo, hi):
        """MTH(D[lo:hi]) (RFC 9162 section 2.1.1)."""
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return self.leaves[lo]
        key = (lo, hi)
        if key not in self._cache:
            k = split_point(n)
            self._cache[key] = node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))
        return self._cache[key]

    def root(self, size):
        """Tree head for the first `size` leaves."""
        return self.mth(0, size)

    def _path(self, m, lo, hi):
        """PATH(m, D[lo:hi]) (RFC 9162 section 2.1.3.1)."""
        n = hi - lo
        if n == 1:
            return []
        k = split_point(n)
        if m < k:
            return self._path(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self._path(m - k, lo + k, hi) + [self.mth(lo, lo + k)]

    def inclusion_path(self, index, size):
        """Audit path for leaf `index` in the tree of `size` leaves."""
        if not 0 <= index < size <= len(self.leaves):
            raise ValueError("inclusion path out of range")
        return self._path(index, 0, size)

    def _subproof(self, m, lo, hi, complete):
        """SUBPROOF(m, D[lo:hi], b) (RFC 9162 section 2.1.4.1)."""
        n = hi - lo
        if m == n:
            return [] if complete else [self.mth(lo, hi)]
        k = split_point(n)
        if m <= k:
            return self._subproof(m, lo, lo + k, complete) + [self.mth(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]

    def consistency_proof(self, first, second):
        """PROOF(first, D[second]) = SUBPROOF(first, D[second], true)
        (RFC 9162 section 2.1.4.1); empty for first == second or first == 0."""
        if not 0 <= first <= second <= len(self.leaves):
            raise ValueError("consistency proof out of range")
        if first == 0 or first == second:
            return []
        return self._subproof(first, 0, second, True)


def verify_inclusion(index, size, leaf, path, root):
    """Verify an inclusion proof, RFC 9162 section 2.1.3.2, steps 1-5."""
    if index >= size:                                               # step 1
        return False
    if any(len(p) != 32 for p in path):
        return False
    fn, sn = index, size - 1                                        # step 2
    r = leaf                                                        # step 3
    for p in path:                                                  # step 4
        if sn == 0:                                                 # 4a
            return False
        if fn & 1 or fn == sn:                                      # 4b
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1                                                    # 4c
        sn >>= 1
    return sn == 0 and r == root                                    # step 5


def verify_consistency(first, second, first_hash, second_hash, path):
    """Verify a consistency proof, RFC 9162 section 2.1.4.2, steps 1-7.

    The RFC algorithm covers 0 < first < second.  Outside it only the
    trivial cases are accepted, with an empty path: first == second with
    equal hashes (SUBPROOF(m, D[m], true) = {}), and first == 0 with the
    empty-tree hash."""
    if any(len(c) != 32 for c in path):
        return False
    if first == second:
        return not path and first_hash == second_hash
    if first == 0:
        return not path and first_hash == EMPTY_ROOT
    if not 0 < first < second:
        return False
    if not path:                                                    # step 1
        return False
    path = list(path)
    if first & (first - 1) == 0:                                    # step 2
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1                                  # step 3
    while fn & 1:                                                   # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]                                               # step 5
    for c in path[1:]:                                              # step 6
        if sn == 0:                                                 # 6a
            return False
        if fn & 1 or fn == sn:                                      # 6b
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1                                                    # 6c
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0       # step 7


# ---------------------------------------------------------------------------
# C2SP tlog-tiles (https://c2sp.org/tlog-tiles)
# ---------------------------------------------------------------------------

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT       # 256 hashes in a full tile
HASH_SIZE = 32


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tlog-tiles resource: level is None for an entry bundle."""
    level: object
    index: int
    width: int

    @property
    def is_bundle(self):
        """True for `tile/entries/...`."""
        return self.level is None

    @property
    def path(self):
        """`tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`."""
        head = "tile/entries" if self.is_bundle else f"tile/{self.level}"
        tail = "" if self.width == TILE_WIDTH else f".p/{self.width}"
        return f"{head}/{encode_tile_index(self.index)}{tail}"


def encode_tile_index(n):
    """Encode N as zero-padded 3-digit path elements, all but the last
    prefixed with 'x' (tlog-tiles, Merkle Tree): 1234067 -> x001/x234/067."""
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def tiles_for_size(size):
    """All tiles of a tree of `size` leaves (tlog-tiles, Partial Tiles): at
    each level l while size >> 8l > 0, full tiles for every complete block
    of 256 and one partial tile of width (size >> 8l) mod 256 if non-zero;
    entry bundles follow the level-0 rule.  Bundles come first."""
    bundles, hash_tiles = [], []
    level = 0
    while size >> (TILE_HEIGHT * level):
        count = size >> (TILE_HEIGHT * level)
        full, partial = divmod(count, TILE_WIDTH)
        widths = [TILE_WIDTH] * full + ([partial] if partial else [])
        for n, w in enumerate(widths):
            hash_tiles.append(Tile(level, n, w))
            if level == 0:
                bundles.append(Tile(None, n, w))
        level += 1
    return bundles + hash_tiles


def parse_entry_bundle(data, width):
    """Split an entry bundle into exactly `width` entries, each a big-endian
    uint16 length then that many bytes (tlog-tiles, Log entries)."""
    entries, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise VerificationError("truncated entry length")
        n = int.from_bytes(data[pos:pos + 2], "big")
        if pos + 2 + n > len(data):
            raise VerificationError("truncated entry")
        entries.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    if len(entries) != width:
        raise VerificationError(f"bundle holds {len(entries)} entries, expected {width}")
    return entries


def split_hash_tile(data, width):
    """Split a hash tile into `width` 32-byte hashes (tlog-tiles, Merkle Tree)."""
    if len(data) != width * HASH_SIZE:
        raise VerificationError(f"tile is {len(data)} bytes, expected {width * HASH_SIZE}")
    return [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def compute_levels(leaf_hashes):
    """Tile-level hashes from the leaves: level 0 is the leaf hashes and each
    level-l hash is the MTH of 256 consecutive level-(l-1) hashes, i.e.
    MTH(D[j*256^l : (j+1)*256^l]) (tlog-tiles, Merkle Tree)."""
    levels = [list(leaf_hashes)]
    while len(levels[-1]) >= TILE_WIDTH:
        below = levels[-1]
        levels.append([mth_of_hashes(below[j:j + TILE_WIDTH])
                       for j in range(0, len(below) - TILE_WIDTH + 1, TILE_WIDTH)])
    return levels


# ---------------------------------------------------------------------------
# HTTP (127.0.0.1 only)
# ---------------------------------------------------------------------------

MAX_RESOURCE_BYTES = 32 << 20
HTTP_TIMEOUT = 30


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects, so that we never leave the given host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Fetcher:
    """GETs `<base>/<path>` from a log at http://127.0.0.1:PORT."""

    def __init__(self, base_url):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "http" or parsed.hostname != "127.0.0.1":
            raise UnableToCheck(f"refusing URL {base_url!r}: only http://127.0.0.1 is allowed")
        if parsed.query or parsed.fragment:
            raise UnableToCheck("URL must not have a query or fragment")
        self.base = base_url.rstrip("/")
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    def get(self, path):
        """Return the body of a 200 response (gunzipped if the log used
        Content-Encoding: gzip, which tlog-tiles allows without negotiation).
        404/410 is a VerificationError (a resource the log must serve is
        missing); anything else that fails is UnableToCheck."""
        url = f"{self.base}/{path}"
        req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip, identity"})
        try:
            with self.opener.open(req, timeout=HTTP_TIMEOUT) as resp:
                body = resp.read(MAX_RESOURCE_BYTES + 1)
                encoding = (resp.headers.get("Content-Encoding") or "identity").lower()
        except urllib.error.HTTPError as e:
            if e.code in (404, 410):
                raise VerificationError(f"{path}: HTTP {e.code} (log does not serve it)") from None
            raise UnableToCheck(f"{path}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise UnableToCheck(f"{path}: {e}") from None
        if len(body) > MAX_RESOURCE_BYTES:
            raise UnableToCheck(f"{path}: response too large")
        if encoding == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as e:
                raise VerificationError(f"{path}: bad gzip body: {e}") from None
        elif encoding != "identity":
            raise UnableToCheck(f"{path}: unsupported Content-Encoding {encoding}")
        return body


# ---------------------------------------------------------------------------
# The `check` command
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class CheckReport:
    """Outcome of one run of `check`."""
    size: object = None
    root: object = None
    errors: list = dataclasses.field(default_factory=list)
    unable: bool = False
    notes: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        """True if nothing failed."""
        return not self.errors

    @property
    def exit_code(self):
        """0 verified, 1 verification failure, 2 could not check."""
        return 0 if self.ok else (2 if self.unable else 1)


def sample_indexes(size):
    """Deterministic sample of leaf indexes: first, last, and a few in
    between, including tile boundaries."""
    candidates = [0, 1, 255, 256, 257, size // 4, size // 3, size // 2,
                  (2 * size) // 3, (3 * size) // 4, size - 2, size - 1]
    return sorted({i for i in candidates if 0 <= i < size})


def fetch_tiles(fetcher, size):
    """Fetch every entry bundle and hash tile of a tree of `size` leaves.
    Missing resources are collected and reported together."""
    tiles = tiles_for_size(size)
    data, missing = {}, []
    for tile in tiles:
        try:
            data[tile] = fetcher.get(tile.path)
        except VerificationError as e:
            missing.append(str(e))
    if missing:
        raise VerificationError("; ".join(missing))
    return tiles, data


def leaves_from_bundles(tiles, data):
    """Parse all entry bundles in order and return their leaf hashes."""
    hashes, errors = [], []
    for tile in tiles:
        if tile.is_bundle:
            try:
                hashes.extend(leaf_hash(e) for e in parse_entry_bundle(data[tile], tile.width))
            except VerificationError as e:
                errors.append(f"{tile.path}: {e}")
    if errors:
        raise VerificationError("; ".join(errors))
    return hashes


def check_hash_tiles(tiles, data, levels, tree):
    """Compare every served hash tile with the hashes recomputed from the
    entries; also cross-check each recomputed level hash against the RFC 9162
    MTH of its leaf range (tlog-tiles formal definition).  Returns errors."""
    errors = []
    for tile in tiles:
        if tile.is_bundle:
            continue
        try:
            served = split_hash_tile(data[tile], tile.width)
        except VerificationError as e:
            errors.append(f"{tile.path}: {e}")
            continue
        start = tile.index * TILE_WIDTH
        expected = levels[tile.level][start:start + tile.width] if tile.level < len(levels) else []
        span = TILE_WIDTH ** tile.level
        for i, h in enumerate(expected):
            j = start + i
            if h != tree.mth(j * span, (j + 1) * span):
                errors.append(f"{tile.path}: internal inconsistency at hash {i}")
        bad = [i for i in range(tile.width) if i >= len(expected) or served[i] != expected[i]]
        if bad:
            what = "leaf hash" if tile.level == 0 else "subtree hash"
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            errors.append(f"{tile.path}: {what} {bad[0]} (index {start + bad[0]} at level "
                          f"{tile.level}) differs from the recomputed value{more}")
    return errors


def check_inclusion(tree, size, root):
    """Build RFC 9162 audit paths for a sample of leaves and verify them with
    the section 2.1.3.2 algorithm against the checkpoint root."""
    errors, indexes = [], sample_indexes(size)
    for i in indexes:
        path = tree.inclusion_path(i, size)
        if not verify_inclusion(i, size, tree.leaves[i], path, root):
            errors.append(f"inclusion proof for leaf {i} does not verify against the checkpoint root")
    return errors, len(indexes)


def check_consistency(tree, prev, cp):
    """Check an earlier checkpoint against the current one: prev.size <=
    cp.size, MTH of the first prev.size leaves equals prev.root, and the
    RFC 9162 consistency proof built from the leaves verifies (2.1.4.2)."""
    if prev.size > cp.size:
        return [f"previous checkpoint size {prev.size} is larger than current size {cp.size}"]
    errors = []
    if tree.root(prev.size) != prev.root:
        errors.append(f"MTH of the first {prev.size} leaves is not the previous checkpoint's root")
    proof = tree.consistency_proof(prev.size, cp.size)
    if not verify_consistency(prev.size, cp.size, prev.root, cp.root, proof):
        errors.append(f"consistency proof {prev.size} -> {cp.size} does not verify")
    return errors


def run_check(base_url, vkey, prev_note=None):
    """The whole `check` procedure; never raises, returns a CheckReport."""
    report = CheckReport()
    try:
        prev = None
        if prev_note is not None:
            try:
                prev = verify_checkpoint(prev_note, vkey)
            except VerificationError as e:
                raise UnableToCheck(f"--prev note does not verify: {e}") from None
        fetcher = Fetcher(base_url)
        cp = verify_checkpoint(fetcher.get("checkpoint"), vkey)
        report.size, report.root = cp.size, cp.root.hex()
        tiles, data = fetch_tiles(fetcher, cp.size)
        tree = MerkleTree(leaves_from_bundles(tiles, data))
        if len(tree.leaves) != cp.size:
            raise VerificationError(f"bundles hold {len(tree.leaves)} entries, checkpoint says {cp.size}")
        levels = compute_levels(tree.leaves)
        report.errors += check_hash_tiles(tiles, data, levels, tree)
        if tree.root(cp.size) != cp.root:
            report.errors.append(f"root recomputed from the entries ({tree.root(cp.size).hex()}) "
                                 f"is not the checkpoint root")
        inclusion_errors, n_incl = check_inclusion(tree, cp.size, cp.root)
        report.errors += inclusion_errors
        n_bundles = sum(1 for t in tiles if t.is_bundle)
        report.notes.append(f"{cp.size} entries, {n_bundles} entry bundles, "
                            f"{len(tiles) - n_bundles} hash tiles, {n_incl} inclusion proofs")
        if prev is not None:
            report.errors += check_consistency(tree, prev, cp)
            report.notes.append(f"consistency from size {prev.size}")
    except UnableToCheck as e:
        report.unable = True
        report.errors.append(str(e))
    except VerificationError as e:
        report.errors.append(str(e))
    except Exception as e:  # a checker bug must never look like success
        report.unable = True
        report.errors.append(f"internal error in the checker: {type(e).__name__}: {e}")
    return report


def summary_line(report):
    """One-line human summary of a CheckReport."""
    head = f"size={report.size} root={report.root}"
    if report.ok:
        return f"OK {head}: verified " + "; ".join(report.notes)
    kind = "ERROR (could not check)" if report.unable else "FAIL"
    return f"{kind} {head}: {len(report.errors)} error(s): " + " | ".join(report.errors)


def cmd_check(args):
    """CLI entry for `check`: read inputs, run, print, return exit code."""
    report = CheckReport()
    try:
        with open(args.vkey, encoding="utf-8") as f:
            vkey_text = f.read().strip()
        try:
            vkey = parse_verifier_key(vkey_text)
        except ValueError as e:
            raise UnableToCheck(f"bad verifier key in {args.vkey}: {e}") from None
        prev_note = None
        if args.prev:
            with open(args.prev, "rb") as f:
                prev_note = f.read()
        report = run_check(args.url, vkey, prev_note)
    except (OSError, UnicodeDecodeError) as e:
        report.unable = True
        report.errors.append(f"cannot read input: {e}")
    except UnableToCheck as e:
        report.unable = True
        report.errors.append(str(e))
    if args.json:
        print(json.dumps({"ok": report.ok, "size": report.size,
                          "root": report.root, "errors": report.errors}))
    else:
        print(summary_line(report))
    return report.exit_code


def cmd_cosign(args):
    """CLI entry for `cosign`: print the witness's vkey line, then the
    cosignature/v1 line for the body file at the given time."""
    try:
        seed = bytes.fromhex(args.seed)
        if len(seed) != 32:
            raise ValueError("the seed is 32 bytes (64 hex digits)")
        if not is_valid_key_name(args.name):
            raise ValueError(f"invalid key name {args.name!r}")
        with open(args.body, "rb") as f:
            body = f.read()
        line = cosignature_v1_line(seed, args.name, args.time, body)
    except (OSError, ValueError) as e:
        print(f"cosign: {e}", file=sys.stderr)
        return 2
    print(format_cosigner_vkey(args.name, ed25519_public_key(seed)))
    sys.stdout.write(line)
    return 0


def cmd_check_cosigned(args):
    """CLI entry for `check-cosigned`: one JSON object; exit 0 verified with a
    quorum, 1 verification failed, 2 bad input."""
    result = {"ok": False, "size": None, "cosignatures": [], "errors": []}
    code = 2
    try:
        with open(args.log_vkey, encoding="utf-8") as f:
            log_vkey = parse_verifier_key(f.read().strip())
        witnesses = [parse_cosigner_vkey(w) for w in args.witness]
        with open(args.note, "rb") as f:
            note = f.read()
        code = 1
        cp, valid = check_cosigned(note, log_vkey, witnesses, args.quorum)
        result.update(ok=True, size=cp.size,
                      cosignatures=[{"key": f"{n}+{k}", "time": t} for n, k, t in valid])
        code = 0
    except (OSError, ValueError, UnicodeDecodeError) as e:
        result["errors"].append(f"bad input: {e}")
    except VerificationError as e:
        result["errors"].append(str(e))
    print(json.dumps(result))
    return code


# ---------------------------------------------------------------------------
# The `selftest` command
# ---------------------------------------------------------------------------

class SelfTest:
    """Collects named checks with counts and failures, and prints them."""

    def __init__(self):
        self.failures = []
        self.sections = []

    def section(self, name, count, failures):
        """Record one group of checks."""
        self.sections.append((name, count, list(failures)))
        status = "PASS" if not failures else "FAIL"
        print(f"[{status}] {name}: {count} checked" +
              (f", {len(failures)} failed" if failures else ""))
        for f in failures[:10]:
            print(f"        - {f}")
        self.failures += failures


# RFC 8032 section 7.1 TEST 1 and TEST 2: (secret seed, public key, message, signature).
RFC8032_VECTORS = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
]


def flip_bit(data, byte_index, bit=0):
    """Return a copy of data with one bit flipped."""
    b = bytearray(data)
    b[byte_index] ^= 1 << bit
    return bytes(b)


def selftest_ed25519(st, cps):
    """RFC 8032 7.1 vectors and the vectors' key: derivation, deterministic
    signing and verification, plus negative checks."""
    fails, n = [], 0
    for seed, pub, msg, sig in RFC8032_VECTORS:
        seed, pub, msg, sig = (bytes.fromhex(x) for x in (seed, pub, msg, sig))
        n += 4
        if ed25519_public_key(seed) != pub:
            fails.append(f"RFC 8032 public key derivation {pub.hex()[:16]}")
        if ed25519_sign(seed, msg) != sig:
            fails.append(f"RFC 8032 signature {pub.hex()[:16]}")
        if not ed25519_verify(pub, msg, sig):
            fails.append(f"RFC 8032 verify {pub.hex()[:16]}")
        n += 1
        if ed25519_verify(pub, msg + b"x", sig) or ed25519_verify(pub, msg, flip_bit(sig, 5)):
            fails.append(f"RFC 8032 accepted a bad signature {pub.hex()[:16]}")
        s_plus_l = int.from_bytes(sig[32:], "little") + ED_L     # 5.1.7 step 1: S < L
        if ed25519_verify(pub, msg, sig[:32] + s_plus_l.to_bytes(32, "little")):
            fails.append(f"RFC 8032 accepted non-canonical S (S + L) {pub.hex()[:16]}")
    seed = bytes.fromhex(cps["ed25519_seed_hex"])
    n += 1
    if ed25519_public_key(seed).hex() != cps["ed25519_public_key_hex"]:
        fails.append("vectors' seed does not give ed25519_public_key_hex")
    st.section("Ed25519 (RFC 8032 7.1 TEST 1-2 + vector key derivation)", n, fails)


def selftest_merkle(st, rfc):
    """Roots, inclusion and consistency vectors: verification and proof
    construction must match the Go reference byte for byte."""
    tree = MerkleTree(leaf_hash(x.encode("utf-8")) for x in rfc["leaves"])
    roots = {r["size"]: bytes.fromhex(r["root"]) for r in rfc["roots"]}
    fails = []
    if EMPTY_ROOT.hex() != rfc["empty_root"] or tree.root(0) != EMPTY_ROOT:
        fails.append("empty root")
    for size, root in roots.items():
        if tree.root(size) != root:
            fails.append(f"root of size {size}")
    st.section(f"RFC 9162 MTH: roots recomputed ({len(roots)} sizes + empty tree)",
               len(roots) + 1, fails)

    def root_of(size):
        return roots.get(size, tree.root(size))

    fails, neg = [], 0
    for v in rfc["inclusion"]:
        i, size, leaf = v["index"], v["size"], bytes.fromhex(v["leaf_hash"])
        proof = [bytes.fromhex(p) for p in v["proof"]]
        tag = f"inclusion index={i} size={size}"
        if leaf != tree.leaves[i]:
            fails.append(f"{tag}: leaf hash")
        if not verify_inclusion(i, size, leaf, proof, root_of(size)):
            fails.append(f"{tag}: vector proof rejected")
        if tree.inclusion_path(i, size) != proof:
            fails.append(f"{tag}: constructed path differs")
        # (A different size with the same branch shape legitimately verifies:
        # the size is bound by the signed checkpoint, not by the path.)
        bad_inputs = [(i, size, proof + [leaf]), (size, size, proof)]
        if proof:
            bad_inputs += [(i, size, [flip_bit(proof[0], 0)] + proof[1:]), (i, size, proof[:-1])]
        if size > 1:
            bad_inputs.append(((i + 1) % size, size, proof))
        for bi, bs, bp in bad_inputs:
            neg += 1
            if verify_inclusion(bi, bs, leaf, bp, root_of(size)):
                fails.append(f"{tag}: accepted a tampered proof (index={bi} size={bs} len={len(bp)})")
    st.section(f"RFC 9162 inclusion: {len(rfc['inclusion'])} vector proofs verified and "
               f"rebuilt identically; {neg} tampered proofs rejected",
               len(rfc["inclusion"]) + neg, fails)

    fails, neg = [], 0
    for v in rfc["consistency"]:
        m, n = v["old_size"], v["new_size"]
        proof = [bytes.fromhex(p) for p in v["proof"]]
        tag = f"consistency {m}->{n}"
        if not verify_consistency(m, n, root_of(m), root_of(n), proof):
            fails.append(f"{tag}: vector proof rejected")
        if tree.consistency_proof(m, n) != proof:
            fails.append(f"{tag}: constructed proof differs")
        bad_inputs = [(m, n, root_of(m), flip_bit(root_of(n), 0), proof),
                      (m, n, flip_bit(root_of(m), 0), root_of(n), proof),
                      (m, n, root_of(m), root_of(n), proof + [root_of(m)])]
        if proof:
            bad_inputs += [(m, n, root_of(m), root_of(n), [flip_bit(proof[-1], 3)] + proof[:-1]),
                           (m, n, root_of(m), root_of(n), proof[:-1])]
        for bm, bn, bh1, bh2, bp in bad_inputs:
            neg += 1
            if verify_consistency(bm, bn, bh1, bh2, bp):
                fails.append(f"{tag}: accepted a tampered proof")
    st.section(f"RFC 9162 consistency: {len(rfc['consistency'])} vector proofs verified and "
               f"rebuilt identically; {neg} tampered proofs rejected",
               len(rfc["consistency"]) + neg, fails)


def selftest_checkpoints(st, cps):
    """Signed checkpoints: the verifier key, every signed note, byte-exact
    re-signing, every must_reject note, and unknown-key handling."""
    fails = []
    vkey = parse_verifier_key(cps["verifier_key"])
    seed = bytes.fromhex(cps["ed25519_seed_hex"])
    if (vkey.name != cps["origin"] or vkey.key_id.hex() != cps["key_id_hex"]
            or vkey.public_key.hex() != cps["ed25519_public_key_hex"]):
        fails.append("verifier key fields")
    for c in cps["checkpoints"]:
        note, tag = c["signed_note"].encode("utf-8"), f"checkpoint size {c['size']}"
        try:
            cp = verify_checkpoint(note, vkey)
            if (cp.origin, cp.size, cp.root.hex()) != (cps["origin"], c["size"], c["root"]):
                fails.append(f"{tag}: parsed fields differ")
        except VerificationError as e:
            fails.append(f"{tag}: rejected: {e}")
        body = c["body"].encode("utf-8")
        if format_signed_note(body, vkey, ed25519_sign(seed, body)) != note:
            fails.append(f"{tag}: re-signing does not give the same bytes")
        other = "\u2014 other.example/key " + base64.b64encode(bytes(68)).decode() + "\n"
        same_name = "\u2014 %s %s\n" % (vkey.name, base64.b64encode(b"\x00\x00\x00\x01" + bytes(64)).decode())
        for extra in (other, same_name):
            try:
                verify_checkpoint(note + extra.encode("utf-8"), vkey)
            except VerificationError as e:
                fails.append(f"{tag}: unknown-key signature not ignored: {e}")
    n_ok = len(cps["checkpoints"])
    st.section(f"signed checkpoints: {n_ok} verified, parsed and re-signed byte-exactly; "
               f"{2 * n_ok} with extra unknown-key signatures still verify", 3 * n_ok + 1, fails)

    fails = []
    body = cps["checkpoints"][-1]["body"].encode("utf-8")
    good = cps["checkpoints"][-1]["signed_note"].encode("utf-8")
    wrong_key = VerifierKey(vkey.name, vkey.key_id, ed25519_public_key(b"\x01" * 32))
    extra_rejects = [
        ("body with no blank line", body),
        ("origin differs from key name",
         format_signed_note(body.replace(b"events", b"other", 1), vkey,
                            ed25519_sign(seed, body.replace(b"events", b"other", 1)))),
        ("only a foreign-key signature",
         body + "\n\u2014 other.example/key ".encode() + good.rsplit(b" ", 1)[1]),
        ("known key, bad signature next to a good one",
         good + format_signed_note(b"", vkey, flip_bit(ed25519_sign(seed, body), 0))[1:]),
        ("control character in body", good.replace(b"\n", b"\r\n", 1)),
    ]
    for i, note in enumerate(cps["must_reject"]):
        try:
            verify_checkpoint(note.encode("utf-8"), vkey)
            fails.append(f"must_reject[{i}] was accepted")
        except VerificationError:
            pass
    for what, note in extra_rejects:
        try:
            verify_checkpoint(note, vkey)
            fails.append(f"extra reject '{what}' was accepted")
        except VerificationError:
            pass
    try:
        open_note(good, wrong_key)
        fails.append("note accepted under a different public key with the same name+id")
    except VerificationError:
        pass
    for bad in (cps["verifier_key"].replace("+b9", "+a9", 1), cps["verifier_key"][:-2] + "AA",
                cps["verifier_key"].replace("+", " ", 1)):
        try:
            parse_verifier_key(bad)
            fails.append(f"bad verifier key accepted: {bad}")
        except ValueError:
            pass
    st.section(f"signed checkpoints: {len(cps['must_reject'])} must_reject notes rejected, "
               f"{len(extra_rejects) + 1} extra bad notes and 3 bad verifier keys rejected",
               len(cps["must_reject"]) + len(extra_rejects) + 4, fails)


def selftest_cosignature(st):
    """tlog-cosignature: the spec's examples, a published cosigner vkey,
    signing and verification round trips, tampering, and quorum counting."""
    fails, n = [], 0
    spec_body = (b"example.com/behind-the-sofa\n20852163\n"
                 b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
    n += 1
    if cosignature_v1_message(1679315147, spec_body) != b"cosignature/v1\ntime 1679315147\n" + spec_body:
        fails.append("spec example signed message")
    # The spec's example cosigned checkpoint: the witness line's key ID and
    # timestamp (its message example uses the same time).
    raw = b64decode_strict("jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
                           "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==")
    n += 1
    if (len(raw), raw[:4].hex(), int.from_bytes(raw[4:12], "big")) != (76, "8d66cf3f", 1679315147):
        fails.append("spec example cosignature line fields")
    # A native cosignature/v1 vkey from transparency-dev/formats' tests.
    n += 2
    try:
        wk = parse_cosigner_vkey("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
        if format_cosigner_vkey(wk.name, wk.public_key) != \
                "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2":
            fails.append("published cosigner vkey does not re-encode")
    except ValueError as e:
        fails.append(f"published cosigner vkey rejected: {e}")
    try:
        parse_cosigner_vkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
        fails.append("an 0x01 note key was accepted as a cosigner key")
    except ValueError:
        pass

    seed, name = bytes(range(32)), "witness.example/selftest"
    public = ed25519_public_key(seed)
    wkey = parse_cosigner_vkey(format_cosigner_vkey(name, public))
    log_seed, origin = b"\x07" * 32, "log.example/selftest"
    log_pub = ed25519_public_key(log_seed)
    log_vkey = VerifierKey(origin, compute_key_id(origin, log_pub), log_pub)
    body = f"{origin}\n42\n{base64.b64encode(bytes(32)).decode()}\n".encode()
    note = format_signed_note(body, log_vkey, ed25519_sign(log_seed, body))
    line = cosignature_v1_line(seed, name, 1700000000, body)
    raw = b64decode_strict(line[len(SIGNATURE_PREFIX) + len(name) + 1:-1])
    n += 1
    try:
        if verify_cosignature_v1(wkey, body, raw[4:]) != 1700000000:
            fails.append("round trip: wrong timestamp")
    except VerificationError as e:
        fails.append(f"round trip rejected: {e}")
    tampered = [
        ("body changed", body.replace(b"42", b"43"), raw[4:]),
        ("timestamp changed", body, (1700000001).to_bytes(8, "big") + raw[12:]),
        ("signature bit flipped", body, flip_bit(raw[4:], 40)),
        ("truncated", body, raw[4:-1]),
        ("timestamp above 2^63-1", body, (2**63).to_bytes(8, "big") + raw[12:]),
    ]
    for what, b, sig in tampered:
        n += 1
        try:
            verify_cosignature_v1(wkey, b, sig)
            fails.append(f"tampered cosignature accepted: {what}")
        except VerificationError:
            pass

    other_seed = bytes(range(1, 33))
    other = parse_cosigner_vkey(format_cosigner_vkey("witness.example/other",
                                                     ed25519_public_key(other_seed)))
    alias = parse_cosigner_vkey(format_cosigner_vkey("witness.example/alias", public))
    two = (line + cosignature_v1_line(seed, name, 1700000005, body)
           + cosignature_v1_line(other_seed, "witness.example/other", 1, body)
           + cosignature_v1_line(seed, "witness.example/alias", 1700000000, body))
    cosigned = note + two.encode("utf-8")
    cases = [
        ("two witnesses, quorum 2", [wkey, other], 2, 2),
        ("duplicate lines count once", [wkey], 1, 1),
        ("one key under two names counts once", [wkey, alias], 2, None),
        ("unknown witnesses ignored", [other], 1, 1),
        ("quorum not reached", [wkey, other], 3, None),
    ]
    for what, keys, k, expect in cases:
        n += 1
        try:
            _, valid = check_cosigned(cosigned, log_vkey, keys, k)
            if expect is None or len(valid) != expect:
                fails.append(f"quorum: {what}: accepted with {len(valid)}")
        except VerificationError as e:
            if expect is not None:
                fails.append(f"quorum: {what}: rejected: {e}")
    n += 1
    bad = note + cosignature_v1_line(seed, name, 5, body.replace(b"42", b"43")).encode()
    try:
        check_cosigned(bad, log_vkey, [wkey], 0)
        fails.append("a listed witness's invalid cosignature was not rejected")
    except VerificationError:
        pass
    st.section("tlog-cosignature: spec examples, published vkey, round trip, "
               f"{len(tampered)} tamperings, quorum counting", n, fails)


def selftest_tile_layout(st, tiles_json):
    """Tile enumeration against tiles.json and the tlog-tiles examples."""
    fails = []
    if encode_tile_index(1234067) != "x001/x234/067" or encode_tile_index(0) != "000" \
            or encode_tile_index(1000) != "x001/000":
        fails.append("encode_tile_index")
    mine = [t.path for t in tiles_for_size(tiles_json["size"])]
    theirs = [t["path"] for t in tiles_json["tiles"]]
    if sorted(mine) != sorted(theirs):
        fails.append(f"tile set for size {tiles_json['size']}: {sorted(mine)} != {sorted(theirs)}")
    t70k = [t for t in tiles_for_size(70000) if not t.is_bundle]
    want = {(0, 256): 273, (0, 112): 1, (1, 256): 1, (1, 17): 1, (2, 1): 1}
    got = {}
    for t in t70k:
        got[(t.level, t.width)] = got.get((t.level, t.width), 0) + 1
    if got != want:
        fails.append(f"spec example size 70000: {got}")
    if [t.path for t in tiles_for_size(256)] != ["tile/entries/000", "tile/0/000", "tile/1/000.p/1"]:
        fails.append("spec example size 256")
    if tiles_for_size(0):
        fails.append("size 0 must have no tiles")
    st.section(f"tlog-tiles layout: {len(theirs)} paths of tiles.json enumerated exactly; "
               f"spec examples (index encoding, sizes 70000, 256, 0)", 5, fails)


class TileServer:
    """A tlog-tiles log served from a dict by http.server on 127.0.0.1:0, in
    a background thread.  The socket is bound and listening on return."""

    def __init__(self, resources):
        self.resources = resources
        store = self.resources

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path.lstrip("/")
                body = store.get(path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                ctype = ("text/plain; charset=utf-8" if path == "checkpoint"
                         else "application/octet-stream")
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        """Stop serving and release the port."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def run_cli(argv):
    """Run main(argv) in-process, capturing stdout; return (code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue()


def selftest_http(st, tiles_json, cps):
    """Serve tiles.json plus the size-1000 checkpoint and run the real
    `check` CLI path against it, then against damaged variants."""
    vkey = parse_verifier_key(cps["verifier_key"])
    seed = bytes.fromhex(cps["ed25519_seed_hex"])
    by_size = {c["size"]: c for c in cps["checkpoints"]}
    top = by_size[tiles_json["size"]]
    resources = {t["path"]: bytes.fromhex(t["hex"]) for t in tiles_json["tiles"]}
    resources["checkpoint"] = top["signed_note"].encode("utf-8")

    def signed(size, root):
        body = f"{vkey.name}\n{size}\n{base64.b64encode(root).decode()}\n".encode()
        return format_signed_note(body, vkey, ed25519_sign(seed, body))

    server = TileServer(resources)
    fails, count = [], 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            vkey_file = os.path.join(tmp, "vkey")
            with open(vkey_file, "w", encoding="utf-8") as f:
                f.write(cps["verifier_key"] + "\n")

            def check(expect, label, prev=None, url=None, vk=vkey_file, must_say=()):
                nonlocal count
                count += 1
                argv = ["check", "--url", url or server.url, "--vkey", vk, "--json"]
                if prev is not None:
                    prev_file = os.path.join(tmp, f"prev{count}")
                    with open(prev_file, "wb") as f:
                        f.write(prev)
                    argv += ["--prev", prev_file]
                code, out = run_cli(argv)
                try:
                    result = json.loads(out)
                except ValueError:
                    fails.append(f"{label}: output is not JSON: {out!r}")
                    return
                if code != expect or result["ok"] != (expect == 0):
                    fails.append(f"{label}: exit {code}, expected {expect}: {result['errors']}")
                elif expect == 0 and (result["size"], result["root"]) != (top["size"], top["root"]):
                    fails.append(f"{label}: reported size/root differ")
                else:
                    for needle in ([must_say] if isinstance(must_say, str) else must_say):
                        if not any(needle in e for e in result["errors"]):
                            fails.append(f"{label}: errors do not mention {needle!r}: {result['errors']}")

            check(0, "good log")
            for size in sorted(by_size):
                check(0, f"good log, --prev size {size}", prev=by_size[size]["signed_note"].encode())
            passes = count

            check(1, "prev with a forged root", prev=signed(500, bytes(32)), must_say="consistency")
            check(1, "prev larger than the tree", prev=signed(1001, bytes(32)), must_say="larger")
            check(2, "prev not signed by the key", prev=cps["must_reject"][0].encode())
            bundle = "tile/entries/001"
            original = resources[bundle]
            # Byte 8 is inside the first entry's data ("event 256" -> "event 356").
            resources[bundle] = flip_bit(original, 8, 0)
            check(1, f"one bit flipped in an entry of {bundle}",
                  must_say=["tile/0/001: leaf hash 0 ", "root recomputed from the entries"])
            # Byte 0 is the high byte of the first entry's uint16 length.
            resources[bundle] = flip_bit(original, 0, 0)
            check(1, f"one bit flipped in a length prefix of {bundle}", must_say=bundle)
            resources[bundle] = original
            for path in ("tile/1/000.p/3", "tile/0/003.p/232"):
                original = resources[path]
                resources[path] = flip_bit(original, 40, 7)
                check(1, f"one bit flipped in {path}", must_say=path)
                resources[path] = original
            original = resources.pop("tile/0/002")
            check(1, "tile/0/002 missing", must_say="tile/0/002")
            resources["tile/0/002"] = original
            original = resources["checkpoint"]
            for i, bad in enumerate(cps["must_reject"]):
                resources["checkpoint"] = bad.encode("utf-8")
                check(1, f"served checkpoint is must_reject[{i}]")
            resources["checkpoint"] = signed(1000, bytes(32))
            check(1, "validly signed checkpoint with a wrong root",
                  must_say=["root recomputed from the entries", "inclusion proof for leaf 0 "])
            resources["checkpoint"] = original
            bad_vkey = os.path.join(tmp, "badvkey")
            with open(bad_vkey, "w", encoding="utf-8") as f:
                f.write(cps["verifier_key"].replace("+b9", "+a9", 1))
            check(2, "malformed verifier key", vk=bad_vkey)
            check(2, "missing verifier key file", vk=os.path.join(tmp, "nonexistent"))
            check(2, "non-loopback URL refused", url="http://example.com")
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                closed_url = f"http://127.0.0.1:{s.getsockname()[1]}"
            check(2, "nothing listening", url=closed_url)
            check(0, "good log again after restoring every resource")
    finally:
        server.close()
    st.section(f"HTTP check over 127.0.0.1: {passes} runs on the intact log pass "
               f"(with and without --prev), {count - passes - 1} damaged/bad-input runs fail "
               f"with the right exit code, 1 final re-run passes", count, fails)


def cmd_selftest(args):
    """CLI entry for `selftest`: run every self-check against the vectors."""
    try:
        def load(name):
            with open(os.path.join(args.vectors, name), encoding="utf-8") as f:
                return json.load(f)
        rfc, cps, tiles_json = load("rfc6962.json"), load("checkpoints.json"), load("tiles.json")
    except (OSError, ValueError) as e:
        print(f"selftest: cannot read vectors: {e}")
        return 2
    st = SelfTest()
    for step in (lambda: selftest_ed25519(st, cps), lambda: selftest_merkle(st, rfc),
                 lambda: selftest_checkpoints(st, cps), lambda: selftest_cosignature(st),
                 lambda: selftest_tile_layout(st, tiles_json),
                 lambda: selftest_http(st, tiles_json, cps)):
        try:
            step()
        except Exception as e:  # a crash in a self-check is a failure, not a pass
            st.section("unexpected exception", 1, [f"{type(e).__name__}: {e}"])
    total = sum(c for _, c, _ in st.sections)
    if st.failures:
        print(f"SELFTEST FAILED: {len(st.failures)} failure(s) in {total} checks")
        return 1
    print(f"SELFTEST PASSED: {total} checks in {len(st.sections)} groups")
    return 0


def main(argv=None):
    """Parse arguments and dispatch; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="c2sp_check.py",
        description="Independent verifier for a C2SP tlog-tiles transparency log.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="verify a live log at http://127.0.0.1:PORT")
    p_check.add_argument("--url", required=True, help="log prefix, e.g. http://127.0.0.1:8080")
    p_check.add_argument("--vkey", required=True, help="file holding the verifier key line")
    p_check.add_argument("--prev", help="file holding an earlier signed checkpoint note")
    p_check.add_argument("--json", action="store_true", help="print one JSON object")
    p_sel = sub.add_parser("selftest", help="check this checker against reference vectors")
    p_sel.add_argument("--vectors", required=True, help="directory with rfc6962.json, "
                       "checkpoints.json and tiles.json")
    p_cosign = sub.add_parser("cosign", help="print a witness vkey and its cosignature/v1 line")
    p_cosign.add_argument("--seed", required=True, help="the witness's 32-byte Ed25519 seed, in hex")
    p_cosign.add_argument("--name", required=True, help="the witness's key name")
    p_cosign.add_argument("--time", required=True, type=int, help="POSIX seconds")
    p_cosign.add_argument("--body", required=True, help="file holding the checkpoint note body")
    p_cc = sub.add_parser("check-cosigned", help="verify a checkpoint's log signature and a "
                          "quorum of witness cosignatures")
    p_cc.add_argument("--note", required=True, help="file holding the signed checkpoint note")
    p_cc.add_argument("--log-vkey", required=True, help="file holding the log's verifier key line")
    p_cc.add_argument("--witness", action="append", default=[], help="a witness's cosigner vkey "
                      "(repeatable)")
    p_cc.add_argument("--quorum", required=True, type=int, help="how many witnesses must cosign")
    args = parser.parse_args(argv)
    if args.command == "check":
        return cmd_check(args)
    if args.command == "cosign":
        return cmd_cosign(args)
    if args.command == "check-cosigned":
        return cmd_check_cosigned(args)
    return cmd_selftest(args)


if __name__ == "__main__":
    sys.exit(main())
