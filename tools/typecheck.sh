#!/usr/bin/env bash
# mypy cannot follow setuptools' editable import hook that maps libs/<x> to tsunagu.<x>, so give it
# a tree of symlinks with the real package layout and check through that.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=.tsunagu/typecheck
rm -rf "$tree" && mkdir -p "$tree/tsunagu/sandbox"
packages=()
for dir in libs/*/ services/*/ clients/*/; do
  [ -f "$dir/__init__.py" ] || continue
  name=$(basename "$dir" | tr - _)
  ln -s "$PWD/$dir" "$tree/tsunagu/$name"
  packages+=("-p" "tsunagu.$name")
done
for dir in sandbox/*/; do
  [ -f "$dir/__init__.py" ] || continue
  name=$(basename "$dir" | tr - _)
  ln -s "$PWD/$dir" "$tree/tsunagu/sandbox/$name"
  packages+=("-p" "tsunagu.sandbox.$name")
done
# examples/ (the sample relying parties) are checked as what they are: a package of their own.
ln -s "$PWD/examples" "$tree/examples"
packages+=("-p" "examples")
# strict on libs/ and every domain/ package (STYLE.md); the rest is checked with the same settings.
MYPYPATH="$tree" exec "${PYTHON:-.venv/bin/python}" -m mypy "${packages[@]}" "$@"
