"""Settings: one prefix per service, nested groups, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsunagu.ca.settings import CaSettings
from tsunagu.jlis_sync.settings import JlisSyncSettings


def test_each_service_reads_only_its_own_prefix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TSUNAGU_CA_PORT", "9102")
    monkeypatch.setenv("TSUNAGU_JLIS_SYNC_PORT", "9106")
    monkeypatch.setenv("TSUNAGU_JLIS_SYNC_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    assert CaSettings().port == 9102
    jlis = JlisSyncSettings()
    assert jlis.port == 9106 and jlis.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert CaSettings().kafka.bootstrap_servers == "127.0.0.1:9092"


def test_secrets_come_from_files_top_level_and_nested(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    url_file = tmp_path / "db-url"
    url_file.write_text("postgresql+asyncpg://ca@db/ca\n")
    password_file = tmp_path / "kafka-password"
    password_file.write_text("s3cr3t-from-a-file")
    monkeypatch.setenv("TSUNAGU_CA_DATABASE_URL_FILE", str(url_file))
    monkeypatch.setenv("TSUNAGU_CA_KAFKA__SASL_PASSWORD_FILE", str(password_file))
    settings = CaSettings()
    assert settings.database_url == "postgresql+asyncpg://ca@db/ca"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "s3cr3t-from-a-file"
    assert "s3cr3t" not in repr(settings)


def test_a_direct_value_wins_over_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    file = tmp_path / "port"
    file.write_text("1111")
    monkeypatch.setenv("TSUNAGU_CA_PORT_FILE", str(file))
    monkeypatch.setenv("TSUNAGU_CA_PORT", "2222")
    assert CaSettings().port == 2222


def test_embedded_default_is_one_sqlite_file_per_service():
    assert CaSettings().database_url.endswith("/ca.db")
    assert JlisSyncSettings().database_url.endswith("/jlis-sync.db")
    assert JlisSyncSettings().topic_prefix == "tsunagu.jlis_sync"


def test_invalid_environment_name_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TSUNAGU_CA_ENVIRONMENT", "staging-but-typo")
    with pytest.raises(ValueError, match="environment"):
        CaSettings()


def test_a_missing_secret_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("TSUNAGU_CA_DATABASE_URL_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="TSUNAGU_CA_DATABASE_URL_FILE names an unreadable file"):
        CaSettings()
