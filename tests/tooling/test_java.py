"""scripts/serving/java.py: the one Java check of make install, serve and doctor, on stand-in java binaries."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from scripts.serving import java


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ("command not found", None),
    ],
)
def test_java_major(output, major):
    assert java.java_major(output) == major


def fake_java_home(root: Path, stderr: str) -> Path:
    """A JAVA_HOME whose bin/java prints `stderr` for -version, as a real java does."""
    binary = root / "bin" / "java"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\nprintf '%s\\n' '{stderr}' >&2\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return root


@pytest.mark.parametrize(
    ("stderr", "ok", "version"),
    [
        ('openjdk version "17.0.15" 2025-04-15', True, 'openjdk version "17.0.15" 2025-04-15'),
        ('openjdk version "11.0.2" 2019-01-15', False, 'openjdk version "11.0.2" 2019-01-15'),
        ("Picked up JAVA_TOOL_OPTIONS: -Xmx1g\nopenjdk version \"21\" 2023-09-19", True, 'openjdk version "21" 2023-09-19'),
    ],
)
def test_check_reads_the_version_of_java_home(tmp_path, stderr, ok, version):
    home = fake_java_home(tmp_path / "jdk", stderr)
    found = java.check_java({"JAVA_HOME": str(home), "PATH": ""})
    assert (found.path, found.ok, found.version) == (str(home / "bin" / "java"), ok, version)
    assert (found.problem == "") == ok and (ok or "needs Java 17+" in found.problem)


def test_java_home_wins_over_path_as_for_torchserve(tmp_path):
    """TorchServe runs $JAVA_HOME/bin/java when JAVA_HOME is set, whatever PATH holds."""
    on_path = fake_java_home(tmp_path / "path-jdk", 'openjdk version "17.0.15"')
    found = java.check_java({"JAVA_HOME": str(tmp_path / "empty"), "PATH": str(on_path / "bin")})
    assert found.path is None and not found.ok and "not found" in found.problem
    assert java.find_java({"PATH": str(on_path / "bin")}) == str(on_path / "bin" / "java")


def test_main_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nothing-here"))
    assert java.main() == 1
    err = capsys.readouterr().err
    assert "Java 17+ is required by TorchServe and was not found" in err and "openjdk-17-jre-headless" in err


def test_this_machine_has_java_17():
    found = java.check_java(os.environ)
    assert found.ok, found.problem
