from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dbrunbook.errors import SecretError
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.redact import REDACTOR


def test_env_reference(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBR_TEST_PW", "env-secret-value")
    secret = SecretResolver(tmp_path).resolve("env:DBR_TEST_PW")
    assert secret.reveal() == "env-secret-value"
    assert str(secret) == "***" and "env-secret-value" not in repr(secret) and f"{secret}" == "***"
    assert REDACTOR.redact("pw=env-secret-value") == "pw=***"


def test_missing_env_names_reference_only(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="environment variable DBR_NOT_SET is not set"):
        SecretResolver(tmp_path).resolve("env:DBR_NOT_SET")


def test_file_reference_relative_to_inventory(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("file-secret-1\n")
    path.chmod(0o600)
    assert SecretResolver(tmp_path).resolve("file:pw").reveal() == "file-secret-1"


def test_world_readable_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("file-secret-2")
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match="world-readable"):
        SecretResolver(tmp_path).resolve(f"file:{path}")


def test_missing_file_and_short_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SecretError, match="does not exist"):
        SecretResolver(tmp_path).resolve("file:/nonexistent/pw")
    monkeypatch.setenv("DBR_SHORT", "ab")
    with pytest.raises(SecretError, match="shorter than"):
        SecretResolver(tmp_path).resolve("env:DBR_SHORT")


class _Session:
    """Stands in for boto3's Session: only answers what a real Secrets Manager / SSM would."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def client(self, service: str) -> Any:
        answers = self.answers

        class _Client:
            def get_secret_value(self, SecretId: str) -> Any:
                return answers[SecretId]

            def get_parameter(self, Name: str, WithDecryption: bool) -> Any:
                assert WithDecryption
                return {"Parameter": {"Value": answers[Name]}}

        return _Client()


def test_aws_secrets_manager_json_key_and_ssm(tmp_path: Path) -> None:
    session = _Session(
        {
            "prod/db": {"SecretString": json.dumps({"password": "sm-secret-xyz"})},
            "/prod/db/pw": "ssm-secret-xyz",
        }
    )
    resolver = SecretResolver(tmp_path, aws_session=session)
    assert resolver.resolve("aws-sm:prod/db#password").reveal() == "sm-secret-xyz"
    assert resolver.resolve("aws-ssm:/prod/db/pw").reveal() == "ssm-secret-xyz"
    with pytest.raises(SecretError, match="not JSON with a key 'user'"):
        resolver.resolve("aws-sm:prod/db#user")
