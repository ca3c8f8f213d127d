"""Resolve secret references late, into :class:`~dbrunbook.redact.Secret` values.

Supported: ``env:NAME``, ``file:/path`` (relative paths resolve against the inventory's folder),
``aws-sm:<secret-id>#key`` (AWS Secrets Manager; ``#key`` picks a field of a JSON secret) and
``aws-ssm:/param/path`` (SSM Parameter Store, decrypted). Errors name the reference, never a value.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from dbrunbook.errors import SecretError
from dbrunbook.redact import Secret

MIN_SECRET_LENGTH = 4


class SecretResolver:
    def __init__(self, base_dir: Path, aws_session: Any = None) -> None:
        self.base_dir = base_dir
        self._aws_session = aws_session
        self._cache: dict[str, Secret] = {}

    def resolve(self, ref: str) -> Secret:
        if ref not in self._cache:
            value = self._fetch(ref)
            if len(value) < MIN_SECRET_LENGTH:
                # Shorter values cannot be masked reliably in logs.
                raise SecretError(f"secret {ref} is shorter than {MIN_SECRET_LENGTH} characters")
            self._cache[ref] = Secret(value, source=ref)
        return self._cache[ref]

    def _fetch(self, ref: str) -> str:
        scheme, _, rest = ref.partition(":")
        if scheme == "env":
            value = os.environ.get(rest)
            if not value:
                raise SecretError(f"secret {ref}: environment variable {rest} is not set")
            return value
        if scheme == "file":
            return self._from_file(ref, rest)
        if scheme == "aws-sm":
            return self._from_secrets_manager(ref, rest)
        if scheme == "aws-ssm":
            return self._from_parameter_store(ref, rest)
        raise SecretError(f"secret reference {ref.split(':', maxsplit=1)[0]}: has an unknown scheme")

    def _from_file(self, ref: str, rest: str) -> str:
        path = Path(rest).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            st = path.stat()
            if st.st_mode & stat.S_IROTH:
                raise SecretError(f"secret {ref}: {path} is world-readable; chmod 600 it")
            value = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretError(f"secret {ref}: {path} does not exist") from None
        except PermissionError:
            raise SecretError(f"secret {ref}: {path} is not readable by this user") from None
        return value.rstrip("\r\n")

    def _boto_client(self, service: str) -> Any:
        import boto3  # lazy: only inventories that use AWS secrets pay for the import

        session: Any = self._aws_session or boto3.session.Session()
        return session.client(service)

    def _from_secrets_manager(self, ref: str, rest: str) -> str:
        secret_id, _, key = rest.partition("#")
        try:
            answer = self._boto_client("secretsmanager").get_secret_value(SecretId=secret_id)
        except Exception as exc:
            raise SecretError(f"secret {ref}: AWS Secrets Manager said {type(exc).__name__}") from None
        raw = answer.get("SecretString")
        if raw is None:
            raise SecretError(f"secret {ref}: binary secrets are not supported")
        if not key:
            return str(raw)
        try:
            return str(json.loads(raw)[key])
        except (ValueError, KeyError, TypeError):
            raise SecretError(f"secret {ref}: the secret is not JSON with a key '{key}'") from None

    def _from_parameter_store(self, ref: str, rest: str) -> str:
        try:
            answer = self._boto_client("ssm").get_parameter(Name=rest, WithDecryption=True)
        except Exception as exc:
            raise SecretError(f"secret {ref}: AWS SSM said {type(exc).__name__}") from None
        return str(answer["Parameter"]["Value"])
