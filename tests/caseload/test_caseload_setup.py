"""Settings, migrations (up from empty on SQLite and PostgreSQL, matching the tables) and the CLI."""

from __future__ import annotations

import os
import stat

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect

from caseload.cli import caseload
from caseload.db import current_revision, downgrade, head_revision, make_engine, upgrade
from caseload.settings import CaseloadSettings, session_secret
from caseload.tables import Base


def test_migrations_up_from_empty_match_the_tables_and_go_back_down(database_url):
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            difference = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                          Base.metadata)
        assert difference == [], difference
        upgrade(engine)  # again: nothing to do
        downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_settings_share_the_workers_names_for_shared_things(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-a:9092,kafka-b:9092")
    monkeypatch.setenv("RECONNECT_TOPIC_MARKS", "trust.marks")
    monkeypatch.setenv("RECONNECT_TOPIC_OUTCOMES", "trust.outcomes")
    monkeypatch.setenv("RECONNECT_BROKER_PROFILE", "embedded")
    monkeypatch.setenv("RECONNECT_CASELOAD_PORT", "9099")
    monkeypatch.setenv("RECONNECT_CASELOAD_DATABASE_URL", "postgresql+psycopg://c@db/caseload")
    settings = CaseloadSettings(_env_file=None)
    assert settings.bootstrap_list == ["kafka-a:9092", "kafka-b:9092"]
    assert (settings.topic_marks, settings.topic_outcomes, settings.topic_interventions) == (
        "trust.marks", "trust.outcomes", "reconnect.interventions.v1")
    assert settings.port == 9099 and settings.database_url.startswith("postgresql+psycopg://")
    assert settings.consumer_fetch_max_wait_ms == 100  # the embedded broker's short fetch wait
    assert (settings.bind, settings.cookie_secure, settings.consumer_group) == ("127.0.0.1", True, "reconnect-caseload")
    monkeypatch.setenv("RECONNECT_CASELOAD_TOPIC_MARKS", "")
    with pytest.raises(ValueError):
        CaseloadSettings(_env_file=None)


def test_a_session_secret_is_generated_once_into_an_owner_only_file(tmp_path, caplog):
    path = tmp_path / "var" / "session.key"
    settings = CaseloadSettings(_env_file=None, session_secret_file=path)
    first = session_secret(settings)
    assert len(first) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert session_secret(settings) == first
    assert first not in caplog.text and str(path) in caplog.text
    with pytest.raises(ValueError):
        session_secret(CaseloadSettings(_env_file=None, session_secret="short"))


def test_cli_migrate_add_user_and_import_names(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    result = runner.invoke(caseload, ["--database-url", url, "migrate"])
    assert result.exit_code == 0 and head_revision() in result.output
    password_file = tmp_path / "pw"
    password_file.write_text("a long enough test password\n")
    result = runner.invoke(caseload, ["--database-url", url, "add-user", "hoy.sch1", "--role", "head_of_year",
                                      "--school", "SCH1", "--school", "SCH2", "--password-file", str(password_file)])
    assert result.exit_code == 0, result.output
    assert "SCH1, SCH2" in result.output and "a long enough" not in result.output
    prompted = runner.invoke(caseload, ["--database-url", url, "add-user", "senco.sch1", "--role", "senco",
                                        "--school", "SCH1"], input="another long password\nanother long password\n")
    assert prompted.exit_code == 0, prompted.output
    refused = runner.invoke(caseload, ["--database-url", url, "add-user", "x", "--role", "bailiff", "--school", "S1",
                                       "--password-file", str(password_file)])
    assert refused.exit_code != 0 and "unknown role" in refused.output
    names = tmp_path / "names.csv"
    names.write_text("pseudonym,name,year_group,tutor_group\nSCH1-P001,Ada Fictional,7,7R\n"
                     "Bob Real,Bob Real,7,7R\n", encoding="utf-8")
    result = runner.invoke(caseload, ["--database-url", url, "import-names", str(names)])
    assert result.exit_code == 0 and "Imported 1 names; 1 rows rejected" in result.output
    assert "line 3" in result.output and "Ada" not in result.output and "Bob" not in result.output
