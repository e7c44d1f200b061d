#!/usr/bin/env bash
# The browser the browser tests drive (tests/inventory_project/test_browser.py): Chromium and a
# ChromeDriver of its version, installed from Debian's packages where either is missing. Where
# there is no apt-get, install both yourself (the tests take CHROMIUM and CHROMEDRIVER, paths,
# else the first of chromium, chromium-browser and google-chrome on the PATH); without them the
# browser tests are skipped, and say so.
set -euo pipefail

have_browser() {
  command -v "${CHROMEDRIVER:-chromedriver}" >/dev/null \
    && { [ -n "${CHROMIUM:-}" ] || command -v chromium || command -v chromium-browser \
      || command -v google-chrome; } >/dev/null
}

have_browser && exit 0
if ! command -v apt-get >/dev/null; then
  echo "no Chromium and ChromeDriver here, and no apt-get to install them: the browser tests" \
    "will be skipped" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian's chromium and chromium-driver for the browser tests"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine or container has no package lists yet: "Unable to locate package".
$sudo apt-get update -qq
$sudo apt-get install -y -qq chromium chromium-driver >/dev/null
have_browser
