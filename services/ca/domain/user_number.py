"""The user identification number (利用者識別番号): one per person, forever.

Sixteen digits: fifteen drawn uniformly at random (the first never 0, so the number keeps its
length as a string or an integer) and a Damm check digit, which catches every single-digit error
and every swap of adjacent digits. Nothing goes into it — not the My Number, not the basic 4
information, not a sequence — so it reveals nothing and cannot be guessed from neighbours.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

# The Damm algorithm's totally anti-symmetric quasigroup of order 10.
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
LENGTH = 16


def damm_digit(digits: str) -> str:
    """The Damm check digit of a string of decimal digits."""
    interim = 0
    for char in digits:
        interim = _DAMM[interim][int(char)]
    return str(interim)


def new_user_number(randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    """A fresh random number with its check digit (uniqueness is the store's primary key)."""
    body = str(10**14 + randbelow(9 * 10**14))
    return body + damm_digit(body)


def is_valid_user_number(value: str) -> bool:
    """Sixteen ASCII digits, not starting with 0, whose Damm check passes."""
    return (
        len(value) == LENGTH
        and value.isascii()
        and value.isdigit()
        and value[0] != "0"
        and damm_digit(value) == "0"
    )
