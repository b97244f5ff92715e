"""`make bench-gpu` and the GPU agreement gate on an offline GPU host, from one upload of at most 64 MiB.

Such a host (../shared/gpu-host/README.md) has Python with torch, torchvision and aiohttp, a copy of this
checkout, and nothing else: no Java, no TorchServe, no network. The kit (.gpu-kit/, git-ignored) holds what
the checkout lacks:
- a JRE cut by jlink and TorchServe's Python package and jar (the gpu-host tools' stage.sh, ~36 MB xz);
- efficientnet_lite0.mar without model.onnx, which the GPU variant (runtime torch) never reads: 17 MB;
- minilm.mar without its weights: 90 MB of fp32 do not fit. The run fills the architecture with random
  values of the same shapes, so minilm's served figures are of speed only; the report says so;
- the wheels the host may lack: orjson (the front and the handlers), nvgpu (TorchServe's GPU metrics), requests and its
  dependencies (the bench's management calls); each is unpacked there only if the host cannot import it;
- the photos the agreement gate reads from scikit-image and matplotlib here, which the host need not have.

    python -m scripts.measure.gpu_kit stage                              # here: make archive first; -> .gpu-kit/
    python3 -m scripts.measure.gpu_kit run --out "$OUT"                  # there, from the checkout's root
    python -m scripts.measure.gpu_kit run --out /tmp/kit --cpu-dry-run   # here: every step on the CPU, first

`run` unpacks the kit in the temp folder, then writes to --out: agreement.txt (the GPU variant against the
CPU fp32 reference: crops and whole photos), gpu-tests.txt (the tests that skip without CUDA, run there on
the kit's efficientnet_lite0: nvjpeg, a corrupt JPEG in a batch, fp16 and CUDA graphs against CPU fp32),
bench/ (report.md, results.json, throughput.png; with the configuration sweep, cut to --budget-s), run.log
(every step's output) and logs.tar.gz (TorchServe's logs).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from models.registry import get_spec
from scripts.build.gpu_config import gpu_variant

REPO = Path(__file__).resolve().parents[2]
KIT = REPO / ".gpu-kit"
UPLOAD_LIMIT_MB = 64  # the device tool's limit for the checkout and the kit together
CHECKOUT_ALLOWANCE_MB = 4  # what the tracked tree takes of it (1.7 MB on 2026-12-05)
IMAGE, TEXT = "efficientnet_lite0", "minilm"
LEFT_OUT = {IMAGE: {"model.onnx"}, TEXT: {"model.onnx", "model.safetensors"}}
RANDOM_WEIGHTS = (TEXT,)
RANDOM_SOURCE = "random values of the real shapes (scripts/measure/gpu_kit.py: the weights do not fit the upload); speed only"
# The kit's wheels, each named as the module it gives; unpacked on the host only where it cannot import it.
WHEELS = (
    "orjson",  # the front (scripts/serving/front.py) and the handlers' answers (handlers/payload.py)
    "nvgpu",  # TorchServe's GPU metrics (docs/metrics.md)
    # the bench's management calls (scripts/client/torchserve.py): a torch/transformers host need not have them
    "requests", "urllib3", "idna", "certifi", "charset_normalizer",
)
HOST_MODULES = ("torch", "torchvision", "timm", "transformers", "safetensors", "onnxruntime", "aiohttp",
                "yaml", "PIL", "numpy", "psutil", "tqdm")
"""What the run imports from the host itself: ../shared/gpu-host/README.md's packages and what they bring
(psutil: TorchServe's launcher, which ran there; tqdm: transformers')."""
HOST_PYTHON = ("3.12", "cp312")  # the GPU host's interpreter, for the wheels
BUDGET_S = 540.0  # one device call may run 600 s; what is under $OUT comes back even when it is cut
WRAP_UP_S = 20.0  # the logs' tarball and the last report after bench-gpu
GPU_TESTS = ("tests/handler/test_gpu.py", "tests/unit/test_compilation.py")
"""The tests that skip without CUDA (pytest is on the host: ../shared/gpu-host/README.md's image has it)."""
GPU_TESTS_TIMEOUT_S = 150.0  # four handlers' loads and a few batches: a hang must not take the bench's time
TEST_ENV = {"model_dir": "BUNDLE_TEST_MODEL_DIR", "photos": "BUNDLE_TEST_PHOTOS"}
"""How the GPU tests get an unpacked archive (no `build` extra there) and the kit's photos."""
HOST_CHECK = f"""
import importlib.util, os, subprocess, sys
missing = [name for name in {(*HOST_MODULES, *WHEELS, "ts")!r} if importlib.util.find_spec(name) is None]
if missing == ["nvgpu"]:  # only TorchServe's GPU series need it: the rest of the run still measures
    print("gpu_kit: no nvgpu here: TorchServe exports no GPU series (docs/metrics.md)")
elif missing:  # before any GPU time is spent on a run that would stop at an import
    sys.exit("gpu_kit: the host cannot import " + ", ".join(missing) + ": add their wheels to the kit (WHEELS)")
import torch, ts
from importlib import metadata
def installed(name):  # a name the host's distribution spells otherwise (onnxruntime-gpu) must not stop the run
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "(no distribution of that name)"
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.version.cuda,
      *(f"{{name}} {{installed(name)}}" for name in ("torchvision", "transformers", "timm", "onnxruntime", "aiohttp", "numpy")))
print("TorchServe", ts.__version__, "from", os.path.dirname(ts.__file__))
java = os.path.join(os.environ["JAVA_HOME"], "bin", "java")
print(java, subprocess.run([java, "-version"], capture_output=True, text=True).stderr.splitlines()[0])
"""  # every module the run needs, then what it uses, in its log: the kit's TorchServe and JRE, the host's torch


# --- here: stage ---------------------------------------------------------------------------------

def slim_archive(source: Path, target: Path, left_out: Iterable[str]) -> Path:
    """`source` .mar without the members named in `left_out` (the archive stays a valid .mar)."""
    left_out = set(left_out)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename not in left_out:
                dst.writestr(info, src.read(info))
    return target


def fetch_wheels(folder: Path) -> list[Path]:
    """The wheels of WHEELS at this checkout's versions, as built for the host's Python, and nvgpu (an sdist
    on PyPI) built into a wheel here."""
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "-q"]
    python, abi = HOST_PYTHON
    pins = [f"{name}=={version(name)}" for name in WHEELS if name != "nvgpu"]
    subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
                    "--abi", abi, "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                    "-d", str(folder), *pins], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(folder), f"nvgpu=={gpu_extra_pin('nvgpu')}"], check=True)
    return sorted(folder.glob("*.whl"))


def gpu_extra_pin(name: str) -> str:
    """The version pyproject.toml's `gpu` extra pins for `name` (the GPU image installs the same)."""
    import tomllib

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    return next(spec.split("==")[1] for spec in extra if spec.split("==")[0] == name)


def stage_photos(folder: Path) -> list[Path]:
    """The agreement gate's photos from scikit-image and matplotlib (samples/ travels with the checkout)."""
    from scripts.measure.agreement import photo_files

    folder.mkdir(parents=True, exist_ok=True)
    samples = REPO / "samples"
    return [Path(shutil.copyfile(path, folder / path.name)) for path in photo_files() if path.parent != samples]


def size_mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def stage(kit: Path, model_store: Path, tools: Path) -> Path:
    """Write the kit; refuse one that would not fit the upload beside the checkout."""
    if kit.exists():
        shutil.rmtree(kit)
    subprocess.run(["bash", str(tools / "stage.sh"), str(kit / "host")], cwd=REPO, check=True)
    for model, left_out in LEFT_OUT.items():
        slim_archive(model_store / f"{model}.mar", kit / "model-store" / f"{model}.mar", left_out)
    fetch_wheels(kit / "wheels")
    stage_photos(kit / "photos")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    (kit / "kit.json").write_text(json.dumps({"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                              "commit": commit, "random_weights": list(RANDOM_WEIGHTS)}, indent=2) + "\n")
    total = size_mb(kit)
    if total > UPLOAD_LIMIT_MB - CHECKOUT_ALLOWANCE_MB:
        raise SystemExit(f"gpu_kit: {kit} is {total:.1f} MiB; with the checkout it would not fit the {UPLOAD_LIMIT_MB} MiB upload")
    print(f"gpu_kit: {kit} is {total:.1f} MiB (limit {UPLOAD_LIMIT_MB} MiB with the checkout)")
    return kit


# --- there: run ----------------------------------------------------------------------------------

def host_python(kit: Path, root: Path, log) -> tuple[str, dict[str, str]]:
    """An interpreter that sees the checkout, the kit's TorchServe and wheels, and the host's own packages,
    and the environment with the kit's JRE.

    Not through PYTHONPATH: TorchServe puts an inherited PYTHONPATH ahead of the archive on each worker's
    path, so a checkout there would shadow the archive's handlers/ and hide a packaging fault (the rule
    tests/tooling/test_install.py holds product code to). A venv's .pth file puts them after it instead,
    as an installed project would be."""
    exports = subprocess.run([sys.executable, str(kit / "host" / "install.py"), str(root)], capture_output=True, text=True,
                             check=True).stdout
    values = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines() if line.startswith("export "))
    # install.py's PYTHONPATH line is <root>/tree:<root>/site${...}: the site holds TorchServe (the checkout is the tree)
    ts_site = values["PYTHONPATH"].split("${")[0].split(":")[-1]
    wheels = root / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    missing = [wheel for wheel in sorted((kit / "wheels").glob("*.whl"))
               if importlib.util.find_spec(wheel.name.split("-")[0]) is None]
    for wheel in missing:  # a wheel is a zip of what goes on the path: no pip needed on the host
        log(f"unpacking {wheel.name} into {wheels}")
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(wheels)
    venv = root / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True,
                             text=True, check=True).stdout.strip()
    Path(purelib, "gpu_kit.pth").write_text(pth_lines([REPO, Path(ts_site), wheels], host_site_dirs()))
    return python, {**os.environ, "JAVA_HOME": values["JAVA_HOME"], "PYTHONUNBUFFERED": "1"}


def host_site_dirs() -> list[str]:
    """Where this interpreter's packages (torch, torchvision, aiohttp) live: its site dirs, a venv's included."""
    import site

    return [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]


def pth_lines(paths: Sequence[Path], site_dirs: Sequence[str]) -> str:
    """A .pth file: `paths` as they are (existing folders only: site skips the rest), then `site_dirs` with
    their own .pth files processed (addsitedir; site exec()s the line, where a comprehension cannot see `site`)."""
    return "".join(f"{path}\n" for path in paths) + f"import site; list(map(site.addsitedir, {list(site_dirs)!r}))\n"


def fill_random_weights(model_dir: Path, seed: int = 0) -> str:
    """Write the weights file metadata.json names: the architecture's own initialisation (random values of
    the real shapes), and record its sha256 and where it came from. Returns the sha256."""
    import torch
    from safetensors.torch import save_file

    from handlers.architectures import build_module
    from handlers.weights import read_metadata, sha256_file

    metadata = read_metadata(model_dir)
    torch.manual_seed(seed)
    state = {key: tensor.detach().contiguous().clone() for key, tensor in build_module(metadata["architecture"], model_dir).state_dict().items()}
    weights = model_dir / metadata["weights_file"]
    save_file(state, str(weights))
    metadata.update(sha256=sha256_file(weights), source=RANDOM_SOURCE)
    (model_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata["sha256"]


def unpack_models(kit: Path, root: Path) -> tuple[Path, Path]:
    """The model store the bench serves (random weights filled in where the kit left them out) and the
    unpacked folders its in-process rows and the agreement load."""
    store, weights = root / "model-store", root / "weights"
    for folder in (store, weights):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    random_weights = json.loads((kit / "kit.json").read_text())["random_weights"]
    for archive in sorted((kit / "model-store").glob("*.mar")):
        model = archive.stem
        with zipfile.ZipFile(archive) as mar:
            mar.extractall(weights / model)
        if model in random_weights:
            fill_random_weights(weights / model)
        with zipfile.ZipFile(store / archive.name, "w", zipfile.ZIP_STORED) as mar:
            for path in sorted((weights / model).rglob("*")):
                if path.is_file():
                    mar.write(path, path.relative_to(weights / model).as_posix())
    return store, weights


def agreement_args(weights: Path, photos: Path, dry_run: bool) -> list[str]:
    """The GPU image's handler settings for efficientnet_lite0 against the CPU fp32 reference, on the kit's
    photos beside samples/ (a dry run: the same path on the CPU, briefly: torchvision's decoder, fp32, 16 crops)."""
    handler = gpu_variant(yaml.safe_load(get_spec(IMAGE).config_path.read_text()))["handler"]
    if dry_run:
        handler = {**handler, "jpeg_decoder": "torchvision", "precision": "fp32"}
    pairs = [f"{key}={json.dumps(value)}" for key, value in handler.items() if not isinstance(value, dict)]
    return ["--model", IMAGE, "--model-dir", str(weights / IMAGE), "--photos", str(photos),
            *(["--crops", "16"] if dry_run else ["--gpu-id", "0"]), "--set", *pairs]


def run(kit: Path, out: Path, dry_run: bool, root: Path, budget_s: float) -> int:
    """The agreement gate first (a minute at most), then bench-gpu with the configuration sweep, which
    starts no candidate that would end after `budget_s` from here."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "run.log", "a") as log_file:

        def log(message: str) -> None:
            line = f"[gpu_kit {datetime.now(timezone.utc):%H:%M:%S}] {message}"
            print(line, flush=True)
            log_file.write(line + "\n")
            log_file.flush()

        def step(name: str, command: Sequence[str], env: dict, output: Path | None = None, timeout_s: float | None = None) -> int:
            log(f"{name}: {' '.join(command)}")
            with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
                timer = threading.Timer(timeout_s, child.kill) if timeout_s else None
                if timer:
                    timer.start()
                lines = []
                for line in child.stdout:
                    print(line, end="", flush=True)
                    log_file.write(line)
                    lines.append(line)
            if timer:
                timer.cancel()
            if output is not None:
                output.write_text("".join(lines))
            log(f"{name}: exit {child.returncode}" + (" (killed: over its time limit)" if child.returncode == -9 else ""))
            return child.returncode

        python, env = host_python(kit, root, log)
        store, weights = unpack_models(kit, root)
        log(f"models: {sorted(p.name for p in store.iterdir())}; random weights: {json.loads((kit / 'kit.json').read_text())['random_weights']}")
        if step("host", [python, "-c", HOST_CHECK], env) != 0:
            return 1
        if shutil.which("nvidia-smi"):
            step("nvidia-smi", ["nvidia-smi"], env)
        agreement = step("agreement", [python, "-m", "scripts.measure.agreement", *agreement_args(weights, kit / "photos", dry_run)], env,
                         output=out / "agreement.txt")
        test_env = {**env, TEST_ENV["model_dir"]: str(weights / IMAGE), TEST_ENV["photos"]: str(kit / "photos")}
        step("gpu-tests", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *GPU_TESTS], test_env,
             output=out / "gpu-tests.txt", timeout_s=GPU_TESTS_TIMEOUT_S)
        logs = root / "bench-logs"
        shutil.rmtree(logs, ignore_errors=True)
        bench_budget_s = budget_s - (time.monotonic() - started) - WRAP_UP_S
        bench = step("bench-gpu", [python, "-m", "scripts.measure.bench.gpu", "--model-store", str(store),
                                   "--weights-dir", str(weights), "--out", str(out / "bench"), "--logs", str(logs),
                                   "--sweep", "--budget-s", f"{bench_budget_s:.0f}", *(["--cpu-dry-run"] if dry_run else [])], env)
        if logs.exists():
            with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
                tar.add(logs, arcname="logs")
        log(f"done in {time.monotonic() - started:.0f} s: agreement exit {agreement}, bench-gpu exit {bench}; outputs in {out}")
    return bench or agreement


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    staging = verbs.add_parser("stage", help="here: write the kit")
    staging.add_argument("--kit", type=Path, default=KIT)
    staging.add_argument("--model-store", type=Path, default=REPO / "model-store", help="where make archive put the .mar files")
    staging.add_argument("--tools", type=Path, default=REPO.parent / "shared" / "gpu-host", help="the gpu-host tools (stage.sh)")
    running = verbs.add_parser("run", help="on the GPU host: unpack the kit, run bench-gpu and the agreement gate")
    running.add_argument("--kit", type=Path, default=KIT)
    running.add_argument("--out", type=Path, required=True)
    running.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "gpu-kit", help="where the kit is unpacked")
    running.add_argument("--cpu-dry-run", action="store_true", help="every step on the CPU, briefly: checks the kit here first")
    running.add_argument("--budget-s", type=float, default=BUDGET_S,
                         help=f"seconds the whole run may take (default {BUDGET_S:.0f}: one device call of 600 s, with a margin)")
    args = parser.parse_args(argv)
    if args.verb == "stage":
        stage(args.kit, args.model_store, args.tools)
        return 0
    return run(args.kit, args.out, args.cpu_dry_run, args.root, args.budget_s)


if __name__ == "__main__":
    sys.exit(main())
