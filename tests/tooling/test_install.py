"""The installed project (pyproject.toml): its verbs are console entry points the Makefile calls, and
installing `handlers` never changes what a served archive runs.

A TorchServe 0.12 worker imports the handler the way ts/model_loader.py does (importlib.import_module
of the manifest's handler file) in a process the frontend starts with PYTHONPATH = [inherited
PYTHONPATH:] <the unpacked .mar>: (EnvironmentUtils.getEnvString in ts/frontend/model-server.jar; the
cwd it would add is skipped when it lies in site-packages, where model_server_home is). Python puts
PYTHONPATH ahead of site-packages, so the archive's handlers/ wins over an installed copy, whether the
project is installed from a wheel or editable (setuptools' finder goes last in sys.meta_path). The
tests below start such a worker's interpreter on an archive's files, without Java.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scripts.build.archives import handler_sources
from scripts.client.torchserve import REPO

DIST = importlib.metadata.distribution("torchserve-bundle")
VERBS = {ep.name: ep for ep in DIST.entry_points if ep.group == "console_scripts"}
ARCHIVE_MARK = "\nFROM_THE_ARCHIVE = True\n"

# The worker's import, as ts/model_service_worker.py and ts/model_loader.py do it; prints where each came from.
WORKER = """
import importlib, json, site, sys
from ts.model_loader import TsModelLoader
handler, *site_dirs = sys.argv[1:]
for extra in site_dirs:
    site.addsitedir(extra)  # a site-packages folder (appended, as site.py appends its own)
module = TsModelLoader()._load_handler_file(handler)[0] if handler else importlib.import_module("handlers.base")
import handlers
print(json.dumps({"handler": module.__file__, "handlers": handlers.__file__, "base": sys.modules["handlers.base"].__file__,
                  "archive": getattr(handlers, "FROM_THE_ARCHIVE", False), "path": sys.path}))
"""


def unpacked_archive(model_dir: Path) -> Path:
    """What a worker finds of an image archive: the handler file at the top, handlers/ beside it (scripts/build/archives.py)."""
    for name, content in handler_sources().items():
        (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / name).write_bytes(content)
    shutil.copyfile(REPO / "handlers" / "image_classifier.py", model_dir / "image_classifier.py")
    with open(model_dir / "handlers" / "__init__.py", "a") as init:
        init.write(ARCHIVE_MARK)
    return model_dir


def worker_imports(tmp_path: Path, model_dir: Path | None, *site_dirs: Path) -> dict:
    """The worker's interpreter: TorchServe's PYTHONPATH for model_dir (None: no archive on it), run
    as a script from a folder of its own and in a working directory that holds no code."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if model_dir is not None:
        env["PYTHONPATH"] = f"{model_dir}{os.pathsep}"  # getEnvString: "<model dir>:" (no inherited PYTHONPATH)
    script = tmp_path / "worker" / "probe.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(WORKER)
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    handler = "image_classifier.py" if model_dir is not None else ""  # the manifest's handler; none to find without the archive
    result = subprocess.run([sys.executable, str(script), handler, *map(str, site_dirs)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_an_editable_install_does_not_shadow_the_archives_handlers(tmp_path):
    model_dir = unpacked_archive(tmp_path / "model")
    installed = worker_imports(tmp_path, None)  # the control: without the archive, the checkout's (make install: -e)
    assert Path(installed["handlers"]).parent == REPO / "handlers" and not installed["archive"]
    worker = worker_imports(tmp_path, model_dir)
    assert worker["archive"]
    assert {Path(worker[key]).parent for key in ("handlers", "base")} == {model_dir / "handlers"}
    assert Path(worker["handler"]).parent == model_dir


def test_an_installed_wheel_does_not_shadow_the_archives_handlers(tmp_path):
    """The image's install: handlers/ in a site-packages folder (what `pip install <wheel>` writes)."""
    site_packages = tmp_path / "site-packages"
    shutil.copytree(REPO / "handlers", site_packages / "handlers", ignore=shutil.ignore_patterns("__pycache__"))
    model_dir = unpacked_archive(tmp_path / "model")
    installed = worker_imports(tmp_path, None, site_packages)
    assert Path(installed["handlers"]).parent == site_packages / "handlers"  # found there when no archive is in the way
    worker = worker_imports(tmp_path, model_dir, site_packages)
    assert worker["archive"] and Path(worker["base"]).parent == model_dir / "handlers"
    path = worker["path"]
    assert path.index(str(model_dir)) < min(path.index(entry) for entry in path if entry.endswith("site-packages"))


PRODUCT = [*(REPO / "scripts").rglob("*.py"), *(REPO / "docker").iterdir(), REPO / "Makefile", REPO / "Dockerfile",
           *(REPO / "handlers").glob("*.py"), *(REPO / "models").glob("*.py")]
# build/grpc holds protoc's output, generated on first use, whose modules import each other by bare name.
PATH_EDITS_ALLOWED = {REPO / "scripts" / "client" / "grpc_client.py"}


def test_product_code_sets_no_pythonpath_and_edits_no_sys_path():
    """An inherited PYTHONPATH comes ahead of the archive on a worker's path: a checkout there would
    shadow every archive's handlers/. The installed project needs neither."""
    for path in PRODUCT:
        if path.is_file() and path.suffix not in (".xml", ".properties", ".conf"):
            text = path.read_text()
            assert not re.search(r"PYTHONPATH\s*=|[\"']PYTHONPATH[\"']\s*:", text), f"{path} sets PYTHONPATH"
            if path not in PATH_EDITS_ALLOWED:
                assert not re.search(r"sys\.path\.(insert|append|extend)|sys\.path\s*=", text), f"{path} edits sys.path"


def makefile_verbs() -> set[str]:
    return set(re.findall(r"\$\(VENV\)/bin/(ts-bundle-[a-z0-9-]+)", (REPO / "Makefile").read_text()))


def test_the_makefile_calls_the_entry_points_and_no_module_by_path():
    verbs = makefile_verbs()
    assert {"ts-bundle-export", "ts-bundle-archive", "ts-bundle-workflow", "ts-bundle-serve", "ts-bundle-ready"} <= verbs
    assert verbs <= set(VERBS), verbs - set(VERBS)
    recipes = [line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("\t")]
    # the one module run is the Java check, by the system Python before the venv (and the project) exist
    assert [line for line in recipes if "-m scripts." in line] == ["\t@$(PYTHON) -m scripts.serving.java"]


@pytest.mark.parametrize("name", sorted(VERBS))
def test_each_entry_point_is_installed_and_runs_main_with_no_arguments(name):
    """`make install` put the script in the venv; its target takes no required argument (it reads
    sys.argv) and returns an exit status."""
    assert (Path(sys.executable).parent / name).is_file(), f"{name}: not installed; run `make install`"
    main = VERBS[name].load()
    assert VERBS[name].attr == "main"
    inspect.signature(main).bind()  # callable as main()
    assert inspect.signature(main).return_annotation in ("int", int), f"{name}: main should return an exit status"


def test_the_help_of_a_verb_runs_from_anywhere(tmp_path):
    """Installed, the verbs import from any working directory (no PYTHONPATH, no repo on the path)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([str(Path(sys.executable).parent / "ts-bundle-ready"), "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "usage: ts-bundle-ready" in result.stdout, result.stderr


def test_the_wheel_holds_the_packages_their_data_and_the_verbs(tmp_path):
    """What the image installs (the builder's `pip wheel`): every package, models/configs/*.yaml
    (models/registry.py reads them beside it) and the entry points. Built offline from a copy."""
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, source / name)
    for package in ("handlers", "models", "scripts"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir",
                    str(tmp_path / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheel").glob("torchserve_bundle-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"models/configs/{path.name}" for path in (REPO / "models" / "configs").glob("*.yaml")} <= names
    assert {"scripts/serving/log4j2-text.xml", "scripts/serving/log4j2-json.xml"} <= names  # serve.py --log-format
    assert {"handlers/base.py", "models/registry.py", "scripts/serving/serve.py", "scripts/build/gpu_config.py"} <= names
    assert not any("__pycache__" in name or name.startswith(("tests/", "docker/")) for name in names)
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    listed = set(re.findall(r"^(ts-bundle-[a-z0-9-]+) = ", zipfile.ZipFile(wheel).read(entry_points).decode(), flags=re.M))
    assert listed == set(VERBS)
