"""The wallet's commands: devices and certificates (enroll, device add/lost, app-cert add, devices,
certs). Login and consent commands live in :mod:`tsunagu.wallet.commands_use`.

Every command that changes the state holds the wallet lock, does all its work (token, platform)
first and saves the state file once at the end — a failure anywhere leaves it as it was.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from tsunagu.wallet.card import SandboxCard
from tsunagu.wallet.cli import (
    CliError,
    Context,
    Handler,
    Result,
    global_options,
    http,
)
from tsunagu.wallet.device import add_app_certificate, enroll_device, enrolled_view, key_reference
from tsunagu.wallet.enroll import revoke
from tsunagu.wallet.pkcs11_key import ALGORITHMS, DeviceToken
from tsunagu.wallet.state import Services, StoredCredential, StoredDevice, WalletState, now


def open_token(context: Context, label: str, module_path: str) -> DeviceToken:
    """Log in to a device's token (the PIN is asked for first, before anything is touched)."""
    pin = context.pin()
    context.token_label = label
    return DeviceToken.open(module_path, label, pin)


def _module_path(args: argparse.Namespace) -> str:
    if args.module:
        return str(args.module)
    from tsunagu.devstack.softhsm import SoftHsmNotInstalled, find_softhsm_module

    try:
        return find_softhsm_module()
    except SoftHsmNotInstalled as exc:
        raise CliError("error.module_not_found", 3, module=str(exc)) from exc


def _services(args: argparse.Namespace) -> Services:
    """The platform's URLs: ``--ca``/``--idp``/``--consent``/``--jlis``, else a dev stack's stack.json."""
    urls: dict[str, str] = {}
    jlis: str | None = None
    stack = Path(args.stack) if args.stack else Path(".tsunagu")
    described = stack / "stack.json"
    if described.is_file():
        document = json.loads(described.read_text(encoding="utf-8"))
        urls, jlis = dict(document.get("services", {})), document.get("jlis_sandbox") or None
    elif args.stack:
        raise CliError("error.no_services")
    ca, idp = args.ca or urls.get("ca"), args.idp or urls.get("idp")
    if not ca or not idp:
        raise CliError("error.no_services")
    return Services(ca=ca, idp=idp, consent=args.consent or urls.get("consent"), jlis=args.jlis or jlis)


def _check_new_device(context: Context, state: WalletState, name: str, label: str) -> None:
    if name in state.devices:
        raise CliError("error.device_exists", device=name)
    for device in state.active_devices():
        if device.token_label == label:
            raise CliError("error.token_in_use", token=label, device=device.name)


async def _enroll_on_token(
    context: Context, state: WalletState, services: Services
) -> tuple[str, StoredDevice, DeviceToken]:
    args = context.args
    name = args.name or args.token
    _check_new_device(context, state, name, args.token)
    if not services.jlis:
        raise CliError("error.no_jlis")
    module_path = _module_path(args)
    token = open_token(context, args.token, module_path)
    try:
        async with http(services.ca) as ca, http(services.jlis) as jlis:
            user_number, device = await enroll_device(
                ca,
                SandboxCard(jlis, args.card),
                token,
                name=name,
                module_path=module_path,
                signing_algorithm=args.signing_alg,
                progress=context.progress,
            )
    except BaseException:
        token.close()
        raise
    return user_number, device, token


def _device_lines(context: Context, device: StoredDevice, user_number: str) -> list[str]:
    return [
        f"  {context.t('user_number')}: {user_number}",
        f"  {context.t('device_id')}: {device.device_id}",
        f"  {context.t('token')}: {device.token_label}",
        *(_credential_line(context, credential) for credential in device.credentials()),
    ]


def _device_data(device: StoredDevice) -> dict[str, Any]:
    return {
        "name": device.name,
        "token_label": device.token_label,
        "device_id": device.device_id,
        "status": device.status,
        "enrolled_at": device.enrolled_at,
        "lost_at": device.lost_at,
        "certificates": [_credential_data(c) for c in device.credentials()],
    }


async def enroll_command(context: Context) -> Result:
    with context.home.locked():
        state = context.load()
        if state.user_number is not None:
            raise CliError("error.already_enrolled")
        services = _services(context.args)
        user_number, device, token = await _enroll_on_token(context, state, services)
        token.close()
        state.user_number, state.services = user_number, services
        state.devices[device.name] = device
        state.default_device = device.name
        context.home.save(state)
    lines = [context.t("enrolled", device=device.name), *_device_lines(context, device, user_number)]
    return Result({"user_number": user_number, "device": _device_data(device)}, lines)


async def device_add_command(context: Context) -> Result:
    with context.home.locked():
        state, services, user_number = context.enrolled_state()
        enrolled_number, device, token = await _enroll_on_token(context, state, services)
        try:
            if enrolled_number != user_number:
                # Someone else's card: take back what the CA just issued to this token, keep nothing.
                async with http(services.ca) as ca:
                    view = enrolled_view(token, device, enrolled_number)
                    await revoke(ca, view, device_id=device.device_id, reason="cessationOfOperation")
                for credential in device.credentials():
                    token.destroy(key_reference(credential.key))
                raise CliError("error.other_person")
        finally:
            token.close()
        state.devices[device.name] = device
        context.home.save(state)
    lines = [context.t("device_added", device=device.name), *_device_lines(context, device, user_number)]
    return Result({"user_number": user_number, "device": _device_data(device)}, lines)


async def app_cert_add_command(context: Context) -> Result:
    app_id = context.args.app_id
    with context.home.locked():
        state, services, user_number = context.enrolled_state()
        device = context.device(state)
        if app_id in device.apps:
            raise CliError(
                "error.bad_input", detail=f"app {app_id} already has a certificate on {device.name}"
            )
        token = open_token(context, device.token_label, device.module_path)
        try:
            context.progress("app")
            async with http(services.ca) as ca:
                stored = await add_app_certificate(ca, token, device, user_number, app_id)
        finally:
            token.close()
        device.apps[app_id] = stored
        context.home.save(state)
    return Result(
        {"device": device.name, "certificate": _credential_data(stored)},
        [context.t("app_added", app=app_id, serial=stored.serial)],
    )


async def devices_command(context: Context) -> Result:
    state = context.load()
    if not state.devices:
        return Result({"user_number": None, "devices": []}, [context.t("no_devices")])
    lines = [f"{context.t('user_number')}: {state.user_number}"]
    for device in state.devices.values():
        default = f" ({context.t('default')})" if device.name == state.default_device else ""
        lines.append(
            f"- {device.name}{default}: {context.t('status.' + device.status)}, "
            f"{context.t('token')} {device.token_label}, {context.t('device_id')} {device.device_id}"
        )
    data = {
        "user_number": state.user_number,
        "default_device": state.default_device,
        "devices": [_device_data(device) for device in state.devices.values()],
    }
    return Result(data, lines)


def _certificate(credential: StoredCredential) -> x509.Certificate:
    return x509.load_pem_x509_certificate(credential.certificate.encode())


def _credential_data(credential: StoredCredential) -> dict[str, Any]:
    certificate = _certificate(credential)
    return {
        "kind": credential.kind,
        "app_id": credential.app_id,
        "serial": credential.serial,
        "algorithm": credential.key.algorithm,
        "key_label": credential.key.label,
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
    }


def _credential_line(context: Context, credential: StoredCredential, status: str | None = None) -> str:
    kind = context.t(f"kind.{credential.kind}", app=credential.app_id)
    until = _certificate(credential).not_valid_after_utc.date().isoformat()
    shown = f" [{context.t('ocsp.' + status)}]" if status else ""
    return f"  {kind}: {credential.serial} ({context.t('valid_until')} {until}){shown}"


async def ocsp_status(ca: httpx.AsyncClient, credential: StoredCredential) -> str:
    """good / revoked / unknown, as the CA's OCSP responder answers now (RFC 6960)."""
    issuer = x509.load_pem_x509_certificate(credential.chain[0].encode())
    request = ocsp.OCSPRequestBuilder().add_certificate(_certificate(credential), issuer, hashes.SHA1())  # noqa: S303 - CertID hash clients send
    response = await ca.post(
        "/ocsp",
        content=request.build().public_bytes(Encoding.DER),
        headers={"content-type": "application/ocsp-request"},
    )
    if response.status_code != 200:
        return "unknown"
    answer = ocsp.load_der_ocsp_response(response.content)
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return "unknown"
    return answer.certificate_status.name.lower()


async def certs_command(context: Context) -> Result:
    state = context.load()
    chosen = [state.devices[context.args.device]] if context.args.device in state.devices else []
    if context.args.device and not chosen:
        raise CliError("error.unknown_device", device=context.args.device)
    devices = chosen or list(state.devices.values())
    lines: list[str] = []
    listed: list[dict[str, Any]] = []
    if context.args.status and state.services is not None:
        context.progress("status")
    async with http(state.services.ca if state.services else "http://invalid") as ca:
        for device in devices:
            lines.append(f"{device.name} ({context.t('status.' + device.status)})")
            for credential in device.credentials():
                status = await ocsp_status(ca, credential) if context.args.status else None
                lines.append(_credential_line(context, credential, status))
                entry = {"device": device.name, **_credential_data(credential)}
                if status is not None:
                    entry["status"] = status
                listed.append(entry)
    return Result({"certificates": listed}, lines or [context.t("no_devices")])


async def device_lost_command(context: Context) -> Result:
    with context.home.locked():
        state, services, user_number = context.enrolled_state()
        lost = state.devices.get(context.args.lost_device)
        if lost is None:
            raise CliError("error.unknown_device", device=context.args.lost_device)
        if lost.status == "lost":
            raise CliError("error.device_lost", device=lost.name)
        others = [d for d in state.active_devices() if d.name != lost.name]
        signer = context.device(state, context.args.device or (others[0].name if others else None))
        if signer.name == lost.name:
            raise CliError("error.no_other_device")
        token = open_token(context, signer.token_label, signer.module_path)
        try:
            context.progress("revoke")
            async with http(services.ca) as ca:
                view = enrolled_view(token, signer, user_number)
                revoked = await revoke(ca, view, device_id=lost.device_id, reason="keyCompromise")
        finally:
            token.close()
        lost.status, lost.lost_at, lost.revoked_serials = "lost", now(), revoked
        if state.default_device == lost.name:
            state.default_device = signer.name
        context.home.save(state)
    return Result(
        {"device": lost.name, "signed_with": signer.name, "revoked": revoked},
        [context.t("lost", device=lost.name, count=len(revoked))],
    )


def register(sub: Any) -> None:
    """Add the wallet's commands to an argparse sub-command set."""
    from tsunagu.wallet import commands_log, commands_use

    def add(parent: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
        global_options(parser, top=False)
        parser.set_defaults(handler=handler)
        return parser

    def enrolment_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--card", required=True, help="the My Number Card (J-LIS sandbox card id)")
        parser.add_argument("--token", required=True, help="label of the PKCS#11 token of this device")
        parser.add_argument("--name", default=None, help="device name (default: the token label)")
        parser.add_argument("--module", default=None, help="PKCS#11 module (default: SoftHSM2)")
        parser.add_argument("--signing-alg", choices=ALGORITHMS, default="ES256", help="signing key type")

    enroll = add(sub, "enroll", enroll_command, "enroll this wallet's first device with a card")
    enrolment_options(enroll)
    enroll.add_argument("--stack", default=None, help="a dev stack's state dir (reads stack.json)")
    for service in ("ca", "idp", "consent", "jlis"):
        enroll.add_argument(f"--{service}", default=None, help=f"{service} base URL")

    device = sub.add_parser("device", help="add a device or report one lost").add_subparsers(
        dest="device_action", required=True
    )
    enrolment_options(
        add(device, "add", device_add_command, "enroll another device (same card, same person)")
    )
    lost = add(device, "lost", device_lost_command, "report a device lost: revoke only its certificates")
    lost.add_argument("lost_device", help="the lost device's name (signed with --device, another device)")

    app_cert = sub.add_parser("app-cert", help="per-app certificates").add_subparsers(
        dest="app_action", required=True
    )
    add(app_cert, "add", app_cert_add_command, "a per-app key and certificate").add_argument("app_id")
    add(sub, "devices", devices_command, "list devices")
    certs = add(sub, "certs", certs_command, "list certificates")
    certs.add_argument("--status", action="store_true", help="ask the CA's OCSP responder")
    commands_use.register(sub, add)
    commands_log.register(sub, add)
