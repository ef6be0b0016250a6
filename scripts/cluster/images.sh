#!/usr/bin/env bash
# `scripts/cluster.sh images`: the images k8s/overlays/local runs, built on this machine (no
# registry is reachable here) and saved as tarballs in .cache/images/ for `scripts/cluster.sh load`.
# Their names are read from the rendered overlay, so they are exactly the ones the manifests use:
#   cpu-pipeline:<v>      the project's Dockerfile (its base node:24-bookworm-slim is made by
#                         scripts/docker-base.sh where it cannot be pulled); built every time,
#                         Docker's layer cache makes that quick when nothing changed;
#   apache/kafka:<v>      stand-in, scripts/cluster/images/kafka/ (the jars of scripts/kafka/pom.xml);
#   motoserver/moto:<v>   stand-in, scripts/cluster/images/moto/ (moto's wheels from PyPI);
#   prom/prometheus:v<v>  stand-in, scripts/cluster/images/prometheus/ (built from the Go module proxy);
# both on debian:bookworm-slim (BASE=debian scripts/docker-base.sh), cached by version and by a
# hash of their recipe. Where Docker already holds the real image of that name, it is used as is.
# Docker: the engine that answers, or a dockerd of its own (socket in /run, data in .cache/docker,
# no iptables rules, no bridge, no IP forwarding, pulls refused), stopped again at the end.
set -euo pipefail
# shellcheck source=scripts/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$repo"

out=$cache/images
t0=$SECONDS
log() { printf '[cluster images +%ss] %s\n' "$((SECONDS - t0))" "$*" >&2; }
die() { log "error: $*"; exit 1; }
mkdir -p "$out" "$KL"

# ---------------------------------------------------------------- Docker engine
own_dockerd_pid=
docker_cgroups_before=
stop_dockerd() {
  [ -n "$own_dockerd_pid" ] || return 0
  if kill -0 "$own_dockerd_pid" 2>/dev/null; then
    kill -TERM "$own_dockerd_pid"
    for _ in $(seq 1 30); do kill -0 "$own_dockerd_pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$own_dockerd_pid" 2>/dev/null && kill -KILL "$own_dockerd_pid"
  fi
  # cgroups the engine made for build containers, if they were not there before
  for d in /sys/fs/cgroup/*/docker; do
    [ -d "$d" ] || continue
    grep -qxF "$d" <<<"$docker_cgroups_before" || find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -f /run/cpu-pipeline-docker.sock
  log "stopped the dockerd started here (pid $own_dockerd_pid)"
  own_dockerd_pid=
}
trap stop_dockerd EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "no Docker engine answers and starting one needs root"
  command -v dockerd >/dev/null || die "no Docker engine answers and dockerd is not installed (Debian: apt-get install docker.io)"
  docker_cgroups_before=$(ls -d /sys/fs/cgroup/*/docker 2>/dev/null || true)
  log "starting dockerd (log: .cache/${KL#"$cache"/}/dockerd.log)"
  # No registry is reachable: a pull fails at once on 127.0.0.1 instead of trying the network.
  HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY='' setsid dockerd \
    --host unix:///run/cpu-pipeline-docker.sock --data-root "$cache/docker" \
    --exec-root /run/cpu-pipeline-docker --pidfile /run/cpu-pipeline-docker.pid \
    --iptables=false --ip-forward=false --ip-masq=false --bridge=none >"$KL/dockerd.log" 2>&1 &
  own_dockerd_pid=$!
  export DOCKER_HOST=unix:///run/cpu-pipeline-docker.sock
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$own_dockerd_pid" 2>/dev/null || { tail -n 20 "$KL/dockerd.log" >&2; die "dockerd exited"; }
    sleep 1
  done
  docker info >/dev/null 2>&1 || die "dockerd did not answer within 60 s"
fi
log "Docker engine $(docker version -f '{{.Server.Version}}')"

# ---------------------------------------------------------------- helpers
tarball() { printf '%s/%s.tar' "$out" "$(printf '%s' "$1" | tr '/:' '__')"; }
save() { # save IMAGE [KEY]: the tarball for ctr, and the key it was made from
  local image=$1 key=${2:-} tar; tar=$(tarball "$1")
  docker save -o "$tar.partial" "$image"
  mv "$tar.partial" "$tar"
  printf '%s\n' "$key" >"$tar.key"
  log "saved $image -> ${tar#"$cache"/} ($(du -m "$tar" | cut -f1) MB)"
}
stand_in_label=cpu-pipeline.stand-in
real_image_present() { # Docker holds IMAGE and it is not one of our stand-ins
  local label
  label=$(docker image inspect -f "{{index .Config.Labels \"$stand_in_label\"}}" "$1" 2>/dev/null) || return 1
  [ -z "$label" ] || [ "$label" = '<no value>' ]
}
recipe_key() { # a hash of a recipe folder, the version and any extra inputs
  { find "$1" -type f -print0 | sort -z | xargs -0 sha256sum; shift; printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}
debian_base() {
  BASE=debian bash scripts/docker-base.sh
}
build_stand_in() { # build_stand_in IMAGE RECIPE_DIR CONTEXT_DIR [--build-arg ...]
  local image=$1 recipe=$2 context=$3; shift 3
  cp -r "$recipe"/. "$context"/
  if ! docker build --network host --label "$stand_in_label=scripts/cluster/images" -t "$image" "$@" "$context" >"$context.log" 2>&1; then
    tail -n 40 "$context.log" >&2
    die "docker build of $image failed (last lines above)"
  fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/cluster-images.XXXXXX")
trap 'rm -rf "$work"; stop_dockerd' EXIT

kubectl_bin=kubectl
[ -x "$KB/bin/kubectl" ] && kubectl_bin=$KB/bin/kubectl
mapfile -t images < <("$kubectl_bin" kustomize k8s/overlays/local | sed -n -E 's/^ *(- )?image: *//p' | tr -d '"' | sort -u)
[ "${#images[@]}" -gt 0 ] || die "no images found in k8s/overlays/local"
log "images of k8s/overlays/local: ${images[*]}"

for image in "${images[@]}"; do
  name=${image%:*} version=${image##*:}
  tar=$(tarball "$image")
  case $name in
    cpu-pipeline)
      bash scripts/docker-base.sh
      log "docker build -t $image . (log: $work/cpu-pipeline.log)"
      docker build --network host -t "$image" . >"$work/cpu-pipeline.log" 2>&1 \
        || { tail -n 40 "$work/cpu-pipeline.log" >&2; die "docker build of $image failed"; }
      save "$image" "$(docker image inspect -f '{{.Id}}' "$image")"
      ;;
    apache/kafka)
      pinned=$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' scripts/kafka/pom.xml)
      [ "$version" = "$pinned" ] || die "the manifests use $image but scripts/kafka/pom.xml pins Kafka $pinned: make them agree"
      key=$(recipe_key scripts/cluster/images/kafka "$version")
      if real_image_present "$image"; then save "$image" real; continue; fi
      if [ -s "$tar" ] && [ "$(cat "$tar.key" 2>/dev/null)" = "$key" ]; then log "$image: cached (${tar#"$cache"/})"; continue; fi
      libs=$(node --import tsx scripts/kafka.ts --fetch | sed -n 's/^Kafka .* jars in //p')
      [ -d "$libs" ] || die "the Kafka jars were not fetched"
      debian_base
      mkdir -p "$work/kafka"; cp -r "$libs" "$work/kafka/libs"; rm -f "$work/kafka/libs/.complete"
      log "building the stand-in $image (Debian, OpenJDK 17, $(ls "$work/kafka/libs" | wc -l) jars)"
      build_stand_in "$image" scripts/cluster/images/kafka "$work/kafka"
      save "$image" "$key"
      ;;
    motoserver/moto)
      pinned=$(sed -n "s/^export const motoVersion = '\(.*\)';/\1/p" scripts/s3.ts)
      [ "$version" = "$pinned" ] || die "the manifests use $image but scripts/s3.ts pins moto $pinned: make them agree"
      key=$(recipe_key scripts/cluster/images/moto "$version")
      if real_image_present "$image"; then save "$image" real; continue; fi
      if [ -s "$tar" ] && [ "$(cat "$tar.key" 2>/dev/null)" = "$key" ]; then log "$image: cached (${tar#"$cache"/})"; continue; fi
      wheels=$cache/moto-wheels/$version
      if [ ! -f "$wheels/.complete" ]; then
        # Debian bookworm's Python is 3.11: wheels for it, binary only (the image has no compiler).
        # pip: the one of the tests' moto venv (.cache/moto, made by `npm run s3 -- --fetch`).
        node --import tsx scripts/s3.ts --fetch >/dev/null
        rm -rf "$wheels"
        "$cache/moto/bin/python" -m pip download --quiet --disable-pip-version-check --only-binary=:all: --python-version 3.11 \
          --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any \
          -d "$wheels" "moto[server]==$version"
        touch "$wheels/.complete"
      fi
      debian_base
      mkdir -p "$work/moto/wheels"; cp "$wheels"/*.whl "$work/moto/wheels/"
      log "building the stand-in $image (Debian, Python 3.11, $(find "$wheels" -name '*.whl' | wc -l) wheels)"
      build_stand_in "$image" scripts/cluster/images/moto "$work/moto" --build-arg "MOTO_VERSION=$version"
      save "$image" "$key"
      ;;
    prom/prometheus)
      # Debian's prometheus has no Kubernetes service discovery (built without it), which the
      # monitoring component's config uses: the version the manifests name is built from the Go
      # module proxy instead (Prometheus 3.X.Y is module v0.3XX.Y), once, into .cache.
      [[ $version =~ ^v3\.([0-9]+)\.([0-9]+)$ ]] || die "$image: expected a Prometheus 3.x tag"
      module=$(printf 'v0.3%02d.%s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
      bin=$cache/prometheus-build/$version/prometheus
      key=$(recipe_key scripts/cluster/images/prometheus "$version")
      if real_image_present "$image"; then save "$image" real; continue; fi
      if [ -s "$tar" ] && [ "$(cat "$tar.key" 2>/dev/null)" = "$key" ]; then log "$image: cached (${tar#"$cache"/})"; continue; fi
      if [ ! -x "$bin" ]; then
        log "building Prometheus ${version#v} (github.com/prometheus/prometheus@$module) from the Go module proxy"
        dir=$(go mod download -json "github.com/prometheus/prometheus@$module" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
        cp -r "$dir" "$work/prometheus-src"; chmod -R u+w "$work/prometheus-src"
        mkdir -p "$(dirname "$bin")"
        (cd "$work/prometheus-src" && GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 nice -n 19 go build -trimpath \
          -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v}" -o "$bin.partial" ./cmd/prometheus)
        mv "$bin.partial" "$bin"
        rm -rf "$work/prometheus-src"
      fi
      debian_base
      mkdir -p "$work/prometheus"; cp "$bin" "$work/prometheus/prometheus"
      log "building the stand-in $image (Prometheus ${version#v} built from its Go module)"
      build_stand_in "$image" scripts/cluster/images/prometheus "$work/prometheus"
      save "$image" "$key"
      ;;
    *) die "no way to build $image here: add a recipe to scripts/cluster/images.sh" ;;
  esac
done
printf '%s\n' "${images[@]}" >"$out/local-overlay.list"
log "done: ${images[*]}"
