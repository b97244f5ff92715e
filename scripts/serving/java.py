"""The one Java check: TorchServe's frontend needs Java 17+.

    python -m scripts.serving.java          # exit 1 with the fix when it is missing or too old

`make install` runs it before the venv exists (so: standard library only), `scripts.serving.serve`
before starting the server, `scripts.doctor` as one of its checks. It looks for the java that
TorchServe's launcher will run: $JAVA_HOME/bin/java when JAVA_HOME is set, else java on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Mapping

MIN_MAJOR = 17
FIX = "install Java 17+ (Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME"


@dataclass(frozen=True)
class Java:
    path: str | None
    """The java binary TorchServe would run; None when there is none."""
    version: str = ""
    """The first line of `java -version`."""

    @property
    def major(self) -> int | None:
        return java_major(self.version)

    @property
    def ok(self) -> bool:
        return self.path is not None and (self.major or 0) >= MIN_MAJOR

    @property
    def problem(self) -> str:
        """Why TorchServe cannot run on it ("" when it can)."""
        if self.path is None:
            return f"Java {MIN_MAJOR}+ is required by TorchServe and was not found"
        if not self.ok:
            return f"{self.version or self.path + ' -version said nothing'}: TorchServe needs Java {MIN_MAJOR}+"
        return ""


def java_major(version_output: str) -> int | None:
    """17 from 'openjdk version "17.0.15" 2025-04-15' (and 8 from '"1.8.0_392"')."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java(environ: Mapping[str, str] = os.environ) -> str | None:
    """$JAVA_HOME/bin/java when JAVA_HOME is set (TorchServe then runs that one only), else PATH's java."""
    java_home = environ.get("JAVA_HOME")
    if java_home:
        return shutil.which(os.path.join(java_home, "bin", "java"))
    return shutil.which("java", path=environ.get("PATH", os.defpath))


def check_java(environ: Mapping[str, str] = os.environ) -> Java:
    path = find_java(environ)
    if path is None:
        return Java(None)
    lines = subprocess.run([path, "-version"], capture_output=True, text=True).stderr.splitlines()  # java prints there
    # the line naming the version; not the first when JAVA_TOOL_OPTIONS prints "Picked up ..." before it
    return Java(path, next((line for line in lines if 'version "' in line), lines[0] if lines else ""))


def main() -> int:
    java = check_java()
    if not java.ok:
        print(f"{java.problem}.\n  fix: {FIX}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
