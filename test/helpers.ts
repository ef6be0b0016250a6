/**
 * Test helpers: run the real programs as processes, read topics with an independent client
 * (kcat), wait for conditions. Each helper that starts something registers its own cleanup.
 */
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { parseAllDocuments, parseDocument, stringify } from 'yaml';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { cpSync, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startS3 } from '../scripts/s3.ts';
import { freePort } from '../scripts/kafka.ts';
import { connectorClass } from '../scripts/connect.ts';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { KafkaJS } from '@confluentinc/kafka-javascript';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The shared broker started by test/global-setup.ts; fails (never skips) without it. */
export function sharedKafka(): string {
  const bootstrap = process.env.TEST_KAFKA_BOOTSTRAP;
  if (!bootstrap) throw new Error('TEST_KAFKA_BOOTSTRAP is not set: run the suite with `npm test` (it starts Kafka)');
  return bootstrap;
}

export const uniqueName = (prefix: string) => `${prefix}-${randomUUID()}`;

export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface LogLine {
  msg: string;
  level: string;
  [field: string]: unknown;
}

export interface Program {
  proc: ChildProcess;
  logs: LogLine[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(what: string, match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  count(msg: string): number;
}

/** Spawns `node --import tsx <file>` with env added to a clean environment; killed after the test. */
export function runProgram(t: TestContext, file: string, env: Record<string, string>): Program {
  return runCommand(t, [process.execPath, '--import', 'tsx', join(root, file)], env, file);
}

/** Spawns a command that logs one JSON object per line, as runProgram does; killed after the test. */
export function runCommand(t: TestContext, argv: string[], env: Record<string, string>, file = argv.join(' ')): Program {
  const proc = spawn(argv[0], argv.slice(1), {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let err = '';
  let partial = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) if (line.trim()) logs.push(JSON.parse(line) as LogLine);
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  // 'close' comes after the output streams ended, so the logs are complete when it resolves.
  const exited = once(proc, 'close').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  return {
    proc,
    logs,
    stderr: () => err,
    exited,
    waitForLog: (what, match, timeoutMs = 30_000) =>
      waitFor(
        what,
        () => {
          const found = logs.find(match);
          if (found) return found;
          if (proc.exitCode !== null || proc.signalCode !== null) {
            // Its last lines may still be in the pipe: look once more when the output has closed.
            return exited.then(
              () =>
                logs.find(match) ??
                Promise.reject(new Error(`${file} exited (${proc.exitCode ?? proc.signalCode}) while waiting for ${what}; stderr: ${err}`)),
            );
          }
          return undefined;
        },
        timeoutMs,
      ),
    count: (msg) => logs.filter((l) => l.msg === msg).length,
  };
}

/**
 * For each case, a test that runs the real program with that setting and sees it stop before it
 * connects: exit 2, a `<program>: config error:` line matching `expected`, no connection. The
 * broker address is one nothing listens on: a program that got past validation would hang
 * retrying, not exit 2.
 */
export function configErrorTests(program: 'sampler' | 'sink', cases: Array<[env: Record<string, string>, expected: RegExp]>): void {
  for (const [env, expected] of cases) {
    const [[name, value]] = Object.entries(env);
    test(`${program} exits 2 and names ${name} when it is ${JSON.stringify(value)}`, async (t) => {
      const p = runProgram(t, `${program}.ts`, { KAFKA_BROKERS: '127.0.0.1:1', HTTP_PORT: '0', ...env });
      const { code } = await p.exited;
      assert.equal(code, 2, `exit code; stderr: ${p.stderr()}`);
      assert.match(p.stderr(), expected);
      assert.match(p.stderr(), new RegExp(`^${program}: config error: `, 'm'));
      assert.equal(p.count('connected to Kafka'), 0);
    });
  }
}

export interface TopicMessage {
  key: string | null;
  value: string;
  partition: number;
  offset: number;
  headers: Record<string, string>;
}

/** Everything in a topic right now, read by kcat (an independent client), in partition/offset order. */
export async function readTopic(bootstrap: string, topic: string): Promise<TopicMessage[]> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)('kcat', ['-b', bootstrap, '-C', '-t', topic, '-e', '-J', '-q', '-o', 'beginning'], {
      maxBuffer: 256 * 1024 * 1024,
      timeout: 30_000,
    }));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error('kcat is required by the tests (Debian: apt-get install kcat)');
    if (/Unknown topic|UNKNOWN_TOPIC/i.test(e.stderr ?? '')) return [];
    throw err;
  }
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const m = JSON.parse(line) as { key: string | null; payload: string; partition: number; offset: number; headers?: string[] };
      const headers: Record<string, string> = {};
      for (let i = 0; m.headers && i < m.headers.length; i += 2) headers[m.headers[i]] = m.headers[i + 1];
      return { key: m.key, value: m.payload, partition: m.partition, offset: m.offset, headers };
    })
    .sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

/** GET a path of a program's HTTP server. */
export async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

// ajv-formats is CommonJS: under nodenext the default import is module.exports, whose .default is the plugin.
const addFormats = addFormatsModule.default;
const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats(ajv);
/** The published JSON Schema of a reading, compiled. */
export const validateReading = ajv.compile(JSON.parse(readFileSync(join(root, 'schema', 'cpu-reading.v1.schema.json'), 'utf8')));

// ---------------------------------------------------------------- Kafka and S3 for the sink tests

/** Creates a topic with n partitions (replication 1) and waits until it exists. */
export async function createTopic(bootstrap: string, topic: string, partitions = 1): Promise<void> {
  const admin = new KafkaJS.Kafka({ kafkaJS: { brokers: [bootstrap], logLevel: KafkaJS.logLevel.NOTHING } }).admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }] });
  } finally {
    await admin.disconnect();
  }
}

/** A producer for tests (idempotent, acks=all); disconnected after the test. */
export async function testProducer(t: TestContext, bootstrap: string) {
  const producer = new KafkaJS.Kafka({ kafkaJS: { brokers: [bootstrap], logLevel: KafkaJS.logLevel.NOTHING } }).producer({
    kafkaJS: { idempotent: true, acks: -1 },
    'linger.ms': 0,
  });
  await producer.connect();
  t.after(() => producer.disconnect());
  return {
    /** Sends values (in order) with a key; resolves when the broker confirmed all. */
    async send(topic: string, values: Array<string | Buffer>, key = 'test-node', partition?: number) {
      await producer.send({ topic, messages: values.map((value) => ({ key, value, ...(partition === undefined ? {} : { partition }) })) });
    },
  };
}

/**
 * Produces unique readings in batches of `batch`, `everyMs` apart, round-robin over 4 keys: `count`
 * of them, or, given a function instead, until it returns true. Resolves with what it produced.
 */
export async function produceSteadily(
  t: TestContext,
  bootstrap: string,
  topic: string,
  count: number | (() => boolean),
  batch: number,
  everyMs: number,
): Promise<string[]> {
  const producer = await testProducer(t, bootstrap);
  const all: string[] = [];
  const more = typeof count === 'number' ? (i: number) => i < count : () => !count();
  for (let i = 0; more(i); i += batch) {
    const n = typeof count === 'number' ? Math.min(batch, count - i) : batch;
    const values = Array.from({ length: n }, (_, j) => reading((i + j) % 600, uniqueName(`r${i + j}`)));
    await producer.send(topic, values, `node-${(i / batch) % 4}`);
    all.push(...values);
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return all;
}

/** A fault test's outcome, as a diagnostic and on stdout: `# <scenario>: produced P, found F in O objects (missing 0, ...)`. */
export function reportExactlyOnce(
  t: TestContext,
  scenario: string,
  produced: number,
  check: ReturnType<typeof exactlyOnce>,
  objects: number,
) {
  const line =
    `${scenario}: produced ${produced}, found ${check.found} in ${objects} objects ` +
    `(missing ${check.missing}, duplicated ${check.duplicated}, unexpected ${check.unexpected}, overlapping objects ${check.overlaps.length})`;
  t.diagnostic(line);
  process.stdout.write(`# ${line}\n`);
}

/** A consumer group's committed offsets of a topic, by partition; -1 where none is committed. */
export async function committedOffsets(bootstrap: string, group: string, topic: string): Promise<Record<number, number>> {
  const admin = new KafkaJS.Kafka({ kafkaJS: { brokers: [bootstrap], logLevel: KafkaJS.logLevel.NOTHING } }).admin();
  await admin.connect();
  try {
    const [found] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return Object.fromEntries((found?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}

/**
 * The S3 sink connector's config for a topic, its dead-letter topic and a test S3 server's bucket,
 * as the tests and the bench run it (files closed 1 s after their first record); `settings` add or override.
 */
export function s3SinkConnector(
  topic: string,
  dlqTopic: string,
  s3: { endpoint: string; bucket: string },
  settings: Record<string, string> = {},
): Record<string, string> {
  return {
    'connector.class': connectorClass,
    'tasks.max': '1',
    topics: topic,
    'key.converter': 'org.apache.kafka.connect.converters.ByteArrayConverter',
    'value.converter': 'org.apache.kafka.connect.converters.ByteArrayConverter',
    'errors.tolerance': 'all',
    'errors.deadletterqueue.topic.name': dlqTopic,
    'errors.deadletterqueue.topic.replication.factor': '1',
    'errors.deadletterqueue.context.headers.enable': 'true',
    's3.bucket': s3.bucket,
    's3.endpoint': s3.endpoint,
    's3.force.path.style': 'true',
    's3.region': 'us-east-1',
    'file.max.age.seconds': '1',
    ...settings,
  };
}

/** A valid v1 reading whose window starts `minute` minutes after base; `tag` makes it unique. */
export function reading(minute: number, tag: string, base = Date.UTC(2026, 10, 27, 11, 0, 0)): string {
  const start = base + minute * 60_000;
  return JSON.stringify({
    schema_version: 1,
    window_start: new Date(start).toISOString(),
    window_end: new Date(start + 60_000).toISOString(),
    window_seconds: 60,
    node: 'test-node',
    pod: tag,
    namespace: 'test',
    host: { cores: 2, busy_percent: 10, user_percent: 6, system_percent: 3, iowait_percent: 1, steal_percent: 1, idle_percent: 89 },
    container: { cgroup_version: 2, cpu_percent: 5, cores_used: 0.025, limit_cores: 0.5, relative_to: 'limit' },
  });
}

/**
 * Reading i of a large cluster's backlog: node i % 1000, minute i / 1000 (an hour holds 60,000
 * readings, as 1,000 nodes make them), pod "r<i>" so that each is unique and can be found again.
 */
export function backlogReading(i: number, nodes = 1000): string {
  const start = Date.UTC(2026, 10, 27) + Math.floor(i / nodes) * 60_000;
  return JSON.stringify({
    schema_version: 1,
    window_start: new Date(start).toISOString(),
    window_end: new Date(start + 60_000).toISOString(),
    window_seconds: 60.001,
    node: `ip-10-0-${Math.floor((i % nodes) / 250)}-${i % 250}.eu-west-1.compute.internal`,
    pod: `r${i}`,
    namespace: 'cpu-pipeline',
    host: {
      cores: 4,
      busy_percent: (i % 97) + 0.5,
      user_percent: 1.1,
      system_percent: 2.2,
      iowait_percent: 0.1,
      steal_percent: 0,
      idle_percent: 50,
    },
    container: { cgroup_version: 2, cpu_percent: (i % 89) + 0.25, cores_used: 0.0125, limit_cores: 0.5, relative_to: 'limit' },
  });
}

/** Puts backlogReading(0 .. n-1) into a topic, keyed by node, as fast as the broker takes them. */
export async function produceBacklog(bootstrap: string, topic: string, n: number, nodes = 1000): Promise<void> {
  const producer = new KafkaJS.Kafka({ kafkaJS: { brokers: [bootstrap], logLevel: KafkaJS.logLevel.NOTHING } }).producer({
    kafkaJS: { idempotent: true, acks: -1 },
    'linger.ms': 20,
    'batch.size': 1_000_000,
    'queue.buffering.max.messages': 1_000_000,
  });
  await producer.connect();
  try {
    for (let i = 0; i < n; i += 5000) {
      const messages = Array.from({ length: Math.min(5000, n - i) }, (_, j) => ({
        key: `node-${(i + j) % nodes}`,
        value: backlogReading(i + j, nodes),
      }));
      await producer.send({ topic, messages });
    }
  } finally {
    await producer.disconnect();
  }
}

export function testS3Client(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    maxAttempts: 1,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test-secret' },
  });
}

export async function createBucket(endpoint: string, bucket: string): Promise<void> {
  await testS3Client(endpoint).send(new CreateBucketCommand({ Bucket: bucket }));
}

export interface StoredObject {
  key: string;
  metadata: Record<string, string>;
  lines: string[];
  contentEncoding?: string;
}

/** Every key under a prefix, in key order. */
async function listKeys(s3: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((c) => c.Key!));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

/** Every object under a prefix, read back and un-gzipped, in key order. */
export async function readObjects(endpoint: string, bucket: string, prefix = ''): Promise<StoredObject[]> {
  const s3 = testS3Client(endpoint);
  const out: StoredObject[] = [];
  for (const key of await listKeys(s3, bucket, prefix)) {
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    let body = Buffer.from(await res.Body!.transformToByteArray());
    if (key.endsWith('.gz')) body = gunzipSync(body);
    const text = body.toString('utf8');
    out.push({
      key,
      metadata: res.Metadata ?? {},
      lines: text === '' ? [] : text.replace(/\n$/, '').split('\n'),
      contentEncoding: res.ContentEncoding,
    });
  }
  return out;
}

/**
 * Copies every object of a bucket into `dir` as it is stored (still gzipped), each at its key as
 * a path, as `aws s3 sync` would; returns the keys.
 */
export async function downloadObjects(endpoint: string, bucket: string, dir: string): Promise<string[]> {
  const s3 = testS3Client(endpoint);
  const keys = await listKeys(s3, bucket);
  for (const key of keys) {
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    mkdirSync(dirname(join(dir, key)), { recursive: true });
    writeFileSync(join(dir, key), await res.Body!.transformToByteArray());
  }
  return keys;
}

/**
 * The exactly-once check: every expected line is in exactly one object, nothing else is there,
 * and per partition the objects' offset ranges (from their metadata) never overlap.
 */
export function exactlyOnce(
  objects: StoredObject[],
  expected: string[],
): { missing: number; duplicated: number; unexpected: number; overlaps: string[]; found: number } {
  const seen = new Map<string, number>();
  for (const o of objects) for (const l of o.lines) seen.set(l, (seen.get(l) ?? 0) + 1);
  const want = new Set(expected);
  let missing = 0;
  let duplicated = 0;
  for (const e of want) {
    const n = seen.get(e) ?? 0;
    if (n === 0) missing++;
    if (n > 1) duplicated += n - 1;
  }
  const unexpected = [...seen.keys()].filter((l) => !want.has(l)).length;
  const overlaps: string[] = [];
  const byPartition = new Map<string, StoredObject[]>();
  for (const o of objects) byPartition.set(o.metadata.partition, [...(byPartition.get(o.metadata.partition) ?? []), o]);
  for (const list of byPartition.values()) {
    list.sort((a, b) => Number(a.metadata['start-offset']) - Number(b.metadata['start-offset']));
    for (let i = 1; i < list.length; i++) {
      if (Number(list[i].metadata['start-offset']) <= Number(list[i - 1].metadata['end-offset']))
        overlaps.push(`${list[i - 1].key} / ${list[i].key}`);
    }
  }
  return { missing, duplicated, unexpected, overlaps, found: [...seen.values()].reduce((a, b) => a + b, 0) };
}

/** A fresh S3-compatible server and bucket for one test, removed after it. */
export async function s3ForTest(t: TestContext) {
  const s3 = await startS3();
  t.after(() => s3.destroy());
  const bucket = uniqueName('bucket').slice(0, 40);
  await createBucket(s3.endpoint, bucket);
  return { ...s3, bucket };
}

/**
 * One sink scenario: a new topic of `partitions` partitions on a broker (the shared one unless
 * given), a fresh S3-compatible server and bucket, and the env a sink needs for both (a new group).
 */
export async function sinkScenario(t: TestContext, opts: { partitions?: number; bootstrap?: string } = {}) {
  const bootstrap = opts.bootstrap ?? sharedKafka();
  const s3 = await s3ForTest(t);
  const topic = uniqueName('readings');
  await createTopic(bootstrap, topic, opts.partitions ?? 1);
  const env = {
    KAFKA_BROKERS: bootstrap,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP_ID: uniqueName('group'),
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: s3.bucket,
  };
  const objects = () => readObjects(s3.endpoint, s3.bucket);
  return {
    bootstrap,
    s3,
    topic,
    env,
    objects,
    /** sink.ts on this topic and bucket; `extra` adds or overrides settings. */
    sink: (extra: Record<string, string> = {}) => sink(t, { ...env, ...extra }),
    producer: () => testProducer(t, bootstrap),
    /** The objects once they hold at least n records in all. */
    objectsWith: (n: number, timeoutMs = 30_000) =>
      waitFor(
        `${n} records in S3`,
        async () => {
          const o = await objects();
          return o.reduce((sum, x) => sum + x.lines.length, 0) >= n && o;
        },
        timeoutMs,
      ),
  };
}

/** sink.ts as a process, pointed at a test S3 server (path-style, test credentials). */
export function sink(t: TestContext, env: Record<string, string>): Program {
  return runProgram(t, 'sink.ts', {
    HTTP_PORT: '0',
    S3_FORCE_PATH_STYLE: 'true',
    S3_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test-secret',
    FILE_MAX_AGE_SECONDS: '1',
    ...env,
  });
}

// ---------------------------------------------------------------- a real memory limit

/** A program's container as k8s/base deploys it: its args (node, V8 flags, bundle) and memory limit. */
export function deployedContainer(program: 'sampler' | 'sink'): { args: string[]; limitBytes: number } {
  const yaml = execFileSync('kubectl', ['kustomize', 'k8s/base'], { cwd: root, encoding: 'utf8' });
  const workload = parseAllDocuments(yaml)
    .map((d) => d.toJS())
    .find((o) => /^(Deployment|DaemonSet)$/.test(o.kind) && o.metadata.name === `cpu-${program}`);
  const container = workload.spec.template.spec.containers[0];
  const m = /^(\d+)(Mi|Gi)$/.exec(String(container.resources.limits.memory));
  if (!m) throw new Error(`cannot read the ${program}'s memory limit ${container.resources.limits.memory}`);
  return { args: container.args as string[], limitBytes: Number(m[1]) * (m[2] === 'Gi' ? 2 ** 30 : 2 ** 20) };
}

export interface MemoryCgroup {
  kind: 'v1' | 'v2';
  /** argv that runs the command inside the cgroup (it joins before exec). */
  wrap(argv: string[]): string[];
  /** The most memory the cgroup has used (RSS and page cache), in bytes. */
  peakBytes(): number;
  /** How many processes the kernel's OOM killer killed in it. */
  oomKills(): number;
}

/**
 * A new memory cgroup limited to `limitBytes`, without swap (v2 when the machine runs cgroup v2
 * with the memory controller, v1 otherwise), removed after the test. Needs root: without it this
 * throws, so a test that needs a real limit fails instead of passing without one.
 */
export function memoryCgroup(t: TestContext, limitBytes: number): MemoryCgroup {
  if (process.getuid?.() !== 0) throw new Error('a memory cgroup needs root');
  const name = uniqueName('cpu-pipeline-mem');
  const v2 =
    existsSync('/sys/fs/cgroup/cgroup.controllers') && readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').includes('memory');
  const dir = v2 ? join('/sys/fs/cgroup', name) : join('/sys/fs/cgroup/memory', name);
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  if (v2) writeFileSync('/sys/fs/cgroup/cgroup.subtree_control', '+memory');
  mkdirSync(dir);
  t.after(() => {
    try {
      rmdirSync(dir);
    } catch {
      /* still busy: the kernel removes it when empty */
    }
  });
  if (v2) {
    writeFileSync(join(dir, 'memory.max'), String(limitBytes));
    writeFileSync(join(dir, 'memory.swap.max'), '0');
  } else {
    writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limitBytes));
    writeFileSync(join(dir, 'memory.swappiness'), '0');
  }
  return {
    kind: v2 ? 'v2' : 'v1',
    wrap: (argv) => ['sh', '-c', `echo $$ > ${join(dir, 'cgroup.procs')} && exec "$@"`, 'sh', ...argv],
    peakBytes: () =>
      Number(
        (v2
          ? existsSync(join(dir, 'memory.peak'))
            ? read('memory.peak')
            : read('memory.current')
          : read('memory.max_usage_in_bytes')
        ).trim(),
      ),
    oomKills: () => Number(/^oom_kill (\d+)/m.exec(read(v2 ? 'memory.events' : 'memory.oom_control'))?.[1] ?? NaN),
  };
}

/** `helm template` arguments for the chart with what it requires (image, the sink's IAM role) and `--set` values. */
export const chartTemplateArgs = (values: string[] = []) =>
  [
    'template',
    'cpu-pipeline',
    'chart',
    '--set',
    'image.repository=123456789012.dkr.ecr.eu-west-1.amazonaws.com/cpu-pipeline',
    '--set',
    'irsa.roleArn=arn:aws:iam::123456789012:role/cpu-pipeline-sink',
  ].concat(values.flatMap((v) => ['--set', v]));

/**
 * An overlay with the connect component (Kafka Connect instead of cpu-sink) added to its own
 * `components:`, as a user turns it on, in a copy of k8s/ under `dir`; returns the overlay's path
 * there. With the local overlay, also what that overlay gives cpu-sink and the worker needs as
 * well: the local S3 server's credentials, and the way to it through the NetworkPolicies
 * (test/e2e/connect.e2e.ts deploys it; test/integration/connect-manifests.test.ts checks it).
 */
export function overlayWithConnect(dir: string, overlay: 'local' | 'eks'): string {
  cpSync(join(root, 'k8s'), join(dir, 'k8s'), { recursive: true });
  const at = join(dir, 'k8s', 'overlays', overlay);
  const file = join(at, 'kustomization.yaml');
  const kustomization = parseDocument(readFileSync(file, 'utf8')).toJS() as { components?: string[]; patches?: unknown[] };
  kustomization.components = [...(kustomization.components ?? []), '../../components/connect'];
  if (overlay === 'local') {
    const toS3 = { 'app.kubernetes.io/name': 's3', 'app.kubernetes.io/part-of': 'cpu-pipeline' };
    const fromConnect = { 'app.kubernetes.io/name': 'cpu-connect', 'app.kubernetes.io/part-of': 'cpu-pipeline' };
    kustomization.patches = [
      ...(kustomization.patches ?? []),
      {
        target: { kind: 'Deployment', name: 'cpu-connect' },
        patch: stringify([
          { op: 'add', path: '/spec/template/spec/containers/0/envFrom', value: [{ secretRef: { name: 'local-s3-credentials' } }] },
        ]),
      },
      {
        target: { kind: 'NetworkPolicy', name: 'cpu-connect' },
        patch: stringify([
          {
            op: 'add',
            path: '/spec/egress/-',
            value: { to: [{ podSelector: { matchLabels: toS3 } }], ports: [{ protocol: 'TCP', port: 5000 }] },
          },
        ]),
      },
      {
        target: { kind: 'NetworkPolicy', name: 's3' },
        patch: stringify([{ op: 'add', path: '/spec/ingress/0/from/-', value: { podSelector: { matchLabels: fromConnect } } }]),
      },
    ];
  }
  writeFileSync(file, stringify(kustomization));
  return at;
}

/**
 * The ACLs the broker's start script sets with the kafka-auth component (k8s/base/kafka: its `acl`
 * calls), each as the arguments of kafka-acls.sh after --allow-principal: the user, then the
 * operations and the resource. `vars` expands the script's "$ACL_*" words (the broker reads them
 * from cpu-kafka-topics).
 */
export function brokerAcls(script: string, vars: Record<string, string>): string[][] {
  const expand = (word: string) => word.replace(/^"?\$\{?(\w+)\}?"?$/, (_, v: string) => vars[v] ?? `<unset ${v}>`);
  return script
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('acl '))
    .map((l) =>
      l
        .split(/\s+/)
        .slice(1)
        .filter((w) => w !== '&&' && w !== '||')
        .map(expand),
    );
}

// ---------------------------------------------------------------- npm start, and a pod on this machine

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });

/** `npm start [-- args]` in a process group of its own, on free ports; its output collected. */
export async function npmStart(t: TestContext, args: string[], extraPorts: string[] = [], env: Record<string, string> = {}) {
  const ports: Record<string, number> = {
    KAFKA_PORT: await freePort(),
    KAFKA_CONTROLLER_PORT: await freePort(),
    S3_PORT: await freePort(),
    SAMPLER_HTTP_PORT: await freePort(),
    SINK_HTTP_PORT: await freePort(),
  };
  for (const name of extraPorts) ports[name] = await freePort();
  const proc = spawn('npm', ['start', ...args], {
    cwd: root,
    env: {
      ...process.env,
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      SAMPLE_INTERVAL_SECONDS: '2',
      FILE_MAX_AGE_SECONDS: '4',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, like a terminal's foreground job
  });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const exited = once(proc, 'exit');
  t.after(() => {
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  });
  /** Ctrl-C as a terminal sends it; then every port it opened must be closed. */
  const ctrlC = async () => {
    process.kill(-proc.pid!, 'SIGINT');
    const [code, signal] = await exited;
    // npm itself dies of the SIGINT at once; the pipeline script carries on stopping in order.
    assert.ok(code === 0 || signal === 'SIGINT', `npm exited with ${code ?? signal}`);
    await waitFor('the orderly stop to finish', () => out.includes('[dev] stopped; nothing left running'), 60_000);
    assert.match(out, /\[dev\] stopping: sampler and sink flush first, then S3 and Kafka/);
    for (const [name, port] of Object.entries(ports)) {
      if (name === 'KAFKA_CONTROLLER_PORT') continue;
      assert.ok(await refused(port), `${name} ${port} still answers after Ctrl-C`);
    }
  };
  return { ports, output: () => out, ctrlC };
}

const cgroupMount = '/sys/fs/cgroup';
const quarterCore = { quotaUs: 25_000, periodUs: 100_000 };

/**
 * A pod cgroup with a CPU limit of a quarter core, in the hierarchies this machine has, with a
 * process in it that would use a whole core; both gone after the test (the process first: the
 * kernel keeps a cgroup that has one). Returns the pod's UID and cgroup version.
 */
export function busyPod(t: TestContext): { uid: string; version: 1 | 2 } {
  if (process.getuid?.() !== 0) throw new Error('a cgroup of its own needs root');
  const uid = randomUUID();
  const top = uniqueName('cpu-pipeline-pods');
  const parts = [top, 'kubepods', 'burstable', `pod${uid}`];
  const v2 = existsSync(join(cgroupMount, 'cgroup.controllers'));
  const hierarchies = v2 ? [cgroupMount] : [join(cgroupMount, 'cpu'), join(cgroupMount, 'cpuacct')];
  const made = hierarchies.flatMap((h) => parts.map((_, i) => join(h, ...parts.slice(0, i + 1))));
  for (const d of made) mkdirSync(d, { recursive: true });
  const pod = (h: string) => join(h, ...parts);
  if (v2) {
    // The cpu controller enabled down to the pod, as the kubelet does.
    for (let i = 0; i < parts.length; i++) writeFileSync(join(cgroupMount, ...parts.slice(0, i), 'cgroup.subtree_control'), '+cpu');
    writeFileSync(join(pod(cgroupMount), 'cpu.max'), `${quarterCore.quotaUs} ${quarterCore.periodUs}`);
  } else {
    writeFileSync(join(pod(hierarchies[0]), 'cpu.cfs_period_us'), String(quarterCore.periodUs));
    writeFileSync(join(pod(hierarchies[0]), 'cpu.cfs_quota_us'), String(quarterCore.quotaUs));
  }
  const enter = hierarchies.map((h) => `echo $$ > ${join(pod(h), 'cgroup.procs')}`).join(' && ');
  const busy = spawn('sh', ['-c', `${enter} && exec "$@"`, 'sh', process.execPath, '-e', 'for (;;) {}'], { stdio: 'ignore' });
  t.after(async () => {
    busy.kill('SIGKILL');
    await once(busy, 'exit').catch(() => {});
    for (const d of made.reverse()) rmdirSync(d);
  });
  return { uid, version: v2 ? 2 : 1 };
}
