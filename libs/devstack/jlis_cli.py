"""``tsunagu jlis …``: drive a running J-LIS sandbox over HTTP.

tsunagu jlis card create --name 山田太郎 --address 東京都… --birth-date 1990-04-01 --sex 1
tsunagu jlis card show CARD_ID
tsunagu jlis card sign CARD_ID --data-file F [--certificate signing|auth]
tsunagu jlis move PERSON_ID --address …      tsunagu jlis rename PERSON_ID --name …
tsunagu jlis renew|lose|die PERSON_ID
tsunagu jlis crl publish

Every command takes ``--url`` (default http://127.0.0.1:8190) and ``--json``. Wire it into a
parser with :func:`add_jlis_commands`; the parsed namespace runs with :func:`run_jlis_command`.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8190"
SEXES = {"1": "男性 / male", "2": "女性 / female", "3": "その他 / other"}
EVENTS = {
    "move": "転居 / move",
    "rename": "氏名変更 / rename",
    "renew": "更新 / renew",
    "lose": "紛失 / lost",
    "die": "死亡 / death",
}

Request = Callable[[argparse.Namespace], tuple[str, str, dict[str, Any] | None]]


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - a CLI talks on stdout


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"sandbox URL (default {DEFAULT_URL})")
    parser.add_argument("--json", action="store_true", help="print the JSON response")


def _card_create(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    body = {"name": args.name, "address": args.address, "birth_date": args.birth_date, "sex": args.sex}
    return "POST", "/cards", body


def _card_sign(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    data = base64.urlsafe_b64encode(Path(args.data_file).read_bytes()).rstrip(b"=").decode()
    return "POST", f"/cards/{args.card_id}/sign", {"data": data, "certificate": args.certificate}


def _event(kind: str) -> Request:
    def request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
        body = (
            {"address": args.address} if kind == "move" else {"name": args.name} if kind == "rename" else None
        )
        return "POST", f"/persons/{args.person_id}/{kind}", body

    return request


def add_jlis_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``jlis`` (card create|show|sign, move, rename, renew, lose, die, crl publish)."""
    jlis = subparsers.add_parser("jlis", help="drive the J-LIS sandbox (JPKI cards, life events, CRL)")
    actions = jlis.add_subparsers(dest="jlis_action", required=True)
    card = actions.add_parser("card", help="My Number Cards").add_subparsers(
        dest="card_action", required=True
    )
    create = card.add_parser("create", help="issue a card (署名用・利用者証明用電子証明書)")
    create.add_argument("--name", required=True, help="氏名")
    create.add_argument("--address", required=True, help="住所")
    create.add_argument("--birth-date", required=True, help="生年月日, ISO (1990-04-01)")
    create.add_argument("--sex", required=True, choices=sorted(SEXES), help="性別: 1 male, 2 female, 3 other")
    _common(create)
    create.set_defaults(jlis_request=_card_create)
    show = card.add_parser("show", help="a card's certificates and status")
    show.add_argument("card_id")
    _common(show)
    show.set_defaults(jlis_request=lambda a: ("GET", f"/cards/{a.card_id}", None))
    sign = card.add_parser("sign", help="sign a file's bytes with the card (RSA PKCS#1 v1.5 SHA-256)")
    sign.add_argument("card_id")
    sign.add_argument("--data-file", required=True)
    sign.add_argument("--certificate", choices=["signing", "auth"], default="signing")
    _common(sign)
    sign.set_defaults(jlis_request=_card_sign)
    for kind, label in EVENTS.items():
        event = actions.add_parser(kind, help=label)
        event.add_argument("person_id")
        if kind == "move":
            event.add_argument("--address", required=True, help="新しい住所 / new address")
        if kind == "rename":
            event.add_argument("--name", required=True, help="新しい氏名 / new name")
        _common(event)
        event.set_defaults(jlis_request=_event(kind))
    crl = actions.add_parser("crl", help="CRLs").add_subparsers(dest="crl_action", required=True)
    publish = crl.add_parser("publish", help="publish both CRLs now")
    _common(publish)
    publish.set_defaults(jlis_request=lambda _a: ("POST", "/crl/publish", None))


def _describe(args: argparse.Namespace, body: dict[str, Any]) -> list[str]:
    if args.jlis_action == "card" and args.card_action in ("create", "show"):
        lines = [
            f"カード / card      {body['card_id']}",
            f"本人 / person      {body['person_id']}",
            f"署名用 / signing   serial {body['signing_serial']}",
            f"利用者証明用 / auth serial {body['auth_serial']}",
        ]
        if "status" in body:
            lines.append(f"状態 / status      {body['status']}")
        return lines
    if args.jlis_action == "card":
        return [f"署名 / signature   {body['signature']}", f"証明書 / serial    {body['serial']}"]
    if args.jlis_action == "crl":
        return [
            f"署名用CRL / signing CRL number {body['signing_crl_number']}",
            f"利用者証明用CRL / user-auth CRL number {body['user_auth_crl_number']}",
        ]
    lines = [
        f"{EVENTS[args.jlis_action]}: event {body['event_id']}",
        f"失効 / revoked    {body['old_serial']}",
    ]
    if body.get("new_serial"):
        lines.append(f"新規 / new         {body['new_serial']}")
    return lines


def run_jlis_command(args: argparse.Namespace, client: httpx.Client | None = None) -> int:
    """Run a parsed ``jlis`` command; ``client`` replaces the HTTP client (tests). Exit status."""
    own = client is None
    http = client or httpx.Client(base_url=args.url, timeout=30.0)
    try:
        method, path, body = args.jlis_request(args)
        try:
            response = http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            _say(f"接続できません / cannot reach the sandbox at {args.url}: {type(exc).__name__}")
            return 2
    finally:
        if own:
            http.close()
    payload = response.json() if response.content else {}
    if args.json:
        _say(json.dumps(payload, ensure_ascii=False, indent=2))
    elif response.is_success:
        for line in _describe(args, payload):
            _say(line)
    else:
        title = payload.get("title", response.reason_phrase)
        _say(f"エラー / error {response.status_code}: {title} {payload.get('detail') or ''}".rstrip())
    return 0 if response.is_success else 1
