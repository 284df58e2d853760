"""Era-coded dates of birth and the fifth-birthday validity rule."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tsunagu.jpki import decode_birth_date, encode_birth_date
from tsunagu.sandbox.jlis.profile import JST, japanese_era, valid_until_fifth_birthday


@pytest.mark.parametrize(
    ("day", "encoded", "era", "year"),
    [
        (date(1868, 10, 23), "118681023", "明治", 1),
        (date(1912, 7, 29), "119120729", "明治", 45),
        (date(1912, 7, 30), "219120730", "大正", 1),
        (date(1926, 12, 24), "219261224", "大正", 15),
        (date(1926, 12, 25), "319261225", "昭和", 1),
        (date(1989, 1, 7), "319890107", "昭和", 64),
        (date(1989, 1, 8), "419890108", "平成", 1),
        (date(2019, 4, 30), "420190430", "平成", 31),
        (date(2019, 5, 1), "520190501", "令和", 1),
        (date(2026, 4, 1), "520260401", "令和", 8),
    ],
)
def test_era_codes_at_the_boundaries(day: date, encoded: str, era: str, year: int) -> None:
    assert encode_birth_date(day) == encoded
    assert decode_birth_date(encoded) == day
    assert japanese_era(day)[1:] == (era, year)


@pytest.mark.parametrize(
    "text", ["419890107", "319890108", "520190430", "19890108", "4198901O8", "419890230"]
)
def test_decoding_refuses_a_wrong_era_or_malformed_text(text: str) -> None:
    with pytest.raises(ValueError):
        decode_birth_date(text)


def test_dates_before_meiji_have_no_era() -> None:
    with pytest.raises(ValueError):
        encode_birth_date(date(1868, 10, 22))


@pytest.mark.parametrize(
    ("birth", "issued", "until"),
    [
        # birthday still ahead this year: that one is the first
        (date(1990, 6, 15), datetime(2026, 4, 1, 1, tzinfo=UTC), date(2030, 6, 15)),
        # birthday already passed this year
        (date(1990, 2, 1), datetime(2026, 4, 1, 1, tzinfo=UTC), date(2031, 2, 1)),
        # issued on the birthday (JST): the first birthday *after* issue is next year's
        (date(1990, 4, 1), datetime(2026, 3, 31, 16, tzinfo=UTC), date(2031, 4, 1)),
        # 29 February: the 28th in a common year
        (date(2000, 2, 29), datetime(2026, 4, 1, 1, tzinfo=UTC), date(2031, 2, 28)),
    ],
)
def test_valid_until_the_fifth_birthday_after_issue(birth: date, issued: datetime, until: date) -> None:
    not_after = valid_until_fifth_birthday(birth, issued).astimezone(JST)
    assert (not_after.date(), not_after.hour, not_after.minute) == (until, 23, 59)
