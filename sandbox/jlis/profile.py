"""The JPKI certificate profile as the sandbox writes it.

The otherName OIDs, the era-coded birth date and :func:`basic4_from_certificate` live in
:mod:`tsunagu.jpki` because platform services read them too; this module adds what only an issuer
needs: era names, the validity rule and the policy of the user-authentication
certificate.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta, timezone

from cryptography import x509

from tsunagu.jpki import (
    ERA_CODES,
    encode_birth_date,
)

__all__ = [
    "ERA_NAMES",
    "JPKI_USER_AUTH_POLICY",
    "JST",
    "japanese_era",
    "valid_until_fifth_birthday",
]

# The policy the real user-authentication certificates carry (利用者証明用電子証明書).
JPKI_USER_AUTH_POLICY = x509.ObjectIdentifier("1.2.392.200149.8.5.1.3.30")
ERA_NAMES = {"1": "明治", "2": "大正", "3": "昭和", "4": "平成", "5": "令和"}
JST = timezone(timedelta(hours=9), "JST")


def japanese_era(day: date) -> tuple[str, str, int]:
    """``(era code, era name, year of the era)`` of ``day``: 1989-01-08 → ``("4", "平成", 1)``."""
    code = encode_birth_date(day)[0]
    return code, ERA_NAMES[code], day.year - ERA_CODES[code].year + 1


def _birthday_in(year: int, birth_date: date) -> date:
    # someone born on 29 February has a birthday on the 28th in common years
    if birth_date.month == 2 and birth_date.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birth_date.replace(year=year)


def valid_until_fifth_birthday(birth_date: date, issued_at: datetime) -> datetime:
    """notAfter of a card certificate: the end (JST) of the holder's fifth birthday after issue."""
    issue_day = issued_at.astimezone(JST).date()
    year = issue_day.year if _birthday_in(issue_day.year, birth_date) > issue_day else issue_day.year + 1
    fifth = _birthday_in(year + 4, birth_date)
    return datetime.combine(fifth, time(23, 59, 59), JST).astimezone(UTC)
