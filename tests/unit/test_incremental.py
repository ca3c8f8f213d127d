"""Page-level incrementals on a synthetic data directory, through the real object pipeline (zstd, age) into a
file:// repository: what is kept, and that full + incremental rebuilds the directory byte for byte."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from dbrunbook.engines.postgresql.incremental import PAGE, FileRecord, _runs, changed_blocks, decide, page_lsn
from dbrunbook.engines.postgresql.physical import Parent, apply_incremental, load_file_list, push_bundles, unpack_all
from dbrunbook.inventory.model import Repository
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.crypto import generate_identity
from dbrunbook.repository.storage import Storage, open_storage

OLD = 1_000_000_000  # 2001: "modified long before the parent's scan"


def page(lsn: int, fill: int) -> bytes:
    header = struct.pack("=IIHHHHHH", lsn >> 32, lsn & 0xFFFFFFFF, 0, 0, 40, 8000, PAGE, PAGE | 4)
    return header + bytes([fill]) * (PAGE - len(header))


def write(root: Path, rel: str, data: bytes, *, old: bool = False) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        os.utime(path, (OLD, OLD))


def tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, _dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        if rel != ".":
            out[rel + "/"] = None
        for f in files:
            p = Path(dirpath, f)
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def test_page_headers() -> None:
    assert page_lsn(page(0x1_0000_0010, 1)) == 0x1_0000_0010
    assert page_lsn(bytes(PAGE)) == 0  # extended, never written
    assert page_lsn(b"\xff" * PAGE) is None
    torn = bytearray(page(5, 1))
    struct.pack_into("=H", torn, 12, 9000)  # pd_lower beyond the page
    assert page_lsn(bytes(torn)) is None


def test_decide() -> None:
    rec = FileRecord("base/5/16384", 2 * PAGE, 0o600, False, OLD * 10**9, 7)
    assert decide(rec, None, 0) == "whole"  # new since the parent
    assert decide(rec, rec, OLD * 10**9 + 10**10) == "skip"  # untouched for long before the parent's scan
    assert decide(rec, rec, OLD * 10**9 + 10**8) == "delta"  # too close to the scan to trust the time
    assert decide(rec, FileRecord(rec.path, rec.size, 0o600, False, rec.mtime_ns, 8), 0) == "whole"  # replaced
    fsm = FileRecord("base/5/16384_fsm", PAGE, 0o600, False, 1, 7)
    assert decide(fsm, FileRecord(fsm.path, PAGE, 0o600, False, 0, 7), 0) == "whole"  # not WAL-logged
    in_space = FileRecord("pg_tblspc/16390/PG_15_202209061/5/16391.1", PAGE, 0o600, False, 1, 3)
    assert decide(in_space, FileRecord(in_space.path, PAGE, 0o600, False, 0, 3), 0) == "delta"  # tablespaces too
    odd = FileRecord("base/5/16385", PAGE + 1, 0o600, False, 1, 9)

    assert decide(odd, FileRecord(odd.path, PAGE, 0o600, False, 0, 9), 0) == "whole"


def test_changed_blocks_and_distrust_after_a_bad_header(tmp_path: Path) -> None:
    f = tmp_path / "rel"
    pages = [page(10, 1), page(200, 2), bytes(PAGE), page(10, 4), b"\xff" * PAGE, page(10, 6)]
    f.write_bytes(b"".join(pages))
    # The zero page is kept too: the parent may hold a stale page at that block.
    assert list(changed_blocks(f, len(pages) * PAGE, 100)) == [1, 2, 4, 5]
    # Only the listed size is read: the file may have grown since the scan.
    assert list(changed_blocks(f, 2 * PAGE, 100)) == [1]
    # Runs of consecutive pages, cut at 1 MiB (128 pages).
    assert list(_runs([1, 2, 4, 5, 6, 9])) == [(1, 2), (4, 3), (9, 1)]
    assert list(_runs(list(range(300)))) == [(0, 128), (128, 128), (256, 44)]


@pytest.fixture
def repo(tmp_path: Path) -> Storage:
    return open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path))


@pytest.mark.parametrize("target", [256 << 20, 2 * PAGE], ids=["bundles", "files-cut-in-pieces"])
def test_full_plus_incremental_rebuilds_the_directory(tmp_path: Path, repo: Storage, target: int) -> None:
    identity, recipient = generate_identity()
    src = tmp_path / "data"
    write(src, "PG_VERSION", b"15\n", old=True)
    write(src, "base/5/1000", page(10, 1) + page(10, 2) + page(10, 3))
    write(src, "base/5/2000", page(10, 1) + page(20, 2) + page(30, 3))
    write(src, "base/5/3000", page(10, 9) * 4, old=True)  # cold: not even read by the incremental
    write(src, "base/5/4000", page(10, 4))  # dropped later
    write(src, "base/5/6000", page(10, 6) * 2)  # replaced later by a copy with old LSNs
    write(src, "base/5/1000_fsm", b"\x01" * PAGE)
    write(src, "global/7000", page(10, 7) * 3)
    write(src, "base/5/8000", page(10, 8) * 3)  # truncated by VACUUM later, then extended with zeros
    write(src, "pg_wal/000000010000000000000001", b"w" * 100)  # contents never backed up
    full = push_bundles(repo, src, "F", [recipient], jobs=2, target=target)
    parent = Parent(100, load_file_list(repo, full, [identity]))
    assert set(parent.files.files) >= {"PG_VERSION", "base/5/1000", "pg_wal"}
    assert "pg_wal/000000010000000000000001" not in parent.files.files

    # Writes after the parent started (LSN >= 100), and the other ways a data directory changes.
    with open(src / "base/5/1000", "r+b") as fh:
        fh.seek(PAGE)
        fh.write(page(150, 0xAA))
    os.truncate(src / "base/5/2000", PAGE)
    with open(src / "base/5/2000", "ab") as fh:  # truncated, then grown again by new pages
        fh.write(page(160, 0xBB))
    (src / "base/5/4000").unlink()
    os.truncate(src / "base/5/8000", PAGE)
    os.truncate(src / "base/5/8000", 3 * PAGE)
    os.rename(src / "base/5/6000", src / "base/5/6000.old")
    write(src, "base/5/6000", page(10, 0x66) * 2)  # same size, old LSNs, new inode: FILE_COPY
    (src / "base/5/6000.old").unlink()
    write(src, "base/5/5000", page(10, 5) * 2)  # a new file made of pages with old LSNs
    write(src, "base/5/1000_fsm", b"\x02" * PAGE)
    with open(src / "global/7000", "r+b") as fh:
        fh.seek(PAGE)
        fh.write(b"\xff" * PAGE)  # a page that is not a page: it and everything after it is kept
    (src / "base/9").mkdir()
    write(src, "base/9/1", page(170, 1))

    inc = push_bundles(repo, src, "I", [recipient], jobs=2, parent=parent, target=target)
    kept = sum(e.plain_size for e in inc if e.name.startswith("data/"))
    whole = sum(e.plain_size for e in full if e.name.startswith("data/"))
    # 1000: 1 page, 2000: 1 page, 5000 and 6000: 2 pages each, 7000: 2 pages, base/9/1 and the fsm: 1 each,
    # 8000: its 2 zero pages;
    # not the 3 untouched pages of 1000, nor 3000 at all. Tar and page-list headers add about 1.5 KiB a file.
    assert 12 * PAGE <= kept < 12 * PAGE + 40 * 1024 < whole
    if target == 2 * PAGE:  # 1000, 3000, 5000, 6000, 7000 and 8000 were cut into pieces of 2 pages
        assert len([e for e in full if e.name.startswith("data/")]) > 8

    dest = tmp_path / "restored"
    unpack_all(repo, full, dest, [identity])
    apply_incremental(repo, inc, dest, [identity])
    expected = {k: v for k, v in tree(src).items() if not k.startswith("pg_wal/0")}
    assert tree(dest) == expected


def test_a_page_run_for_a_missing_file_is_a_broken_chain(tmp_path: Path, repo: Storage) -> None:
    from dbrunbook.errors import RestoreError

    identity, recipient = generate_identity()
    src = tmp_path / "data"
    write(src, "base/5/1000", page(10, 1) * 2)
    full = push_bundles(repo, src, "F", [recipient])
    parent = Parent(100, load_file_list(repo, full, [identity]))
    with open(src / "base/5/1000", "r+b") as fh:
        fh.write(page(150, 2))
    inc = push_bundles(repo, src, "I", [recipient], parent=parent)
    dest = tmp_path / "restored"
    dest.mkdir()
    # Applying the incremental to an empty directory instead of its parent must not invent a file.
    only_runs = [e for e in inc if e.name.startswith("data/")]
    with pytest.raises(RestoreError, match="chain is broken"):
        unpack_all(repo, only_runs, dest, [identity])


def test_tablespace_map_lines() -> None:
    from dbrunbook.engines.postgresql.physical import parse_tablespace_map

    text = "16390 /srv/pg space/fast\n16391 /srv/slow\\\\dir\n\n"  # PostgreSQL escapes a backslash
    assert parse_tablespace_map(text) == {"16390": "/srv/pg space/fast", "16391": "/srv/slow\\dir"}


def test_a_symlinked_pg_wal_comes_back_as_an_empty_directory(tmp_path: Path) -> None:
    from dbrunbook.engines.postgresql.physical import scan

    data, elsewhere = tmp_path / "data", tmp_path / "wal"
    elsewhere.mkdir()
    (elsewhere / "000000010000000000000001").write_bytes(b"w")
    data.mkdir()
    (data / "pg_wal").symlink_to(elsewhere)
    (data / "PG_VERSION").write_text("15\n")
    entries = {e.path: e for e in scan(data)}
    assert entries["pg_wal"].is_dir and "pg_wal/000000010000000000000001" not in entries
    (data / "other").symlink_to(elsewhere)
    from dbrunbook.errors import BackupError

    with pytest.raises(BackupError, match="other is a symlink outside pg_tblspc"):
        scan(data)


def test_a_file_list_cannot_point_outside_the_data_directory() -> None:
    import json

    from dbrunbook.engines.postgresql.incremental import read_file_list
    from dbrunbook.errors import BackupError

    head = json.dumps({"format": 1, "scanned_ns": 0}).encode()
    for bad in ("../etc/passwd", "/etc/passwd", "base//1", "base/./1"):
        line = FileRecord(bad, 0, 0o600, False, 0, 0).to_line()
        with pytest.raises(BackupError, match="unsafe path"):
            read_file_list([head, line])
    with pytest.raises(BackupError, match="negative size"):
        read_file_list([head, FileRecord("base/1", -1, 0o600, False, 0, 0).to_line()])


def test_changed_pages_past_the_listed_size_are_refused(tmp_path: Path) -> None:
    import io
    import struct as st
    import tarfile

    from dbrunbook.engines.postgresql.incremental import DELTA_KEY, DELTA_MAGIC, write_member
    from dbrunbook.errors import RestoreError

    target = tmp_path / "rel"
    target.write_bytes(page(10, 1))  # the listed size: one page
    body = DELTA_MAGIC + st.pack("<II", 1, 5) + page(200, 2)
    member = tarfile.TarInfo("base/1/1")
    member.size = len(body)
    member.pax_headers = {DELTA_KEY: "1"}
    with pytest.raises(RestoreError, match="past its listed size"):
        write_member(target, member, io.BytesIO(body))
    assert target.stat().st_size == PAGE


def test_reshape_keeps_this_restores_tablespace_links(tmp_path: Path) -> None:
    from dbrunbook.engines.postgresql.incremental import FileList, reshape

    dest, space = tmp_path / "data", tmp_path / "space"
    (space / "PG_15_x").mkdir(parents=True)
    (dest / "pg_tblspc").mkdir(parents=True)
    (dest / "pg_tblspc" / "16390").symlink_to(space)
    listing = FileList(0, {"pg_tblspc": FileRecord("pg_tblspc", 0, 0o700, True, 0, 0)})
    reshape(dest, listing, set(), keep=["pg_tblspc/16390"])
    assert (dest / "pg_tblspc" / "16390").is_symlink() and (space / "PG_15_x").is_dir()
    reshape(dest, listing, set())  # not this restore's link: a dropped tablespace, its link goes
    assert not (dest / "pg_tblspc" / "16390").exists() and (space / "PG_15_x").is_dir()


def test_a_bundle_member_outside_the_destination_is_refused(tmp_path: Path, repo: Storage) -> None:
    import io
    import tarfile

    from dbrunbook.engines.postgresql.physical import unpack
    from dbrunbook.errors import RestoreError
    from dbrunbook.repository.manifest import object_key
    from dbrunbook.repository.objects import store

    identity, recipient = generate_identity()
    for name in ("../evil", "/etc/evil", "base/../../evil"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        key = object_key("X", f"data/{abs(hash(name))}.tar")
        entry = store(repo, "data/0001.tar", key, [buf.getvalue()], [recipient])
        with pytest.raises(RestoreError, match="unsafe path"):
            unpack(repo, entry, tmp_path / "dest", [identity])
    assert not (tmp_path / "evil").exists()
