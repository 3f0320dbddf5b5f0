"""Caches built on first use are built once when several processes ask at the same moment.

Two torchrun ranks on a fresh machine both asked for the converted default policy; each converted
it, and one's directory swap moved the other's finished copy aside while it was being read
("Unrecognized model ... config.json"). These tests start the processes together on purpose.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from rl4rec.policy import loading


class _FakeModel:
    def save_pretrained(self, folder):
        Path(folder, "config.json").write_text(json.dumps({"model_type": "llama"}))
        Path(folder, "model.safetensors").write_bytes(b"weights")


class _FakeTokenizer:
    def save_pretrained(self, folder):
        Path(folder, "tokenizer.json").write_text("{}")


def _convert_slowly(log: Path):
    def fake(_path):
        with open(log, "a") as handle:
            handle.write("converted\n")
        time.sleep(0.5)  # long enough that the other process arrives mid-conversion
        return _FakeModel(), _FakeTokenizer()

    return fake


def _ask_for_policy(result_file: str) -> None:
    folder = loading.default_policy_path()
    names = sorted(p.name for p in folder.iterdir())
    Path(result_file).write_text(json.dumps({"folder": str(folder), "files": names}))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_processes_starting_together_convert_the_default_policy_once(tmp_path, monkeypatch):
    package = tmp_path / "package"
    package.mkdir()
    (package / "model.gguf").write_bytes(b"gguf")
    log = tmp_path / "conversions.log"
    monkeypatch.setenv("RL4REC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "_package_dir", lambda _name: package)
    monkeypatch.setattr(loading, "_load_gguf", _convert_slowly(log))

    ctx = multiprocessing.get_context("fork")  # children inherit the patched converter
    results = [tmp_path / f"rank{i}.json" for i in range(3)]
    procs = [ctx.Process(target=_ask_for_policy, args=(str(r),)) for r in results]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0

    assert log.read_text().splitlines() == ["converted"]
    for result in results:
        seen = json.loads(result.read_text())
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(seen["files"])
    assert not list((tmp_path / "cache" / "policies").glob(".*.tmp"))
