"""The CLI's one error path (issue 18), through the real entry point (``python -m generator``, i.e.
:func:`generator.cli.run`): any usage or data error is one line on stderr naming the problem and a non-zero exit,
never a traceback, including typer's own exception classes (``typer._click``), which are not click's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from generator.core.config import REPO_ROOT


def pushgen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "generator", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO_ROOT, timeout=120)


def assert_one_line_error(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize(("args", "needle"), [
    (("demo", "--users", "0"), "--users"),  # typer._click.exceptions.BadParameter
    (("demo", "--users", "many"), "--users"),
    (("token", "create"), "--role"),  # MissingParameter
    (("no-such-command",), "no-such-command"),  # UsageError
    (("demo", "--no-such-option"), "--no-such-option"),  # NoSuchOption
    (("token", "create", "--role", "root"), "unknown role"),  # a PushgenError
    (("data", "validate", "sneakers", "x.csv"), "unknown kind"),
    (("job", "status", "j1", "--url", "http://127.0.0.1:9"), "cannot reach"),
])
def test_usage_errors_are_one_line(args: tuple[str, ...], needle: str) -> None:
    assert_one_line_error(pushgen(*args), needle)


def test_data_and_file_errors_are_one_line(tmp_path: Path) -> None:
    latin = tmp_path / "users.csv"
    latin.write_bytes("user_id,locale\nJos\xe9,en_US\n".encode("latin-1"))
    assert_one_line_error(pushgen("data", "validate", "users", str(latin)), "not UTF-8")
    assert_one_line_error(pushgen("data", "validate", "users", str(tmp_path)), "is a folder")
    assert_one_line_error(pushgen("generate", "--campaign", str(tmp_path)), "is a folder")
    campaign = tmp_path / "c.yaml"
    campaign.write_bytes(b"name: \xff\xfe\n")
    assert_one_line_error(pushgen("generate", "--campaign", str(campaign)), "not UTF-8")
    campaign.write_text("", encoding="utf-8")
    assert_one_line_error(pushgen("generate", "--campaign", str(campaign)), "empty file")
    campaign.write_text("name: x\naudeince: {limit: 2}\n", encoding="utf-8")
    assert_one_line_error(pushgen("generate", "--campaign", str(campaign)), "audeince")
    assert_one_line_error(pushgen("generate", "--campaign", str(tmp_path / "missing.yaml")), "file not found")


def test_a_utf8_bom_is_not_a_missing_field(tmp_path: Path) -> None:
    bom = tmp_path / "users.csv"
    bom.write_bytes("\ufeffuser_id,locale,timezone,push_opt_in\nU1,en_US,UTC,true\n".encode())
    r = pushgen("data", "validate", "users", str(bom))
    assert r.returncode == 0 and "1 valid users rows" in r.stdout, r.stderr


def test_help_still_prints_and_exit_codes_pass_through() -> None:
    r = pushgen()
    assert "Usage" in r.stdout + r.stderr and "Traceback" not in r.stderr and r.returncode != 0
    r = pushgen("--help")
    assert r.returncode == 0 and "Usage" in r.stdout
