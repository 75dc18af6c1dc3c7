#!/bin/sh
# graphviz-plugins.sh — what `taskerctl task visualize` needs of Graphviz beyond the libraries it
# links: libgvc loads its layout and output plugins at run time, so ldd does not see them.
#
#   graphviz-plugins.sh BASE_PACKAGES DEST      (after runtime-libs.sh, in docker/Dockerfile)
#
# Copies the dot layout and the core renderers (svg, dot, json; not png, whose plugin pulls in
# cairo, pango and fonts) with the plugin configuration libgvc reads, and, through
# runtime-libs.sh, the libraries those plugins link.
set -eu
base=$1 dest=$2
dir=$(ls -d /usr/lib/*/graphviz)
mkdir -p "$dest$dir"
for p in core dot_layout; do cp -L "$dir/libgvplugin_$p.so.6" "$dest$dir/"; done
# The configuration names only the plugins copied, so libgvc offers no format it cannot load.
awk '/^libgvplugin_/ { keep = ($1 ~ /^libgvplugin_(core|dot_layout)[.]so/) } keep' "$dir/config6a" >"$dest$dir/config6a"
"$(dirname "$0")/runtime-libs.sh" "$base" "$dest" "$dest$dir"/libgvplugin_*.so.6
