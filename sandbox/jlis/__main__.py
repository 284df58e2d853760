"""``python -m tsunagu.sandbox.jlis --port 8190 --state-dir .tsunagu/jlis``: serve the sandbox."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from pydantic import SecretStr

from tsunagu.pkcs11 import Pkcs11Settings, Pkcs11Token
from tsunagu.sandbox.jlis.app import create_app
from tsunagu.sandbox.jlis.sandbox import DEFAULT_BASE_URL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tsunagu.sandbox.jlis", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8190)
    parser.add_argument("--state-dir", type=Path, default=Path(".tsunagu/jlis"))
    parser.add_argument(
        "--base-url",
        help=f"URL written into certificates (CRL, OCSP); default http://HOST:PORT ({DEFAULT_BASE_URL})",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--pkcs11-module", help="PKCS#11 module for cards created with key_storage=pkcs11")
    parser.add_argument("--pkcs11-token-label", default="jlis-cards")
    parser.add_argument("--pkcs11-pin-file", type=Path, help="file holding the token's user PIN")
    args = parser.parse_args(argv)
    base_url = args.base_url or f"http://{args.host}:{args.port}"
    card_token = None
    if args.pkcs11_module:
        pin = args.pkcs11_pin_file.read_text().strip() if args.pkcs11_pin_file else ""
        card_token = Pkcs11Token(
            Pkcs11Settings(
                module_path=args.pkcs11_module, token_label=args.pkcs11_token_label, user_pin=SecretStr(pin)
            )
        )
    app = create_app(args.state_dir, base_url=base_url, card_token=card_token)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
