"""What the wallet's CLI says, in Japanese (default) and English (``--lang en`` or ``LANG=en…``)."""

from __future__ import annotations

import os
from typing import Any

MESSAGES: dict[str, tuple[str, str]] = {
    # progress
    "progress.keys": (
        "[1/3] 端末(トークン)の中で鍵を生成しています…",
        "[1/3] generating keys inside the token…",
    ),
    "progress.card": (
        "[2/3] マイナンバーカードで本人確認をしています…",
        "[2/3] proving identity with the My Number Card…",
    ),
    "progress.certificates": ("[3/3] 証明書を保存しています…", "[3/3] storing the certificates…"),
    "progress.app": (
        "アプリ用の鍵を生成し証明書を申請しています…",
        "generating the app key and requesting its certificate…",
    ),
    "progress.revoke": ("証明書の失効を申請しています…", "asking the CA to revoke the certificates…"),
    "progress.status": ("証明書の状態を確認しています (OCSP)…", "checking certificate status (OCSP)…"),
    # results
    "enrolled": ("登録しました: 端末 {device}", "enrolled: device {device}"),
    "device_added": ("2台目以降の端末を追加しました: {device}", "added another device: {device}"),
    "user_number": ("利用者識別番号", "user identification number"),
    "device_id": ("端末ID", "device id"),
    "token": ("トークン", "token"),
    "status": ("状態", "status"),
    "status.active": ("有効", "active"),
    "status.lost": ("紛失 (失効済み)", "lost (revoked)"),
    "default": ("既定", "default"),
    "no_devices": (
        "端末が登録されていません (tsunagu wallet enroll)",
        "no device enrolled (tsunagu wallet enroll)",
    ),
    "kind.signing": ("署名用 (my電子証明書)", "signing (my電子証明書)"),
    "kind.authentication": ("利用者証明用 (my認証)", "authentication (my認証)"),
    "kind.app": ("アプリ用 {app}", "app {app}"),
    "valid_until": ("有効期限", "valid until"),
    "ocsp.good": ("有効", "good"),
    "ocsp.revoked": ("失効", "revoked"),
    "ocsp.unknown": ("不明", "unknown"),
    "app_added": (
        "アプリ用証明書を発行しました: {app} (シリアル {serial})",
        "app certificate issued: {app} (serial {serial})",
    ),
    "login.asks": ("{client} がログインを求めています", "{client} asks you to log in"),
    "login.code": ("確認コード (画面と同じか確かめてください)", "display code (check it matches the screen)"),
    "login.claims": ("提供する情報", "information asked for"),
    "login.binding": ("窓口からのメッセージ", "message from the counter"),
    "login.expires": ("期限", "expires"),
    "login.approved": ("ログインを承認しました", "login approved"),
    "login.denied": ("ログインを拒否しました", "login denied"),
    "login.consent": (
        "データ提供の同意を署名しました (決定 {decision})",
        "data access decision signed (decision {decision})",
    ),
    "inbox.empty": ("承認待ちのリクエストはありません", "no requests waiting"),
    "requests.empty": ("同意の依頼はありません", "no consent requests"),
    "request.from": ("{recipient} からの依頼 {request}", "request {request} from {recipient}"),
    "request.purpose": ("目的", "purpose"),
    "request.until": ("期間 (まで)", "valid until"),
    "request.required": ("必須", "required"),
    "decision.allow": ("提供する", "allow"),
    "decision.deny": ("提供しない", "deny"),
    "decided": (
        "同意を署名しました: 決定 {decision} (通番 {sequence})",
        "decision signed: {decision} (sequence {sequence})",
    ),
    "grants.empty": ("提供中のデータはありません", "no grants in force"),
    "history.empty": ("履歴はありません", "no history"),
    "event.given": ("同意", "given"),
    "event.refused": ("拒否", "refused"),
    "event.partially-given": ("一部同意", "partially given"),
    "event.withdrawn": ("撤回", "withdrawn"),
    "receipt.matches": ("受領証は署名と一致", "receipt matches the signed statement"),
    "receipt.mismatch": ("受領証が署名と一致しません", "receipt does NOT match the signed statement"),
    "exchanges.empty": ("やりとりはまだありません", "no exchanges yet"),
    "exchanges.more": (
        "続きがあります: --before {before}",
        "more entries: --before {before}",
    ),
    "outcome.completed": ("提供されました", "provided"),
    "outcome.denied": ("同意がないため提供されませんでした", "not provided: no consent"),
    "outcome.failed": ("提供元の不具合で提供されませんでした", "not provided: the provider failed"),
    "withdrawn": (
        "同意を撤回しました: {decision} (新しい決定 {new})",
        "withdrawn: {decision} (new decision {new})",
    ),
    "lost": (
        "端末 {device} を紛失として届け出ました。失効した証明書: {count} 件 (他の端末はそのまま使えます)",
        "device {device} reported lost; {count} certificates revoked (other devices keep working)",
    ),
    # errors
    "error": ("エラー", "error"),
    "error.pin_required": (
        "PIN が必要です (--pin、環境変数 TSUNAGU_WALLET_PIN、または対話入力)",
        "a PIN is needed (--pin, TSUNAGU_WALLET_PIN, or an interactive prompt)",
    ),
    "error.pin_incorrect": ("トークン {token} の PIN が違います", "the PIN of token {token} is incorrect"),
    "error.token_not_found": ("トークン {token} が見つかりません", "token {token} not found"),
    "error.token_unavailable": ("トークン {token} に接続できません", "token {token} is unavailable"),
    "error.module_not_found": (
        "PKCS#11 モジュールが読み込めません: {module}",
        "cannot load the PKCS#11 module: {module}",
    ),
    "error.key_missing": (
        "トークン {token} に端末の鍵がありません (トークンが初期化されましたか?)",
        "the device's keys are missing from token {token} (was it re-initialised?)",
    ),
    "error.not_enrolled": (
        "まだ登録されていません: まず tsunagu wallet enroll",
        "not enrolled yet: run tsunagu wallet enroll first",
    ),
    "error.already_enrolled": (
        "すでに登録済みです。端末の追加は tsunagu wallet device add",
        "already enrolled; add a device with tsunagu wallet device add",
    ),
    "error.device_exists": ("端末名 {device} はすでに使われています", "device name {device} is already used"),
    "error.token_in_use": (
        "トークン {token} はすでに端末 {device} です",
        "token {token} is already device {device}",
    ),
    "error.unknown_device": ("端末 {device} はありません", "no device {device}"),
    "error.device_lost": ("端末 {device} は紛失届済みです", "device {device} was reported lost"),
    "error.no_other_device": (
        "紛失届には別の有効な端末での署名が必要です",
        "reporting a loss needs another active device to sign it",
    ),
    "error.other_person": (
        "このカードは別の人のものです (利用者識別番号が一致しません)",
        "this card belongs to someone else (user identification number differs)",
    ),
    "error.no_services": (
        "接続先がわかりません: --stack DIR または --ca/--idp/--consent を指定してください",
        "where is the platform? give --stack DIR or --ca/--idp/--consent",
    ),
    "error.no_consent": (
        "同意サービスの URL が設定されていません",
        "the consent service URL is not configured",
    ),
    "error.no_jlis": ("カードの接続先 (--jlis) が必要です", "the card service (--jlis) is needed"),
    "error.malformed_link": (
        "ログインのリンクが正しくありません (tsunagu://login?tx=…&issuer=…)",
        "malformed login link (expected tsunagu://login?tx=…&issuer=…)",
    ),
    "error.unknown_issuer": (
        "知らない発行者のリンクです: {issuer} (この財布の IdP は {known})",
        "the link names an unknown issuer: {issuer} (this wallet's IdP is {known})",
    ),
    "error.unknown_request": (
        "同意の依頼 {request} はありません (回答済みか期限切れ)",
        "no pending consent request {request}",
    ),
    "error.unknown_items": ("依頼にない項目です: {items}", "items not in the request: {items}"),
    "error.allow_and_deny": (
        "同じ項目を許可と拒否の両方にしています: {items}",
        "items both allowed and denied: {items}",
    ),
    "error.unknown_decision": (
        "決定 {decision} は履歴にありません",
        "no decision {decision} in your history",
    ),
    "error.unknown_app": (
        "アプリ用証明書 {app} はこの端末にありません",
        "no app certificate {app} on this device",
    ),
    "error.refused": (
        "基盤が拒否しました ({step}): {status} {title}",
        "the platform refused ({step}): {status} {title}",
    ),
    "error.http": ("{url} が {status} を返しました", "{url} answered {status}"),
    "error.unreachable": ("接続できません: {url}", "cannot reach {url}"),
    "error.state_corrupt": (
        "財布の状態ファイルが読めません: {path}",
        "cannot read the wallet state file: {path}",
    ),
    "error.bad_input": ("入力が正しくありません: {detail}", "invalid input: {detail}"),
}


def language(requested: str | None) -> str:
    """``ja`` or ``en``: the flag, else ``TSUNAGU_LANG``/``LANG`` starting with ``en``, else ``ja``."""
    if requested in ("ja", "en"):
        return requested
    for variable in ("TSUNAGU_LANG", "LC_ALL", "LANG"):
        value = os.environ.get(variable, "")
        if value.startswith("en"):
            return "en"
        if value.startswith("ja"):
            return "ja"
    return "ja"


def text(lang: str, key: str, **params: Any) -> str:
    ja, en = MESSAGES[key]
    return (en if lang == "en" else ja).format(**params)
