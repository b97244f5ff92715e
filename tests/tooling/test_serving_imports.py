"""scripts/serving/ is what the running server imports: every
module of it imports, in a fresh interpreter, with nothing beyond the standard library, the HTTP
framework (aiohttp, with what aiohttp itself imports), orjson (the front's JSON) and the folder
itself. No requests, no test harness, no build or measuring code."""

from __future__ import annotations

import json
import subprocess
import sys

from scripts.client.torchserve import REPO

SERVING = sorted(f"scripts.serving.{p.stem}" for p in (REPO / "scripts" / "serving").glob("*.py") if p.stem != "__init__")
IMPORTED = """
import importlib, json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def imported(*modules: str) -> set[str]:
    """Every module that importing `modules` loaded, in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", IMPORTED, *modules], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules} - set(sys.stdlib_module_names) - {"__main__"}


def test_the_serving_folder_needs_only_the_standard_library_aiohttp_and_orjson():
    assert len(SERVING) >= 9, SERVING
    framework = top_level(imported("aiohttp", "aiohttp.web", "orjson"))
    loaded = imported(*SERVING)
    assert top_level(loaded) - framework == {"scripts"}
    ours = {name for name in loaded if name.startswith("scripts.")}
    assert ours <= {*SERVING, "scripts.serving"}, ours - {*SERVING, "scripts.serving"}
    assert "requests" not in top_level(loaded) and "tests" not in top_level(loaded)
