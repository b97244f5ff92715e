"""The curl recipes of the README and of the docs moved out of it, run as written against the test
server (only host:port differ)."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from scripts.client.torchserve import REPO
from tests.integration.recipes import agrees, documented_recipes, documented_value, parsed, run_recipe

README = REPO / "README.md"
# docs/text-recipes.md runs in test_text.py; docs/docker.md's recipes need a container.
DOCS = [README, *(REPO / "docs" / name for name in ("management.md", "workflow.md", "performance.md", "reliability.md"))]


def shell_commands(readme: str) -> list[str]:
    """Commands from ```bash blocks, with backslash continuations joined."""
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl")]


def recipes(path_fragment: str, docs=DOCS) -> list[str]:
    return [c for doc in docs for c in shell_commands(doc.read_text()) if path_fragment in c]


def run(command: str, server, env: dict[str, str]) -> str:
    for name, url in server.urls.items():
        port = {"inference": "8080", "management": "8081", "metrics": "8082"}[name]
        command = command.replace(f"http://127.0.0.1:{port}", url)
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def env(server):
    return {**os.environ, "INF": server.keys["inference"], "MGMT": server.keys["management"]}


def test_quickstart_curl_gives_a_cat(server, env):
    quickstart = recipes("samples/cat.jpg", [README])[0]  # the first one in the README
    labels = json.loads(run(quickstart, server, env))
    assert next(iter(labels)) in {"tabby", "tiger cat", "Egyptian cat"}


@pytest.mark.parametrize("command", [c for c in recipes("/predictions/efficientnet_lite0") if "coffee.jpg" in c])
def test_every_coffee_recipe_gives_espresso(server, env, command):
    assert next(iter(json.loads(run(command, server, env)))) == "espresso"


SHOWN = [recipe for doc in DOCS for fragment in ("/predictions/minilm", "/wfpredict/", "/v2/models/") for recipe in documented_recipes(doc, fragment)]


def test_text_workflow_and_v2_recipes_are_found():
    assert len(SHOWN) == 5


@pytest.mark.parametrize("command, shown", SHOWN, ids=lambda value: value[:70] if "curl" in value else "")
def test_text_workflow_and_v2_recipes_give_their_shown_output(server, command, shown, request):
    if "/wfpredict/" in command:
        request.getfixturevalue("workflow")  # registered by serve.py in the background
    output = run_recipe(command, server)
    assert agrees(documented_value(shown), parsed(output)), output[:500]


def test_there_are_four_coffee_recipes():
    assert len([c for c in recipes("/predictions/efficientnet_lite0") if "coffee.jpg" in c]) == 4


def test_the_readme_stays_a_front_door():
    assert len(README.read_text().splitlines()) <= 300  # the rest lives in docs/
