#!/usr/bin/env bash
# Checks that the Dockerfile's runtime stage installs exactly the Debian
# packages that provide the shared libraries the built binaries link directly
# (readelf NEEDED, resolved with ldd, owner from dpkg -S). Packages always in
# bookworm-slim (libc6, libgcc-s1, libstdc++6) need no listing.
# Usage: scripts/check-runtime-libs.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
base="libc6 libgcc-s1 libstdc++6"
extra_allowed="ca-certificates"

binaries=()
for b in server/care-server worker/cli/care-worker \
         worker/service/care-worker-service client/carectl; do
  [ -x "$build_dir/$b" ] && binaries+=("$build_dir/$b")
done
if [ ${#binaries[@]} -eq 0 ]; then
  echo "check-runtime-libs: no binaries under $build_dir" >&2
  exit 2
fi

needed_pkgs=$(
  for bin in "${binaries[@]}"; do
    ldd_out=$(ldd "$bin")
    for soname in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      # The dynamic loader belongs to libc6, always present.
      [[ $soname == ld-linux* ]] && continue
      path=$(awk -v s="$soname" '$1 == s && $3 ~ /^\// {print $3}' <<<"$ldd_out")
      if [ -z "$path" ]; then
        echo "check-runtime-libs: $bin needs $soname, which ldd cannot resolve" >&2
        exit 1
      fi
      real=$(readlink -f "$path")
      pkg=$(dpkg -S "$real" 2>/dev/null | head -n1 | cut -d: -f1) ||
        pkg=$(dpkg -S "$path" 2>/dev/null | head -n1 | cut -d: -f1)
      [ -n "$pkg" ] || { echo "check-runtime-libs: no package owns $path" >&2; exit 1; }
      echo "$pkg"
    done
  done | sort -u)

listed=$(sed -n '/# runtime-packages-begin/,/# runtime-packages-end/p' Dockerfile |
  grep -oE '^\s+[a-z0-9][a-z0-9.+-]+\s*\\?$' | tr -d ' \\' | sort -u)

status=0
for p in $needed_pkgs; do
  [[ " $base " == *" $p "* ]] && continue
  grep -qx "$p" <<<"$listed" || { echo "missing from Dockerfile: $p"; status=1; }
done
for p in $listed; do
  [[ " $extra_allowed " == *" $p "* ]] && continue
  grep -qx "$p" <<<"$needed_pkgs" || { echo "listed but not needed: $p"; status=1; }
done
[ $status -eq 0 ] && echo "check-runtime-libs: Dockerfile runtime packages match ${#binaries[@]} binaries"
exit $status
