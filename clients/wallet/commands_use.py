"""The wallet's everyday commands: approve or deny a login (app link / QR payload, or the CIBA
inbox), review and sign consent requests item by item, grants, history, receipts, withdrawal.

Reads are signed with the device's authentication key; consent decisions with its signing key;
a login with the authentication key or, ``--app``, the per-app key of that relying party's app.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from tsunagu.wallet.cli import CliError, Context, Handler, Result, http
from tsunagu.wallet.commands import open_token
from tsunagu.wallet.consent import decide, fetch_grants, fetch_history, fetch_requests, withdraw
from tsunagu.wallet.device import enrolled_view
from tsunagu.wallet.enroll import Credential, Enrolled
from tsunagu.wallet.login import fetch_inbox, fetch_login, send_login_decision
from tsunagu.wallet.state import Services

TRANSACTION_ID = re.compile(r"[A-Za-z0-9_-]{8,128}")


def login_transaction(value: str, idp_url: str) -> str:
    """The transaction id named by an app link / QR payload (``tsunagu://login?tx=…&issuer=…``,
    whose issuer must be this wallet's IdP) or given bare; :class:`CliError` otherwise."""
    if "://" not in value:
        if not TRANSACTION_ID.fullmatch(value):
            raise CliError("error.malformed_link")
        return value
    link = urlparse(value)
    try:
        query = parse_qs(link.query, strict_parsing=True)
    except ValueError:
        raise CliError("error.malformed_link") from None
    tx, issuer = query.get("tx", []), query.get("issuer", [])
    if (
        link.scheme != "tsunagu"
        or link.netloc != "login"
        or link.path not in ("", "/")
        or len(tx) != 1
        or len(issuer) != 1
        or not TRANSACTION_ID.fullmatch(tx[0])
    ):
        raise CliError("error.malformed_link")
    if issuer[0].rstrip("/") != idp_url.rstrip("/"):
        raise CliError("error.unknown_issuer", issuer=issuer[0], known=idp_url)
    return tx[0]


@asynccontextmanager
async def signed_in(context: Context) -> AsyncIterator[tuple[Enrolled, Services]]:
    """The device's certificates with their keys on its (logged-in) token."""
    state, services, user_number = context.enrolled_state()
    device = context.device(state)
    token = open_token(context, device.token_label, device.module_path)
    try:
        yield enrolled_view(token, device, user_number), services
    finally:
        token.close()


def consent_url(services: Services) -> str:
    """The consent service's URL from the stored state (:class:`CliError` when there is none)."""
    if not services.consent:
        raise CliError("error.no_consent")
    return services.consent


def _choices(context: Context, items: list[str]) -> dict[str, bool]:
    """item → allow from ``--allow``/``--deny`` (or a prompt per item on a terminal); an item not
    allowed is refused — never a silent allow."""
    allowed, denied = set(context.args.allow or []), set(context.args.deny or [])
    unknown = sorted((allowed | denied) - set(items))
    if unknown:
        raise CliError("error.unknown_items", items=", ".join(unknown))
    both = sorted(allowed & denied)
    if both:
        raise CliError("error.allow_and_deny", items=", ".join(both))
    if not allowed and not denied and sys.stdin.isatty() and not context.args.json:
        for item in items:
            answer = input(f"{item}: {context.t('decision.allow')}? [y/N] ")
            if answer.strip().lower() in ("y", "yes", "はい"):
                allowed.add(item)
    return {item: item in allowed for item in items}


def _decision_lines(context: Context, choices: dict[str, bool]) -> list[str]:
    return [
        f"  {item}: {context.t('decision.allow' if allowed else 'decision.deny')}"
        for item, allowed in choices.items()
    ]


def _transaction_lines(context: Context, transaction: dict[str, Any]) -> list[str]:
    client = transaction["client"]
    name = client["name_en"] if context.lang == "en" else client["name_ja"]
    lines = [
        context.t("login.asks", client=name),
        f"  {context.t('login.code')}: {transaction['display_code']}",
        f"  {context.t('login.claims')}: {', '.join(transaction.get('claims') or ['sub'])}",
        f"  {context.t('login.expires')}: {transaction['expires_at']}",
    ]
    if transaction.get("binding_message"):
        lines.insert(1, f"  {context.t('login.binding')}: {transaction['binding_message']}")
    for detail in transaction.get("authorization_details") or []:
        purpose = detail.get("purpose", {})
        lines.append(f"  {context.t('request.purpose')}: {purpose.get(context.lang) or purpose.get('code')}")
        lines.extend(f"    - {item}" for item in detail.get("items", []))
    return lines


def _login_credential(context: Context, enrolled: Enrolled) -> Credential:
    app = context.args.app
    if app is None:
        return enrolled.authentication
    if app not in enrolled.apps:
        raise CliError("error.unknown_app", app=app)
    return enrolled.apps[app]


def _requested_items(transaction: dict[str, Any]) -> list[str]:
    return [
        item for detail in transaction.get("authorization_details") or [] for item in detail.get("items", [])
    ]


async def _login_decision(context: Context, approve: bool) -> Result:
    _, services, _ = context.enrolled_state()
    tx = login_transaction(context.args.link, services.idp)
    async with http(services.idp) as idp:
        transaction = await fetch_login(idp, tx)
        choices = _choices(context, _requested_items(transaction)) if approve else {}
        async with signed_in(context) as (enrolled, _):
            answer = await send_login_decision(
                idp, transaction, _login_credential(context, enrolled), approve=approve
            )
            receipt = None
            if approve and answer.get("consent_request_id"):
                async with http(consent_url(services)) as consent:
                    pending = await fetch_requests(consent, enrolled)
                    request = next(
                        (r for r in pending if r["request_id"] == answer["consent_request_id"]), None
                    )
                    if request is None:
                        raise CliError("error.unknown_request", request=answer["consent_request_id"])
                    receipt = await decide(consent, enrolled, request, choices)
    lines = [
        *_transaction_lines(context, transaction),
        context.t("login.approved" if approve else "login.denied"),
    ]
    if receipt is not None:
        lines += [
            context.t("login.consent", decision=receipt["decision_id"]),
            *_decision_lines(context, choices),
        ]
    data = {
        "tx": tx,
        "state": answer["state"],
        "consent_request_id": answer.get("consent_request_id"),
        "receipt": receipt,
    }
    return Result(data, lines)


async def login_approve_command(context: Context) -> Result:
    return await _login_decision(context, approve=True)


async def login_deny_command(context: Context) -> Result:
    return await _login_decision(context, approve=False)


async def login_show_command(context: Context) -> Result:
    _, services, _ = context.enrolled_state()
    tx = login_transaction(context.args.link, services.idp)
    async with http(services.idp) as idp:
        transaction = await fetch_login(idp, tx)
    return Result({"transaction": transaction}, _transaction_lines(context, transaction))


async def _issuer(idp: httpx.AsyncClient) -> str:
    response = await idp.get("/.well-known/openid-configuration")
    response.raise_for_status()
    return str(response.json()["issuer"])


async def login_inbox_command(context: Context) -> Result:
    async with signed_in(context) as (enrolled, services), http(services.idp) as idp:
        waiting = await fetch_inbox(idp, enrolled.authentication, await _issuer(idp))
    lines: list[str] = []
    for transaction in waiting:
        lines += [f"[{transaction['tx']}]", *_transaction_lines(context, transaction)]
    return Result({"requests": waiting}, lines or [context.t("inbox.empty")])


async def fetch_catalog(consent: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """item → its catalog entry (ja/en names); empty when the catalog cannot be read."""
    response = await consent.get("/v1/catalog")
    if response.is_error:
        return {}
    return {entry["item"]: entry for entry in response.json()["items"]}


def _request_lines(
    context: Context, request: dict[str, Any], catalog: dict[str, dict[str, Any]]
) -> list[str]:
    purpose = request["purpose"]
    lines = [
        context.t("request.from", recipient=request["recipient"], request=request["request_id"]),
        f"  {context.t('request.purpose')}: {purpose.get(context.lang) or purpose['code']}",
        f"  {context.t('request.until')}: {request['validity']['until']}",
    ]
    for entry in request["items"]:
        names = catalog.get(entry["item"], {})
        name = names.get("name_en" if context.lang == "en" else "name_ja", "")
        required = f" ({context.t('request.required')})" if entry.get("required") else ""
        lines.append(f"  - {entry['item']} {name}{required}")
    return lines


async def consent_requests_command(context: Context) -> Result:
    async with signed_in(context) as (enrolled, services), http(consent_url(services)) as consent:
        pending = await fetch_requests(consent, enrolled)
        catalog = await fetch_catalog(consent)
    lines = [line for request in pending for line in _request_lines(context, request, catalog)]
    return Result({"requests": pending}, lines or [context.t("requests.empty")])


async def consent_decide_command(context: Context) -> Result:
    async with signed_in(context) as (enrolled, services), http(consent_url(services)) as consent:
        pending = await fetch_requests(consent, enrolled)
        request = next((r for r in pending if r["request_id"] == context.args.request_id), None)
        if request is None:
            raise CliError("error.unknown_request", request=context.args.request_id)
        choices = _choices(context, [entry["item"] for entry in request["items"]])
        receipt = await decide(consent, enrolled, request, choices)
    lines = [
        context.t("decided", decision=receipt["decision_id"], sequence=receipt["sequence"]),
        *_decision_lines(context, choices),
    ]
    decisions = {item: "allow" if allowed else "deny" for item, allowed in choices.items()}
    return Result({"request_id": request["request_id"], "items": decisions, "receipt": receipt}, lines)


async def grants_command(context: Context) -> Result:
    async with signed_in(context) as (enrolled, services), http(consent_url(services)) as consent:
        grants = await fetch_grants(consent, enrolled)
    lines: list[str] = []
    for recipient in grants["recipients"]:
        name = recipient.get("name_en" if context.lang == "en" else "name_ja") or recipient["recipient"]
        lines.append(f"{name} ({recipient['recipient']})")
        for purpose, items in recipient["purposes"].items():
            shown = ", ".join(f"{item}={context.t('decision.' + value)}" for item, value in items.items())
            lines.append(f"  {purpose}: {shown}")
    return Result(grants, lines or [context.t("grants.empty")])


async def history_command(context: Context) -> Result:
    async with signed_in(context) as (enrolled, services), http(consent_url(services)) as consent:
        history = await fetch_history(consent, enrolled)
    lines = [
        f"#{entry['sequence']} {entry['recorded_at']} {context.t('event.' + entry['event'])} "
        f"{entry['recipient']} {entry['decision_id']}"
        + (f" → {entry['superseded_by']}" if entry.get("superseded_by") else "")
        for entry in history["decisions"]
    ]
    return Result(history, lines or [context.t("history.empty")])


def _jws_payload(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


async def receipts_command(context: Context) -> Result:
    """The platform's receipts, each checked to countersign the statement the wallet signed (the
    receipt names the SHA-256 of that JWS); the receipt key's signature is checked by the
    offline export verifier, not here."""
    async with signed_in(context) as (enrolled, services), http(consent_url(services)) as consent:
        history = await fetch_history(consent, enrolled)
    receipts, lines = [], []
    for entry in history["decisions"]:
        payload = _jws_payload(entry["receipt"])
        statement_hash = hashlib.sha256(entry["statement_jws"].encode("ascii")).hexdigest()
        matches = (
            payload.get("decision_sha256") == statement_hash
            and payload.get("decision_id") == entry["decision_id"]
        )
        receipts.append(
            {
                "decision_id": entry["decision_id"],
                "receipt": entry["receipt"],
                "payload": payload,
                "matches": matches,
            }
        )
        lines.append(
            f"#{payload.get('sequence')} {entry['decision_id']} {payload.get('recorded_at')}: "
            + context.t("receipt.matches" if matches else "receipt.mismatch")
        )
    return Result({"receipts": receipts}, lines or [context.t("history.empty")])


async def withdraw_command(context: Context) -> Result:
    async with signed_in(context) as (enrolled, services), http(consent_url(services)) as consent:
        try:
            receipt = await withdraw(consent, enrolled, context.args.decision_id)
        except ValueError:
            raise CliError("error.unknown_decision", decision=context.args.decision_id) from None
    return Result(
        {"withdrawn": context.args.decision_id, "receipt": receipt},
        [context.t("withdrawn", decision=context.args.decision_id, new=receipt["decision_id"])],
    )


def register(sub: Any, add: Callable[[Any, str, Handler, str], argparse.ArgumentParser]) -> None:
    def choice_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--allow", action="append", metavar="ITEM", help="allow this item (repeat)")
        parser.add_argument("--deny", action="append", metavar="ITEM", help="refuse this item (repeat)")

    login = sub.add_parser("login", help="logins").add_subparsers(dest="login_action", required=True)
    for name, handler, help_text in (
        ("approve", login_approve_command, "approve a login (app link, QR payload or transaction id)"),
        ("deny", login_deny_command, "deny a login"),
        ("show", login_show_command, "show who asks and for what, without deciding"),
    ):
        parser = add(login, name, handler, help_text)
        parser.add_argument("link", help="tsunagu://login?tx=…&issuer=… or the transaction id")
        if name != "show":
            parser.add_argument("--app", default=None, help="sign with this app's certificate")
        if name == "approve":
            choice_options(parser)
    add(login, "inbox", login_inbox_command, "requests waiting for this person (CIBA)")

    consent = sub.add_parser("consent", help="consent requests").add_subparsers(
        dest="consent_action", required=True
    )
    add(consent, "requests", consent_requests_command, "consent requests waiting for you")
    decide_parser = add(consent, "decide", consent_decide_command, "sign a decision, item by item")
    decide_parser.add_argument("request_id")
    choice_options(decide_parser)
    add(sub, "grants", grants_command, "what each recipient may receive now")
    add(sub, "history", history_command, "every decision you signed")
    add(sub, "receipts", receipts_command, "the platform's receipts for your decisions")
    add(sub, "withdraw", withdraw_command, "withdraw a decision (signed)").add_argument("decision_id")
