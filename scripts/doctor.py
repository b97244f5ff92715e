"""Installation check: what serving needs, each failure with the fix.

    python -m scripts.doctor                  # exit 1 when a required check fails
    python -m scripts.doctor --config docker/config.properties
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import socket
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from scripts.serving import java
from scripts.serving.front import parse_listen
from scripts.serving.ts_config import listen_addresses

REPO = Path(__file__).resolve().parent.parent
PINNED = ("torch", "torchvision", "torchserve", "torch-model-archiver", "torch-workflow-archiver")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def pinned_versions(pyproject: Path) -> dict[str, str]:
    """name -> version for the `name==version` pins in pyproject.toml's dependencies."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = (re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^;\s]+)", dep) for dep in dependencies)
    return {m.group(1).lower(): m.group(2) for m in pins if m}


def cpu_flags(cpuinfo_text: str) -> set[str]:
    """The CPU_FLAGS that /proc/cpuinfo's `flags` line lists (the benchmark's machine facts read them too)."""
    match = re.search(r"^flags\s*:(.*)$", cpuinfo_text, flags=re.M)
    return set(match.group(1).split()) & set(CPU_FLAGS) if match else set()


def check_versions() -> list[Check]:
    checks = []
    for name, wanted in pinned_versions(REPO / "pyproject.toml").items():
        if name not in PINNED:
            continue
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        ok = have is not None and have.split("+")[0] == wanted
        checks.append(Check(name, ok, have or "not installed", f"make install (pyproject.toml pins {name}=={wanted})"))
    return checks


def check_java() -> Check:
    found = java.check_java()
    return Check("java", found.ok, found.version or found.problem, java.FIX)


def check_cuda() -> Check:
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        return Check("cuda", True, f"no GPU visible (torch is a {build}); workers run on CPU", required=False)
    gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    names = ", ".join(f"{g.name} {g.total_memory / 2**30:.0f} GiB" for g in gpus)
    return Check("cuda", True, f"{len(gpus)} GPU(s): {names}; make serve VARIANT=gpu serves on them (docs/gpu.md)", required=False)


def check_cpu() -> Check:
    import torch

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = ", ".join(sorted(cpu_flags(text))) or "none detected"
    detail = f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, ISA {torch.backends.cpu.get_cpu_capability()}; flags: {flags}"
    return Check("cpu", True, detail, required=False)


def check_ports(config: Path, front: str = "") -> list[Check]:
    """TorchServe's ports from the config, and the front's (`make serve` starts it too)."""
    checks, addresses = [], listen_addresses(config.read_text())
    if front:
        addresses["front"] = parse_listen(front)
    for name, (host, port) in addresses.items():
        with socket.socket() as sock:
            free = sock.connect_ex(("127.0.0.1" if host == "0.0.0.0" else host, port)) != 0
        checks.append(Check(f"port {port} ({name})", free, "free" if free else "in use",
                            "stop the other server (make stop) or change the address in "
                            + ("FRONT=" if name == "front" else config.name)))
    return checks


def run_checks(config: Path, front: str = "") -> list[Check]:
    return [*check_versions(), check_java(), check_cuda(), check_cpu(), *check_ports(config, front)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "config.properties")
    parser.add_argument("--front", "--v2-front", default="", metavar="HOST:PORT", help="the front's address (make serve's FRONT)")
    args = parser.parse_args(argv)
    checks = run_checks(args.config, args.front)
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        print(f"[{mark}] {check.name:<28} {check.detail}")
        if not check.ok:
            print(f"       fix: {check.fix}")
    return 0 if all(c.ok or not c.required for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
