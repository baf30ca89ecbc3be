#!/usr/bin/env bash
# Builds the Debian package from an already built tree (default ./build) and checks it the way a
# server gets it (docs/operations.md, "Installing a node"):
#   1. cpack makes herald_<version>_<arch>.deb; its Depends come from the linked shared libraries;
#   2. dpkg installs it into a scratch root (dpkg --root, maintainer scripts chrootless with
#      DPKG_ROOT): the herald user and group appear in the scratch root's passwd and group, the
#      state directory is theirs, the configuration is a conffile readable by the group only;
#   3. systemd-analyze verifies the installed unit (when systemd-analyze is present);
#   4. the installed binary answers --version and --help, and runs a single node, as the herald
#      user, from the installed example configuration until GET /v1/health answers; SIGTERM stops
#      it with status 0;
#   5. dpkg removes, then purges the package from the scratch root: the binary and the
#      configuration go, the data stays.
# Nothing outside the scratch root and the build tree is touched. Needs root (file ownership in
# the scratch root); re-runs itself with sudo otherwise. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
build="$(realpath "${1:-build}")"

if [[ $(id -u) -ne 0 ]]; then
  exec sudo --preserve-env=PATH bash "$0" "$@"
fi

# Bound on the node answering /v1/health, and on its exit after SIGTERM (seconds).
readonly health_timeout_s=30
readonly stop_timeout_s=15
# The highest sandboxing exposure the unit may have (systemd-analyze security, in tenths: 20 = 2.0).
readonly exposure_max=20

fail() {
  echo "package_test: $*" >&2
  exit 1
}

root="$(mktemp -d /tmp/herald-package-root.XXXXXX)"
node_pid=""
cleanup() {
  if [[ -n "$node_pid" ]] && kill -0 "$node_pid" 2>/dev/null; then
    kill -KILL "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$root"
}
trap cleanup EXIT

# 1. The package.
rm -rf "$build/package"
(cd "$build" && cpack -G DEB -B "$build/package" >"$build/package.log" 2>&1) ||
  fail "cpack failed; see $build/package.log"
debs=("$build"/package/herald_*.deb)
[[ ${#debs[@]} -eq 1 && -f "${debs[0]}" ]] || fail "expected one .deb in $build/package"
deb="${debs[0]}"
depends="$(dpkg-deb --field "$deb" Depends)"
for lib in libc6 libstdc++6 libprotobuf libspdlog libssl3 libcurl passwd; do
  [[ "$depends" == *"$lib"* ]] || fail "Depends lacks $lib: $depends"
done
contents="$(dpkg-deb --contents "$deb")"
for path in ./usr/bin/herald ./etc/herald/herald.toml ./usr/lib/systemd/system/herald.service \
  ./usr/share/doc/herald/herald.toml.example ./usr/share/doc/herald/operations.md; do
  grep -q " $path\$" <<<"$contents" || fail "the package lacks $path"
done
if [[ -d web ]]; then
  grep -q " ./usr/share/herald/web/" <<<"$contents" || fail "the package lacks the web assets"
fi
[[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" == "/etc/herald/herald.toml" ]] ||
  fail "the configuration is not a conffile"

# 2. A scratch root with an empty dpkg database and a user database of root alone.
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers" \
  "$root/etc"
touch "$root/var/lib/dpkg/status"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
echo 'root:*:19000:0:99999:7:::' >"$root/etc/shadow"
echo 'root:*::' >"$root/etc/gshadow"
chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
chmod 0755 "$root"
# The scratch root has none of the libraries the package depends on: --force-depends (the host's
# are used when the binary runs). dpkg's output goes to a file, shown on failure.
dpkg_log="$build/package-dpkg.log"
dpkg_root=(dpkg --root="$root" --force-script-chrootless --force-depends --log=/dev/null)
"${dpkg_root[@]}" --install "$deb" >"$dpkg_log" 2>&1 ||
  fail "dpkg --install into the scratch root failed: $(cat "$dpkg_log")"

uid="$(awk -F: '$1 == "herald" { print $3 }' "$root/etc/passwd")"
gid="$(awk -F: '$1 == "herald" { print $3 }' "$root/etc/group")"
[[ -n "$uid" && -n "$gid" ]] || fail "postinst did not create the herald user and group"
[[ "$(stat -c '%u:%g %a' "$root/var/lib/herald")" == "$uid:$gid 750" ]] ||
  fail "the state directory is not herald's, mode 0750: $(stat -c '%u:%g %a' "$root/var/lib/herald")"
[[ "$(stat -c '%u:%g %a' "$root/etc/herald/herald.toml")" == "0:$gid 640" ]] ||
  fail "the configuration is not root:herald 0640"

# 3. The unit, checked with the scratch root's paths.
unit="$root/usr/lib/systemd/system/herald.service"
grep -q '^ExecStart=/usr/bin/herald serve --config /etc/herald/herald.toml$' "$unit" ||
  fail "the unit does not run /usr/bin/herald with /etc/herald/herald.toml"
grep -q '^ReadWritePaths=/var/lib/herald$' "$unit" || fail "the unit does not open /var/lib/herald"
if command -v systemd-analyze >/dev/null; then
  # systemd-analyze checks that ExecStart's binary exists: point it at the scratch root's.
  mkdir -p "$root/verify"
  sed "s|^ExecStart=/usr/bin/herald|ExecStart=$root/usr/bin/herald|" "$unit" \
    >"$root/verify/herald.service"
  verify_out="$(systemd-analyze verify --man=no "$root/verify/herald.service" 2>&1)" ||
    fail "systemd-analyze verify: $verify_out"
  # Warnings about the host (no systemd running, no herald user there) are not the unit's.
  # It reports a bad setting on a line naming the unit, and still exits 0.
  if grep -q "herald.service" <<<"$verify_out"; then
    fail "systemd-analyze verify: $verify_out"
  fi
  # The sandboxing, as systemd rates it: exposure 2.0 at most ("OK"; 0 is the best, 10 the worst).
  systemd-analyze security --offline=true --threshold="$exposure_max" \
    "$root/verify/herald.service" >"$root/security.txt" 2>&1 ||
    fail "the unit's exposure is above $exposure_max tenths: $(tail -1 "$root/security.txt")"
fi

# 4. The installed binary.
herald="$root/usr/bin/herald"
version="$("$herald" --version)"
[[ "$version" == "herald "* ]] || fail "--version printed: $version"
"$herald" --help | grep -q "serve" || fail "--help does not list serve"
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
client_port="$(free_port)"
peer_port="$(free_port)"
setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all \
  "$herald" serve --config "$root/etc/herald/herald.toml" --data "$root/var/lib/herald/data" \
  --client "127.0.0.1:$client_port" --peer "127.0.0.1:$peer_port" >"$root/node.log" 2>&1 &
node_pid=$!
health=""
for ((i = 0; i < health_timeout_s * 10; i++)); do
  if health="$(curl -sf "http://127.0.0.1:$client_port/v1/health")"; then break; fi
  kill -0 "$node_pid" 2>/dev/null || fail "the node exited: $(cat "$root/node.log")"
  sleep 0.1
done
[[ "$health" == *'"status"'* ]] || fail "no health answer: $health; $(tail -5 "$root/node.log")"
[[ "$(stat -c '%u' "$root/var/lib/herald/data")" == "$uid" ]] ||
  fail "the data directory was not made by the herald user"
kill -TERM "$node_pid"
status=0
for ((i = 0; i < stop_timeout_s * 10; i++)); do
  kill -0 "$node_pid" 2>/dev/null || break
  sleep 0.1
done
wait "$node_pid" || status=$?
node_pid=""
[[ $status -eq 0 ]] || fail "the node exited with status $status after SIGTERM"

# 5. Removal and purge.
"${dpkg_root[@]}" --remove herald >"$dpkg_log" 2>&1 || fail "dpkg --remove: $(cat "$dpkg_log")"
[[ ! -e "$herald" ]] || fail "removal left the binary"
[[ -f "$root/etc/herald/herald.toml" ]] || fail "removal (not purge) dropped the conffile"
"${dpkg_root[@]}" --purge herald >"$dpkg_log" 2>&1 || fail "dpkg --purge: $(cat "$dpkg_log")"
[[ ! -e "$root/etc/herald/herald.toml" ]] || fail "purge left the configuration"
[[ -d "$root/var/lib/herald/data" ]] || fail "purge removed the data"

echo "package_test: $(basename "$deb") ($version): installs, serves /v1/health, removes, purges"
