"""A real browser logs in to a sample app: headless Chromium opens hospital A's page, follows its
login link to the idp's login page (QR code), the wallet approves and signs the allergy item
allowed, the page moves on by itself, and hospital A's page shows the allergies the broker gave it.
"""

from __future__ import annotations

from pathlib import Path

from tests.examples.conftest import Apps
from tests.fixtures.browser import BrowserPage
from tsunagu.wallet import fetch_login
from tsunagu.wallet.login import approve_login_with_consent


async def test_a_citizen_logs_in_to_hospital_a_in_chromium_and_sees_the_allergies(
    apps: Apps, browser_page: BrowserPage, tmp_path: Path
):
    resident = await apps.resident()
    hospital = apps.urls["hospital-a"]
    idp = apps.stack.urls["idp"]
    page = browser_page.page

    await browser_page.goto(hospital)
    assert await page.title() == "A病院"
    await page.get_by_role("link", name="マイナンバーカードでログイン(Tsunagu)").click()
    login_url = await browser_page.wait_for_url_prefix(f"{idp}/login/")
    await page.wait_for_selector("svg")  # the QR code
    assert "アレルギー情報" in await page.content()  # the items asked, named for the citizen

    transaction = await fetch_login(apps.idp, login_url.rsplit("/", 1)[1])
    assert transaction["authorization_details"][0]["items"] == ["health.allergy"]
    answer = await approve_login_with_consent(
        apps.idp, apps.consent, transaction, resident.enrolled, {"health.allergy": True}
    )
    assert answer["state"] == "approved" and answer["receipt"]["event"] == "given"

    await browser_page.wait_for_url_prefix(f"{hospital}/callback?")
    await page.wait_for_url(f"{hospital}/")
    await page.get_by_text("ペニシリン").wait_for()
    body = await page.inner_text("body")
    assert "連携されたデータ" in body and "そば" in body
    await browser_page.screenshot(tmp_path / "hospital-a.png")
    browser_page.assert_clean()
