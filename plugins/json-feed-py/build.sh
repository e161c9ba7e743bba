#!/usr/bin/env bash
# Builds the Python connector into target/json-feed-py/json_feed.wasm with componentize-py.
# The build takes a venv and ~20 MB of output, so it is cached by the hash of its inputs (the
# WIT, the Python sources and the componentize-py version): an unchanged connector is not
# rebuilt, and its bytes, digest and precompiled code stay the same.
#   build.sh          build if needed, then place the cached component
#   build.sh --check  exit 0 when the cached build is current (nothing to install or build)
set -euo pipefail
cd "$(dirname "$0")/../.."

COMPONENTIZE_PY_VERSION=0.25.1
out=target/json-feed-py
hash=$({ echo "componentize-py $COMPONENTIZE_PY_VERSION"; cat wit/v0.2.0/*.wit plugins/json-feed-py/*.py; } | sha256sum | cut -c1-16)
cached="$out/json_feed-$hash.wasm"

if [ "${1:-}" = "--check" ]; then
  [ -f "$cached" ]
  exit
fi
if [ "${1:-}" = "--version" ]; then
  echo "$COMPONENTIZE_PY_VERSION"
  exit
fi

mkdir -p "$out"
if [ ! -f "$cached" ]; then
  if [ ! -x .venv/bin/componentize-py ]; then
    echo "componentize-py is missing: run scripts/setup" >&2
    exit 1
  fi
  # Built from a copy, so the interpreter's __pycache__ lands in target/, not in the sources.
  rm -rf "$out/src" && mkdir -p "$out/src" && cp plugins/json-feed-py/*.py "$out/src/"
  .venv/bin/componentize-py -d wit/v0.2.0 -w registry-connector \
    componentize -p "$out/src" app -o "$cached.tmp" >/dev/null
  mv "$cached.tmp" "$cached"
  find "$out" -name 'json_feed-*.wasm' ! -name "$(basename "$cached")" -delete
fi
ln -f "$cached" "$out/json_feed.wasm"
