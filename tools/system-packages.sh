#!/usr/bin/env bash
# The system packages DocuChat needs beyond Python and Node, installed with apt where they are missing:
#   java (a JDK 17+): DynamoDB Local, which `make dev` and the tests run; a JDK rather than a JRE, so that
#                     local/java/LoopbackDynamoDBLocal.java can run from source and keep it on 127.0.0.1.
#   chromium:         the browser the web app's tests drive (Playwright's own browser download is not used),
#                     with DejaVu's fonts, which cover Latin and Persian script.
# Where apt is not available (macOS) or we may not use it, it prints what to install, in one line, and fails.
set -euo pipefail

java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local version
  version=$(java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -1)
  [ -n "$version" ] && [ "$version" -ge 17 ] && java --list-modules 2>/dev/null | grep -q '^jdk.compiler@'
}
chromium_ok() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || [ -n "${DOCUCHAT_CHROMIUM:-}" ]
}
fonts_ok() {
  ! command -v fc-list >/dev/null 2>&1 || fc-list | grep -qi 'DejaVu Sans'
}

missing=()
java_ok || missing+=(default-jdk-headless)
chromium_ok || missing+=(chromium)
fonts_ok || missing+=(fonts-dejavu-core)

[ ${#missing[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo="sudo"; }
  if [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; then
    echo "==> installing system packages: ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
      || { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q --no-install-recommends "${missing[@]}"; }
  fi
fi
java_ok || {
  echo "error: DocuChat needs a JDK 17 or newer for DynamoDB Local (Debian/Ubuntu: sudo apt-get install default-jdk-headless; macOS: brew install openjdk@17)" >&2
  exit 1
}
chromium_ok || {
  echo "error: the web app's tests need Chromium (Debian/Ubuntu: sudo apt-get install chromium; elsewhere set DOCUCHAT_CHROMIUM to a Chromium or Chrome binary)" >&2
  exit 1
}
exit 0
