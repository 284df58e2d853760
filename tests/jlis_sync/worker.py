"""One CRL sync cycle in its own process, so a test can kill it mid-CRL at a failpoint.

python -m tests.jlis_sync.worker <db-url> <jlis-base-url> <trust-dir>
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from tsunagu.db import Database
from tsunagu.events import Outbox
from tsunagu.jlis_sync.domain.service import JlisSyncService
from tsunagu.jlis_sync.jlis.client import JlisClient
from tsunagu.jlis_sync.settings import JlisEndpoints
from tsunagu.jlis_sync.store.models import event_tables


def build(db: Database, base_url: str, trust: Path) -> JlisSyncService:
    return JlisSyncService(
        db,
        Outbox(event_tables, source="/tsunagu/jlis-sync"),
        JlisClient(JlisEndpoints(base_url=base_url)),
        signing_ca=x509.load_pem_x509_certificate((trust / "signing.pem").read_bytes()),
        root_ca=x509.load_pem_x509_certificate((trust / "root.pem").read_bytes()),
        operator_id="tsunagu",
        push_max_age=timedelta(days=1),
        crl_batch_size=2,  # five matches → three batches, so a kill lands between two of them
    )


async def main(db_url: str, base_url: str, trust: str) -> None:
    db = Database(db_url)
    service = build(db, base_url, Path(trust))
    print(await service.sync_crl())
    await service.jlis.aclose()
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
