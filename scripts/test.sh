#!/usr/bin/env bash
# The README's test command: install everything the tests need on a fresh machine, then lint
# and run the whole suite (tests/test_layers.py checks the import layers). In a venv or not;
# CI runs it too.
#   system: Debian's chromium (report and serve tests; Playwright never downloads a browser)
#           and ExifTool (XMP sidecars are read back with it), with apt-get when missing
#   python: the package with its train, dev, ray and serve extras at the pinned versions
set -euo pipefail
cd "$(dirname "$0")/.."
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || missing+=(chromium)
command -v exiftool >/dev/null 2>&1 || missing+=(libimage-exiftool-perl)
command -v npm >/dev/null 2>&1 || missing+=(npm)  # Mirador for the IIIF viewer test
ldconfig -p | grep -q libmagic.so.1 || missing+=(libmagic1)  # the iiif reference server
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "scripts/test.sh: need ${missing[*]}:" \
      "run as root or install them with apt-get" >&2; exit 1; }
    sudo=sudo
  fi
  echo "installing ${missing[*]} (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m pip install --quiet -c constraints.txt -e ".[train,dev,ray,serve]"
# IIIF: httpx and ijson (the 'iiif' extra), the reference Image API server `iiif` (tests),
# and iiif-prezi3 without its Pillow<=12 pin (it works with the pinned Pillow 13)
python3 -m pip install --quiet -c constraints.txt httpx ijson iiif pydantic requests
python3 -m pip install --quiet --no-deps iiif-prezi3
bash scripts/get_mirador.sh
python3 -m ruff check .
python3 -m pytest -q tests "$@"
