#!/bin/sh
# runtime-libs.sh — the shared libraries BINARY… load that the base image lacks, copied under DEST
# with their packages' copyright files and dpkg status (docker/Dockerfile's build stage runs it).
#
#   runtime-libs.sh BASE_PACKAGES DEST BINARY…
#
# BASE_PACKAGES lists the packages the runtime stage's base image already holds, one per line
# (`dpkg-query -W` in the build stage before it installs anything: debian:12 and debian:12-slim
# hold the same packages). Every library `ldd` resolves for the binaries belongs to a package;
# those of packages not in the base are copied to DEST at the path dpkg knows (/usr/lib/…, never
# under the /lib symlink, which a COPY into / must not replace), symlinks resolved. So the runtime stage
# needs no apt-get and holds no package the binaries do not load (no CA bundle, no openssl tool,
# no Berkeley DB that apt's dependencies of libpq5 would bring). Each copied package leaves its
# dpkg status paragraph in DEST/var/lib/dpkg/status.d/PACKAGE, where image scanners look for
# packages installed without dpkg, and its copyright file in DEST/usr/share/doc/PACKAGE/.
# Prints one line per package copied.
set -eu

[ $# -ge 3 ] || { echo "usage: $0 BASE_PACKAGES DEST BINARY…" >&2; exit 2; }
base=$1 dest=$2
shift 2

# ldd lists each library once per binary; `=> /path` lines only (not the vDSO or the loader).
ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u | while read -r lib; do
  # usrmerge: /lib is a link to /usr/lib, and dpkg knows a file by the path its package ships
  # (/lib/… or /usr/lib/…). The copy goes to the /usr path, never under the /lib link.
  case $lib in /usr/*) dst=$lib ;; *) dst=/usr$lib ;; esac
  owner=
  for p in "$lib" "$dst" "${dst#/usr}" "$(readlink -f "$lib")"; do
    owner=$(dpkg -S "$p" 2>/dev/null | sed -n '1s/:.*//p') && [ -n "$owner" ] && break
  done
  [ -n "$owner" ] || { echo "runtime-libs: no package owns $lib" >&2; exit 1; }
  pkg=${owner%%:*}
  grep -qx "$pkg" "$base" && continue
  mkdir -p "$dest${dst%/*}" "$dest/var/lib/dpkg/status.d" "$dest/usr/share/doc/$pkg"
  cp -L "$lib" "$dest$dst"
  if [ ! -e "$dest/var/lib/dpkg/status.d/$pkg" ]; then
    dpkg-query -s "$pkg" >"$dest/var/lib/dpkg/status.d/$pkg"
    cp "/usr/share/doc/$pkg/copyright" "$dest/usr/share/doc/$pkg/" 2>/dev/null || true
    printf 'runtime-libs: %s %s\n' "$pkg" "$(dpkg-query -W -f '${Version}' "$pkg")"
  fi
done
