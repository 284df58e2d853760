"""An example's settings: one JSON file written when the relying party is registered.

``{"app": "hospital", "title_ja": "A病院", "title_en": "Hospital A", "issuer": "https://idp…",
"client_id": "…", "key_file": "…/hospital-a.jwk.json", "base_url": "http://127.0.0.1:8123",
"broker_url": "https://broker…", "port": 8123}``

The private key (a JWK, mode 0600) stays in its own file; the idp only ever saw its public half.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey


@dataclass(frozen=True)
class RpConfig:
    app: str
    title_ja: str
    title_en: str
    issuer: str
    client_id: str
    key_file: Path
    base_url: str
    broker_url: str
    port: int

    @classmethod
    def load(cls, path: Path) -> RpConfig:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            app=str(raw["app"]),
            title_ja=str(raw["title_ja"]),
            title_en=str(raw["title_en"]),
            issuer=str(raw["issuer"]).rstrip("/"),
            client_id=str(raw["client_id"]),
            key_file=Path(raw["key_file"]),
            base_url=str(raw["base_url"]).rstrip("/"),
            broker_url=str(raw["broker_url"]).rstrip("/"),
            port=int(raw["port"]),
        )

    def key(self) -> ECKey:
        key = ECKey.import_key(json.loads(self.key_file.read_text(encoding="utf-8")))
        key.ensure_kid()
        return key

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/callback"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/webhooks/tsunagu"
