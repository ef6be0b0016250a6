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
 *   - every pod on the node (HOST_CGROUP_ROOT): the kubelet's pod cgroups (v2 and v1, systemd and
 *     cgroupfs drivers; the same with containerd and CRI-O): cores used over the window from the
 *     usage counter, the limit from the quota, throttled time; names, namespaces and requests from
 *     the Kubernetes API (list pods on this node), by UID where it cannot say. One message per pod
 *     (schema/cpu-pod-reading.v1.schema.json), after the node's reading of the same window.
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
 *   HOST_CGROUP_ROOT []                   the host's cgroup mount: every pod's CPU from the kubelet's pod
 *                                         cgroups (empty: no pod readings; the DaemonSet mounts /sys/fs/cgroup)
 *   POD_READINGS_QUEUE_MAX [10000]        pods' readings that may wait for the broker, apart from the node's
 *                                         (110 pods: 90 minutes; about 10 MiB of RSS, bench/)
 *   LOG_LEVEL [info]                      debug, info, warn or error
 *
 * Run: `npx tsx sampler.ts` (or `npm run sampler`). A bad setting prints the variable, the value and
 * what was expected, and exits 2 before connecting. SIGTERM/SIGINT: stop sampling, flush the
 * producer, disconnect, exit 0 (1 if readings could not be delivered in time, 143/130 past the
 * deadline).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
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
  hostCgroupRoot: string;
  podQueueMax: number;
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
    hostCgroupRoot: e.string('HOST_CGROUP_ROOT', '', (v) =>
      v === '' || existsSync(v) ? undefined : "an existing folder: the host's cgroup mount (or empty)",
    ),
    podQueueMax: e.number('POD_READINGS_QUEUE_MAX', 10_000, { min: 1, max: 10_000_000, integer: true }),
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

// ---------------------------------------------------------------- every pod on the node (the kubelet's pod cgroups)

export type QosClass = 'Guaranteed' | 'Burstable' | 'BestEffort';

/** One pod's cgroup: v2, one folder; v1, the cpuacct folder (usage) and the cpu folder (limit, throttling). */
export interface PodCgroup {
  uid: string;
  qos: QosClass;
  version: 1 | 2;
  dir: string;
  cpuDir: string;
}

// The kubelet names a pod's cgroup after its UID: pod<uid> (cgroupfs driver), or
// <parent>-pod<uid with _ for ->.slice (systemd driver), the same with containerd and CRI-O (whose
// own cgroups, cri-containerd-<id>.scope, crio-<id>.scope, <id>, are the containers', inside).
// A static pod's UID is a hash (32 hex digits); its mirror pod in the API carries it as the
// annotation kubernetes.io/config.mirror.
const podCgroupName =
  /^(?:[\w-]*-)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})(?:\.slice)?$/;
// The kubelet's root of pod cgroups: kubepods (cgroupfs), kubepods.slice (systemd), or
// <cgroup-root>-kubepods.slice under a --cgroup-root (kind: kubelet.slice/kubelet-kubepods.slice).
const kubepodsName = /^(?:kubepods|(?:[\w-]+-)?kubepods\.slice)$/;

const qosOf = (parent: string): QosClass =>
  /besteffort/.test(parent) ? 'BestEffort' : /burstable/.test(parent) ? 'Burstable' : 'Guaranteed';

/** The kubepods folders under a hierarchy's root, at most `depth` levels down (not below one). */
export function kubepodsDirs(root: string, fs: { dirs: (p: string) => string[] } = diskFs, depth = 3): string[] {
  const found: string[] = [];
  const walk = (dir: string, left: number) => {
    for (const name of fs.dirs(dir)) {
      if (kubepodsName.test(name)) found.push(join(dir, name));
      else if (left > 1) walk(join(dir, name), left - 1);
    }
  };
  walk(root, depth);
  return found;
}

/** Pod folders of a kubepods folder: pods of the Guaranteed class right in it, the others one level down, in their class's folder. */
export function podsUnder(
  kubepods: string,
  fs: { dirs: (p: string) => string[] } = diskFs,
): Array<{ uid: string; qos: QosClass; rel: string }> {
  const pods: Array<{ uid: string; qos: QosClass; rel: string }> = [];
  for (const name of fs.dirs(kubepods)) {
    const m = podCgroupName.exec(name);
    if (m) pods.push({ uid: m[1].replaceAll('_', '-'), qos: 'Guaranteed', rel: name });
    else if (/besteffort|burstable/.test(name))
      for (const child of fs.dirs(join(kubepods, name))) {
        const c = podCgroupName.exec(child);
        if (c) pods.push({ uid: c[1].replaceAll('_', '-'), qos: qosOf(name), rel: join(name, child) });
      }
  }
  return pods;
}

const diskFs = {
  dirs: (p: string) => {
    try {
      return readdirSync(p, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      return [];
    }
  },
};

/**
 * Where the pods' cgroups are, from the host's cgroup mount (HOST_CGROUP_ROOT): cgroup v2 when it
 * has cgroup.controllers; v1's cpuacct hierarchy (cpuacct, cpu,cpuacct or cpuacct,cpu) otherwise,
 * with the cpu hierarchy beside it for limits and throttling. Found again at every reading: pods come and go.
 */
export function findPodCgroups(
  root: string,
  fs: { dirs: (p: string) => string[]; exists: (p: string) => boolean } = { ...diskFs, exists: existsSync },
): PodCgroup[] {
  if (fs.exists(join(root, 'cgroup.controllers'))) {
    return kubepodsDirs(root, fs).flatMap((k) =>
      podsUnder(k, fs).map((p) => ({ ...p, version: 2 as const, dir: join(k, p.rel), cpuDir: join(k, p.rel) })),
    );
  }
  const mount = (names: string[]) => names.map((n) => join(root, n)).find((d) => fs.exists(d));
  const acct = mount(['cpuacct', 'cpu,cpuacct', 'cpuacct,cpu']);
  const cpu = mount(['cpu', 'cpu,cpuacct', 'cpuacct,cpu']) ?? acct;
  if (!acct || !cpu) return [];
  return kubepodsDirs(acct, fs).flatMap((k) =>
    podsUnder(k, fs).map((p) => {
      const rel = join(k.slice(acct.length), p.rel);
      return { uid: p.uid, qos: p.qos, version: 1 as const, dir: join(acct, rel), cpuDir: join(cpu, rel) };
    }),
  );
}

/** A pod's cumulative counters, in microseconds; its limit in cores (undefined: none). */
export interface PodSample {
  usageUsec: number;
  throttledUsec: number | undefined;
  limitCores: number | undefined;
}

/** A cgroup's counters: v2 cpu.stat (usage_usec, throttled_usec) and cpu.max; v1 cpuacct.usage (ns), cpu.stat throttled_time (ns) and the CFS quota. */
export function readPodSample(c: PodCgroup, read: (p: string) => string | undefined = readIfThere): PodSample | undefined {
  if (c.version === 2) {
    const stat = read(join(c.dir, 'cpu.stat'));
    if (stat === undefined) return undefined;
    const { usageUsec, limitCores } = parseCgroupV2(stat, read(join(c.dir, 'cpu.max')));
    const throttled = /^throttled_usec\s+(\d+)/m.exec(stat);
    return { usageUsec, limitCores, throttledUsec: throttled ? Number(throttled[1]) : undefined };
  }
  const usage = read(join(c.dir, 'cpuacct.usage'));
  if (usage === undefined) return undefined;
  const { usageUsec, limitCores } = parseCgroupV1(
    usage,
    read(join(c.cpuDir, 'cpu.cfs_quota_us')),
    read(join(c.cpuDir, 'cpu.cfs_period_us')),
  );
  const throttled = /^throttled_time\s+(\d+)/m.exec(read(join(c.cpuDir, 'cpu.stat')) ?? '');
  return { usageUsec, limitCores, throttledUsec: throttled ? Number(throttled[1]) / 1000 : undefined };
}

function readIfThere(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined; // a pod that went between the listing and the read
  }
}

/** What the Kubernetes API says of a pod: its name, namespace and CPU request in cores. */
export interface PodInfo {
  name: string;
  namespace: string;
  requestCores: number | undefined;
}

/** A CPU quantity ("250m", "0.5", "2", "1500000000n") in cores; undefined when it is not one. */
export function cpuCores(quantity: string | number | undefined): number | undefined {
  if (typeof quantity === 'number') return quantity;
  const m = /^(\d+(?:\.\d+)?|\.\d+)(n|u|m|k)?$/.exec(quantity?.trim() ?? '');
  if (!m) return undefined;
  const per: Record<string, number> = { n: 1e9, u: 1e6, m: 1e3 }; // a division is exact where a product by 1e-6 is not
  return m[2] === 'k' ? Number(m[1]) * 1000 : Number(m[1]) / (m[2] ? per[m[2]] : 1);
}

type ApiContainer = { resources?: { requests?: Record<string, string> }; restartPolicy?: string };
type ApiPod = {
  metadata: { uid: string; name: string; namespace: string; annotations?: Record<string, string> };
  spec?: {
    containers?: ApiContainer[];
    initContainers?: ApiContainer[];
    overhead?: Record<string, string>;
    resources?: { requests?: Record<string, string> };
  };
};

/**
 * A pod's CPU request as the scheduler counts it: the pod-level request where set; otherwise the
 * containers' and sidecars' (init containers that keep running) sum, or the largest one-off init
 * container if that is more; plus the runtime's overhead. Undefined: no request at all.
 */
export function podRequestCores(spec: ApiPod['spec']): number | undefined {
  const req = (c: { resources?: { requests?: Record<string, string> } } | undefined) => cpuCores(c?.resources?.requests?.cpu) ?? 0;
  const inits = spec?.initContainers ?? [];
  const sidecars = inits.filter((c) => c.restartPolicy === 'Always');
  const running = [...(spec?.containers ?? []), ...sidecars].reduce((n, c) => n + req(c), 0);
  const oneOff = Math.max(0, ...inits.filter((c) => c.restartPolicy !== 'Always').map(req));
  const total = (req(spec) || Math.max(running, oneOff)) + (cpuCores(spec?.overhead?.cpu) ?? 0);
  return total > 0 ? round(total, 9) : undefined;
}

/** The pods of a PodList (GET /api/v1/pods), by the UID of their cgroup (a static pod's: its mirror's annotation). */
export function podInfos(list: { items?: ApiPod[] }): Map<string, PodInfo> {
  return new Map(
    (list.items ?? []).map((p) => [
      p.metadata.annotations?.['kubernetes.io/config.mirror'] ?? p.metadata.uid,
      { name: p.metadata.name, namespace: p.metadata.namespace, requestCores: podRequestCores(p.spec) },
    ]),
  );
}

/** The service account's files in a pod (the in-cluster way to the API server). */
const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * The pods on this node, from the Kubernetes API as the sampler's service account: GET
 * /api/v1/pods?fieldSelector=spec.nodeName=<node>. The least the API offers for names and
 * requests (RBAC: list on pods, read only); the kubelet's own /pods would need nodes/proxy,
 * which also reaches exec. Undefined outside a cluster (no KUBERNETES_SERVICE_HOST or no token):
 * pods are then reported by UID. The token is read at every call: the kubelet rotates it.
 */
export function kubernetesPods(
  env: Record<string, string | undefined>,
  dir = serviceAccountDir,
): ((node: string) => Promise<Map<string, PodInfo>>) | undefined {
  const host = env.KUBERNETES_SERVICE_HOST;
  if (!host || !existsSync(join(dir, 'token'))) return undefined;
  const ca = readIfThere(join(dir, 'ca.crt'));
  return (node) =>
    new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host,
          port: Number(env.KUBERNETES_SERVICE_PORT ?? 443),
          path: `/api/v1/pods?fieldSelector=${encodeURIComponent(`spec.nodeName=${node}`)}`,
          headers: { authorization: `Bearer ${readFileSync(join(dir, 'token'), 'utf8').trim()}`, accept: 'application/json' },
          ca,
          timeout: 10_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${body.slice(0, 200)}`));
            try {
              resolve(podInfos(JSON.parse(body)));
            } catch (err) {
              reject(err);
            }
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('no answer in 10 s')));
      req.on('error', reject);
      req.end();
    });
}

export interface PodReading {
  kind: 'pod';
  schema_version: 1;
  window_start: string;
  window_end: string;
  window_seconds: number;
  node: string;
  pod_uid: string;
  pod: string | null;
  namespace: string | null;
  qos_class: QosClass;
  cgroup_version: 1 | 2;
  cores_used: number;
  request_cores: number | null;
  limit_cores: number | null;
  request_percent: number | null;
  limit_percent: number | null;
  throttled_seconds: number | null;
}

/**
 * The reading of each pod seen at both ends of a window (schema/cpu-pod-reading.v1.schema.json):
 * a pod that started during the window has no baseline and is read from the next one on; one whose
 * counter went backwards (a new cgroup under the same UID) is skipped this once.
 */
export function podReadings(
  a: Map<string, PodSample>,
  b: Map<string, PodSample>,
  cgroups: Map<string, PodCgroup>,
  info: (uid: string) => PodInfo | undefined,
  window: { start: string; end: string; seconds: number },
  node: string,
): PodReading[] {
  const out: PodReading[] = [];
  for (const [uid, end] of b) {
    const start = a.get(uid);
    const c = cgroups.get(uid);
    if (!start || !c || end.usageUsec < start.usageUsec || !(window.seconds > 0)) continue;
    const cores = (end.usageUsec - start.usageUsec) / 1e6 / window.seconds;
    const pod = info(uid);
    const request = pod?.requestCores;
    const limit = end.limitCores;
    const throttled =
      end.throttledUsec !== undefined && start.throttledUsec !== undefined ? end.throttledUsec - start.throttledUsec : undefined;
    out.push({
      kind: 'pod',
      schema_version: 1,
      window_start: window.start,
      window_end: window.end,
      window_seconds: window.seconds,
      node,
      pod_uid: uid,
      pod: pod?.name ?? null,
      namespace: pod?.namespace ?? null,
      qos_class: c.qos,
      cgroup_version: c.version,
      cores_used: round(cores, 4),
      request_cores: request === undefined ? null : round(request, 4),
      limit_cores: limit === undefined ? null : round(limit, 4),
      request_percent: request === undefined ? null : round((100 * cores) / request),
      limit_percent: limit === undefined ? null : round((100 * cores) / limit),
      throttled_seconds: throttled === undefined || throttled < 0 ? null : round(throttled / 1e6),
    });
  }
  return out;
}

export interface PodWatchOptions {
  /** The host's cgroup mount (HOST_CGROUP_ROOT). */
  root: string;
  node: string;
  /** The pods on a node from the Kubernetes API (kubernetesPods); none: pods reported by UID. */
  list: ((node: string) => Promise<Map<string, PodInfo>>) | undefined;
  log: Logger;
  /** The sampling interval. */
  everyMs: number;
}

/**
 * The pods of this node at each boundary (HOST_CGROUP_ROOT): their cgroups' counters, and their
 * names and requests from the Kubernetes API, asked again when a pod it has not named shows up
 * (at most once every half interval), so that a new pod is named from its first reading on.
 */
export class PodWatch {
  #cgroups = new Map<string, PodCgroup>();
  #names = new Map<string, PodInfo>();
  #askedAt = -Infinity;
  #failing: string | undefined;

  readonly #o: PodWatchOptions;

  constructor(o: PodWatchOptions) {
    this.#o = o;
  }

  /** The pods' counters now, read beside the node's own snapshot. */
  take(): Map<string, PodSample> {
    const samples = new Map<string, PodSample>();
    const cgroups = new Map<string, PodCgroup>();
    for (const c of findPodCgroups(this.#o.root)) {
      const sample = readPodSample(c);
      if (!sample) continue;
      samples.set(c.uid, sample);
      cgroups.set(c.uid, c);
    }
    this.#cgroups = cgroups;
    return samples;
  }

  /** The readings of the window between two takes; the API asked first where a pod is new to it. */
  async readings(a: Map<string, PodSample>, b: Map<string, PodSample>, window: { start: string; end: string; seconds: number }) {
    if (this.#o.list && [...b.keys()].some((uid) => !this.#names.has(uid)) && Date.now() - this.#askedAt >= this.#o.everyMs / 2)
      await this.#ask(b);
    const readings = podReadings(a, b, this.#cgroups, (uid) => this.#names.get(uid), window, this.#o.node);
    return { readings, unnamed: readings.filter((r) => r.pod === null).length };
  }

  async #ask(now: Map<string, PodSample>): Promise<void> {
    this.#askedAt = Date.now();
    try {
      const listed = await this.#o.list!(this.#o.node);
      // A pod the API no longer lists (deleted, its cgroup not yet gone) keeps the name it had.
      this.#names = new Map([...[...this.#names].filter(([uid]) => now.has(uid)), ...listed]);
      if (this.#failing) this.#o.log.info('pods named by the Kubernetes API again', { pods: listed.size });
      this.#failing = undefined;
    } catch (err) {
      const error = (err as Error).message;
      if (this.#failing !== error) this.#o.log.warn('the Kubernetes API did not list the pods: they are reported by UID', { error });
      this.#failing = error;
    }
  }
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
  function cgroup(): CgroupSample | undefined {
    if (where.version === 2)
      return parseCgroupV2(readFileSync(join(where.dir, 'cpu.stat'), 'utf8'), readIfThere(join(where.dir, 'cpu.max')));
    if (where.version === 1) {
      const q = where.quotaDir;
      return parseCgroupV1(
        readFileSync(where.usageFile, 'utf8'),
        q && readIfThere(join(q, 'cpu.cfs_quota_us')),
        q && readIfThere(join(q, 'cpu.cfs_period_us')),
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

/** What goes to the topic: a node's reading, or a pod's. */
export type Message = Reading | PodReading;
const kindOf = (r: Message) => ('kind' in r ? r.kind : 'node');

/** The Kafka message for a reading: keyed by node (one source, one partition, in order; a pod's with its node's). */
export function encodeReading(r: Message): { key: string; value: string; headers: Record<string, string> } {
  return {
    key: r.node || ('pod_uid' in r ? r.pod_uid : r.pod),
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
  const pods = {
    taken: new Counter({ name: 'sampler_pod_readings_taken_total', help: "Pods' readings computed from two snapshots", registers: r }),
    produced: new Counter({
      name: 'sampler_pod_readings_produced_total',
      help: "Pods' readings whose delivery the broker confirmed",
      registers: r,
    }),
    failed: new Counter({
      name: 'sampler_pod_readings_failed_total',
      help: "Pods' readings that could not be delivered (queue full, waited too long, stopped)",
      labelNames: ['reason'],
      registers: r,
    }),
    pending: new Gauge({
      name: 'sampler_pod_readings_pending',
      help: "Pods' readings taken but not yet confirmed by the broker",
      registers: r,
    }),
    seen: new Gauge({ name: 'sampler_pods', help: 'Pods whose cgroups were found on the node at the last reading', registers: r }),
    unnamed: new Gauge({
      name: 'sampler_pods_unnamed',
      help: 'Pods of the last reading reported by UID only (the Kubernetes API did not name them)',
      registers: r,
    }),
  };
  // Every reason from the start, at 0: a rate over a series that appears only at the first loss sees nothing.
  for (const reason of ['queue_full', 'timeout', 'error', 'stopped']) {
    m.failed.inc({ reason }, 0);
    pods.failed.inc({ reason }, 0);
  }
  return { ...m, pods, byKind: { node: m, pod: pods } };
}
type Metrics = ReturnType<typeof samplerMetrics>;

type Kind = 'node' | 'pod';

/** A reading on its way: its Kafka message (a string: a third of the reading as an object), and what the logs name. */
type Outgoing = ReturnType<typeof encodeReading> & { kind: Kind; window_end: string };

/**
 * Gets readings to the broker: an idempotent producer (acks=all, librdkafka retries until
 * message.timeout.ms) with a bounded queue, and before the first connection an outbox here with
 * the same bounds. Readings stay counted as pending until the broker confirms them. Nodes' and
 * pods' readings are bounded apart (READINGS_QUEUE_MAX, POD_READINGS_QUEUE_MAX): a node's hundred
 * pods must not push its own readings out while the broker is away.
 * A producer that hits a fatal error (an idempotent producer the broker will not give a producer
 * id, e.g. a user without the ACL to write) is done for good, and one the broker refuses (no ACL
 * for the topic) would fail every reading: either way its readings go back to the outbox, and
 * onLost() asks for a new producer after a pause.
 */
class Delivery {
  #producer: KafkaJS.Producer | undefined; // the one that connected
  // Readings taken while no producer is connected, encoded (compact), by kind.
  #outbox: Record<Kind, Outgoing[]> = { node: [], pod: [] };
  // id -> when sent (ms), until delivery is confirmed; in the order sent, so the first is the oldest.
  #inFlight = new Map<number, { at: number; kind: Kind }>();
  #inFlightCount: Record<Kind, number> = { node: 0, pod: 0 };
  #nextId = 0;
  #podsDropped = 0;
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

  /** Readings not yet confirmed, of one kind or of both. */
  pending(kind?: Kind): number {
    if (!kind) return this.pending('node') + this.pending('pod');
    return this.#outbox[kind].length + this.#inFlightCount[kind];
  }

  /** How long the reading that has waited longest for the broker has waited, in ms (0: none). */
  oldestWaitMs(): number {
    const oldest = this.#inFlight.values().next().value;
    return oldest ? Date.now() - oldest.at : 0;
  }

  enqueue(message: Message): void {
    const kind = kindOf(message);
    const reading: Outgoing = { kind, window_end: message.window_end, ...encodeReading(message) };
    const max = kind === 'pod' ? this.#config.podQueueMax : this.#config.queueMax;
    if (this.#producer) {
      // librdkafka's queue holds both bounds together; pods' readings past theirs are dropped here.
      if (kind === 'pod' && this.pending('pod') >= max) this.#dropped(reading, max);
      else this.#send(reading);
    } else {
      const outbox = this.#outbox[kind];
      if (this.pending(kind) >= max) this.#dropped(outbox.shift() ?? reading, max);
      if (outbox.length < max) outbox.push(reading);
    }
    this.#setPending();
  }

  #dropped(reading: Outgoing, max: number): void {
    const kind = reading.kind;
    this.#m.byKind[kind].failed.inc({ reason: 'queue_full' });
    // A line per node reading; pods' are counted in the metric, with a line at the first of every 10000.
    if (kind === 'node' || this.#podsDropped++ % 10_000 === 0)
      this.#log.error(`${kind === 'node' ? 'reading' : "pods' readings"} dropped: queue full while Kafka is unreachable`, {
        window_end: reading.window_end,
        queue_max: max,
      });
  }

  #setPending(): void {
    this.#m.byKind.node.pending.set(this.pending('node'));
    this.#m.byKind.pod.pending.set(this.pending('pod'));
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
    // The nodes' first: a pod's reading stays after its node's reading of the same window.
    for (const r of [...this.#outbox.node.splice(0), ...this.#outbox.pod.splice(0)]) this.#send(r);
  }

  /** Flushes what the producer holds within the time given; returns how many of each kind were not delivered. */
  async stop(flushMs: number): Promise<{ node: number; pod: number }> {
    this.#stopping = true;
    const p = this.#producer;
    if (p) {
      await p
        .flush({ timeout: flushMs })
        .catch((err: Error) => this.#log.error('flush did not complete', { error: err.message, timeout_ms: flushMs }));
      await p.disconnect().catch(() => {});
    }
    return { node: this.pending('node'), pod: this.pending('pod') };
  }

  #send(reading: Outgoing): void {
    const id = this.#nextId++;
    const { kind, key, value, headers } = reading;
    this.#inFlight.set(id, { at: Date.now(), kind });
    this.#inFlightCount[kind]++;
    const producer = this.#producer!;
    producer
      .send({ topic: this.#config.topic, messages: [{ key, value, headers }] })
      .then(
        () => {
          this.#m.byKind[kind].produced.inc();
          this.#m.lastDelivered.set(Date.now() / 1000);
          this.#access.ok();
          this.#log.debug('reading delivered', { kind, window_end: reading.window_end });
        },
        (err: Error) => {
          // Refused (no ACL), or stranded by a fatal error (librdkafka then purges the producer's
          // queue: "Purged in queue"), or cut off by the disconnect of a producer given up on: not
          // the reading's fault; it waits for the next producer. At stop, a purge is a loss.
          const stranded = !this.#stopping && (/fatal error|purged in queue/i.test(err.message) || producer !== this.#producer);
          if (this.#access.note(err.message) || stranded) return this.#lost(producer, reading);
          const reason = /queue full/i.test(err.message) ? 'queue_full' : /timed out/i.test(err.message) ? 'timeout' : 'error';
          this.#m.byKind[kind].failed.inc({ reason });
          this.#log.error('reading not delivered', { kind, window_end: reading.window_end, reason, error: err.message });
        },
      )
      .finally(() => {
        this.#inFlight.delete(id);
        this.#inFlightCount[kind]--;
        this.#setPending();
      });
  }

  /** The producer went fatal or was refused: the reading waits in the outbox for the next one. */
  #lost(producer: KafkaJS.Producer, reading: Outgoing): void {
    this.#outbox[reading.kind].push(reading);
    if (this.#producer !== producer) return;
    this.#producer = undefined;
    this.#m.connected.set(0);
    this.#log.warn('Kafka producer given up; a new one will connect', { queued: this.#outbox.node.length + this.#outbox.pod.length });
    void producer.disconnect().catch(() => {});
    this.onLost();
  }
}

// ---------------------------------------------------------------- main

/**
 * Takes a baseline snapshot now and a reading at every wall-clock boundary, and with `pods` the
 * reading of each pod on the node for the same window after it; returns the stop function.
 */
function sample(
  config: SamplerConfig,
  log: Logger,
  m: Metrics,
  snap: ReturnType<typeof snapshotter>,
  pods: PodWatch | undefined,
  deliver: (r: Message) => void,
) {
  const source: Source = { node: config.node, pod: config.pod, namespace: config.namespace };
  const noCgroupReason = snap.where.version === 0 ? snap.where.reason : '';
  let previous = snap.take();
  let previousPods = pods?.take() ?? new Map<string, PodSample>();
  let windowStart = Date.now();
  return everyBoundary(config.intervalMs, (boundary) => {
    let current: Snapshot;
    let currentPods: Map<string, PodSample>;
    try {
      current = snap.take();
      currentPods = pods?.take() ?? new Map();
    } catch (err) {
      m.skipped.inc({ reason: 'read_error' });
      log.error('could not read CPU counters', { error: (err as Error).message });
      return;
    }
    const { reading, skipped: why } = buildReading(previous, current, { startMs: windowStart, endMs: boundary }, source, noCgroupReason);
    const podsBefore = previousPods;
    previous = current;
    previousPods = currentPods;
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
    deliver(reading);
    if (!pods) {
      log.info('reading', readingFields(reading));
      return;
    }
    const window = { start: reading.window_start, end: reading.window_end, seconds: reading.window_seconds };
    void pods.readings(podsBefore, currentPods, window).then(({ readings, unnamed }) => {
      m.pods.seen.set(currentPods.size);
      m.pods.unnamed.set(unnamed);
      m.pods.taken.inc(readings.length);
      log.info('reading', { ...readingFields(reading), pods: readings.length, pods_unnamed: unnamed });
      for (const r of readings) deliver(r);
    });
  });
}

const readingFields = (r: Reading) => ({
  window_end: r.window_end,
  host_busy_percent: r.host.busy_percent,
  container_cpu_percent: r.container?.cpu_percent ?? null,
});

/** The producer's own settings (KAFKA_CONFIG_* add to them): bounded in count and in time, batched for 5 ms. */
function producerSettings(config: SamplerConfig) {
  const queue = config.queueMax + (config.hostCgroupRoot ? config.podQueueMax : 0);
  return { 'message.timeout.ms': config.maxWaitMs, 'queue.buffering.max.messages': queue, 'linger.ms': 5 };
}

/** What librdkafka says of the producer's settings, before any connection. */
function kafkaProblem(config: SamplerConfig): string | undefined {
  const conf = { ...propertiesFor('producer', config.passthrough), 'bootstrap.servers': config.brokers, 'client.id': config.clientId };
  return checkKafkaConf('producer', { ...conf, ...producerSettings(config), 'enable.idempotence': true }, config.passthroughSource);
}

function settingsToLog(config: SamplerConfig, snap: ReturnType<typeof snapshotter>, names: boolean) {
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
    // Every pod's CPU, from the host's cgroups, named by the Kubernetes API where there is one.
    pods: config.hostCgroupRoot ? { cgroup_root: config.hostCgroupRoot, names: names ? 'kubernetes-api' : 'none: by UID' } : 'off',
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
  const names = kubernetesPods(process.env);
  const pods = config.hostCgroupRoot
    ? new PodWatch({ root: config.hostCgroupRoot, node: config.node, list: names, log, everyMs: config.intervalMs })
    : undefined;
  const stopTicks = sample(config, log, m, snap, pods, (r) => out.enqueue(r));
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
    if (lost.node + lost.pod === 0) return 0;
    m.failed.inc({ reason: 'stopped' }, lost.node);
    m.pods.failed.inc({ reason: 'stopped' }, lost.pod);
    log.error('readings not delivered before stop', { count: lost.node, pods: lost.pod });
    return 1;
  };
  const { port } = await startRuntime({ log, port: config.httpPort, registry, ready, deadlineMs: config.shutdownMs, stop });
  log.info('started', { ...settingsToLog(config, snap, names !== undefined), http_port: port });
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
