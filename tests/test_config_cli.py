"""Every ``rl4rec`` command parses its flags from a settings dataclass with :func:`rl4rec.config_cli.parse_config`."""

from __future__ import annotations

import pytest

from rl4rec.cli import COMMANDS, handler, main
from rl4rec.config_cli import parse_config
from rl4rec.data.cli import PrepareConfig
from rl4rec.errors import ConfigError
from rl4rec.evaluation.cli import CompareConfig
from rl4rec.evaluation.config import EvalConfig
from rl4rec.evaluation.tune_fusion import TuneConfig
from rl4rec.retrieval.cli import ServeConfig

#: train and sft load their (large) dataclasses from the training package, covered by their own tests.
COMMANDS_TO_CHECK = sorted(set(COMMANDS) - {"train", "sft"})


def _exit_code(call) -> int:  # type: ignore[no-untyped-def]
    try:
        return int(call() or 0)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("command", COMMANDS_TO_CHECK)
def test_help_exits_0(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(lambda: handler(command)(["--help"])) == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["prompts", "show", "--help"], ["prompts", "preference", "--help"]])
def test_prompts_subcommand_help_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(lambda: main(argv)) == 0
    assert f"usage: rl4rec prompts {argv[1]}" in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS_TO_CHECK)
def test_unknown_flag_exits_2(command: str) -> None:
    assert _exit_code(lambda: main([command, "--no_such_flag_rl4rec", "1"])) == 2


def test_config_file_sets_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "eval.yaml"
    path.write_text("num_users: 7\nks: [1, 5]\n")
    config = parse_config(EvalConfig, ["--config", str(path)], "rl4rec evaluate", "")
    assert config.num_users == 7
    assert config.ks == (1, 5)
    # a flag on the command line beats the file
    assert parse_config(EvalConfig, ["--config", str(path), "--num_users", "3"], "p", "").num_users == 3


def test_comma_separated_flags() -> None:
    assert parse_config(EvalConfig, ["--ks", "5,10"], "rl4rec evaluate", "").ks == (5, 10)
    assert parse_config(CompareConfig, ["a", "b", "--ks", "5,10"], "rl4rec compare", "").ks == (5, 10)
    tune = parse_config(TuneConfig, ["--w_text", "0,0.5", "--decays", "0.5"], "rl4rec tune-fusion", "")
    assert tune.w_text == (0.0, 0.5)
    assert tune.decays == (0.5,)
    assert tune.w_co == TuneConfig().w_co


def test_serve_lists_and_resources() -> None:
    default = parse_config(ServeConfig, [], "rl4rec serve", "")
    assert default.datasets == ["beauty"]
    assert default.resources == []
    config = parse_config(
        ServeConfig,
        ["--datasets", "ml-100k", "beauty", "--resources", "retrieval_node=1", "gpu_x=0.5"],
        "p",
        "",
    )
    assert config.datasets == ["ml-100k", "beauty"]
    assert dict(config.resources) == {"retrieval_node": 1.0, "gpu_x": 0.5}
    with pytest.raises(SystemExit) as exc:
        parse_config(ServeConfig, ["--resources", "retrieval_node"], "p", "")
    assert exc.value.code == 2


def test_required_flag_and_hyphen_alias() -> None:
    with pytest.raises(SystemExit) as exc:
        parse_config(PrepareConfig, [], "rl4rec prepare", "")
    assert exc.value.code == 2
    config = parse_config(PrepareConfig, ["--dataset", "ml-100k", "--data-dir", "elsewhere"], "p", "")
    assert (config.dataset, config.data_dir, config.download_dir) == ("ml-100k", "elsewhere", "data/raw")


def test_unreadable_config_file_is_a_config_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="cannot read the --config file"):
        parse_config(EvalConfig, ["--config", str(tmp_path / "missing.yaml")], "rl4rec evaluate", "")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ks: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config(EvalConfig, ["--config", str(bad)], "rl4rec evaluate", "")
