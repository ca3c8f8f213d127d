"""drill.report: a self-contained page whose charts, drawn by the page itself in headless Chromium, hold
the drill results stored in the repository."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from dbrunbook.context import ClusterContext
from dbrunbook.drill.result import DrillPick, DrillRecovery, DrillResult
from dbrunbook.drill.run import save_result
from dbrunbook.inventory import LoadedInventory

from .conftest import run_cli
from .forged import private_repo

T0 = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_report_charts_hold_the_stored_drills(dev: LoadedInventory, tmp_path: Path, sandbox: dict[str, Any]) -> None:
    forged = private_repo(dev, tmp_path)
    try:
        ctx = cast(ClusterContext, SimpleNamespace(storage=forged.storage, recipients=forged.recipients))
        rtos = [41.5, 38.25, 97.0, 44.0]
        for day, rto in enumerate(rtos):
            started = T0 + timedelta(days=day)
            ok = rto < 90
            save_result(
                ctx,
                DrillResult(
                    cluster="pg-main",
                    engine="postgresql",
                    started=started,
                    rto_target="10m",
                    rpo_target=None,
                    tool_version="test",
                    checks=(),
                    place=None,
                    pick=DrillPick(f"2026110{day + 1}T020000Z-F", "physical", None, "asked", 3600.0, 1, 60.0 + day),
                    recovery=DrillRecovery(rto, None),
                    reason="restored and validated" if ok else "RTO 97s is above the target 1m",
                    torn_down=True,
                    ok=ok,
                    ended=started + timedelta(seconds=rto + 5),
                    duration_seconds=rto + 5,
                ),
            )
        out = tmp_path / "report.html"
        res = run_cli("drill.report", f"--env={forged.inventory}", f"--out={out}")
        assert res.returncode == 0, res.stderr
        html = out.read_text()
        assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        assert 'data-rendered="yes"' in dom  # the page's script ran to its end
        rto_chart = re.search(r'<svg[^>]*class="chart rto"[^>]*>(.*?)</svg>', dom, re.S)
        assert rto_chart, "no RTO chart in the rendered page"
        values = [float(v) for v in re.findall(r'<circle[^>]*data-value="([0-9.]+)"', rto_chart.group(1))]
        assert values == rtos
        assert len(re.findall(r'<circle[^>]*class="bad"', rto_chart.group(1))) == 1  # the failed drill
        assert 'data-target="600"' in rto_chart.group(1)  # pg-main's rto_target of 10m, drawn as a line
        assert dom.count('class="failed">FAILED<') == 1 and "RTO 97s is above the target 1m" in dom
        shot = tmp_path / "report.png"
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", out.as_uri()],
            capture_output=True,
            timeout=120,
            check=True,
        )
        assert shot.stat().st_size > 10_000
    finally:
        forged.wipe()
