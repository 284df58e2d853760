"""Demo chapters: the sample relying parties (examples/) at work, as a citizen's browser and wallet
see them.

A test My Number Card is issued in the J-LIS sandbox and the citizen enrolls two phones (one user
number); the city's records system holds the citizen's health data; the citizen logs in to the
e-life trainer (allowing blood pressure and check-up results) and to the e-diary — each app knows
them by a different pairwise ``sub``; allows the allergy item for hospital A and refuses it for
hospital B (signed decisions, receipts) → A's page shows the allergies, B's is refused; allows the
bank and refuses the market the address, moves in the sandbox → J-LIS pushes → the bank is told the
new address, the market nothing; withdraws A's access → A is refused; reads the exchange log.

The browser is httpx with a cookie jar following the same redirects a browser would; the apps use
only Authlib and the broker's public API (examples/README.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.wallet import Enrolled, SandboxCard, WalletError, enroll, fetch_login
from tsunagu.wallet import consent as wallet
from tsunagu.wallet.login import approve_login_with_consent

CITIZEN = {"name": "江別 花子", "address": "北海道江別市高砂町6番地", "birth_date": "1985-03-03", "sex": "2"}
NEW_ADDRESS = "北海道江別市野幌町10番地"
HEALTH_RECORDS = {
    "health.allergy": {"allergens": ["そば", "ペニシリン"], "recorded_on": "2026-04-01"},
    "health.blood_pressure": {"systolic": 128, "diastolic": 82, "measured_on": "2026-11-01"},
    "health.checkup": {
        "examined_on": "2026-06-12",
        "hba1c": 5.6,
        "ldl_cholesterol": 118,
        "judgement": "異常なし",
    },
}
PUSH_WAIT_S = 60.0
Say = Callable[[str], None]


class Browser:
    """The citizen's browser: one cookie jar, redirects followed by hand as a browser does."""

    def __init__(self, idp_url: str, idp: httpx.AsyncClient, consent: httpx.AsyncClient) -> None:
        self.http = httpx.AsyncClient(timeout=30)
        self.idp_url = idp_url
        self.idp = idp  # the wallet's connection to the idp
        self.consent = consent  # and to consent

    async def aclose(self) -> None:
        await self.http.aclose()

    async def login(self, app_url: str, citizen: Enrolled, choices: dict[str, bool]) -> dict[str, Any]:
        """Log in to an app; the wallet approves (and decides its data access item by item).
        Returns ``{"sso": bool, "receipt": …, "me": the app's view}``."""
        response = await self.http.get(f"{app_url}/login")
        receipt: dict[str, Any] | None = None
        sso = True
        while response.status_code in (302, 303):
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(f"{self.idp_url}/login/"):
                sso = False
                tx = location.rsplit("/", 1)[1]
                await self.http.get(location)  # the page with the QR code
                transaction = await fetch_login(self.idp, tx)
                answer = await approve_login_with_consent(
                    self.idp, self.consent, transaction, citizen, choices
                )
                receipt = answer["receipt"]
                location = f"{self.idp_url}/login/{tx}/complete"
            response = await self.http.get(location)
        me = await self.http.get(f"{app_url}/me")
        me.raise_for_status()
        return {"sso": sso, "receipt": receipt, "me": me.json()}

    async def me(self, app_url: str) -> dict[str, Any]:
        response = await self.http.get(f"{app_url}/me")
        response.raise_for_status()
        return dict(response.json())


def write_records(path: Path, sub: str, records: dict[str, Any]) -> None:
    """Give the city's records system (its records file) the records of the person it knows as
    ``sub``."""
    held = json.loads(path.read_text()) if path.exists() else {}
    held[sub] = records
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(held, ensure_ascii=False))
    os.replace(temporary, path)  # the records system never reads half a file


async def records_sub(idp_url: str, credentials_dir: Path, records_file: Path, user_number: str) -> str:
    """The city's records system's own sub for a resident (asked as the broker would: the system
    knows its residents; the demo only needs to file their records under the right sub)."""
    registration = json.loads((records_file.parent / "records.client.json").read_text())
    key = load_private_key(credentials_dir / "broker.key.pem")
    async with httpx.AsyncClient(base_url=idp_url, timeout=30) as idp:
        response = await idp.post(
            "/internal/v1/subjects/pairwise",
            json={"client_id": registration["client_id"], "user_number": user_number},
            auth=ServiceTokenAuth(ServiceTokenIssuer("broker", key), "idp"),
        )
        response.raise_for_status()
        return str(response.json()["sub"])


def _short(sub: str) -> str:
    return f"{sub[:10]}…"


async def run_apps_chapter(
    urls: Mapping[str, str],
    apps: Mapping[str, str],
    records_file: Path,
    credentials_dir: Path,
    *,
    jlis_url: str,
    say: Say,
) -> bool:
    async with (
        httpx.AsyncClient(base_url=jlis_url, timeout=30) as jlis,
        httpx.AsyncClient(base_url=urls["ca"], timeout=30) as ca,
        httpx.AsyncClient(base_url=urls["idp"], timeout=30) as idp,
        httpx.AsyncClient(base_url=urls["consent"], timeout=30) as consent,
    ):
        issued = (await jlis.post("/cards", json=CITIZEN)).json()
        card = SandboxCard(jlis, issued["card_id"])
        phone = await enroll(ca, card)
        second = await enroll(ca, card)
        say(
            "17. テスト用マイナンバーカードを発行、スマホ2台を登録 / a test card is issued in the J-LIS "
            f"sandbox; two phones enroll: user number …{phone.user_number[-4:]} on both "
            f"({'same' if phone.user_number == second.user_number else 'DIFFERENT'})"
        )
        if phone.user_number != second.user_number:
            return False
        browser = Browser(urls["idp"], idp, consent)
        try:
            story = _Story(urls, apps, records_file, credentials_dir, browser=browser, say=say)
            return await story.run(phone, second, jlis, issued["person_id"])
        except (httpx.HTTPError, WalletError, KeyError) as failure:
            # An app or a service answered what the story did not expect: say which, end cleanly.
            say(f"   ✗ {type(failure).__name__}: {str(failure)[:300]} (see the logs folder)")
            return False
        finally:
            await browser.aclose()


class _Story:
    def __init__(
        self,
        urls: Mapping[str, str],
        apps: Mapping[str, str],
        records_file: Path,
        credentials_dir: Path,
        *,
        browser: Browser,
        say: Say,
    ) -> None:
        self.urls, self.apps, self.records_file = urls, apps, records_file
        self.credentials_dir = credentials_dir
        self.browser = browser
        self.say = say

    async def run(self, phone: Enrolled, second: Enrolled, jlis: httpx.AsyncClient, person_id: str) -> bool:
        say, browser, apps = self.say, self.browser, self.apps
        sub = await records_sub(self.urls["idp"], self.credentials_dir, self.records_file, phone.user_number)
        write_records(self.records_file, sub, HEALTH_RECORDS)
        say("18. 江別市の健康記録 / the city's records system holds her allergies, blood pressure, check-up")
        trainer = await browser.login(
            apps["e-life-trainer"], phone, {"health.blood_pressure": True, "health.checkup": True}
        )
        diary = await browser.login(apps["e-diary"], second, {})
        say(
            "19. e-ライフトレーナーにログイン(血圧・健診結果を許可)/ e-life trainer login, "
            f"two items allowed: shows {trainer['me']['data']}"
        )
        how = "single sign-on" if diary["sso"] else "the second phone approves"
        say(
            f"   e-diary ({how}): sub {_short(diary['me']['sub'])} ≠ e-life trainer's "
            f"{_short(trainer['me']['sub'])} — pairwise, never the user number"
        )
        if not trainer["me"]["data"] or diary["me"]["sub"] == trainer["me"]["sub"]:
            return False
        if not await self._hospitals(phone):
            return False
        if not await self._move(phone, jlis, person_id):
            return False
        return await self._withdraw(phone)

    async def _hospitals(self, citizen: Enrolled) -> bool:
        a = await self.browser.login(self.apps["hospital-a"], citizen, {"health.allergy": True})
        b = await self.browser.login(self.apps["hospital-b"], citizen, {"health.allergy": False})
        self.say(
            "20. A病院はアレルギー情報を許可、B病院は拒否(ウォレットで署名)/ allergies allowed for "
            f"hospital A, refused for B — signed; receipts #{a['receipt']['sequence']}, "
            f"#{b['receipt']['sequence']}"
        )
        self.say(
            f"   A病院 sees {a['me']['data']}; B病院 → HTTP {b['me']['status']} {b['me']['refused']} "
            f"(its grant: refused {b['me']['grant']['refused_items']})"
        )
        self.hospital_a_decision = str(a["receipt"]["decision_id"])
        return bool(a["me"]["status"] == 200 and b["me"]["status"] == 403)

    async def _move(self, citizen: Enrolled, jlis: httpx.AsyncClient, person_id: str) -> bool:
        await self.browser.login(self.apps["bank"], citizen, {"resident.address": True})
        await self.browser.login(self.apps["ebetsu-market"], citizen, {"resident.address": False})
        self.say(
            "21. 銀行には住所を許可、マルシェには拒否 / the address allowed for the bank, refused for "
            "the market; then she moves (J-LIS sandbox)"
        )
        (await jlis.post(f"/persons/{person_id}/move", json={"address": NEW_ADDRESS})).raise_for_status()
        started = time.monotonic()
        notices: list[dict[str, Any]] = []
        while not notices and time.monotonic() - started < PUSH_WAIT_S:
            await asyncio.sleep(0.5)
            notices = (await self.browser.me(self.apps["bank"]))["notices"]
        market_notices = (await self.browser.me(self.apps["ebetsu-market"]))["notices"]
        elapsed = time.monotonic() - started
        got = notices[0]["value"] if notices else None
        self.say(
            f"   J-LIS → jlis-sync → broker → the bank's webhook (signed) after {elapsed:.1f} s: {got}; "
            f"the market: {len(market_notices)} notices"
        )
        return bool(notices) and got == {"address": NEW_ADDRESS} and not market_notices

    async def _withdraw(self, citizen: Enrolled) -> bool:
        async with httpx.AsyncClient(base_url=self.urls["consent"], timeout=30) as consent:
            await wallet.withdraw(consent, citizen, self.hospital_a_decision)
        withdrawn = time.monotonic()
        view = await self.browser.me(self.apps["hospital-a"])
        while view["status"] == 200 and time.monotonic() - withdrawn < 10:
            await asyncio.sleep(0.05)
            view = await self.browser.me(self.apps["hospital-a"])
        elapsed_ms = (time.monotonic() - withdrawn) * 1000
        self.say(
            f"22. 市民がA病院への提供を撤回 / she withdraws hospital A's access → A refused "
            f"({view['status']} {view['refused']}) {elapsed_ms:.0f} ms later"
        )
        if view["status"] != 403:
            return False
        await self._exchange_log(citizen)
        return True

    async def _exchange_log(self, citizen: Enrolled) -> None:
        """What the citizen's wallet shows (``tsunagu wallet exchanges``): asked of consent with a
        query signed by the phone's authentication key."""
        async with httpx.AsyncClient(base_url=self.urls["consent"], timeout=30) as consent:
            page = await wallet.fetch_exchanges(consent, citizen, limit=8)
        names = page.get("names", {})
        self.say("23. やりとり履歴(ウォレット)/ the exchange log in her wallet:")
        for entry in reversed(page["exchanges"]):
            who = names.get(entry["consumer"], {}).get("name_ja", entry["consumer"])
            at, kind, outcome = entry["at"][:19], entry["kind"], entry["outcome"]
            self.say(f"   - {at} {kind:<4} {who} {entry['items']} → {outcome}")
