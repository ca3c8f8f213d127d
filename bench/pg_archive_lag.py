"""WAL archiving lag of pg-main under a pgbench write load, with archive_command = dbrunbook-host wal-push.

Runs ``invoke archive.setup --env=dev --cluster=pg-main --yes`` (archiving into the sandbox's S3
repository), waits for the archiver to catch up, then runs ``pgbench -T 60 -c 4 -j 2`` (TPC-B-like) on the
pgbench database ``bench``. Every 0.5 s during the run, and for up to 60 s after it until the archiver has
caught up, it samples the primary's current WAL segment and pg_stat_archiver. Lag in segments = current
segment - last archived segment - 1: completed segments that are not in the repository yet.

Goal: max lag <= 2 segments. Also prints mean lag, segments generated and archived, failures, the time to
drain after pgbench stops, and the time one wal-push takes (each wal-push process of pg-main is watched in
/proc: lifetime and CPU), with dbrunbook-host's own start-up and import time, since PostgreSQL starts one
Python process per segment and archives one segment at a time.

    .venv/bin/python bench/pg_archive_lag.py [--seconds 60] [--scale 70]

Needs the sandbox (invoke sandbox.up); creates ``bench`` when it is missing, as the other benchmarks do.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from _common import INVOKE, REPO, as_user, ensure_bench_db, sandbox, sh, timed, wait_for_archiver
from psycopg.rows import TupleRow

SEGMENT = re.compile(r"^[0-9A-F]{24}")
SAMPLE = (
    "SELECT pg_walfile_name(pg_current_wal_lsn()), (pg_current_wal_lsn() - '0/0')::bigint,"
    " last_archived_wal, archived_count, failed_count FROM pg_stat_archiver"
)
INTERVAL = 0.5


@dataclass(frozen=True)
class Sample:
    t: float
    current: int  # segment number being written
    lsn: int
    archived_seg: int  # highest segment number reported archived so far
    archived: int
    failed: int

    @property
    def lag(self) -> int:
        return self.current - self.archived_seg - 1


def segment_number(name: str | None, per_log: int) -> int | None:
    """log * segments-per-log + seg of a 24-hex WAL file name (a .backup/.partial suffix is ignored)."""
    if not name or not SEGMENT.match(name):
        return None
    return int(name[8:16], 16) * per_log + int(name[16:24], 16)


class Sampler:
    def __init__(self, conn: psycopg.Connection[TupleRow], seg_size: int) -> None:
        self.conn, self.seg_size, self.per_log, self.best = conn, seg_size, 2**32 // seg_size, -1
        self.samples: list[Sample] = []

    def take(self) -> Sample:
        row = self.conn.execute(SAMPLE).fetchone()
        assert row is not None
        current, lsn, last, archived, failed = row
        seg = segment_number(str(last) if last else None, self.per_log)
        self.best = max(self.best, seg if seg is not None else -1)  # .backup names can point backwards
        cur = segment_number(str(current), self.per_log)
        assert cur is not None
        # At a segment boundary (right after pg_switch_wal) pg_walfile_name names the segment before.
        cur += int(lsn) % self.seg_size == 0
        s = Sample(time.monotonic(), cur, int(lsn), self.best, int(archived), int(failed))
        self.samples.append(s)
        return s


class PushWatch:
    """wal-push processes with this --config, polled from /proc every 20 ms: pid -> [first seen, last seen, CPU s]."""

    def __init__(self, config: str) -> None:
        self.config = config.encode()
        self.seen: dict[int, list[float]] = {}
        self._stop, self._tick = threading.Event(), os.sysconf("SC_CLK_TCK")
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in Path("/proc").iterdir():
                try:
                    args = (p / "cmdline").read_bytes().split(b"\0") if p.name.isdigit() else []
                    # Whole arguments: the python process itself, not the "sh -c '...'" that PostgreSQL starts.
                    if self.config in args and b"wal-push" in args:
                        fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
                        cpu = (int(fields[11]) + int(fields[12])) / self._tick
                        self.seen.setdefault(int(p.name), [time.monotonic(), 0.0, 0.0])[1:] = [time.monotonic(), cpu]
                except OSError:
                    continue
            self._stop.wait(0.02)

    def start(self) -> PushWatch:
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60, help="pgbench duration (-T)")
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale of a new bench database (70: ~1.05 GB)")
    args = ap.parse_args()
    _dev, pg, p = sandbox()
    ensure_bench_db(p, args.scale)
    print(sh(INVOKE, "--search-root", str(REPO), "archive.setup", "--env=dev", "--cluster=pg-main", "--yes").strip())
    password = Path(pg["credentials"]["password"].removeprefix("file:")).read_text().strip()
    conn = psycopg.connect(host="127.0.0.1", port=p.port, user="postgres", password=password, autocommit=True)
    seg_size = int(p.sql("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"))
    command = p.sql("SHOW archive_command").split()
    agent, config = command[0], command[command.index("--config") + 1]
    startup = statistics.mean(timed(lambda: sh(agent, "version", user=p.user)) for _ in range(5))
    py = str(Path(agent).parent / "python")
    imports = "import dbrunbook.agent.cli, dbrunbook.repository.logs, dbrunbook.repository.storage_s3, boto3"
    import_s = statistics.mean(timed(lambda: sh(py, "-c", imports, user=p.user)) for _ in range(3))

    sampler = Sampler(conn, seg_size)
    wait_for_archiver(p)  # the backlog of earlier work (such as creating bench) first
    watch = PushWatch(config).start()
    first = sampler.take()
    print(f"pgbench -T {args.seconds} -c 4 -j 2 on bench ...", flush=True)
    bench = subprocess.Popen(
        as_user(p.user, p.tool("pgbench", "-T", str(args.seconds), "-c", "4", "-j", "2", "bench")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **p.env},
    )
    while bench.poll() is None:
        time.sleep(max(0.0, INTERVAL - (time.monotonic() - sampler.take().t)))
    stop = sampler.take()
    drained: float | None = None
    while time.monotonic() - stop.t < 60:
        s = sampler.take()
        if s.lag <= 0:
            drained = s.t - stop.t
            break
        time.sleep(INTERVAL)
    last = sampler.samples[-1]
    watch.stop()
    conn.close()
    out, err = bench.communicate()
    tps = re.search(r"tps = ([0-9.]+)", out)
    if bench.returncode:
        raise SystemExit(f"pgbench failed: {err.strip()[-500:]}")

    lags = [s.lag for s in sampler.samples]
    rate = (stop.lsn - first.lsn) / (stop.t - first.t)
    every = seg_size / rate if rate else float("inf")
    print(
        f"pgbench  {float(tps.group(1)) if tps else 0:.0f} tps, WAL {rate / 2**20:.1f} MiB/s: "
        f"a segment every {every:.1f}s"
    )
    print(
        f"lag      max {max(lags)} segments  mean {statistics.mean(lags):.2f} (all samples)  "
        "(goal: max lag <= 2 segments)"
    )
    print(
        f"segments generated {stop.current - first.current} during pgbench, archived {last.archived - first.archived}, "
        f"failures {last.failed - first.failed}"
    )
    print(
        f"drain    {drained:.1f}s after pgbench stopped"
        if drained is not None
        else f"drain    not caught up 60 s after pgbench stopped: {last.lag} segments still waiting"
    )
    pushes = [v for v in watch.seen.values() if v[1]]
    per_push = statistics.mean(v[1] - v[0] for v in pushes) if pushes else None
    print(
        f"wal-push {per_push:.2f}s per segment, mean of {len(pushes)} processes seen (max "
        f"{max(v[1] - v[0] for v in pushes):.2f}s, +-0.02s); CPU {statistics.mean(v[2] for v in pushes):.2f}s each"
        if per_push
        else "wal-push no wal-push process seen"
    )
    print(
        f"         dbrunbook-host start-up (version): {startup:.2f}s; importing the wal-push modules: {import_s:.2f}s"
    )
    if per_push:
        print(f"headroom one wal-push takes {per_push / every:.0%} of the time pgbench takes to fill a segment")
    if max(lags) <= 2:
        print(f"goal MET: max lag {max(lags)} <= 2 segments")
    else:
        why = f"one wal-push takes {per_push:.2f}s" if per_push else "wal-push is slower than WAL generation"
        print(
            f"goal NOT MET: max lag {max(lags)} > 2 segments; {why} while pgbench fills a {seg_size >> 20} MiB "
            f"segment every {every:.2f}s, so the archiver (one segment at a time) falls behind"
        )


if __name__ == "__main__":
    main()
