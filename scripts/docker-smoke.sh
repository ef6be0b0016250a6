#!/usr/bin/env bash
# Builds the image and proves it works: the Dockerfile is only trusted once the image it makes has
# run the sampler against a real Kafka broker.
#
# Steps: start dockerd if no Docker engine answers (root; Debian's docker.io), make the base image
# when it cannot be pulled (scripts/docker-base.sh), `docker build`, then check the image:
#   - runs as uid 1000 with tini as PID 1, Node 24, the Kafka client's native module loads;
#   - the sink's config check exits 2 through tini, on a read-only root filesystem;
#   - the sampler, run as Kubernetes runs it (read-only root, no capabilities, no privilege
#     escalation, no writable /tmp), is ready on /readyz and writes a reading that matches
#     schema/cpu-reading.v1.schema.json to a real broker (scripts/kafka.ts); `docker stop`
#     (SIGTERM through tini) ends it with exit code 0.
# Everything it starts is stopped on exit, failure included; dockerd, if started here, keeps
# running (log in .cache/dockerd.log). Needs node_modules (npm ci), Java and kcat, like the tests.
#
#   bash scripts/docker-smoke.sh          # IMAGE [cpu-pipeline:ci] is the tag it builds
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-cpu-pipeline:ci}
id=$$
work=$(mktemp -d "${TMPDIR:-/tmp}/docker-smoke.XXXXXX")
kafka_pid=
containers=()
timings=()
t_start=$SECONDS

log() { printf '[docker-smoke] %s\n' "$*" >&2; }
ok() { printf '[docker-smoke] ok: %s\n' "$*" >&2; }
fail() { printf '[docker-smoke] FAILED: %s\n' "$*" >&2; exit 1; }
timed() { # timed LABEL COMMAND...: runs it and records how long it took
  local label=$1 t0=$SECONDS; shift
  "$@"
  timings+=("$label: $((SECONDS - t0)) s")
}

cleanup() {
  local status=$?
  set +e
  for c in "${containers[@]}"; do
    if [ "$status" != 0 ]; then log "logs of container $c:"; docker logs --tail 30 "$c" 2>&1 | sed 's/^/    /' >&2; fi
    docker rm -f "$c" >/dev/null 2>&1
  done
  if [ -n "$kafka_pid" ] && kill -0 "$kafka_pid" 2>/dev/null; then
    kill -TERM "$kafka_pid"  # scripts/kafka.ts stops the broker and deletes its data
    for _ in $(seq 1 40); do kill -0 "$kafka_pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$kafka_pid" 2>/dev/null && { log "broker did not stop in 40 s: SIGKILL"; kill -KILL -- "-$kafka_pid"; }
    wait "$kafka_pid" 2>/dev/null
    log "broker stopped"
  fi
  [ "$status" = 0 ] || { [ -s "$work/kafka.log" ] && { log "broker output:"; tail -n 20 "$work/kafka.log" | sed 's/^/    /' >&2; }; }
  rm -rf "$work"
  timings+=("total: $((SECONDS - t_start)) s")
  local joined; joined=$(printf '%s, ' "${timings[@]}")
  log "timings: ${joined%, }"
  if [ "$status" = 0 ]; then log "image $image: all checks passed"; else log "image $image: FAILED (exit $status)"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); })"; }

# ---------------------------------------------------------------- Docker engine

start_dockerd() {
  [ "$(id -u)" = 0 ] || fail "no Docker engine answers and starting one needs root"
  command -v dockerd >/dev/null || fail "no Docker engine answers and dockerd is not installed (Debian: apt-get install docker.io)"
  mkdir -p .cache
  log "starting dockerd (log: .cache/dockerd.log)"
  nohup setsid dockerd >.cache/dockerd.log 2>&1 &
  local pid=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 20 .cache/dockerd.log >&2; fail "dockerd exited"; }
    sleep 1
  done
  tail -n 20 .cache/dockerd.log >&2
  fail "dockerd did not answer within 60 s"
}
docker info >/dev/null 2>&1 || timed dockerd start_dockerd
log "Docker engine $(docker version -f '{{.Server.Version}}'), client $(docker version -f '{{.Client.Version}}')"

# ---------------------------------------------------------------- build

timed base bash scripts/docker-base.sh

build() {
  log "docker build -t $image (log: $work/build.log)"
  if ! docker build --network host -t "$image" . >"$work/build.log" 2>&1; then
    tail -n 60 "$work/build.log" >&2
    fail "docker build failed (last lines above)"
  fi
  grep -E '^(Step [0-9]+/[0-9]+ : FROM|Successfully built)' "$work/build.log" >&2 || true
}
timed build build
size=$(docker image inspect -f '{{.Size}}' "$image")
ok "image $image is $((size / 1000000)) MB; entrypoint $(docker image inspect -f '{{json .Config.Entrypoint}} cmd {{json .Config.Cmd}} user {{.Config.User}}' "$image")"

# ---------------------------------------------------------------- the image itself

checks() {
  local out
  out=$(docker run --rm --entrypoint id "$image" -u) || fail "docker run $image id -u failed"
  [ "$out" = 1000 ] || fail "runs as uid '$out', expected 1000"
  ok "runs as uid $out"

  out=$(docker run --rm "$image" node --version) || fail "docker run $image node --version failed"
  [[ $out == v24.* ]] || fail "node --version is '$out', expected v24.x"
  ok "node $out"

  out=$(docker run --rm "$image" node --input-type=module -e \
    "const { default: k } = await import('@confluentinc/kafka-javascript'); console.log('librdkafka', k.librdkafkaVersion, 'features', k.features.join(','))") || fail "the Kafka client did not load"
  [[ $out == librdkafka\ * ]] || fail "the Kafka client did not load: $out"
  ok "Kafka client loads: $out"

  out=$(docker run --rm "$image" cat /proc/1/cmdline | tr '\0' ' ') || fail "docker run $image cat /proc/1/cmdline failed"
  [[ $out == tini\ --\ * ]] || fail "PID 1 is '$out', expected tini"
  ok "PID 1 is '$out'"

  local code=0 err
  err=$(docker run --rm --read-only -e S3_BUCKET=Bad_Bucket "$image" node dist/sink.js 2>&1 >/dev/null) || code=$?
  [ "$code" = 2 ] || fail "sink with S3_BUCKET=Bad_Bucket exited $code, expected 2: $err"
  [[ $err == *S3_BUCKET* ]] || fail "sink's config error does not name S3_BUCKET: $err"
  ok "sink config check exits $code on a read-only root: $err"

  # The broker's metrics agent, which its init container copies out (as uid 1000, read-only root).
  out=$(docker run --rm --read-only "$image" node --input-type=module -e \
    "const b = (await import('node:fs')).readFileSync('jmx/jmx_prometheus_javaagent.jar'); console.log(b.length, (await import('node:crypto')).createHash('sha256').update(b).digest('hex'))") ||
    fail "the JMX exporter jar is not readable in the image"
  [ "${out#* }" = "$(sed -n 's/^ARG JMX_EXPORTER_SHA256=//p' Dockerfile)" ] || fail "the JMX exporter jar in the image is not the pinned one: $out"
  ok "JMX exporter agent in the image: /app/jmx/jmx_prometheus_javaagent.jar, $out"

  # The Kafka Connect plugin folder the connect component's init container copies out: the
  # connector's jar, listed for Connect's service loader, and its own dependencies.
  out=$(docker run --rm --read-only "$image" node --input-type=module -e \
    "const fs = await import('node:fs'); const d = 'connect-plugins/cpu-pipeline-s3-sink'; const jars = fs.readdirSync(d).filter((f) => f.endsWith('.jar')); console.log(jars.length, jars.filter((j) => /^cpu-pipeline-s3-sink-.*\\.jar$/.test(j)).join(','))") ||
    fail "the Kafka Connect plugin folder is not readable in the image"
  [[ $out =~ ^[0-9]+\ cpu-pipeline-s3-sink-.*\.jar$ ]] || fail "the Kafka Connect plugin folder lacks the connector's jar: $out"
  ok "Kafka Connect plugin in the image: /app/connect-plugins/cpu-pipeline-s3-sink, $out (jars, connector)"
}
timed checks checks

# ---------------------------------------------------------------- the sampler against a real broker

start_broker() {
  kafka_port=$(free_port)
  # Own process group (node and its java child), so that a last-resort SIGKILL reaches both.
  KAFKA_PORT=$kafka_port KAFKA_CONTROLLER_PORT=$(free_port) setsid node --import tsx scripts/kafka.ts >"$work/kafka.log" 2>&1 &
  kafka_pid=$!
  for _ in $(seq 1 120); do
    grep -qs 'ready at' "$work/kafka.log" && { ok "$(head -n 1 "$work/kafka.log")"; return 0; }
    kill -0 "$kafka_pid" 2>/dev/null || fail "the broker did not start: $(tail -n 5 "$work/kafka.log")"
    sleep 1
  done
  fail "the broker was not ready within 120 s"
}
timed broker start_broker

sampler() {
  local topic=image-smoke-$id http_port name=cpu-pipeline-smoke-$id-sampler reading="$work/reading.json"
  http_port=$(free_port)
  containers+=("$name")
  docker run -d --name "$name" --network host \
    --read-only --cap-drop ALL --security-opt no-new-privileges \
    -e KAFKA_BROKERS="127.0.0.1:$kafka_port" -e KAFKA_TOPIC="$topic" -e SAMPLE_INTERVAL_SECONDS=2 \
    -e HTTP_PORT="$http_port" -e NODE_NAME=smoke-node -e POD_NAME=smoke-pod -e POD_NAMESPACE=smoke \
    "$image" >/dev/null
  ok "sampler started (read-only root, no capabilities, no writable /tmp), topic $topic"

  local deadline=$((SECONDS + 60))
  until node --input-type=module -e "const r = await fetch('http://127.0.0.1:$http_port/readyz'); process.exit(r.ok ? 0 : 1)" 2>/dev/null; do
    [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || fail "the sampler container exited"
    [ $SECONDS -lt $deadline ] || fail "the sampler was not ready on /readyz within 60 s"
    sleep 1
  done
  ok "sampler ready on :$http_port/readyz"

  deadline=$((SECONDS + 60))
  until timeout 10 kcat -b "127.0.0.1:$kafka_port" -C -t "$topic" -o beginning -c 1 -e -q -f '%s\n' >"$reading" 2>/dev/null && [ -s "$reading" ]; do
    [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || fail "the sampler container exited"
    [ $SECONDS -lt $deadline ] || fail "no reading in topic $topic within 60 s"
    sleep 1
  done
  log "reading: $(cat "$reading")"
  node --input-type=module - "$reading" <<'EOF' || fail "the reading does not match schema/cpu-reading.v1.schema.json"
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
const validate = addFormats.default(new Ajv2020({ allErrors: true, strict: true })).compile(JSON.parse(readFileSync('schema/cpu-reading.v1.schema.json', 'utf8')));
const reading = JSON.parse(readFileSync(process.argv[2], 'utf8'));
if (!validate(reading)) { console.error(JSON.stringify(validate.errors)); process.exit(1); }
if (reading.schema_version !== 1 || reading.node !== 'smoke-node') { console.error('unexpected schema_version or node'); process.exit(1); }
EOF
  ok "reading is valid JSON, schema_version 1, matches the schema"

  docker stop -t 30 "$name" >/dev/null
  local code
  code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
  [ "$code" = 0 ] || fail "after docker stop (SIGTERM via tini) the sampler exited $code, expected 0"
  ok "docker stop: SIGTERM through tini, sampler exited 0; last log line: $(docker logs --tail 1 "$name" 2>&1)"
}
timed sampler sampler
