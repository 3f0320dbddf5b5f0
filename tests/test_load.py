"""A short load test: a few client processes call the real Ray actor at once (benchmarks/load_test.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def test_concurrent_clients_get_no_errors_and_in_process_results(ml100k_dir, tmp_path):
    datasets = [f"ml-100k={ml100k_dir}"]
    if (SHARED_DATA / "beauty" / "sequential_data.txt").is_file():  # mixed datasets when Beauty is here
        datasets.append(f"beauty={SHARED_DATA}")
    cmd = [sys.executable, "benchmarks/load_test.py", "--clients", "3", "--duration_s", "4", "--phases", "default",
           "--batch_sizes", "1", "4", "8", "--requests_per_client", "4", "--datasets", *datasets,
           "--out", "load", "--results_dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "load.json").read_text())
    phase = result["phases"]["default"]
    assert phase["max_concurrency"] == 8 and phase["batch_requests"] is True
    summary, equality = phase["summary"], phase["equality"]
    assert summary["calls"] >= 3 and summary["errors"] == 0, summary["error_examples"]
    assert equality["rows_compared"] == summary["texts"] > 0
    # Equal to in-process results; a difference is tolerated only on a float near-tie (score gap <= 1e-5).
    assert equality["unexplained_differences"] == 0, equality
    assert equality["float_tie_differences"] <= equality["rows_compared"] // 100, equality
    assert result["zero_errors"] and result["results_equal"]
    assert summary["p99_ms"] >= summary["p50_ms"] > 0
