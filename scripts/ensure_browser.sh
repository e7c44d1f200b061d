#!/usr/bin/env bash
# The browser the browser tests drive (tests/inventory_project/test_browser.py): Chromium and a
# ChromeDriver of its version, installed from Debian's packages where either is missing. Where
# there is no apt-get, or neither root nor a sudo that runs without a password, or apt's sources
# have no such packages (Ubuntu), install both yourself (the tests take CHROMIUM and
# CHROMEDRIVER, paths, else the first of chromium, chromium-browser and google-chrome on the
# PATH); without them the browser tests are skipped, and say so. A failed install fails.
set -euo pipefail

found() {
  local name
  for name in "$@"; do
    [ -n "$name" ] && command -v "$name" >/dev/null && return 0
  done
  return 1
}

# As the tests look for them (test_browser.py, `_found`).
have_browser() {
  found "${CHROMIUM:-}" chromium chromium-browser google-chrome \
    && found "${CHROMEDRIVER:-}" chromedriver
}

skip() {
  echo "no Chromium and ChromeDriver here, and $1 to install them: the browser tests will be" \
    "skipped" >&2
  exit 0
}

have_browser && exit 0
command -v apt-get >/dev/null || skip "no apt-get"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || skip "not root and no sudo"
  # -n: a sudo that wants a password says so and fails, rather than wait at a prompt in the
  # middle of `make test`. sudo resets the environment: DEBIAN_FRONTEND goes on the command.
  sudo -n true 2>/dev/null || skip "not root, and sudo asks for a password"
  as_root=(sudo -n)
fi
echo "installing Debian's chromium and chromium-driver for the browser tests"
# A fresh machine or container has no package lists yet: "Unable to locate package".
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# Ubuntu has neither package (its Chromium is a snap, which a container cannot run): apt-get
# would fail, and `make test` with it.
missing=()
for package in chromium chromium-driver; do
  [ -n "$(apt-cache madison "$package" 2>/dev/null)" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] || skip "apt's sources have no ${missing[*]} (Ubuntu's Chromium is a snap)"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  chromium chromium-driver >/dev/null
have_browser || {
  echo "chromium and chromium-driver are installed, and still no browser or driver is found" \
    "(CHROMIUM, CHROMEDRIVER, PATH)" >&2
  exit 1
}
