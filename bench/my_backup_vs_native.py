"""MariaDB backups of the sandbox's mariadb-main (with a >= 1 GB generated database ``bench_my``): dbrunbook
against the plain tools, same run, same disk.

- logical: ``invoke backup.full --kind=logical`` (mariadb-dump streamed through zstd 1 and age into a
  ``file://`` repository) against the same ``mariadb-dump`` command line writing a local file. Goal <= 1.15.
- physical: ``invoke backup.full --kind=physical`` (mariabackup --stream=xbstream, streamed the same way)
  against ``mariabackup --backup --target-dir`` on the local disk. Goal <= 1.1.
- restore, reported beside the anchor to beat later: ``invoke restore.run`` of the logical backup (a new
  server, the dump loaded in one session) against mydumper/myloader (4 threads) into a new server, and of
  the physical backup (extract, prepare, start) against ``mariabackup --prepare`` + ``--copy-back``.
- peak RSS of each dbrunbook-host process (goal < 300 MiB).

    .venv/bin/python bench/my_backup_vs_native.py [--rows 1200000] [--rounds 1]

Needs the sandbox (invoke sandbox.up) and mydumper (installed with apt when missing); run as root or as the
database OS user. bench_my is dropped at the end unless --keep-db: left in place, every backup the tests
take of the sandbox would carry it. The generated database is written with sql_log_bin=0, so neither the replica nor the
sandbox's binlog archive pays for it. Everything under /var/tmp/dbrunbook-bench-my is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from _common import INVOKE, REPO, PeakRss, du, ids, sh, timed

from dbrunbook.engines.mariadb.driver import MariaDB
from dbrunbook.inventory.model import Host

WORK = Path("/var/tmp/dbrunbook-bench-my")
TABLES = 4


class Maria:
    def __init__(self, cluster: dict[str, Any]) -> None:
        host = cluster["hosts"]["mariadb-main-1"]
        self.host = Host.model_validate(host)
        self.user = host["os_user"]
        self.port = int(host["port"])
        self.data_dir = host["data_dir"]
        password = Path(cluster["credentials"]["password"].removeprefix("file:")).read_text().strip()
        self.defaults = WORK / "client.cnf"
        self.defaults.write_text(f'[client]\nuser="{cluster["credentials"]["user"]}"\npassword="{password}"\n')
        self.defaults.chmod(0o600)
        os.chown(self.defaults, *ids(self.user))

    def tool(self, name: str, *args: str, port: int | None = None) -> list[str]:
        return [name, f"--defaults-extra-file={self.defaults}", "-h127.0.0.1", f"-P{port or self.port}", *args]

    def sql(self, query: str, port: int | None = None) -> str:
        return sh(*self.tool("mariadb", "-N", "-B", "-e", query, port=port), user=self.user).strip()


def ensure_bench_db(m: Maria, rows: int) -> int:
    """Create ``bench_my`` (sysbench-like tables) when missing; its size in bytes."""
    done = m.sql("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'bench_my' AND table_rows > 0")
    if int(done) < TABLES:  # missing, or a creation that was interrupted
        print(f"creating bench_my: {TABLES} tables of {rows} rows ...", flush=True)
        m.sql("SET SESSION sql_log_bin = 0; DROP DATABASE IF EXISTS bench_my; CREATE DATABASE bench_my")
        for i in range(1, TABLES + 1):
            m.sql(
                f"SET SESSION sql_log_bin = 0; USE bench_my; CREATE TABLE sbtest{i} (id INT PRIMARY KEY, "
                "k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(64) NOT NULL, KEY k (k)) ENGINE=InnoDB; "
                f"INSERT INTO sbtest{i} SELECT seq, seq % 100000, "
                "CONCAT_WS('-', MD5(seq), MD5(seq + 1), MD5(seq + 2)), CONCAT(MD5(seq * 7), MD5(seq * 11)) "
                f"FROM seq_1_to_{rows}"
            )
    return int(
        m.sql("SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = 'bench_my'")
    )


def fresh_server(m: Maria, name: str, port: int) -> tuple[Path, subprocess.Popen[bytes]]:
    data = WORK / name
    sh("mariadb-install-db", "--no-defaults", f"--datadir={data}", "--skip-test-db", user=m.user)
    return data, start_server(m, data, port)


def start_server(m: Maria, data: Path, port: int) -> subprocess.Popen[bytes]:
    from _common import as_user

    argv = as_user(
        m.user,
        [
            "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={data}/s.sock",
            "--innodb-buffer-pool-size=256M",
        ],
    )
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        if (data / "s.sock").exists():
            return proc
        time.sleep(0.5)
    raise SystemExit(f"scratch server in {data} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def anchor_dump(m: Maria) -> tuple[float, int]:
    out = WORK / "anchor.sql"
    # The very command line dbrunbook runs (same flags, same login file), writing a local file instead.
    argv = MariaDB().dump_argv(m.host, str(m.defaults), [])
    seconds = timed(lambda: sh("sh", "-c", f"{shlex.join(argv)} > {shlex.quote(str(out))}", user=m.user))
    size = du(out)
    out.unlink()
    return seconds, size


def anchor_pipe(m: Maria, argv: list[str], recipient: str) -> float:
    """The same work by shell pipe: the tool | zstd -1 -T2 | age into a local file (information only)."""
    out = WORK / "pipe.zst.age"
    line = f"{shlex.join(argv)} | zstd -1 -T2 -q | age -r {recipient} > {shlex.quote(str(out))}"
    seconds = timed(lambda: sh("bash", "-c", "set -o pipefail; " + line, user=m.user))
    out.unlink()
    return seconds


def anchor_mariabackup(m: Maria, target: Path) -> tuple[float, int]:
    argv = [
        "mariadb-backup",
        f"--defaults-extra-file={m.defaults}",
        "--backup",
        "--host=127.0.0.1",
        f"--port={m.port}",
        f"--datadir={m.data_dir}",
        f"--target-dir={target}",
    ]
    seconds = timed(lambda: sh(*argv, user=m.user))
    return seconds, du(target)


def ours(argv: list[str], needle: str, peaks: dict[str, int]) -> tuple[float, dict[str, Any]]:
    """One dbrunbook task, timed end to end (invoke's start-up included), with its host process's peak RSS."""
    out: list[str] = []
    with PeakRss(needle) as rss:
        seconds = timed(lambda: out.append(sh(*argv)))
    peaks[needle] = max(peaks.get(needle, 0), rss.peak_kib)
    return seconds, json.loads(out[-1])


def anchor_restores(m: Maria, mb_dir: Path) -> dict[str, float]:
    """mydumper/myloader (4 threads) of bench_my into a new server; mariabackup prepare + copy-back."""
    dump_dir = WORK / "mydumper"
    dump_dir.mkdir()
    os.chown(dump_dir, *ids(m.user))
    mydumper = ["mydumper", f"--defaults-file={m.defaults}", "-h", "127.0.0.1", "-P", str(m.port), "-t", "4"]
    out = {"mydumper": timed(lambda: sh(*mydumper, "-B", "bench_my", "-o", str(dump_dir), user=m.user))}
    data, proc = fresh_server(m, "myloader-target", 23493)
    loader = ["myloader", "-S", f"{data}/s.sock", "-u", m.user, "-t", "4", "-d", str(dump_dir)]
    try:
        out["myloader"] = timed(lambda: sh(*loader, user=m.user))
    finally:
        stop(proc)

    def mb_restore() -> None:
        sh("mariadb-backup", "--prepare", f"--target-dir={mb_dir}", user=m.user)
        sh("mariadb-backup", "--copy-back", f"--target-dir={mb_dir}", f"--datadir={WORK}/mb-restored", user=m.user)

    out["mariabackup"] = timed(mb_restore)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_200_000, help="rows per table of a new bench_my (4 tables)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument(
        "--keep-db", action="store_true", help="keep bench_my afterwards (the sandbox's own backups then carry 1 GB)"
    )
    args = ap.parse_args()
    if shutil.which("myloader") is None:
        sh("apt-get", "install", "-y", "-qq", "mydumper")
    dev = yaml.safe_load((REPO / "inventory/dev.yaml").read_text())
    cluster = dev["clusters"]["mariadb-main"]
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    m = Maria(cluster)
    os.chown(WORK, *ids(m.user))
    figures: dict[str, list[float]] = {k: [] for k in ("dump", "ours_l", "mb", "ours_p", "pipe_l", "pipe_p")}
    recipient = cluster["encryption"]["recipients"][0]
    peaks: dict[str, int] = {}
    try:
        size = ensure_bench_db(m, args.rows)
        print(f"database bench_my: {size / 2**30:.2f} GiB", flush=True)
        inv = json.loads(json.dumps(dev))
        inv["clusters"] = {"mariadb-main": {**cluster, "repository": {"url": f"file://{WORK}/repo"}}}
        inv_path = WORK / "bench.yaml"
        inv_path.write_text(yaml.safe_dump(inv))
        (WORK / "repo").mkdir()
        os.chown(WORK / "repo", *ids(m.user))
        env = f"--env={inv_path}"
        base = [INVOKE, "--search-root", str(REPO)]
        sh(*base, "hosts.setup", env, "--cluster=mariadb-main")
        m.sql("CHECKSUM TABLE bench_my.sbtest1, bench_my.sbtest2, bench_my.sbtest3, bench_my.sbtest4")  # warm
        backups: dict[str, str] = {}
        for n in range(1, args.rounds + 1):
            t_dump, dump_size = anchor_dump(m)
            t_ours_l, logical = ours([*base, "backup.full", env, "--kind=logical", "--json"], "my-dump-push", peaks)
            t_mb, mb_size = anchor_mariabackup(m, WORK / f"mb-{n}")
            t_ours_p, physical = ours(
                [*base, "backup.full", env, "--kind=physical", "--json"], "my-physical-push", peaks
            )
            t_pipe_l = anchor_pipe(m, MariaDB().dump_argv(m.host, str(m.defaults), []), recipient)
            mb_stream = MariaDB().physical_argv(m.host, str(m.defaults), str(WORK / "tmp"), str(WORK / "lsn"), None, 2)
            t_pipe_p = anchor_pipe(m, mb_stream, recipient)
            for key, value in (
                ("dump", t_dump),
                ("ours_l", t_ours_l),
                ("mb", t_mb),
                ("ours_p", t_ours_p),
                ("pipe_l", t_pipe_l),
                ("pipe_p", t_pipe_p),
            ):
                figures[key].append(value)
            backups = {"logical": logical["backups"][0]["backup_id"], "physical": physical["backups"][0]["backup_id"]}
            print(
                f"  round {n}: mariadb-dump {t_dump:.1f}s, dbrunbook logical {t_ours_l:.1f}s, "
                f"mariabackup {t_mb:.1f}s, dbrunbook physical {t_ours_p:.1f}s; by shell pipe through zstd and age: "
                f"dump {t_pipe_l:.1f}s, mariabackup {t_pipe_p:.1f}s",
                flush=True,
            )
        stored = {k: du(WORK / "repo" / "backups" / v) for k, v in backups.items()}
        # The controller (root here) wrote the manifests 0600: the host's OS user must read them to restore.
        sh("chown", "-R", f"{m.user}:", str(WORK / "repo"))
        restores: dict[str, float] = {}
        for kind, port in (("logical", 23491), ("physical", 23492)):
            restore = [
                *base,
                "restore.run",
                env,
                "--to=mariadb-main-1",
                f"--backup={backups[kind]}",
                f"--data-dir={WORK}/restore-{kind}",
                f"--port={port}",
                "--json",
            ]
            restores[kind], _ = ours(restore, "my-replay" if kind == "logical" else "my-extract", peaks)
            sh("sh", "-c", f"kill $(cat {WORK}/restore-{kind}/mariadbd.pid)")
        restores.update(anchor_restores(m, WORK / "mb-1"))
    finally:
        if not args.keep_db:
            m.sql("SET SESSION sql_log_bin = 0; DROP DATABASE IF EXISTS bench_my")
        shutil.rmtree(WORK, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"medians of {args.rounds} rounds, bench_my {size / 2**30:.2f} GiB:")
    print(
        f"logical   dbrunbook {med['ours_l']:6.1f}s  mariadb-dump > file {med['dump']:6.1f}s  "
        f"ratio {med['ours_l'] / med['dump']:.2f}  (goal <= 1.15)"
    )
    print(
        f"physical  dbrunbook {med['ours_p']:6.1f}s  mariabackup to a dir {med['mb']:6.1f}s  "
        f"ratio {med['ours_p'] / med['mb']:.2f}  (goal <= 1.1)"
    )
    print(
        f"same work by shell pipe (tool | zstd -1 -T2 | age > file): logical {med['pipe_l']:.1f}s, ratio "
        f"{med['ours_l'] / med['pipe_l']:.2f}; physical {med['pipe_p']:.1f}s, ratio {med['ours_p'] / med['pipe_p']:.2f}"
    )
    print(
        f"stored    logical {stored['logical'] / 2**20:.0f} MiB (dump file {dump_size / 2**20:.0f} MiB); "
        f"physical {stored['physical'] / 2**20:.0f} MiB (mariabackup dir {mb_size / 2**20:.0f} MiB)"
    )
    print(
        f"restore   logical: dbrunbook {restores['logical']:.1f}s (every database) vs myloader -t 4 "
        f"{restores['myloader']:.1f}s (bench_my; mydumper took {restores['mydumper']:.1f}s): "
        f"ratio {restores['logical'] / restores['myloader']:.2f}"
    )
    print(
        f"restore   physical: dbrunbook {restores['physical']:.1f}s (extract, prepare, start) vs mariabackup "
        f"prepare + copy-back {restores['mariabackup']:.1f}s: "
        f"ratio {restores['physical'] / restores['mariabackup']:.2f}"
    )
    for name, kib in peaks.items():
        print(f"peak RSS  dbrunbook-host {name}: {kib / 1024:.0f} MiB (goal < 300)")


if __name__ == "__main__":
    main()
