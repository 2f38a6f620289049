"""Test components are a plug-in: absent from the production registries, loaded by NASFORGE_PLUGINS."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from nasforge.plugins import load_plugins, plugin_names


def _nasforge(*args: str, plugins: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NASFORGE_PLUGINS"}
    if plugins is not None:
        env["NASFORGE_PLUGINS"] = plugins
    return subprocess.run([sys.executable, "-m", "nasforge", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_toy_and_faulty_are_not_production_components(tmp_path) -> None:
    spaces = _nasforge("list", "spaces", plugins=None)
    assert spaces.returncode == 0, spaces.stderr
    assert "nb201" in spaces.stdout and "toy" not in spaces.stdout
    search = _nasforge("search", "--space", "toy", "--evaluator", "toy", "--budget", "1", "--out", str(tmp_path / "run"),
                       plugins=None)
    assert search.returncode == 2 and "unknown space 'toy'" in search.stderr


def test_nasforge_plugins_registers_them_and_names_a_module_it_cannot_import() -> None:
    done = _nasforge("list", "evaluators", plugins="nasforge.testing, no_such_plugin_module")
    assert done.returncode == 0, done.stderr
    assert "toy" in done.stdout and "faulty" in done.stdout
    assert "NASFORGE_PLUGINS: cannot import the plug-in 'no_such_plugin_module'" in done.stderr


def test_load_plugins_parses_the_list_and_skips_what_fails(caplog: pytest.LogCaptureFixture) -> None:
    assert plugin_names(" a.b, ,c ") == ["a.b", "c"] and plugin_names(None) == []
    with caplog.at_level(logging.WARNING, logger="nasforge.plugins"):
        assert load_plugins("nasforge.testing,no_such_plugin_module") == ["nasforge.testing"]
    assert "no_such_plugin_module" in caplog.text
