"""Prediction ids that any server of a deployment can score, without the predicting process.

An id carries what feedback needs, authenticated with the deployment's feedback key::

    3f5a1c9e.5f1c9a2e.mi4x2k0b.17.0.c1.Xq3b0_fKpA2z
    |        |        |        |  | |  +- tag: keyed BLAKE2b of everything before it (9 bytes)
    |        |        |        |  | +---- the prediction: c<class label> or r<float64>
    |        |        |        |  +------ row in the request
    |        |        |        +--------- request number in the process
    |        |        +------------------ when the prediction was made (unix ms, base 36)
    |        +--------------------------- the predicting process (random per process)
    +------------------------------------ the model: first 8 hex digits of its sha256

So feedback that arrives after a rollout, in another replica or after a restart is still
scored against the model that made the prediction and ordered by when it was made. The
tag stops a client from making up ids (e.g. thousands of "predicted 1, truth 1" pairs to
hold live accuracy up): without the key it cannot produce a tag that verifies. Replaying a
real id is detected by the window it lands in (see ``windows.TimeOrderedScores``).

Why keyed BLAKE2b and not HMAC-SHA256: both are MACs (BLAKE2's keyed mode is designed
as one, no HMAC construction needed); BLAKE2b from a pre-keyed state costs ~2 us per id
where ``hmac.digest`` cost ~7 us on the same machine, and the tag is computed per row.

Class labels are carried by their canonical text (``category_label``) when it is short and
URL-safe, else by a hash of it, so a label is compared as text, whichever model's class
list it came from. Regression values are the exact float64 (11 base64url characters).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from perennial_runtime.training.preprocessing import category_label

TAG_BYTES = 9  # 72 bits; a multiple of 3, so tags concatenate into aligned base64
TAG_CHARS = 12
SHA_CHARS = 8
_SAFE_LABEL = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)
_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_URLSAFE = bytes.maketrans(b"+/", b"-_")
SMALL_BATCH = 16  # below this many rows, per-value struct packing beats numpy

# Every field bounded and ASCII, so a hostile id is refused by one regex match.
ID = re.compile(
    r"([0-9a-f]{8})\.([0-9a-f]{8})\.([0-9a-z]{1,12})\.([0-9]{1,18})\.([0-9]{1,9})\."
    r"(c[A-Za-z0-9_-]{1,32}|c~[A-Za-z0-9_-]{12}|r[A-Za-z0-9_-]{11})\.([A-Za-z0-9_-]{12})",
    re.ASCII,
)
# Ids of servers before signed ids ("<process>-<request>-<row>"): well-formed, not scorable.
LEGACY_ID = re.compile(r"([^-.]{1,64})-([0-9]{1,18})-([0-9]{1,9})", re.ASCII)


def key_bytes(text: str) -> bytes:
    """The MAC key from the configured key text (any length: it is hashed to 32 bytes)."""
    return hashlib.sha256(text.encode()).digest()


def base36(number: int) -> str:
    if number <= 0:
        return "0"
    out = []
    while number:
        number, digit = divmod(number, 36)
        out.append(_DIGITS36[digit])
    return "".join(reversed(out))


def class_field(label: Any) -> str:
    """The id field for a predicted (or true) class: ``c<label>`` or ``c~<hash>``."""
    text = category_label(label) or ""
    if _SAFE_LABEL.fullmatch(text):
        return "c" + text
    return "c~" + _b64(hashlib.sha256(text.encode()).digest()[:9])


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).decode()


def float_fields(values: npt.NDArray[Any]) -> list[str]:
    """``r`` + the float64's 8 bytes in base64url (11 characters), for every value."""
    n = len(values)
    if n < SMALL_BATCH:
        return ["r" + _b64(struct.pack(">dx", v))[:11] for v in values.tolist()]
    padded = np.zeros((n, 9), dtype=np.uint8)  # 9 bytes: 12 aligned base64 characters
    padded[:, :8] = np.asarray(values, dtype=">f8").view(np.uint8).reshape(n, 8)
    text = _b64(padded.tobytes())
    return ["r" + text[12 * i : 12 * i + 11] for i in range(n)]


def float_of(field: str) -> float:
    value: float = struct.unpack(">d", base64.urlsafe_b64decode(field[1:] + "A")[:8])[0]
    return value


class PredictionRef(NamedTuple):
    """A verified id: which model, when, and what it predicted."""

    model: str  # sha256 prefix (8 hex digits)
    made_ms: int
    seq: int
    row: int
    value: str  # the id field: c<label> / c~<hash> / r<float64>
    text: str  # the whole id (unique per prediction)

    @property
    def classification(self) -> bool:
        return self.value[0] == "c"


class IdCodec:
    """Issues and verifies ids with one key; ``process`` tells this process's ids apart."""

    def __init__(self, key: str, process: str | None = None) -> None:
        self._mac = hashlib.blake2b(key=key_bytes(key), digest_size=TAG_BYTES)
        self.process = process or secrets.token_hex(4)
        self._ms = -1
        self._ms36 = ""

    @staticmethod
    def new_key() -> str:
        return secrets.token_hex(32)

    def _tag(self, body: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(body)
        return mac.digest()

    def issue(self, sha8: str, made_ms: int, seq: int, fields: Sequence[str]) -> list[str]:
        """One id per row; ``fields`` are the rows' prediction fields."""
        if made_ms != self._ms:  # requests within a millisecond share the text
            self._ms, self._ms36 = made_ms, base36(made_ms)
        head = f"{sha8}.{self.process}.{self._ms36}.{seq}."
        mac = self._mac
        bodies = []
        tags = []
        for i, field in enumerate(fields):
            body = f"{head}{i}.{field}"
            h = mac.copy()
            h.update(body.encode())
            bodies.append(body)
            tags.append(h.digest())
        if len(bodies) == 1:
            return [f"{bodies[0]}.{_b64(tags[0])}"]
        text = _b64(b"".join(tags))
        return [f"{b}.{text[TAG_CHARS * i : TAG_CHARS * (i + 1)]}" for i, b in enumerate(bodies)]

    def verify(self, match: re.Match[str]) -> PredictionRef | None:
        """The id's content if its tag is this key's, else None (forged, altered, or
        issued with another key: another deployment, or a server without the shared key)."""
        text = match.string
        body = text[: -TAG_CHARS - 1]
        expected = _b64(self._tag(body.encode()))
        if not hmac.compare_digest(expected, match.group(7)):
            return None
        sha8, _, made, seq, row, value, _ = match.groups()
        return PredictionRef(sha8, int(made, 36), int(seq), int(row), value, text)
