#!/usr/bin/env bash
# TorchServe's frontend is Java: require Java 17+ and say how to get it.
set -euo pipefail
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "Java 17+ is required by TorchServe and was not found." >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless" >&2
  echo "  elsewhere: install a JDK/JRE 17+ and put it on PATH or set JAVA_HOME" >&2
  exit 1
fi
version=$("$java_bin" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
major=${version%%.*}
if [ "${major:-0}" -lt 17 ] 2>/dev/null; then
  echo "Java $version found; TorchServe needs 17+ (Debian/Ubuntu: openjdk-17-jre-headless)." >&2
  exit 1
fi
