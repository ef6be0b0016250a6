/**
 * sampler.ts: the CPU utilisation of this machine and of this container, once a minute, into Kafka.
 *
 * Why: a reading is only useful if it is right inside a container and lines up with the readings
 * of every other node. So each reading is the average over a whole interval (two snapshots, never
 * a one-second peek), windows end on wall-clock boundaries (:00 of each minute for 60 s), and the
 * container's share is measured against its own CPU limit, not the host's cores.
 *
 * How:
 *   - machine: /proc/stat, first line (all CPUs). busy = user + nice + system + irq + softirq + steal;
 *     iowait counts as idle time (it is waiting, not working) and is reported on its own. Percent of
 *     all cores, 0-100. Without /proc/stat (macOS) os.cpus() gives the same split minus iowait/steal.
 *   - container: cgroup v2 cpu.stat usage_usec, limit from cpu.max; cgroup v1 cpuacct.usage (ns),
 *     limit from cpu.cfs_quota_us / cpu.cfs_period_us. Relative to the limit when there is one,
 *     to the host's cores otherwise (`relative_to` says which). Absent, with the reason, when there
 *     is no cgroup CPU accounting (macOS).
 *   - A counter that went backwards (restart, reboot) or a zero-length window skips that reading.
 *   - Each reading is one JSON message (schema/cpu-reading.v1.schema.json), keyed by the node name
 *     so one source stays ordered in one partition. The producer is idempotent with acks=all; while
 *     the broker is away, readings wait in librdkafka's queue (bounded in count and in time) and are
 *     delivered in order when it is back. Before the first connection they wait in a queue here
 *     with the same bound.
 *
 * Environment (defaults in brackets):
 *   KAFKA_BROKERS [localhost:9092]        comma-separated host:port list
 *   KAFKA_TOPIC [cpu-levels]              topic the readings go to
 *   KAFKA_CLIENT_ID [cpu-sampler]         client.id seen by the broker
 *   KAFKA_CONFIG_<PROPERTY>               any librdkafka property (SASL, TLS, ...):
 *                                         `.` -> `_`, `_` -> `__`, `-` -> `___`, upper case;
 *                                         KAFKA_CONFIG_SECURITY_PROTOCOL=SASL_SSL
 *   SAMPLE_INTERVAL_SECONDS [60]          window length; windows end on multiples of it (UTC)
 *   READINGS_QUEUE_MAX [10080]            readings that may wait for the broker (a week of minutes)
 *   READINGS_MAX_WAIT_SECONDS [604800]    how long one may wait before it is dropped and counted failed
 *   HTTP_PORT [8080]                      /healthz, /readyz, /metrics
 *   SHUTDOWN_TIMEOUT_SECONDS [20]         hard deadline for a stop (keep it below the pod's grace period)
 *   NODE_NAME, POD_NAME, POD_NAMESPACE    from the Downward API; the hostname (and "") otherwise
 *   PROC_ROOT [/proc], CGROUP_ROOT [/sys/fs/cgroup]   where to read the counters
 *   LOG_LEVEL [info]                      debug, info, warn or error
 *
 * Run: `npx tsx sampler.ts` (or `npm run sampler`). A bad setting prints the variable, the value and
 * what was expected, and exits 2 before connecting. SIGTERM/SIGINT: stop sampling, flush the
 * producer, disconnect, exit 0 (1 if readings could not be delivered in time, 143/130 past the
 * deadline).
 */
import { existsSync, readFileSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { KafkaJS } from '@confluentinc/kafka-javascript';
import { Counter, Gauge, type Registry } from 'prom-client';
// prettier-ignore
import {
  checkBrokers, checkKafkaConf, checkPassthrough, checkTopic, configOrExit, connectWithRetry, envReader, KafkaAccess, kafkaClient,
  kafkaPassthrough, logger, metricsRegistry, propertiesFor, startRuntime, throwIf, type CommonConfig, type Logger
} from './lib/runtime.ts';

// ---------------------------------------------------------------- configuration

export interface SamplerConfig extends CommonConfig {
  intervalMs: number;
  queueMax: number;
  maxWaitMs: number;
  node: string;
  pod: string;
  namespace: string;
  procRoot: string;
  cgroupRoot: string;
}

/** Every setting, parsed and checked in one place. Throws one ConfigError naming each bad one. */
export function loadConfig(env: Record<string, string | undefined> = process.env): SamplerConfig {
  const e = envReader(env);
  const { props, source } = kafkaPassthrough(env);
  e.problems.push(...checkPassthrough(source, env));
  const host = hostname();
  const config: SamplerConfig = {
    brokers: e.string('KAFKA_BROKERS', 'localhost:9092', checkBrokers),
    topic: e.string('KAFKA_TOPIC', 'cpu-levels', checkTopic),
    clientId: e.string('KAFKA_CLIENT_ID', 'cpu-sampler', (v) => (v ? undefined : 'a non-empty client id')),
    passthrough: props,
    passthroughSource: source,
    intervalMs: Math.round(1000 * e.number('SAMPLE_INTERVAL_SECONDS', 60, { min: 0.1, max: 86_400, unit: 'seconds' })),
    queueMax: e.number('READINGS_QUEUE_MAX', 10_080, { min: 1, max: 10_000_000, integer: true }),
    // librdkafka's message.timeout.ms is a 32-bit int of milliseconds: at most ~24.8 days.
    maxWaitMs: 1000 * e.number('READINGS_MAX_WAIT_SECONDS', 604_800, { min: 1, max: 2_147_483, integer: true, unit: 'seconds' }),
    httpPort: e.number('HTTP_PORT', 8080, { min: 0, max: 65_535, integer: true }),
    shutdownMs: 1000 * e.number('SHUTDOWN_TIMEOUT_SECONDS', 20, { min: 1, max: 3600, unit: 'seconds' }),
    node: env.NODE_NAME?.trim() || host,
    pod: env.POD_NAME?.trim() || host,
    namespace: env.POD_NAMESPACE?.trim() ?? '',
    procRoot: e.string('PROC_ROOT', '/proc'),
    cgroupRoot: e.string('CGROUP_ROOT', '/sys/fs/cgroup'),
    logLevel: e.choice('LOG_LEVEL', 'info', ['debug', 'info', 'warn', 'error'] as const),
  };
  e.done();
  return config;
}

// ---------------------------------------------------------------- machine CPU (/proc/stat)

/** Cumulative CPU time of all cores, in clock ticks (or ms from os.cpus()). */
export interface HostTimes {
  user: number;
  nice: number;
  system: number;
  idle: number;
  iowait: number;
  irq: number;
  softirq: number;
  steal: number;
  cores: number;
}

/**
 * The aggregate "cpu" line of /proc/stat. Fields after steal (guest, guest_nice) are already
 * counted in user and nice, so they are ignored rather than added twice.
 */
export function parseProcStat(text: string): HostTimes {
  const lines = text.split('\n');
  const total = lines.find((l) => /^cpu\s/.test(l));
  if (!total) throw new Error('no aggregate "cpu" line in /proc/stat');
  const f = total.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 4 || f.some((n) => !Number.isFinite(n))) throw new Error(`unreadable /proc/stat cpu line: ${total}`);
  const [user, nice, system, idle, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  const cores = lines.filter((l) => /^cpu\d+\s/.test(l)).length || 1;
  return { user, nice, system, idle, iowait, irq, softirq, steal, cores };
}

/** The same snapshot from os.cpus(), for systems without /proc/stat (macOS): no iowait or steal. */
export function hostTimesFromOs(list = cpus()): HostTimes {
  const t = { user: 0, nice: 0, system: 0, idle: 0, iowait: 0, irq: 0, softirq: 0, steal: 0, cores: list.length || 1 };
  for (const c of list) {
    t.user += c.times.user;
    t.nice += c.times.nice;
    t.system += c.times.sys;
    t.idle += c.times.idle;
    t.irq += c.times.irq;
  }
  return t;
}

export interface HostCpu {
  cores: number;
  busy_percent: number;
  user_percent: number;
  system_percent: number;
  iowait_percent: number;
  steal_percent: number;
  idle_percent: number;
}

const round = (n: number, digits = 3) => Math.round(n * 10 ** digits) / 10 ** digits;
const clampPercent = (n: number) => round(Math.min(100, Math.max(0, n)));

/**
 * Utilisation between two snapshots, percent of all cores. user includes nice, system includes
 * irq and softirq; user + system + steal = busy; busy + iowait + idle = 100.
 * Returns undefined when no time passed or a counter went backwards (a reset): skip that window.
 */
export function hostCpu(a: HostTimes, b: HostTimes): HostCpu | undefined {
  const d = {
    user: b.user - a.user + (b.nice - a.nice),
    system: b.system - a.system + (b.irq - a.irq) + (b.softirq - a.softirq),
    idle: b.idle - a.idle,
    iowait: b.iowait - a.iowait,
    steal: b.steal - a.steal,
  };
  const total = d.user + d.system + d.idle + d.iowait + d.steal;
  if (Object.values(d).some((v) => v < 0) || total <= 0) return undefined;
  const pct = (v: number) => clampPercent((100 * v) / total);
  return {
    cores: b.cores,
    busy_percent: pct(d.user + d.system + d.steal),
    user_percent: pct(d.user),
    system_percent: pct(d.system),
    iowait_percent: pct(d.iowait),
    steal_percent: pct(d.steal),
    idle_percent: pct(d.idle),
  };
}

// ---------------------------------------------------------------- container CPU (cgroups)

/** Where this process's cgroup CPU counters live, or why there are none. */
export type CgroupLocation =
  { version: 2; dir: string } | { version: 1; usageFile: string; quotaDir: string | undefined } | { version: 0; reason: string };

/**
 * Finds our cgroup from /proc/self/cgroup. cgroup v2 when the root has cgroup.controllers
 * (pure v2, as on EKS's Amazon Linux 2023 and Bottlerocket); v1's cpuacct otherwise (including
 * hybrid hosts). Inside a container with a cgroup namespace the path is "/" and the mount root
 * is the container's own cgroup; when the listed path is not below the mount, the root is used.
 */
export function locateCgroup(selfCgroup: string, root: string, exists: (p: string) => boolean = existsSync): CgroupLocation {
  const lines = selfCgroup
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const pick = (mount: string, path: string, file: string) =>
    [path === '/' ? mount : join(mount, path), mount].find((dir) => exists(join(dir, file)));
  if (exists(join(root, 'cgroup.controllers'))) {
    const path = lines.find((l) => l.startsWith('0::'))?.slice(3) ?? '/';
    const dir = pick(root, path, 'cpu.stat');
    if (dir) return { version: 2, dir };
    return { version: 0, reason: `cgroup v2 is mounted at ${root} but ${join(root, path, 'cpu.stat')} is missing` };
  }
  const v1 = (controller: string) => {
    const line = lines.find((l) => l.split(':')[1]?.split(',').includes(controller));
    if (!line) return undefined;
    const path = line.split(':').slice(2).join(':');
    const mount = [controller, 'cpu,cpuacct', 'cpuacct,cpu'].map((m) => join(root, m)).find(exists);
    return mount ? { mount, path } : undefined;
  };
  const acct = v1('cpuacct');
  const usageDir = acct && pick(acct.mount, acct.path, 'cpuacct.usage');
  if (usageDir) {
    const cpu = v1('cpu');
    return { version: 1, usageFile: join(usageDir, 'cpuacct.usage'), quotaDir: cpu && pick(cpu.mount, cpu.path, 'cpu.cfs_quota_us') };
  }
  if (!lines.length && !exists(root))
    return { version: 0, reason: 'no cgroup CPU accounting on this system (not Linux, or cgroups not mounted)' };
  return { version: 0, reason: `no cgroup CPU accounting found under ${root} (neither v2 cpu.stat nor v1 cpuacct.usage)` };
}

/** Cumulative CPU use of the cgroup in microseconds, and its limit in cores (undefined: none). */
export interface CgroupSample {
  version: 1 | 2;
  usageUsec: number;
  limitCores: number | undefined;
}

/** cgroup v2: usage_usec from cpu.stat; cpu.max is "max 100000" (no limit) or "<quota> <period>". */
export function parseCgroupV2(cpuStat: string, cpuMax: string | undefined): CgroupSample {
  const m = /^usage_usec\s+(\d+)/m.exec(cpuStat);
  if (!m) throw new Error('no usage_usec in cpu.stat');
  let limitCores: number | undefined;
  const [quota, period] = (cpuMax ?? 'max').trim().split(/\s+/);
  if (quota !== 'max' && Number(quota) > 0 && Number(period) > 0) limitCores = Number(quota) / Number(period);
  return { version: 2, usageUsec: Number(m[1]), limitCores };
}

/** cgroup v1: cpuacct.usage in nanoseconds; cpu.cfs_quota_us is -1 when there is no limit. */
export function parseCgroupV1(usageNs: string, quotaUs: string | undefined, periodUs: string | undefined): CgroupSample {
  const ns = Number(usageNs.trim());
  if (!Number.isFinite(ns)) throw new Error(`unreadable cpuacct.usage: ${usageNs.trim()}`);
  const quota = Number(quotaUs?.trim());
  const period = Number(periodUs?.trim());
  return { version: 1, usageUsec: ns / 1000, limitCores: quota > 0 && period > 0 ? quota / period : undefined };
}

export interface ContainerCpu {
  cgroup_version: 1 | 2;
  cpu_percent: number;
  cores_used: number;
  limit_cores: number | null;
  relative_to: 'limit' | 'host_cores';
}

/**
 * The container's use over a window: cores used = Δusage / Δt (monotonic), as percent of its
 * limit (read at the window's end: limits can change at runtime) or of the host's cores.
 * Undefined for a counter reset or a zero-length window.
 */
export function containerCpu(a: CgroupSample, b: CgroupSample, elapsedSeconds: number, hostCores: number): ContainerCpu | undefined {
  const used = b.usageUsec - a.usageUsec;
  if (used < 0 || !(elapsedSeconds > 0) || a.version !== b.version) return undefined;
  const cores = used / 1e6 / elapsedSeconds;
  const limit = b.limitCores;
  return {
    cgroup_version: b.version,
    cpu_percent: clampPercent((100 * cores) / (limit ?? hostCores)),
    cores_used: round(cores, 4),
    limit_cores: limit === undefined ? null : round(limit, 4),
    relative_to: limit === undefined ? 'host_cores' : 'limit',
  };
}

// ---------------------------------------------------------------- snapshots

interface Snapshot {
  monoNs: bigint;
  host: HostTimes;
  cgroup: CgroupSample | undefined;
}

/** Reads the counters this process can see; `cgroup` stays undefined where there is none. */
export function snapshotter(procRoot: string, cgroupRoot: string) {
  const statPath = join(procRoot, 'stat');
  const hasProcStat = existsSync(statPath);
  const selfCgroup = existsSync(join(procRoot, 'self', 'cgroup')) ? readFileSync(join(procRoot, 'self', 'cgroup'), 'utf8') : '';
  const where = locateCgroup(selfCgroup, cgroupRoot);
  const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : undefined);
  function cgroup(): CgroupSample | undefined {
    if (where.version === 2) return parseCgroupV2(readFileSync(join(where.dir, 'cpu.stat'), 'utf8'), read(join(where.dir, 'cpu.max')));
    if (where.version === 1) {
      const q = where.quotaDir;
      return parseCgroupV1(
        readFileSync(where.usageFile, 'utf8'),
        q && read(join(q, 'cpu.cfs_quota_us')),
        q && read(join(q, 'cpu.cfs_period_us')),
      );
    }
    return undefined;
  }
  return {
    where,
    hostSource: hasProcStat ? statPath : 'os.cpus()',
    take(): Snapshot {
      return {
        monoNs: process.hrtime.bigint(),
        host: hasProcStat ? parseProcStat(readFileSync(statPath, 'utf8')) : hostTimesFromOs(),
        cgroup: cgroup(),
      };
    },
  };
}

// ---------------------------------------------------------------- the reading (message)

export const SCHEMA_VERSION = 1;

export interface Reading {
  schema_version: 1;
  window_start: string;
  window_end: string;
  window_seconds: number;
  node: string;
  pod: string;
  namespace: string;
  host: HostCpu;
  container: ContainerCpu | null;
  container_unavailable_reason?: string;
}

export interface Source {
  node: string;
  pod: string;
  namespace: string;
}

/**
 * One reading from two snapshots and the window's wall-clock bounds; undefined when the window
 * must be skipped (counter reset, no time passed).
 */
export function buildReading(
  a: Snapshot,
  b: Snapshot,
  window: { startMs: number; endMs: number },
  source: Source,
  noCgroupReason: string,
): { reading?: Reading; skipped?: string } {
  const elapsed = Number(b.monoNs - a.monoNs) / 1e9;
  if (!(elapsed >= 0.001) || window.endMs <= window.startMs) return { skipped: 'zero-length window' };
  const host = hostCpu(a.host, b.host);
  if (!host) return { skipped: 'host counters went backwards or did not move' };
  let container: ContainerCpu | null = null;
  let reason: string | undefined;
  if (a.cgroup && b.cgroup) {
    const c = containerCpu(a.cgroup, b.cgroup, elapsed, host.cores);
    if (!c) return { skipped: 'container counter went backwards' };
    container = c;
  } else {
    reason = noCgroupReason;
  }
  const reading: Reading = {
    schema_version: SCHEMA_VERSION,
    window_start: new Date(window.startMs).toISOString(),
    window_end: new Date(window.endMs).toISOString(),
    window_seconds: round(elapsed),
    ...source,
    host,
    container,
  };
  if (reason !== undefined) reading.container_unavailable_reason = reason;
  return { reading };
}

/** The Kafka message for a reading: keyed by node (one source, one partition, in order). */
export function encodeReading(r: Reading): { key: string; value: string; headers: Record<string, string> } {
  return {
    key: r.node || r.pod,
    value: JSON.stringify(r),
    headers: { 'content-type': 'application/json', 'schema-version': String(r.schema_version) },
  };
}

// ---------------------------------------------------------------- wall-clock schedule

/** The first multiple of intervalMs (since the Unix epoch, UTC) strictly after nowMs. */
export function nextBoundary(nowMs: number, intervalMs: number): number {
  return (Math.floor(nowMs / intervalMs) + 1) * intervalMs;
}

/**
 * Calls tick(boundaryMs) at every wall-clock boundary. Each timer is computed afresh from
 * Date.now(), so a late timer never accumulates drift. A timer that fires late past further
 * boundaries (suspended process, clock stepped forward) ticks once, with the latest boundary
 * passed: missed boundaries are skipped, not replayed. A timer that fires before its boundary on
 * the wall clock (clock stepped back) waits for it. Returns a stop function.
 */
export function everyBoundary(intervalMs: number, tick: (boundaryMs: number) => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let last = 0;
  const arm = () => {
    const now = Date.now();
    const next = nextBoundary(Math.max(now, last), intervalMs);
    timer = setTimeout(() => {
      const firedAt = Date.now();
      if (firedAt < next - 1) return arm();
      last = Math.max(next, Math.floor(firedAt / intervalMs) * intervalMs);
      arm();
      tick(last);
    }, next - now);
  };
  arm();
  return () => clearTimeout(timer);
}

// ---------------------------------------------------------------- delivery

function samplerMetrics(registry: Registry) {
  const r = [registry];
  const m = {
    taken: new Counter({ name: 'sampler_readings_taken_total', help: 'Readings computed from two snapshots', registers: r }),
    skipped: new Counter({
      name: 'sampler_readings_skipped_total',
      help: 'Windows skipped (counter reset, zero length)',
      labelNames: ['reason'],
      registers: r,
    }),
    produced: new Counter({ name: 'sampler_readings_produced_total', help: 'Readings whose delivery the broker confirmed', registers: r }),
    failed: new Counter({
      name: 'sampler_readings_failed_total',
      help: 'Readings that could not be delivered (queue full, waited too long, stopped)',
      labelNames: ['reason'],
      registers: r,
    }),
    pending: new Gauge({ name: 'sampler_readings_pending', help: 'Readings taken but not yet confirmed by the broker', registers: r }),
    lastHost: new Gauge({
      name: 'sampler_last_reading_host_cpu_percent',
      help: 'Machine CPU busy percent of the last reading',
      registers: r,
    }),
    lastContainer: new Gauge({
      name: 'sampler_last_reading_container_cpu_percent',
      help: 'Container CPU percent (of its limit, or of the host) of the last reading',
      registers: r,
    }),
    lastTime: new Gauge({
      name: 'sampler_last_reading_timestamp_seconds',
      help: "End of the last reading's window, Unix time",
      registers: r,
    }),
    lastDelivered: new Gauge({
      name: 'sampler_last_delivery_timestamp_seconds',
      help: 'When the broker last confirmed a reading, Unix time',
      registers: r,
    }),
    connected: new Gauge({ name: 'sampler_kafka_connected', help: '1 once the producer has connected', registers: r }),
    interval: new Gauge({
      name: 'sampler_interval_seconds',
      help: 'SAMPLE_INTERVAL_SECONDS: one reading per this many seconds',
      registers: r,
    }),
  };
  // Every reason from the start, at 0: a rate over a series that appears only at the first loss sees nothing.
  for (const reason of ['queue_full', 'timeout', 'error', 'stopped']) m.failed.inc({ reason }, 0);
  return m;
}
type Metrics = ReturnType<typeof samplerMetrics>;

/**
 * Gets readings to the broker: an idempotent producer (acks=all, librdkafka retries until
 * message.timeout.ms) with a bounded queue, and before the first connection an outbox here with
 * the same bound. Readings stay counted as pending until the broker confirms them.
 * A producer that hits a fatal error (an idempotent producer the broker will not give a producer
 * id, e.g. a user without the ACL to write) is done for good, and one the broker refuses (no ACL
 * for the topic) would fail every reading: either way its readings go back to the outbox, and
 * onLost() asks for a new producer after a pause.
 */
class Delivery {
  #producer: KafkaJS.Producer | undefined; // the one that connected
  #outbox: Reading[] = []; // readings taken while no producer is connected
  #inFlight = new Map<number, number>(); // id -> time taken (ms), until delivery is confirmed
  #nextId = 0;
  #stopping = false;
  readonly #config: SamplerConfig;
  readonly #log: Logger;
  readonly #m: Metrics;
  readonly #kafka: KafkaJS.Kafka;
  readonly #access: KafkaAccess;
  /** Called when the producer is lost to a fatal error; main() connects a new one. */
  onLost: () => void = () => {};

  constructor(config: SamplerConfig, log: Logger, m: Metrics, access: KafkaAccess) {
    this.#config = config;
    this.#log = log;
    this.#m = m;
    this.#access = access;
    this.#kafka = kafkaClient(config, log, 'producer', access);
  }

  pending(): number {
    return this.#outbox.length + this.#inFlight.size;
  }

  /** How long the reading that has waited longest for the broker has waited, in ms (0: none). */
  oldestWaitMs(): number {
    return this.#inFlight.size ? Date.now() - Math.min(...this.#inFlight.values()) : 0;
  }

  enqueue(reading: Reading): void {
    if (this.#producer) this.#send(reading);
    else {
      if (this.#outbox.length >= this.#config.queueMax) {
        const dropped = this.#outbox.shift()!;
        this.#m.failed.inc({ reason: 'queue_full' });
        this.#log.error('reading dropped: queue full while Kafka is unreachable', {
          window_end: dropped.window_end,
          queue_max: this.#config.queueMax,
        });
      }
      this.#outbox.push(reading);
    }
    this.#m.pending.set(this.pending());
  }

  /** One connection attempt with a new producer (a producer whose connect() failed cannot retry). */
  async connect(): Promise<void> {
    const candidate = this.#kafka.producer({ ...producerSettings(this.#config), kafkaJS: { idempotent: true, acks: -1 } });
    try {
      await candidate.connect();
    } catch (err) {
      await candidate.disconnect().catch(() => {});
      throw err;
    }
    this.#producer = candidate;
    this.#m.connected.set(1);
    for (const r of this.#outbox.splice(0)) this.#send(r);
  }

  /** Flushes what the producer holds within the time given; returns how many were not delivered. */
  async stop(flushMs: number): Promise<number> {
    this.#stopping = true;
    const p = this.#producer;
    if (p) {
      await p
        .flush({ timeout: flushMs })
        .catch((err: Error) => this.#log.error('flush did not complete', { error: err.message, timeout_ms: flushMs }));
      await p.disconnect().catch(() => {});
    }
    return this.pending();
  }

  #send(reading: Reading): void {
    const id = this.#nextId++;
    this.#inFlight.set(id, Date.now());
    const { key, value, headers } = encodeReading(reading);
    const producer = this.#producer!;
    producer
      .send({ topic: this.#config.topic, messages: [{ key, value, headers }] })
      .then(
        () => {
          this.#m.produced.inc();
          this.#m.lastDelivered.set(Date.now() / 1000);
          this.#access.ok();
          this.#log.debug('reading delivered', { window_end: reading.window_end });
        },
        (err: Error) => {
          // Refused (no ACL), or stranded by a fatal error (librdkafka then purges the producer's
          // queue: "Purged in queue"), or cut off by the disconnect of a producer given up on: not
          // the reading's fault; it waits for the next producer. At stop, a purge is a loss.
          const stranded = !this.#stopping && (/fatal error|purged in queue/i.test(err.message) || producer !== this.#producer);
          if (this.#access.note(err.message) || stranded) return this.#lost(producer, reading);
          const reason = /queue full/i.test(err.message) ? 'queue_full' : /timed out/i.test(err.message) ? 'timeout' : 'error';
          this.#m.failed.inc({ reason });
          this.#log.error('reading not delivered', { window_end: reading.window_end, reason, error: err.message });
        },
      )
      .finally(() => {
        this.#inFlight.delete(id);
        this.#m.pending.set(this.pending());
      });
  }

  /** The producer went fatal or was refused: the reading waits in the outbox for the next one. */
  #lost(producer: KafkaJS.Producer, reading: Reading): void {
    this.#outbox.push(reading);
    if (this.#producer !== producer) return;
    this.#producer = undefined;
    this.#m.connected.set(0);
    this.#log.warn('Kafka producer given up; a new one will connect', { queued: this.#outbox.length });
    void producer.disconnect().catch(() => {});
    this.onLost();
  }
}

// ---------------------------------------------------------------- main

/** Takes a baseline snapshot now and a reading at every wall-clock boundary; returns the stop function. */
function sample(config: SamplerConfig, log: Logger, m: Metrics, snap: ReturnType<typeof snapshotter>, deliver: (r: Reading) => void) {
  const source: Source = { node: config.node, pod: config.pod, namespace: config.namespace };
  const noCgroupReason = snap.where.version === 0 ? snap.where.reason : '';
  let previous = snap.take();
  let windowStart = Date.now();
  return everyBoundary(config.intervalMs, (boundary) => {
    let current: Snapshot;
    try {
      current = snap.take();
    } catch (err) {
      m.skipped.inc({ reason: 'read_error' });
      log.error('could not read CPU counters', { error: (err as Error).message });
      return;
    }
    const { reading, skipped: why } = buildReading(previous, current, { startMs: windowStart, endMs: boundary }, source, noCgroupReason);
    previous = current;
    windowStart = boundary;
    if (!reading) {
      m.skipped.inc({ reason: why! });
      log.warn('reading skipped', { reason: why, window_end: new Date(boundary).toISOString() });
      return;
    }
    m.taken.inc();
    m.lastHost.set(reading.host.busy_percent);
    if (reading.container) m.lastContainer.set(reading.container.cpu_percent);
    m.lastTime.set(boundary / 1000);
    log.info('reading', {
      window_end: reading.window_end,
      host_busy_percent: reading.host.busy_percent,
      container_cpu_percent: reading.container?.cpu_percent ?? null,
    });
    deliver(reading);
  });
}

/** The producer's own settings (KAFKA_CONFIG_* add to them): bounded in count and in time, batched for 5 ms. */
function producerSettings(config: SamplerConfig) {
  return { 'message.timeout.ms': config.maxWaitMs, 'queue.buffering.max.messages': config.queueMax, 'linger.ms': 5 };
}

/** What librdkafka says of the producer's settings, before any connection. */
function kafkaProblem(config: SamplerConfig): string | undefined {
  const conf = { ...propertiesFor('producer', config.passthrough), 'bootstrap.servers': config.brokers, 'client.id': config.clientId };
  return checkKafkaConf('producer', { ...conf, ...producerSettings(config), 'enable.idempotence': true }, config.passthroughSource);
}

function settingsToLog(config: SamplerConfig, snap: ReturnType<typeof snapshotter>) {
  const noCgroupReason = snap.where.version === 0 ? snap.where.reason : '';
  return {
    brokers: config.brokers,
    topic: config.topic,
    interval_seconds: config.intervalMs / 1000,
    node: config.node,
    pod: config.pod,
    namespace: config.namespace,
    host_counters: snap.hostSource,
    cgroup: snap.where.version === 0 ? null : `v${snap.where.version}`,
    ...(noCgroupReason ? { container_unavailable_reason: noCgroupReason } : {}),
    first_reading_at: new Date(nextBoundary(Date.now(), config.intervalMs)).toISOString(),
  };
}

async function main(): Promise<void> {
  const config = configOrExit('sampler', () => loadConfig());
  configOrExit('sampler', () => throwIf(kafkaProblem(config)));
  const log = logger('sampler', config.logLevel);
  const registry = metricsRegistry();
  const m = samplerMetrics(registry);
  m.interval.set(config.intervalMs / 1000);
  const access = new KafkaAccess(log);
  const out = new Delivery(config, log, m, access);
  const snap = snapshotter(config.procRoot, config.cgroupRoot);
  const stopTicks = sample(config, log, m, snap, (r) => out.enqueue(r));
  let connected = false;
  let stopping = false;
  // Ready: connected, let in (credentials and ACLs), and no reading has waited for the broker
  // longer than an interval (or 30 s).
  const ready = () => connected && !stopping && !access.denied && out.oldestWaitMs() <= Math.max(config.intervalMs, 30_000);
  const stop = async (reason: string) => {
    stopping = true;
    stopTicks();
    log.info('stopping', { reason, pending: out.pending() });
    const lost = await out.stop(Math.max(1000, config.shutdownMs - 3000));
    if (lost === 0) return 0;
    m.failed.inc({ reason: 'stopped' }, lost);
    log.error('readings not delivered before stop', { count: lost });
    return 1;
  };
  const { port } = await startRuntime({ log, port: config.httpPort, registry, ready, deadlineMs: config.shutdownMs, stop });
  log.info('started', { ...settingsToLog(config, snap), http_port: port });
  // Connect, retrying for as long as it takes; readings taken meanwhile wait in the outbox.
  const connect = () =>
    connectWithRetry({
      program: 'sampler',
      brokers: config.brokers,
      source: config.passthroughSource,
      log,
      access,
      stopping: () => stopping,
      fields: () => ({ queued: out.pending() }),
      onConfigError: stopTicks,
      connect: () => out.connect(),
    });
  // A producer lost to a fatal error: a new one after a pause that grows while it keeps happening
  // (a missing ACL fails again at once), from 5 s to a minute.
  let pause = 5000;
  let lastLost = 0;
  out.onLost = () => {
    connected = false;
    pause = Date.now() - lastLost < 2 * pause ? Math.min(pause * 2, 60_000) : 5000;
    lastLost = Date.now();
    setTimeout(async () => (connected = await connect()), pause).unref();
  };
  connected = await connect();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
