"""Docs that cannot rot: every command line in README.md and docs/ parses, and every relative link resolves.

Command lines are the ``rl4rec ...``, ``python src/train_with_trl.py ...`` and ``./runs/...`` lines of the
fenced ``bash`` blocks (with ``\\`` continuations joined, comments and ``VAR=value`` prefixes dropped).
Each is parsed by the command's own parser at ``--help`` level: a known command, known flags, valid
choices and types. Paths in them are placeholders and are not opened.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

#: rl4rec command -> the dataclass its handler parses (``prompts`` by its subcommand).
CONFIGS = {
    "prepare": "rl4rec.data.cli:PrepareConfig",
    "stats": "rl4rec.data.cli:StatsConfig",
    "prompts show": "rl4rec.training.prompts_cli:ShowConfig",
    "prompts preference": "rl4rec.policy.preference:PreferenceConfig",
    "serve": "rl4rec.retrieval.cli:ServeConfig",
    "sft": "rl4rec.training.sft:SFTConfig",
    "train": "rl4rec.training.config:TrainConfig",
    "evaluate": "rl4rec.evaluation.config:EvalConfig",
    "headroom": "rl4rec.evaluation.headroom:HeadroomConfig",
    "tune-fusion": "rl4rec.evaluation.tune_fusion:TuneConfig",
    "compare": "rl4rec.evaluation.cli:CompareConfig",
    "report": "rl4rec.evaluation.cli:ReportConfig",
    "demo": "rl4rec.demo:DemoConfig",
}
#: ./runs scripts -> the command whose flags they pass through.
SCRIPTS = {"./runs/run_retrieval.sh": "serve", "./runs/run_trl_train.sh": "train"}


def command_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, command)`` of every command line in the file's bash blocks."""
    out, in_block, pending, start = [], False, "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if line.startswith("```"):
            in_block = line.startswith("```bash") and not in_block
            continue
        if not in_block:
            continue
        if not pending:
            start = number
        line = re.sub(r"\s+#.*$", "", line) if not line.startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full, pending = (pending + line).strip(), ""
        full = re.sub(r"^(\w+=\S*\s+)+", "", full)  # OMP_NUM_THREADS=1 rl4rec ...
        full = re.sub(r"^(\S*/)?(\.venv/bin/)?(?=rl4rec\s)", "", full)
        if full.startswith(("rl4rec ", "python src/train_with_trl.py", "./runs/")):
            out.append((start, full))
    return out


ALL = [(p, n, c) for p in DOCS for n, c in command_lines(p)]


def parser_and_argv(command: str) -> tuple[object, list[str]]:
    from rl4rec.config_cli import config_parser

    words = [w for w in shlex.split(command) if w != "..."]
    if words[0] == "rl4rec":
        name, argv = words[1], words[2:]
        if name == "prompts":
            name, argv = f"prompts {argv[0]}", argv[1:]
    elif words[0] == "python":
        name, argv = "train", words[2:]
    else:
        name, argv = SCRIPTS[words[0]], words[1:]
    assert name in CONFIGS, f"unknown command {name!r}"
    if "--config" in argv:  # a YAML file of flags: its name is a placeholder here
        i = argv.index("--config")
        argv = argv[:i] + argv[i + 2 :]
    module, cls = CONFIGS[name].split(":")
    return config_parser(getattr(importlib.import_module(module), cls), f"rl4rec {name}", ""), argv


def test_every_command_has_a_config_for_the_check():
    from rl4rec.cli import COMMANDS

    assert {c.split()[0] for c in CONFIGS} == set(COMMANDS)


def test_the_docs_hold_command_lines():
    names = {p.name for p, _, _ in ALL}
    assert "README.md" in names and len(ALL) >= 10


@pytest.mark.parametrize(("path", "line", "command"), ALL, ids=[f"{p.name}:{n}" for p, n, _ in ALL])
def test_documented_command_parses(path, line, command):
    parser, argv = parser_and_argv(command)
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{path.name}:{line}: `{command}` does not parse (exit {exc.code})")


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_relative_links_resolve(path):
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        file = target.split("#", 1)[0]
        if file and not (path.parent / file).exists():
            broken.append(target)
    assert broken == [], f"{path.relative_to(REPO)}: broken links {broken}"
