"""Documented curl and Python recipes and their shown outputs: find them, run them, compare.

A shown output may abbreviate a long list with `...` (an embedding cut after a few numbers):
it then matches a 384-long list that starts with the shown numbers.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path

from scripts.client.torchserve import REPO

DEFAULT_PORTS = {"inference": "8080", "management": "8081", "metrics": "8082"}


def code_blocks(doc: Path) -> list[tuple[str, str]]:
    """(language, body) of each fenced block that names its language."""
    return re.findall(r"```(\w+)\n(.*?)```", doc.read_text(), flags=re.S)


def documented_recipes(doc: Path, url_fragment: str = "") -> list[tuple[str, str]]:
    """(shell command, the output block right after it) for each ```bash block running curl."""
    blocks = code_blocks(doc)
    return [
        (body.strip(), blocks[i + 1][1])
        for i, (lang, body) in enumerate(blocks[:-1])
        if lang == "bash" and "curl" in body and url_fragment in body
        and blocks[i + 1][0] in ("json", "text")
    ]


def documented_python(doc: Path, marker: str) -> tuple[str, str]:
    """(code, the output block right after it) of the one ```python block holding `marker`."""
    blocks = code_blocks(doc)
    ((code, shown),) = [(body, blocks[i + 1][1]) for i, (lang, body) in enumerate(blocks[:-1]) if lang == "python" and marker in body]
    return code, shown


def run_recipe(command: str, server) -> str:
    """Run a documented command as written, against the test server's ports and keys."""
    for api, port in DEFAULT_PORTS.items():
        command = command.replace(f"http://127.0.0.1:{port}", server.urls[api])
    env = {**os.environ, "INF": server.keys["inference"], "MGMT": server.keys["management"]}
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def parsed(text: str):
    """Output text as data: JSON, or a Python literal (a printed list)."""
    text = text.strip()
    return json.loads(text) if text.startswith("{") else ast.literal_eval(text)


def documented_value(text: str):
    """The shown output as data; a list cut with `...` ends with the marker "..."."""
    for candidate in (text, re.sub(r",\s*\.\.\.\]", ', "..."]', text)):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
    return ast.literal_eval(text.strip())


def agrees(shown, actual) -> bool:
    if isinstance(shown, dict):
        return isinstance(actual, dict) and shown.keys() == actual.keys() and all(agrees(shown[k], actual[k]) for k in shown)
    if isinstance(shown, list):
        cut = bool(shown) and shown[-1] == "..."
        shown = shown[:-1] if cut else shown
        fits = len(actual) == 384 if cut else len(actual) == len(shown)
        return isinstance(actual, list) and fits and all(agrees(s, a) for s, a in zip(shown, actual, strict=False))  # a cut list shows a prefix
    if isinstance(shown, float) and not isinstance(actual, bool):
        return abs(shown - actual) <= 1e-4
    return shown == actual
