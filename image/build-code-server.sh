#!/bin/sh
# One build of code-server from the npm registry's tarballs, offline; both image
# recipes run it (the portable one in its build chroot, the Nix one in a derivation).
#
#   image/build-code-server.sh TARBALLS OUT
#
# TARBALLS: the manifest's codeServer and npmDependencies files (image/manifest.json),
#   each under its "file" name, already verified against its integrity.
# OUT: created; receives code-server with node_modules installed in its three roots
#   (the package, lib/vscode, lib/vscode/extensions) and native modules built, as
#   upstream ships it: code-server's own login is off (--auth none), the project's
#   gate (csm/gate) checks passwords in front of it. Entry point: OUT/out/node/entry.js.
# Needs: node 24 and npm first in PATH, npm_config_nodedir naming node's headers, a C/C++
#   toolchain, make, python3, krb5 headers, a writable HOME. Uses no network.
set -eu

fail() { echo "build-code-server: $*" >&2; exit 1; }

[ $# -eq 2 ] || fail "usage: build-code-server.sh TARBALLS OUT"
TARBALLS=$(cd "$1" 2>/dev/null && pwd) || fail "$1 is not a directory"
OUT=$2
[ ! -e "$OUT" ] || fail "$OUT exists already: give a new directory"

command -v node >/dev/null || fail "node is not in PATH"
command -v npm >/dev/null || fail "npm is not in PATH"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" = 24 ] || fail "code-server needs node 24, PATH has node $(node --version)"
[ -n "${npm_config_nodedir:-}" ] && [ -f "$npm_config_nodedir/include/node/node.h" ] \
  || fail "npm_config_nodedir must name node's headers (\$npm_config_nodedir/include/node/node.h)"

set -- "$TARBALLS"/code-server-*.tgz
[ $# -eq 1 ] && [ -f "$1" ] || fail "$TARBALLS must hold exactly one code-server-<version>.tgz"
code_server_tgz=$1

# npm, offline, from a private cache filled from the local tarballs only
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export npm_config_cache="$work/npm-cache" npm_config_offline=true npm_config_audit=false \
  npm_config_fund=false npm_config_update_notifier=false npm_config_userconfig=/dev/null \
  npm_config_build_from_source=true npm_config_foreground_scripts=true

echo "==> unpack $(basename "$code_server_tgz")"
mkdir -p "$OUT"
tar -xzf "$code_server_tgz" -C "$OUT" --strip-components=1 --no-same-owner
OUT=$(cd "$OUT" && pwd)

echo "==> npm cache: $(ls "$TARBALLS" | grep -c '\.tgz$') tarballs"
# shellcheck disable=SC2046  # file names are "<name>-<version>.tgz": no spaces
dependencies=$(cd "$TARBALLS" && ls | grep '\.tgz$' | grep -v '^code-server-[0-9]' || true)
if [ -n "$dependencies" ]; then
  (cd "$TARBALLS" && npm cache add $dependencies) >"$work/cache.log" 2>&1 \
    || { cat "$work/cache.log" >&2; fail "npm cache add failed"; }
fi

roots=". lib/vscode lib/vscode/extensions"
for root in $roots; do
  echo "==> npm ci in $root"
  # --legacy-peer-deps: a peer (tslib) that the lock does not contain is not asked for
  (cd "$OUT/$root" && npm ci --omit=dev --offline --ignore-scripts --legacy-peer-deps) \
    || fail "npm ci in $root failed: is a tarball missing from $TARBALLS (scripts/update-versions)?"
done

# What an `npm install` would run next: the install steps of the dependencies that
# have one (not code-server's own postinstall, which would install again, online),
# with node-gyp using npm_config_nodedir (no header download), building from source.
with_install_steps() {
  node -e '
    const fs = require("fs"), path = require("path"), names = new Set()
    const visit = (dir) => {
      for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
        if (entry.startsWith(".")) continue
        const pkg = path.join(dir, entry)
        if (entry.startsWith("@")) { visit(pkg); continue }
        const file = path.join(pkg, "package.json")
        if (!fs.existsSync(file)) continue
        const meta = JSON.parse(fs.readFileSync(file, "utf8")), s = meta.scripts || {}
        if (s.preinstall || s.install || s.postinstall || fs.existsSync(path.join(pkg, "binding.gyp"))) names.add(meta.name)
        visit(path.join(pkg, "node_modules"))
      }
    }
    visit("node_modules")
    console.log([...names].sort().join(" "))'
}
for root in $roots; do
  names=$(cd "$OUT/$root" && with_install_steps)
  [ -n "$names" ] || continue
  echo "==> install steps in $root: $names"
  # shellcheck disable=SC2086  # package names have no spaces
  (cd "$OUT/$root" && JOBS=${JOBS:-$(nproc)} npm rebuild --offline --foreground-scripts $names) \
    || fail "building the native modules in $root failed (compiler, make, python3, krb5 headers?)"
done
# The native modules code-server loads on Linux must have been built (the windows-*
# and mac-only ones build nothing here; ssh2's optional crypto binding and cpu-features
# are not built by an upstream install either).
missing=""
for module in node_modules/argon2 lib/vscode/node_modules/@vscode/spdlog lib/vscode/node_modules/@vscode/sqlite3 \
              lib/vscode/node_modules/@vscode/native-watchdog lib/vscode/node_modules/@vscode/deviceid \
              lib/vscode/node_modules/@parcel/watcher lib/vscode/node_modules/kerberos \
              lib/vscode/node_modules/node-pty; do
  ls "$OUT/$module"/build/Release/*.node >/dev/null 2>&1 || missing="$missing $module"
done
[ -z "$missing" ] || fail "native modules left without a built .node file:$missing"

# code-server's postinstall.sh, the part that matters on Linux: its helper scripts
ln -sfn code-linux.sh "$OUT/lib/vscode/bin/remote-cli/code-server"
ln -sfn browser-linux.sh "$OUT/lib/vscode/bin/helpers/browser.sh"

echo "==> smoke: code-server --version"
HOME="$work" node "$OUT/out/node/entry.js" --version || fail "the built code-server does not start"
