"""Secure secret values, drawn with the `secrets` module from alphabets that are safe where secrets end up.

Every preset avoids the characters that break connection strings (`;`, `=`, quotes, spaces) and URLs
(`/`, `?`, `#`, `%`, `&`, `+`, `@`, `:`), so a generated value can be pasted anywhere without escaping.
"""

from __future__ import annotations

import math
import secrets
import string

ALPHABETS: dict[str, str] = {
    # Letters and digits: safe everywhere, the default.
    "alphanumeric": string.ascii_letters + string.digits,
    # RFC 3986 "unreserved": never percent-encoded in a URL, no connection-string delimiters.
    "unreserved": string.ascii_letters + string.digits + "-._~",
    # Lower-case hex: for systems that want case-insensitive or hex-only keys.
    "hex": "0123456789abcdef",
    # RFC 4648 base32 alphabet: upper-case and digits 2-7, no look-alikes (0/O, 1/l).
    "base32": string.ascii_uppercase + "234567",
}
ALPHABET_DESCRIPTIONS: dict[str, str] = {
    "alphanumeric": "A-Z a-z 0-9 (62 symbols, ~5.95 bits each)",
    "unreserved": "A-Z a-z 0-9 - . _ ~ (66 symbols, RFC 3986 unreserved)",
    "hex": "0-9 a-f (16 symbols, 4 bits each)",
    "base32": "A-Z 2-7 (32 symbols, 5 bits each; RFC 4648)",
}
DEFAULT_ALPHABET = "alphanumeric"
DEFAULT_LENGTH = 32
MIN_LENGTH = 16  # 16 hex characters is 64 bits: the weakest value this app will generate
MAX_LENGTH = 1024


class GeneratorSpecError(ValueError):
    """A length or alphabet the generator refuses; `part` ("length" or "alphabet") says which."""

    def __init__(self, part: str, problem: str) -> None:
        super().__init__(f"{part} {problem}")
        self.part = part
        self.problem = problem


def check_spec(length: object, alphabet: object) -> None:
    """The one rule for what may be generated: HTTP `generate` bodies and rotation tags both apply it."""
    if type(length) is not int or not MIN_LENGTH <= length <= MAX_LENGTH:
        raise GeneratorSpecError("length", f"must be an integer from {MIN_LENGTH} to {MAX_LENGTH}")
    if not isinstance(alphabet, str) or alphabet not in ALPHABETS:  # a JSON list or object is unhashable
        raise GeneratorSpecError("alphabet", f"must be one of: {', '.join(ALPHABETS)}")


def entropy_bits(length: int, alphabet: str) -> float:
    """Bits of entropy of a value of `length` symbols drawn uniformly from the preset."""
    return length * math.log2(len(ALPHABETS[alphabet]))


def generate_value(length: int = DEFAULT_LENGTH, alphabet: str = DEFAULT_ALPHABET) -> str:
    """A uniformly random value; `secrets.choice` draws from the OS CSPRNG without modulo bias."""
    check_spec(length, alphabet)
    symbols = ALPHABETS[alphabet]
    return "".join(secrets.choice(symbols) for _ in range(length))
