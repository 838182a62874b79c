"""deploy/ (the several-machine layout, README "Several machines"): its configs load and mean the roles they name,
and its systemd units start commands that exist with options they accept. The layout itself runs in
tests/test_scale_out.py."""

from __future__ import annotations

import configparser
import shlex
import subprocess
from pathlib import Path

import pytest

from animeback.cli import build_parser
from animeback.config import load_settings
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def test_the_configs_load_and_name_their_roles():
    indexer = load_settings(DEPLOY / "indexer.config.json", environ={})
    web = load_settings(DEPLOY / "web.config.json", environ={})
    assert not indexer.web_node and web.web_node
    assert indexer.milvus_server and web.milvus.uri == indexer.milvus.uri
    assert web.milvus.collection == indexer.milvus.collection and web.media_path == indexer.media_path
    assert web.milvus_index_type == indexer.milvus_index_type == "HNSW"  # a server's default


def _exec_start(unit: Path) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(unit)
    assert set(parser) >= {"Unit", "Service", "Install"}, unit.name
    return shlex.split(parser["Service"]["ExecStart"])


@pytest.mark.parametrize("unit", UNITS, ids=[u.stem for u in UNITS])
def test_each_unit_starts_a_command_that_exists(unit):
    command = _exec_start(unit)
    program = Path(command[0]).name
    local = ROOT / ".venv" / "bin" / program  # /opt/animeback/.venv is this checkout's .venv, installed
    assert local.exists(), f"{unit.name} runs {program}, which setup.sh does not install"
    if program == "python":
        assert command[1] == "run.py"
        build_parser().parse_args(command[2:])  # exits (SystemExit) on a command or option run.py lacks
    elif program == "gunicorn":
        from gunicorn.config import Config

        options = Config().parser().parse_args(command[1:])  # gunicorn's own parser: exits on an unknown option
        assert options.args == ["app:flask_app"] and (ROOT / "app.py").exists()
    else:
        out = subprocess.run([str(local), "--help"], capture_output=True, text=True)
        options = {arg.split("=")[0] for arg in command[1:] if arg.startswith("--")}
        assert options and all(option in out.stdout for option in options), (unit.name, options)
