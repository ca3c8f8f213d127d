"""Row counts read from a dump stream: both INSERT layouts, awkward values and names, any chunking."""

from __future__ import annotations

import pytest

from dbrunbook.engines.mariadb.rowcount import (
    KEEP,
    DumpRowCounter,
    checked_tables,
    compare,
    count_sql,
    identifier,
    parse_counts,
    tuples_on_line,
)

# The layout mariadb-dump 10.11 writes (one row per line), with values that contain what a naive counter
# would take for row boundaries: "),(", newlines as escapes, quotes and backslashes.
ROWS_PER_LINE = b"""-- MariaDB dump 10.19
/*!40101 SET NAMES utf8mb4 */;

--
-- Current Database: `shop`
--

CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop`;

USE `shop`;

--
-- Table structure for table `empty`
--

CREATE TABLE `empty` (`id` int);

--
-- Dumping data for table `empty`
--

LOCK TABLES `empty` WRITE;
UNLOCK TABLES;

--
-- Dumping data for table `we``ird),(t`
--

LOCK TABLES `we``ird),(t` WRITE;
/*!40000 ALTER TABLE `we``ird),(t` DISABLE KEYS */;
INSERT INTO `we``ird),(t` VALUES
(1,'a),(b',0x00,2),
(2,'it\\'s \\\\),(\\\\\\' ),(',NULL,4),
(3,'line\\nnext\\n(',\'\',6);
INSERT INTO `we``ird),(t` VALUES
(4,'\\\\',NULL,8);
/*!40000 ALTER TABLE `we``ird),(t` ENABLE KEYS */;
UNLOCK TABLES;

--
-- Dumping routines for database 'shop'
--
DELIMITER ;;
CREATE PROCEDURE `p`()
BEGIN
INSERT INTO `empty` VALUES (5),(6);
(SELECT 1);
END
;;
DELIMITER ;

--
-- Current Database: `other db`
--

USE `other db`;

--
-- Dumping data for table `t`
--

LOCK TABLES `t` WRITE;
INSERT INTO `t` VALUES
(1),
(2);
UNLOCK TABLES;
-- Dump completed on 2026-11-29 22:01:46
"""

EXPECTED = {"shop": {"empty": 0, "we`ird),(t": 4}, "other db": {"t": 2}}

# mysqldump's layout: every row of a statement on one line.
ONE_LINE = b"""USE `shop`;
-- Dumping data for table `t`
LOCK TABLES `t` WRITE;
INSERT INTO `t` VALUES (1,'x),(y'),(2,'\\\\'),(3,'\\''),(4,_binary 'a),(\\'b');
INSERT INTO `t` (`id`, `s`) VALUES (5,NULL);
UNLOCK TABLES;
"""


def count(data: bytes, size: int) -> dict[str, dict[str, int]] | None:
    counter = DumpRowCounter()
    for i in range(0, len(data), size):
        counter.feed(data[i : i + size])
    return counter.finish()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
def test_rows_per_line_layout_counts_every_table_at_any_chunking(size: int) -> None:
    assert count(ROWS_PER_LINE, size) == EXPECTED


@pytest.mark.parametrize("size", [1, 5, 1 << 20])
def test_one_line_layout_counts_rows_outside_quoted_strings(size: int) -> None:
    assert count(ONE_LINE, size) == {"shop": {"t": 5}}


def test_tuples_on_line_ignores_separators_inside_strings() -> None:
    assert tuples_on_line(b"INSERT INTO `a` VALUES (1,'),(\\\\'),(2,'\\'),(');") == 2
    assert tuples_on_line(b"INSERT INTO `a` VALUES") == 0  # the header of the rows-per-line layout


def test_a_huge_row_keeps_only_the_start_of_its_line() -> None:
    counter = DumpRowCounter()
    counter.feed(b"USE `d`;\n-- Dumping data for table `t`\nLOCK TABLES `t` WRITE;\nINSERT INTO `t` VALUES\n(1,'")
    for _ in range(64):
        counter.feed(b"x" * 65536)  # a 4 MiB value
        assert counter._pending_len <= KEEP
    counter.feed(b"'),\n(2,'y');\nUNLOCK TABLES;\n")
    assert counter.finish() == {"d": {"t": 2}}


def test_an_unreadable_layout_never_fails_the_backup() -> None:
    counter = DumpRowCounter()
    counter.feed(b"USE `d`;\n-- Dumping data for table t-without-quotes\n(1),\n")
    counter.feed(b"UNLOCK TABLES;\n")
    assert counter.finish() is None and "not understood" in counter.problem


def test_identifier_unquotes_doubled_backticks() -> None:
    assert identifier(b"x `a``b` y", 2) == ("a`b", 8)


def test_count_queries_round_trip_and_compare() -> None:
    tables = checked_tables({"mysql": {"global_priv": 8}, "shop": {"we`ird": 4, "a": 0}})
    assert tables == [("shop", "a", 0), ("shop", "we`ird", 4)]  # mysql's tables change under the server
    sql = count_sql(tables).decode()
    assert "FROM `shop`.`we``ird`;" in sql and sql.count("COUNT(*)") == 2
    assert sql.index("'start'") < sql.index("COUNT(*)") < sql.rindex("'end'")
    # The client's batch output: a header line per query, then its answer; the clock is the server's, in ms.
    answers = [("start", "ROUND(...)"), ("start", "1700000000100"), (0, "COUNT(*)"), (0, "0"), (1, "3")]
    answers += [("end", "1700000002350")]
    got, seconds = parse_counts([f"dbrunbook-rows\t{i}\t{v}" for i, v in answers])
    assert got == {0: 0, 1: 3} and seconds == 2.25
    result = compare(tables, got, seconds)
    assert result.mismatched == 1 and result.mismatches == ("shop.we`ird: 3 rows restored, the backup had 4",)
    assert compare(tables, {0: 0, 1: 4}).as_dict() == {
        "tables": 2,
        "rows": 4,
        "mismatched": 0,
        "mismatches": [],
        "seconds": 0,
    }


def test_a_data_section_that_never_closes_is_a_problem_not_a_wrong_count() -> None:
    # What --skip-add-locks would write: without UNLOCK TABLES every later row would go to the first table.
    dump = b"USE `d`;\n-- Dumping data for table `a`\nINSERT INTO `a` VALUES\n(1);\n"
    dump += b"-- Dumping data for table `b`\nINSERT INTO `b` VALUES\n(2);\n"
    counter = DumpRowCounter()
    counter.feed(dump)
    assert counter.finish() is None and "no UNLOCK TABLES" in counter.problem


def test_the_agents_replay_report_reads_back_as_it_was_printed() -> None:
    import json

    from dbrunbook.engines.mariadb.host import Replay

    counted = compare([("shop", "a", 2)], {0: 1}, 0.5)
    for done in (Replay(["b.000001", "b.000002"], "b.000002", "gtid 0-1-9", counted), Replay(reason="end")):
        printed = json.loads(json.dumps(done.as_dict()))  # what the agent prints, as the controller reads it
        assert Replay.from_json(printed) == done and Replay.from_json(printed).as_dict() == printed
    assert "row_counts" not in Replay().as_dict()
    assert counted.mismatch_line("differ") == "1 of 1 tables differ, first shop.a: 1 rows restored, the backup had 2"
