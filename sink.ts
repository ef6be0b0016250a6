/**
 * sink.ts: the readings topic into S3, as newline-delimited JSON files, every record exactly once,
 * in a memory bound that follows from the settings, whatever the backlog.
 *
 * Why: a reading lost or written twice makes every sum over the bucket wrong, and sinks die at
 * any instant (OOM kill, node drain, S3 or Kafka outage). So the files are named after the data
 * they hold and written with a conditional PUT, which makes a replay after a crash harmless. And a
 * sink that has been away for hours must catch up inside its own memory limit, or it never does.
 *
 * How (the exactly-once design, after Confluent's S3 sink and Secor):
 *   - One open file per Kafka partition. A file holds a contiguous run of that partition's
 *     offsets whose readings fall in one hour (by window_start), so its key is a function of
 *     the data: <prefix>/dt=YYYY-MM-DD/hour=HH/<topic>+<partition>+<startOffset>.jsonl.gz.
 *     A reading of another hour closes the file first (late readings get their own files).
 *   - A file is closed by record count, byte size or age (a timer, so quiet topics flush too), and
 *     early when the memory budget is full (then the largest open file goes first).
 *   - Upload with If-None-Match: * and the end offset in the object's metadata. 200: the file is
 *     in S3. 412: the key exists, written by an earlier life of this partition (crash before
 *     commit) or by another instance during a rebalance; it starts at the same offset (files
 *     start where the committed offset points, or right after another file), so read its end
 *     offset, drop every record up to it, and write the rest as the next file. That is also why a
 *     partition's files are written one after the other: a 412 moves where the next file starts.
 *   - Offsets are committed only up to the first record still held (in a file not yet in S3, or a
 *     dead letter not yet confirmed); never auto-committed. On restart or rebalance, what was held
 *     is dropped and rebuilt from the committed offset.
 *   - A record that is not JSON, has a key twice, is not an object, has another schema_version,
 *     fails the schema or is too big goes to the dead-letter topic with its original bytes and the
 *     reason in headers; its offset is committed only once that write is confirmed (at-least-once).
 *
 * Memory and speed: readings are held once, as the bytes of their file (no object per record), and
 * everything held (open files, files waiting for or in upload, dead letters not yet confirmed)
 * counts against BUFFER_MAX_BYTES. At that bound the partitions are paused (librdkafka then stops
 * fetching and drops what it prefetched; on resume it fetches again from the next record) until
 * S3 has taken enough: backpressure, never buffering without end. librdkafka's own prefetch is
 * bounded by queued.max.messages.kbytes plus one fetch (fetch.max.bytes). Files are gzipped in
 * libuv's thread pool as soon as they close, while the next one fills; UPLOADS_MAX partitions
 * upload at once. The consumer is the client's librdkafka-style API: the KafkaJS-style one keeps
 * its own cache of about 1.5 s of messages as objects, 600-700 MB in a catch-up (bench/).
 *
 * Environment (defaults in brackets):
 *   KAFKA_BROKERS [localhost:9092], KAFKA_TOPIC [cpu-levels], KAFKA_CLIENT_ID [cpu-sink],
 *   KAFKA_GROUP_ID [cpu-sink]             consumer group; one sink per partition scales out
 *   KAFKA_DLQ_TOPIC [<topic>-dlq]         dead-letter topic
 *   KAFKA_CONFIG_<PROPERTY>               any librdkafka property (see sampler.ts); each client gets
 *                                         the ones of its kind (consumer, producer)
 *   S3_BUCKET [elementor-data-candidates-bucket], S3_PREFIX [cpu-levels],
 *   S3_REGION [$AWS_REGION or eu-west-1], S3_ENDPOINT [AWS], S3_FORCE_PATH_STYLE [false]
 *   S3_REQUEST_TIMEOUT_SECONDS [30]       per S3 request
 *   FILE_GZIP [true]                      gzip the files (.jsonl.gz), or not (.jsonl)
 *   FILE_MAX_RECORDS [10000], FILE_MAX_BYTES [8388608], FILE_MAX_AGE_SECONDS [300]
 *   BUFFER_MAX_BYTES [33554432]           bytes held in memory across all partitions (see above)
 *   UPLOADS_MAX [4]                       uploads in flight at once (one per partition at most)
 *   RECORD_MAX_BYTES [65536]              larger records are dead-lettered
 *   GROUP_REJOIN_TIMEOUT_SECONDS [120]    after partitions are revoked, how long to wait for the group
 *                                         to assign again before exiting for a restart (see below)
 *   HTTP_PORT [8080], SHUTDOWN_TIMEOUT_SECONDS [20], LOG_LEVEL [info]
 *   Credentials: the AWS SDK default chain (IRSA web identity, EKS Pod Identity, AWS_ACCESS_KEY_ID/
 *   AWS_SECRET_ACCESS_KEY, shared config, instance profile); nothing here reads keys itself.
 *
 * Crash-only recovery: if the consumer loses its group and is not given partitions again within
 * GROUP_REJOIN_TIMEOUT_SECONDS, the sink exits 1 so that Kubernetes restarts it; nothing it held
 * was committed, so nothing is lost.
 *
 * Run: `npx tsx sink.ts` (or `npm run sink`). Bad settings: named message, exit 2. SIGTERM/SIGINT:
 * stop consuming, upload open files, commit, disconnect, exit 0 (1 if some could not be uploaded in
 * time: they were not committed, so the next sink writes them).
 */
import { once } from 'node:events';
import { pathToFileURL } from 'node:url';
import { createGzip } from 'node:zlib';
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import Kafka, { type KafkaJS, type LibrdKafkaError, type Message } from '@confluentinc/kafka-javascript';
import { Ajv2020 } from 'ajv/dist/2020.js';
import ajvFormats from 'ajv-formats';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import schema from './schema/cpu-reading.v1.schema.json' with { type: 'json' };
import podSchema from './schema/cpu-pod-reading.v1.schema.json' with { type: 'json' };
// prettier-ignore
import {
  anyBrokerReachable, checkBrokers, checkKafkaConf, checkPassthrough, checkTopic, configOrExit, connectWithRetry, envReader, KafkaAccess,
  kafkaClient, kafkaPassthrough, logger, metricsRegistry, propertiesFor, splitTopicConf, startRuntime, throwIf, type CommonConfig, type Logger, type Runtime
} from './lib/runtime.ts';

// ---------------------------------------------------------------- configuration

export interface SinkConfig extends CommonConfig {
  groupId: string;
  dlqTopic: string;
  bucket: string;
  prefix: string;
  region: string;
  endpoint: string | undefined;
  forcePathStyle: boolean;
  requestTimeoutMs: number;
  gzip: boolean;
  maxRecords: number;
  maxBytes: number;
  maxAgeMs: number;
  bufferMaxBytes: number;
  uploadsMax: number;
  recordMaxBytes: number;
  rejoinTimeoutMs: number;
}

const bool = (v: string) => (/^(true|false|1|0|yes|no)$/i.test(v) ? undefined : 'true or false');
const isTrue = (v: string) => /^(true|1|yes)$/i.test(v);

/** Every setting, parsed and checked in one place. Throws one ConfigError naming each bad one. */
export function loadConfig(env: Record<string, string | undefined> = process.env): SinkConfig {
  const e = envReader(env);
  const { props, source } = kafkaPassthrough(env);
  e.problems.push(...checkPassthrough(source, env));
  const topic = e.string('KAFKA_TOPIC', 'cpu-levels', checkTopic);
  const endpoint = e.string('S3_ENDPOINT', '', checkUrl);
  const checkRegion = (v: string) => (/^[a-z]{2}(-[a-z]+)+-\d+$/.test(v) ? undefined : 'an AWS region such as eu-west-1');
  // The SDK's own AWS_REGION is honoured when S3_REGION is not set; a bad one is reported by its name.
  const regionVar = env.S3_REGION === undefined && env.AWS_REGION?.trim() ? 'AWS_REGION' : 'S3_REGION';
  const config: SinkConfig = {
    brokers: e.string('KAFKA_BROKERS', 'localhost:9092', checkBrokers),
    topic,
    clientId: e.string('KAFKA_CLIENT_ID', 'cpu-sink', (v) => (v ? undefined : 'a non-empty client id')),
    groupId: e.string('KAFKA_GROUP_ID', 'cpu-sink', (v) => (v ? undefined : 'a non-empty consumer group id')),
    // Derived from a bad KAFKA_TOPIC, the default would only repeat that error: check what was set.
    dlqTopic: e.string('KAFKA_DLQ_TOPIC', `${topic}-dlq`, (v) =>
      env.KAFKA_DLQ_TOPIC === undefined && checkTopic(topic)
        ? undefined
        : (checkTopic(v) ?? (v === topic ? 'a topic other than KAFKA_TOPIC' : undefined)),
    ),
    passthrough: props,
    passthroughSource: source,
    // S3 bucket naming rules: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit.
    bucket: e.string('S3_BUCKET', 'elementor-data-candidates-bucket', (v) =>
      /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(v) ? undefined : 'an S3 bucket name (3-63 of a-z 0-9 . -)',
    ),
    prefix: e.string('S3_PREFIX', 'cpu-levels', (v) =>
      /^[^/].*[^/]$|^[^/]$|^$/.test(v) ? undefined : 'a key prefix without leading or trailing /',
    ),
    region: e.string(regionVar, 'eu-west-1', checkRegion),
    endpoint: endpoint || undefined,
    forcePathStyle: isTrue(e.string('S3_FORCE_PATH_STYLE', 'false', bool)),
    requestTimeoutMs: 1000 * e.number('S3_REQUEST_TIMEOUT_SECONDS', 30, { min: 1, max: 600, unit: 'seconds' }),
    gzip: isTrue(e.string('FILE_GZIP', 'true', bool)),
    maxRecords: e.number('FILE_MAX_RECORDS', 10_000, { min: 1, max: 10_000_000, integer: true }),
    maxBytes: e.number('FILE_MAX_BYTES', 8 * 2 ** 20, { min: 1024, max: 4 * 2 ** 30, integer: true }),
    maxAgeMs: 1000 * e.number('FILE_MAX_AGE_SECONDS', 300, { min: 1, max: 86_400, unit: 'seconds' }),
    bufferMaxBytes: e.number('BUFFER_MAX_BYTES', 32 * 2 ** 20, { min: 1024, max: 16 * 2 ** 30, integer: true }),
    uploadsMax: e.number('UPLOADS_MAX', 4, { min: 1, max: 64, integer: true }),
    recordMaxBytes: e.number('RECORD_MAX_BYTES', 65_536, { min: 64, max: 100 * 2 ** 20, integer: true }),
    rejoinTimeoutMs: 1000 * e.number('GROUP_REJOIN_TIMEOUT_SECONDS', 120, { min: 5, max: 3600, unit: 'seconds' }),
    httpPort: e.number('HTTP_PORT', 8080, { min: 0, max: 65_535, integer: true }),
    shutdownMs: 1000 * e.number('SHUTDOWN_TIMEOUT_SECONDS', 20, { min: 1, max: 3600, unit: 'seconds' }),
    logLevel: e.choice('LOG_LEVEL', 'info', ['debug', 'info', 'warn', 'error'] as const),
  };
  if (config.bufferMaxBytes < config.maxBytes) {
    e.problems.push(
      `BUFFER_MAX_BYTES=${JSON.stringify(String(config.bufferMaxBytes))}: expected at least FILE_MAX_BYTES (${config.maxBytes}), or a full file could never be held`,
    );
  }
  e.done();
  return config;
}

export function checkUrl(v: string): string | undefined {
  if (v === '') return undefined;
  try {
    const u = new URL(v);
    if ((u.protocol === 'http:' || u.protocol === 'https:') && u.hostname && v.trim() === v && !/\s/.test(v)) return undefined;
  } catch {
    /* not a URL */
  }
  return 'an http(s):// URL such as http://127.0.0.1:9000';
}

/**
 * The consumer's librdkafka settings: the sink's own, then the KAFKA_CONFIG_* ones of a consumer,
 * which may override them. The fetch queue is kept small (8 MiB, one fetch of at most 8 MiB over
 * it) and refilled without librdkafka's default 1 s pause when it was full: a small queue that is
 * never left empty is as fast as a large one (bench/) and bounds what librdkafka holds.
 */
export function consumerConf(config: SinkConfig): Record<string, string | number | boolean> {
  return {
    'bootstrap.servers': config.brokers,
    'client.id': config.clientId,
    'group.id': config.groupId,
    'enable.auto.commit': false,
    'auto.offset.reset': 'earliest',
    'queued.max.messages.kbytes': 8192,
    'fetch.max.bytes': 8 * 2 ** 20,
    'fetch.queue.backoff.ms': 10,
    // A topic made after the sink subscribed (the topic Job runs beside it, or after it as a Helm
    // hook) is found at the next metadata refresh: every 10 s instead of librdkafka's 5 minutes.
    'topic.metadata.refresh.interval.ms': 10_000,
    ...propertiesFor('consumer', config.passthrough),
  };
}

/** What librdkafka says of the consumer's and the dead-letter producer's settings, before any connection. */
function kafkaProblem(config: SinkConfig): string | undefined {
  const producer = { ...propertiesFor('producer', config.passthrough), 'enable.idempotence': true };
  return (
    checkKafkaConf('consumer', consumerConf(config), config.passthroughSource) ??
    checkKafkaConf('producer', producer, config.passthroughSource)
  );
}

/** The settings worth a line in the log at start (no credentials: the sink reads none). */
function settingsToLog(c: SinkConfig) {
  return {
    brokers: c.brokers,
    topic: c.topic,
    group: c.groupId,
    dlq_topic: c.dlqTopic,
    bucket: c.bucket,
    prefix: c.prefix,
    region: c.region,
    endpoint: c.endpoint ?? null,
    gzip: c.gzip,
    max_records: c.maxRecords,
    max_bytes: c.maxBytes,
    max_age_seconds: c.maxAgeMs / 1000,
    buffer_max_bytes: c.bufferMaxBytes,
    uploads_max: c.uploadsMax,
    memory_bound_bytes: memoryBound(c),
  };
}

/**
 * The most memory the sink should need with these settings, in bytes: the runtime itself (Node,
 * V8's heap, the Kafka client and the AWS SDK: 160 MiB, measured with margin in bench/), librdkafka's
 * fetch queue and one fetch over it (twice their bytes: librdkafka keeps about as much again per
 * message of 500 bytes), everything held (BUFFER_MAX_BYTES), and a gzipped copy of what is held
 * (a fifth of it, gzip takes JSON readings to under a tenth). The README shows the sum at the defaults.
 */
export function memoryBound(config: SinkConfig): number {
  const conf = consumerConf(config);
  const fetchQueue = Number(conf['queued.max.messages.kbytes']) * 1024 + Number(conf['fetch.max.bytes']);
  return Math.ceil(160 * 2 ** 20 + 2 * fetchQueue + config.bufferMaxBytes * (config.gzip ? 1.2 : 1));
}

// ---------------------------------------------------------------- records

const ajv = new Ajv2020({ allErrors: false, strict: true });
ajvFormats.default(ajv);
const validReading = ajv.compile(schema);
const validPodReading = ajv.compile(podSchema);
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export const deadLetterReasons = ['empty', 'oversize', 'not-json', 'duplicate-key', 'not-object', 'schema-version', 'schema'] as const;
export type DeadLetterReason = (typeof deadLetterReasons)[number];

export type Checked =
  | { ok: true; windowStart: string; hour: string; line: Buffer; node: string; windowSeconds: number }
  | { ok: false; reason: DeadLetterReason; detail: string };

/**
 * Object members in JSON text: each ':' outside a string is one (the text must be valid JSON).
 * Fewer members after JSON.parse than in the text means a key was given twice.
 */
export function membersInText(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 58 /* : */) n++;
    else if (c === 34 /* " */) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 92 /* \ */) i++;
        else if (d === 34) break;
      }
    }
  }
  return n;
}

function membersParsed(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  let n = Array.isArray(value) ? 0 : Object.keys(value).length;
  for (const v of Object.values(value)) n += membersParsed(v);
  return n;
}

const kindOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`);

/**
 * Decides whether a record can go into a file, and if not, why (the dead-letter reason).
 * A key given twice is rejected, not resolved: JSON leaves the meaning of duplicates open (RFC 8259
 * 4), JSON.parse keeps the last and other readers the first, and the file keeps the original bytes,
 * so any choice here could file a reading under a time or version that a reader of S3 does not see.
 */
export function checkRecord(value: Buffer | null, maxBytes: number): Checked {
  if (!value || value.length === 0) return { ok: false, reason: 'empty', detail: 'no value' };
  if (value.length > maxBytes) return { ok: false, reason: 'oversize', detail: `${value.length} bytes > ${maxBytes}` };
  let text: string;
  let parsed: unknown;
  try {
    text = utf8.decode(value);
  } catch {
    return { ok: false, reason: 'not-json', detail: 'not valid UTF-8' };
  }
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: 'not-json', detail: (err as Error).message };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { ok: false, reason: 'not-object', detail: `the record is ${kindOf(parsed)}, not a JSON object` };
  }
  if (membersInText(text) !== membersParsed(parsed)) {
    return { ok: false, reason: 'duplicate-key', detail: 'a key is given twice in one object' };
  }
  const version = (parsed as { schema_version?: unknown }).schema_version;
  if (version !== 1) return { ok: false, reason: 'schema-version', detail: `schema_version ${JSON.stringify(version)} is not 1` };
  // A node's reading has no kind; a pod's says so (schema/cpu-pod-reading.v1.schema.json).
  const valid = (parsed as { kind?: unknown }).kind === 'pod' ? validPodReading : validReading;
  if (!valid(parsed)) {
    const e = valid.errors?.[0];
    return { ok: false, reason: 'schema', detail: `${e?.instancePath || '/'} ${e?.message ?? 'invalid'}` };
  }
  const {
    window_start: windowStart,
    node,
    window_seconds: windowSeconds,
  } = parsed as { window_start: string; node: string; window_seconds: number };
  const hour = timePartition(windowStart);
  if (!hour) return { ok: false, reason: 'schema', detail: `/window_start ${windowStart} is not an RFC 3339 time` };
  // One record per line: a pretty-printed record is written compact (same JSON, other whitespace).
  const line = value.includes(10) || value.includes(13) ? Buffer.from(JSON.stringify(parsed)) : value;
  return { ok: true, windowStart, hour, line, node, windowSeconds };
}

const rfc3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/**
 * Hive-style time partition of a reading, by its own window_start (UTC), not by arrival.
 * Read from the text, not through Date: every RFC 3339 time the schema accepts has a place,
 * including a leap second (23:59:60 is in hour 23) and years a Date mangles (0000-0099).
 */
export function timePartition(windowStart: string): string | undefined {
  const m = rfc3339.exec(windowStart);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, , sign, oh, om] = m;
  if (!sign) return `dt=${y}-${mo}-${d}/hour=${h}`;
  const t = new Date(0);
  t.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
  t.setUTCHours(Number(h), Number(mi) - (sign === '+' ? 1 : -1) * (Number(oh) * 60 + Number(om)));
  const iso = t.toISOString(); // ...THH:mm:ss.sssZ: a year beyond 0000-9999 has a sign and six digits
  return `dt=${iso.slice(0, -14)}/hour=${iso.slice(-13, -11)}`;
}

/** The object key of a file: a function of its data only, so a replay lands on the same key. */
export function objectKey(prefix: string, hour: string, topic: string, partition: number, startOffset: number, gzip: boolean): string {
  const name = `${topic}+${partition}+${String(startOffset).padStart(10, '0')}.jsonl${gzip ? '.gz' : ''}`;
  return [prefix, hour, name].filter(Boolean).join('/');
}

// ---------------------------------------------------------------- files: the exactly-once core

export interface Limits {
  maxRecords: number;
  maxBytes: number;
  maxAgeMs: number;
}

/**
 * One file: a contiguous run of one partition's offsets within one hour. Held as the bytes of its
 * body (each line and its newline, exactly as produced) in a few chunks that double from 16 KiB
 * to 1 MiB, plus each line's offset and end: no object per record, so what is held is what counts.
 */
export class FileData {
  #offsets: number[] = [];
  #ends: number[] = []; // where each line ends in the body, its newline included
  #chunks: Buffer[] = [];
  #used = 0; // bytes used in the last chunk
  bytes = 0;
  /** The body as it will be uploaded, started when the file is closed (see encodeFile). */
  encoded: Promise<Buffer> | undefined;

  readonly hour: string;
  readonly openedAt: number;

  constructor(hour: string, openedAt: number) {
    this.hour = hour;
    this.openedAt = openedAt;
  }

  get records(): number {
    return this.#offsets.length;
  }
  get first(): number | undefined {
    return this.#offsets[0];
  }
  get last(): number | undefined {
    return this.#offsets.at(-1);
  }

  append(offset: number, line: Buffer): void {
    const size = line.length + 1;
    let chunk = this.#chunks.at(-1);
    if (!chunk || chunk.length - this.#used < size) {
      if (chunk) this.#chunks[this.#chunks.length - 1] = chunk.subarray(0, this.#used);
      chunk = Buffer.allocUnsafe(Math.max(size, Math.min(2 ** 20, 16_384 * 2 ** this.#chunks.length)));
      this.#chunks.push(chunk);
      this.#used = 0;
    }
    line.copy(chunk, this.#used);
    chunk[this.#used + line.length] = 10;
    this.#used += size;
    this.bytes += size;
    this.#offsets.push(offset);
    this.#ends.push(this.bytes);
  }

  /** The body: every line appended, each followed by a newline. */
  body(): Buffer[] {
    return this.#chunks.map((c, i) => (i === this.#chunks.length - 1 ? c.subarray(0, this.#used) : c));
  }

  /** The records above `offset` as a file of their own (this one if that is all of them), or undefined. */
  after(offset: number): FileData | undefined {
    const i = this.#offsets.findIndex((o) => o > offset);
    if (i <= 0) return i === 0 ? this : undefined;
    const rest = new FileData(this.hour, this.openedAt);
    const all = Buffer.concat(this.body());
    for (let j = i; j < this.#offsets.length; j++) rest.append(this.#offsets[j], all.subarray(this.#ends[j - 1], this.#ends[j] - 1));
    return rest;
  }
}

/** Why a file must be closed now, or undefined. Age is measured from its first record. */
export function rotationDue(file: FileData, nowMs: number, limits: Limits): 'records' | 'bytes' | 'age' | undefined {
  if (file.records >= limits.maxRecords) return 'records';
  if (file.bytes >= limits.maxBytes) return 'bytes';
  if (nowMs - file.openedAt >= limits.maxAgeMs) return 'age';
  return undefined;
}

/** The object body: the lines as they were appended, gzipped in libuv's thread pool, or as they are. */
export async function encodeFile(file: FileData, gzip: boolean): Promise<Buffer> {
  const body = file.body();
  if (!gzip) return Buffer.concat(body);
  const zip = createGzip();
  const out: Buffer[] = [];
  zip.on('data', (b: Buffer) => out.push(b));
  const ended = once(zip, 'end');
  for (const chunk of body) zip.write(chunk);
  zip.end();
  await ended;
  return Buffer.concat(out);
}

/**
 * Everything one sink holds for one partition, and the rules that keep it exactly-once: records
 * enter the open file in offset order; a file closes by records, bytes, age or a change of hour;
 * closed files go to S3 oldest first, one at a time; an object that turns out to exist already
 * drops what it holds, here and in what is still to come; and the group may only start again
 * from the first record that is not yet safe. No Kafka and no S3 here: main() does the I/O.
 */
export class PartitionFiles {
  open: FileData | undefined;
  /** Closed files, oldest first; closed[0] is the next (or the current) upload. */
  readonly closed: FileData[] = [];
  /** Offsets whose dead-letter write is not confirmed yet, ascending. */
  readonly deadLetters: number[] = [];
  /** The highest offset that is held here, dead-lettered, or known to be in S3. */
  handled = -1;
  /** Offsets up to this one are in an object in S3 already (learnt from a 412). */
  skipThrough = -1;
  /** Bytes held: open and closed files, dead letters not yet confirmed. */
  heldBytes = 0;

  readonly partition: number;
  readonly #limits: Limits;

  constructor(partition: number, limits: Limits) {
    this.partition = partition;
    this.#limits = limits;
  }

  /** True when an object in S3 already holds this record: it is handled, nothing is held. */
  inS3(offset: number): boolean {
    if (offset > this.skipThrough) return false;
    this.handled = Math.max(this.handled, offset);
    return true;
  }

  /** Adds a record to the open file; returns the files this closed (on a change of hour, when full). */
  add(offset: number, hour: string, line: Buffer, nowMs: number): FileData[] {
    const closed: FileData[] = [];
    if (this.open && this.open.hour !== hour) closed.push(this.close()!);
    this.open ??= new FileData(hour, nowMs);
    this.open.append(offset, line);
    this.heldBytes += line.length + 1;
    this.handled = offset;
    const due = rotationDue(this.open, nowMs, this.#limits);
    if (due === 'records' || due === 'bytes') closed.push(this.close()!);
    return closed;
  }

  /** Closes the open file when its age says so (a quiet partition flushes too). */
  closeIfOld(nowMs: number): FileData | undefined {
    return this.open && rotationDue(this.open, nowMs, this.#limits) ? this.close() : undefined;
  }

  close(): FileData | undefined {
    const file = this.open;
    if (file) this.closed.push(file);
    this.open = undefined;
    return file;
  }

  /** A record on its way to the dead-letter topic: not safe to commit past until confirmed. */
  deadLetter(offset: number, bytes: number): void {
    this.deadLetters.push(offset);
    this.heldBytes += bytes;
    this.handled = offset;
  }

  deadLettered(offset: number, bytes: number): void {
    const i = this.deadLetters.indexOf(offset);
    if (i < 0) return;
    this.deadLetters.splice(i, 1);
    this.heldBytes -= bytes;
  }

  /** closed[0] is in S3 now. */
  written(file: FileData): void {
    if (this.closed[0] !== file) throw new Error(`partition ${this.partition}: the file written is not the oldest one`);
    this.closed.shift();
    this.heldBytes -= file.bytes;
  }

  /**
   * An object in S3 already holds this partition's offsets up to endOffset (the key of closed[0]
   * existed): drops those records here, in every later file, and in all that is still to come.
   * Returns how many records were dropped.
   */
  presentThrough(endOffset: number): number {
    this.skipThrough = Math.max(this.skipThrough, endOffset);
    this.handled = Math.max(this.handled, endOffset);
    let dropped = 0;
    const keep = (file: FileData) => {
      const rest = file.after(endOffset);
      dropped += file.records - (rest?.records ?? 0);
      this.heldBytes -= file.bytes - (rest?.bytes ?? 0);
      return rest;
    };
    const kept = this.closed.map(keep).filter((f) => f !== undefined);
    this.closed.splice(0, this.closed.length, ...kept);
    if (this.open) this.open = keep(this.open);
    return dropped;
  }

  /** Records held here: in open and closed files, and dead letters not yet confirmed. */
  records(): number {
    return (this.open?.records ?? 0) + this.closed.reduce((n, f) => n + f.records, 0) + this.deadLetters.length;
  }

  /** When the oldest file still held (not yet in S3) got its first record, ms; undefined: none held. */
  oldestOpenedAt(): number | undefined {
    return this.closed[0]?.openedAt ?? this.open?.openedAt;
  }

  /** The offset the group may start from again: the first record still held, or the next one. */
  safePoint(): number {
    const held = [this.closed[0]?.first, this.open?.first, this.deadLetters[0]].filter((o) => o !== undefined);
    return held.length > 0 ? Math.min(...held) : this.handled + 1;
  }
}

// ---------------------------------------------------------------- S3

/** The S3 client: the SDK's own credential chain, its retries (3 attempts), and a request timeout that holds. */
export function s3Client(config: Pick<SinkConfig, 'region' | 'endpoint' | 'forcePathStyle' | 'requestTimeoutMs'>): S3Client {
  return new S3Client({
    region: config.region,
    endpoint: config.endpoint,
    forcePathStyle: config.forcePathStyle,
    maxAttempts: 3,
    // Without throwOnRequestTimeout the SDK only warns and a black-holed request hangs for ever.
    requestHandler: {
      requestTimeout: config.requestTimeoutMs,
      connectionTimeout: Math.min(config.requestTimeoutMs, 10_000),
      throwOnRequestTimeout: true,
    },
  });
}

export type PutResult = { written: true } | { written: false; endOffset: number };

/**
 * Writes an object only if its key is free (If-None-Match: *). When it exists, returns the end
 * offset recorded in its metadata, so that the caller can skip what it already holds.
 */
export async function putIfAbsent(
  s3: S3Client,
  bucket: string,
  key: string,
  body: Buffer,
  meta: Record<string, string>,
  gzip: boolean,
): Promise<PutResult> {
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: body,
        IfNoneMatch: '*',
        Metadata: meta,
        ContentType: 'application/x-ndjson',
        ...(gzip ? { ContentEncoding: 'gzip' } : {}),
      }),
    );
    return { written: true };
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 412) throw err;
  }
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  const end = Number(head.Metadata?.['end-offset']);
  if (!Number.isInteger(end))
    throw new Error(`s3://${bucket}/${key} exists without an end-offset in its metadata; it was not written by this sink`);
  return { written: false, endOffset: end };
}

// ---------------------------------------------------------------- the running sink

/** One partition this sink owns: its files, and where its uploads and commits stand. */
interface Owned {
  files: PartitionFiles;
  owned: boolean;
  uploading: boolean;
  failing: boolean;
  retryAt: number;
  delay: number;
  paused: boolean;
  dlqFailing: boolean;
  /** The group's committed offset as far as known (-1: not yet). */
  committed: number;
  low: number;
  high: number;
}

/** The last reading seen from a node: when it arrived, and the lengths of its last two windows. */
interface NodeSeen {
  atMs: number;
  windows: [number, number];
}

/** A node not heard from for this long leaves /metrics (nodes come and go; the series must not pile up). */
const NODE_FORGET_MS = 24 * 3600_000;

interface Sink {
  config: SinkConfig;
  access: KafkaAccess;
  nodes: Map<string, NodeSeen>;
  log: Logger;
  m: ReturnType<typeof sinkMetrics>;
  s3: S3Client;
  consumer: Consumer;
  dlq: KafkaJS.Producer;
  states: Map<number, Owned>;
  uploads: number;
  /** When the commit under way was asked for (0: none). */
  committing: number;
  stopping: boolean;
  done: boolean;
  rejoinWatchdog: NodeJS.Timeout | undefined;
  runtime: Runtime | undefined;
}

/** Methods the consumer has that its type declarations leave out (lib/kafka-consumer.js). */
type Consumer = Kafka.KafkaConsumer & {
  rebalanceProtocol(): 'NONE' | 'EAGER' | 'COOPERATIVE';
  incrementalAssign(assignment: Array<{ topic: string; partition: number }>): void;
  incrementalUnassign(assignment: Array<{ topic: string; partition: number }>): void;
  setDefaultIsTimeoutOnlyForFirstMessage(only: boolean): void;
};

const ERR_ASSIGN = -175; // librdkafka RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
const ERR_REVOKE = -174; // RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
const held = (s: Sink) => [...s.states.values()].reduce((n, o) => n + o.files.heldBytes, 0);

/** Gauges computed at each scrape from what the sink holds now. */
function scrapedGauges(r: Registry[], s: Sink) {
  return {
    lag: new Gauge({
      name: 'sink_consumer_lag_records',
      help: 'Records in the partition not yet committed (not yet durably in S3)',
      labelNames: ['partition'],
      registers: r,
      // At every scrape, for the partitions owned now (revoked ones disappear): the high watermark
      // of librdkafka's last fetch (or the one asked at assignment) minus the committed offset.
      collect() {
        this.reset();
        for (const o of s.states.values()) {
          try {
            o.high = Math.max(o.high, s.consumer.getWatermarkOffsets(s.config.topic, o.files.partition).highOffset);
          } catch {
            /* nothing fetched yet */
          }
          const from = o.committed >= 0 ? o.committed : o.low;
          if (o.high >= 0 && from >= 0) this.set({ partition: String(o.files.partition) }, Math.max(0, o.high - from));
        }
      },
    }),
    buffered: new Gauge({
      name: 'sink_buffered_records',
      help: 'Records held in memory, not yet in S3',
      registers: r,
      collect() {
        this.set([...s.states.values()].reduce((n, o) => n + o.files.records(), 0));
      },
    }),
    bufferedBytes: new Gauge({
      name: 'sink_buffered_bytes',
      help: 'Bytes held in memory (counted against BUFFER_MAX_BYTES)',
      registers: r,
      collect() {
        this.set([...s.states.values()].reduce((n, o) => n + o.files.heldBytes, 0));
      },
    }),
    paused: new Gauge({
      name: 'sink_partitions_paused',
      help: 'Partitions paused because the memory budget is full (S3 is slower than Kafka, or away)',
      registers: r,
      collect() {
        this.set([...s.states.values()].filter((o) => o.paused).length);
      },
    }),
    inFlight: new Gauge({
      name: 'sink_uploads_in_flight',
      help: 'Uploads under way',
      registers: r,
      collect() {
        this.set(s.uploads);
      },
    }),
    // Readings consumed but not in S3 yet: normally younger than FILE_MAX_AGE_SECONDS plus an
    // upload; older means S3 is not taking files (the "sink not writing" alert).
    oldestUnwritten: new Gauge({
      name: 'sink_oldest_unwritten_record_age_seconds',
      help: 'Seconds since the oldest record not yet in S3 was consumed; 0 when none is held',
      registers: r,
      collect() {
        const oldest = Math.min(...[...s.states.values()].map((o) => o.files.oldestOpenedAt() ?? Infinity));
        this.set(Number.isFinite(oldest) ? Math.max(0, (Date.now() - oldest) / 1000) : 0);
      },
    }),
    ...nodeGauges(r, s),
  };
}

/**
 * Per node, from the readings themselves: when the last one arrived and how long its windows are,
 * so that an alert can say "no reading from this node for 3 intervals" without knowing the
 * sampler's settings. The interval is the longer of the last two windows (the first window after
 * a sampler starts is a partial one). Arrival time, not window time: a sink catching up on a
 * backlog is the lag alert's business, not every node's.
 */
function nodeGauges(r: Registry[], s: Sink) {
  const last = new Gauge({
    name: 'sink_node_last_reading_timestamp_seconds',
    help: 'When the last reading of the node was consumed, Unix time',
    labelNames: ['node'],
    registers: r,
    collect() {
      this.reset();
      const now = Date.now();
      for (const [node, seen] of s.nodes) {
        if (now - seen.atMs > NODE_FORGET_MS) s.nodes.delete(node);
        else this.set({ node }, seen.atMs / 1000);
      }
    },
  });
  const interval = new Gauge({
    name: 'sink_node_reading_interval_seconds',
    help: "Length of the node's sampling window (the longer of its last two readings)",
    labelNames: ['node'],
    registers: r,
    collect() {
      this.reset();
      for (const [node, seen] of s.nodes) this.set({ node }, Math.max(...seen.windows));
    },
  });
  return { nodeLast: last, nodeInterval: interval };
}

function noteNode(s: Sink, node: string, windowSeconds: number): void {
  const seen = s.nodes.get(node);
  if (seen) {
    seen.atMs = Date.now();
    seen.windows = [seen.windows[1], windowSeconds];
  } else s.nodes.set(node, { atMs: Date.now(), windows: [windowSeconds, windowSeconds] });
}

function sinkMetrics(registry: Registry, s: Sink) {
  const r = [registry];
  return {
    consumed: new Counter({ name: 'sink_records_consumed_total', help: 'Records read from the topic', registers: r }),
    written: new Counter({ name: 'sink_records_written_total', help: 'Records written to S3 in an object of this sink', registers: r }),
    present: new Counter({
      name: 'sink_records_already_present_total',
      help: 'Records skipped because an existing object already held them (replay after a crash or rebalance)',
      registers: r,
    }),
    deadLettered: new Counter({
      name: 'sink_records_dead_lettered_total',
      help: 'Records sent to the dead-letter topic',
      labelNames: ['reason'],
      registers: r,
    }),
    objects: new Counter({ name: 'sink_objects_written_total', help: 'Objects written to S3', registers: r }),
    bytes: new Counter({ name: 'sink_bytes_written_total', help: 'Bytes written to S3 (object bodies)', registers: r }),
    uploadSeconds: new Histogram({
      name: 'sink_upload_duration_seconds',
      help: 'Duration of successful object uploads',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    }),
    uploadFailures: new Counter({ name: 'sink_upload_failures_total', help: 'Failed upload attempts (retried)', registers: r }),
    lastUpload: new Gauge({ name: 'sink_last_upload_timestamp_seconds', help: 'When an object was last written, Unix time', registers: r }),
    fileMaxAge: new Gauge({
      name: 'sink_file_max_age_seconds',
      help: 'FILE_MAX_AGE_SECONDS: a file is closed this long after its first record',
      registers: r,
    }),
    ...scrapedGauges(r, s),
  };
}

/**
 * A record arrived: into its partition's open file, or to the dead-letter topic, or skipped.
 * librdkafka serves rebalances inside consume(), and this loop asks for the next batch only once
 * this one is handled, so a batch never mixes two assignments of a partition: a record of a
 * partition that is not ours any more (revoked while the batch was on its way) is left to its
 * next owner, who reads it from the committed offset.
 */
function handleMessage(s: Sink, m: Message): void {
  const o = s.states.get(m.partition);
  if (!o) return;
  if (m.offset <= o.files.handled) {
    s.log.warn('record seen again; ignored', { partition: m.partition, offset: m.offset, handled: o.files.handled });
    return;
  }
  if (o.files.inS3(m.offset)) return void s.m.present.inc();
  const checked = checkRecord(m.value, s.config.recordMaxBytes);
  if (!checked.ok) return void deadLetter(s, o, m, checked.reason, checked.detail);
  noteNode(s, checked.node, checked.windowSeconds);
  for (const file of o.files.add(m.offset, checked.hour, checked.line, Date.now())) closed(s, file);
}

/** A file was closed: gzip it now, while the next one fills, and let it queue for upload. */
function closed(s: Sink, file: FileData): void {
  file.encoded = encodeFile(file, s.config.gzip);
  file.encoded.catch(() => {}); // awaited (and its error handled) by the upload
  pump(s);
}

/** Starts uploads: the oldest closed file of each partition, UPLOADS_MAX at once, partitions in turn. */
function pump(s: Sink): void {
  const now = Date.now();
  for (const [partition, o] of s.states) {
    if (s.uploads >= s.config.uploadsMax) return;
    if (o.uploading || o.files.closed.length === 0 || now < o.retryAt) continue;
    s.states.delete(partition); // to the back of the line
    s.states.set(partition, o);
    void upload(s, o);
  }
}

/** One PUT of the partition's oldest closed file; a 412 turns it into what the object does not hold. */
async function upload(s: Sink, o: Owned): Promise<void> {
  const { config, log } = s;
  const file = o.files.closed[0];
  const start = file.first!;
  const end = file.last!;
  const partition = o.files.partition;
  o.uploading = true;
  s.uploads++;
  try {
    const body = await (file.encoded ??= encodeFile(file, config.gzip));
    const key = objectKey(config.prefix, file.hour, config.topic, partition, start, config.gzip);
    const meta = {
      topic: config.topic,
      partition: String(partition),
      'start-offset': String(start),
      'end-offset': String(end),
      records: String(file.records),
    };
    const timer = s.m.uploadSeconds.startTimer();
    const result = await putIfAbsent(s.s3, config.bucket, key, body, meta, config.gzip);
    if (result.written) {
      timer();
      o.files.written(file);
      s.m.written.inc(file.records);
      s.m.objects.inc();
      s.m.bytes.inc(body.length);
      s.m.lastUpload.set(Date.now() / 1000);
      log.info('object written', { key, partition, start_offset: start, end_offset: end, records: file.records, bytes: body.length });
    } else {
      const skipped = o.files.presentThrough(result.endOffset);
      s.m.present.inc(skipped);
      log.info('object already in S3; skipping the records it holds', { key, partition, existing_end_offset: result.endOffset, skipped });
    }
    o.failing = false;
    o.delay = 500;
  } catch (err) {
    s.m.uploadFailures.inc();
    o.failing = true;
    o.retryAt = Date.now() + o.delay;
    log.error('upload failed; retrying', {
      partition,
      start_offset: start,
      retry_in_ms: o.delay,
      error: (err as Error).message,
      code: (err as { name?: string }).name,
    });
    o.delay = Math.min(o.delay * 2, 30_000);
  } finally {
    o.uploading = false;
    s.uploads--;
    pump(s);
  }
}

/**
 * Asks the group to commit every partition's safe point that moved, in one request, at most one
 * request at a time (called once a second, and when stopping): a commit per file would queue
 * hundreds of requests in front of the group's heartbeats during a catch-up. librdkafka sends it
 * in the background; offset_commit_cb reports the outcome. A failed commit is asked again on the
 * next call; a lost one only means a replay, which the conditional writes absorb.
 */
function commitAll(s: Sink): void {
  if (s.committing > Date.now() - 30_000) return;
  const due = [...s.states.values()].filter((o) => o.owned && o.files.safePoint() > o.committed);
  if (due.length === 0) return;
  const offsets = due.map((o) => ({ topic: s.config.topic, partition: o.files.partition, offset: o.files.safePoint() }));
  try {
    s.consumer.commit(offsets);
    s.committing = Date.now();
  } catch (err) {
    s.log.warn('commit failed; retrying', { offsets: offsets.map((x) => [x.partition, x.offset]), error: (err as Error).message });
  }
}

function onCommitted(
  s: Sink,
  err: LibrdKafkaError | undefined,
  offsets: Array<{ partition: number; offset: number; error?: { message?: string } }>,
): void {
  s.committing = 0;
  for (const { partition, offset, error } of offsets ?? []) {
    const o = s.states.get(partition);
    if (err || error) s.log.warn('commit failed; retrying', { partition, offset, error: (err ?? error)?.message });
    else if (o) o.committed = Math.max(o.committed, offset);
  }
}

/** A record that is not a valid reading goes to the dead-letter topic; retried until it is there. */
async function deadLetter(s: Sink, o: Owned, m: Message, reason: DeadLetterReason, detail: string): Promise<void> {
  const { config, log } = s;
  const bytes = (m.value?.length ?? 0) + (m.key?.length ?? 0);
  o.files.deadLetter(m.offset, bytes);
  const headers = {
    'dlq-reason': reason,
    'dlq-detail': detail.slice(0, 1000),
    'dlq-topic': config.topic,
    'dlq-partition': String(m.partition),
    'dlq-offset': String(m.offset),
    'dlq-timestamp': String(m.timestamp ?? ''),
  };
  for (let delay = 1000; ; delay = Math.min(delay * 2, 30_000)) {
    const producer = s.dlq;
    try {
      await producer.send({ topic: config.dlqTopic, messages: [{ key: (m.key ?? null) as Buffer | null, value: m.value, headers }] });
      break;
    } catch (err) {
      if (!o.owned) return; // the partition moved on; its next owner dead-letters the record again
      o.dlqFailing = true;
      s.access.note((err as Error).message);
      if (/fatal error/i.test((err as Error).message)) await renewDlq(s, producer).catch(() => {});
      log.error('dead-letter write failed; retrying', {
        partition: m.partition,
        offset: m.offset,
        retry_in_ms: delay,
        error: (err as Error).message,
      });
      await sleep(delay);
    }
  }
  o.dlqFailing = false;
  o.files.deadLettered(m.offset, bytes);
  s.m.deadLettered.inc({ reason });
  log.warn('record dead-lettered', {
    partition: m.partition,
    offset: m.offset,
    reason,
    detail: detail.slice(0, 200),
    dlq_topic: config.dlqTopic,
  });
}

/**
 * Backpressure. With BUFFER_MAX_BYTES held, the loop stops asking for records until S3 has taken a
 * quarter of it back; librdkafka's queue fills to its own bound meanwhile and keeps its records. A
 * wait that lasts (S3 slow or away) pauses every partition instead: the loop then polls again, as
 * the group requires (max.poll.interval.ms), and librdkafka drops what it prefetched for them, to
 * fetch it again on resume. If all that is held sits in open files, the largest is closed to go.
 */
async function backpressure(s: Sink): Promise<void> {
  const room = () => held(s) < s.config.bufferMaxBytes * 0.75;
  if (held(s) >= s.config.bufferMaxBytes) {
    const owned = [...s.states.values()];
    if (s.uploads === 0 && owned.every((o) => o.files.closed.length === 0)) {
      const largest = owned.filter((o) => o.files.open).sort((a, b) => b.files.open!.bytes - a.files.open!.bytes)[0];
      const file = largest?.files.close();
      if (file) closed(s, file);
    }
    for (const until = Date.now() + 5000; !room() && Date.now() < until && !s.stopping;) await sleep(5);
  }
  const pause = !room() || s.stopping;
  const change = [...s.states.values()].filter((o) => o.paused !== pause);
  if (change.length === 0) return;
  const toppars = change.map((o) => ({ topic: s.config.topic, partition: o.files.partition }));
  if (pause) s.consumer.pause(toppars);
  else s.consumer.resume(toppars);
  for (const o of change) o.paused = pause;
  if (!s.stopping)
    s.log[pause ? 'warn' : 'info'](pause ? 'partitions paused: memory budget full for 5 s' : 'partitions resumed', {
      partitions: toppars.map((t) => t.partition),
      held_bytes: held(s),
      budget_bytes: s.config.bufferMaxBytes,
      uploads: s.uploads,
    });
}

function onRebalance(s: Sink, consumer: Consumer, err: LibrdKafkaError, assignment: Array<{ topic: string; partition: number }>): void {
  const { config, log } = s;
  const partitions = assignment.map((a) => a.partition);
  const cooperative = consumer.rebalanceProtocol() === 'COOPERATIVE';
  try {
    if (err.code === ERR_ASSIGN) {
      clearTimeout(s.rejoinWatchdog);
      for (const p of partitions) s.states.set(p, newOwned(s, p));
      if (cooperative) consumer.incrementalAssign(assignment);
      else consumer.assign(assignment);
      log.info('partitions assigned', { partitions });
      if (partitions.length > 0) s.access.ok(); // the group and the topic let this user in
      for (const p of partitions) measureLag(s, consumer, s.states.get(p)!);
    } else if (err.code === ERR_REVOKE) {
      for (const p of partitions) {
        const o = s.states.get(p);
        if (o) o.owned = false;
        s.states.delete(p);
      }
      if (cooperative) consumer.incrementalUnassign(assignment);
      else consumer.unassign();
      log.info('partitions revoked; their open files are dropped and will be rebuilt by the next owner', { partitions });
      if (s.states.size === 0 && !s.stopping) {
        clearTimeout(s.rejoinWatchdog);
        s.rejoinWatchdog = setTimeout(() => {
          log.error('no partitions assigned since they were revoked; exiting so that the sink is restarted', {
            waited_ms: config.rejoinTimeoutMs,
          });
          void s.runtime?.shutdown('group-lost');
        }, config.rejoinTimeoutMs).unref();
      }
    } else {
      log.error('rebalance failed', { error: err.message, code: err.code });
    }
  } catch (e) {
    log.warn('rebalance not applied', { error: (e as Error).message });
  }
}

function newOwned(s: Sink, partition: number): Owned {
  return {
    files: new PartitionFiles(partition, s.config),
    owned: true,
    uploading: false,
    failing: false,
    retryAt: 0,
    delay: 500,
    paused: false,
    dlqFailing: false,
    committed: -1,
    low: -1,
    high: -1,
  };
}

/** Lag from the moment of assignment: the group's committed offset and the partition's ends, asked once; then kept current. */
function measureLag(s: Sink, consumer: Consumer, o: Owned): void {
  const partition = o.files.partition;
  consumer.queryWatermarkOffsets(s.config.topic, partition, 5000, (err, w) => {
    if (err) return s.log.debug('watermarks not read', { partition, error: err.message });
    o.low = w.lowOffset;
    o.high = Math.max(o.high, w.highOffset);
  });
  consumer.committed([{ topic: s.config.topic, partition }], 5000, (err, tps) => {
    if (err) return s.log.debug('committed offset not read', { partition, error: err.message });
    const offset = tps?.[0]?.offset ?? -1;
    if (offset >= 0) o.committed = Math.max(o.committed, offset);
  });
}

/** Pulls records in batches for as long as the sink runs; paused partitions return nothing. */
async function consumeLoop(s: Sink): Promise<void> {
  while (!s.done) {
    await backpressure(s);
    const consumer = s.consumer;
    let messages: Message[];
    try {
      messages = await new Promise<Message[]>((res, rej) => consumer.consume(1000, (err, ms) => (err ? rej(err) : res(ms))));
    } catch (err) {
      // An access problem (a missing ACL) is logged once, by name; anything else each time.
      if (!s.access.note((err as Error).message)) s.log.warn('consume failed; retrying', { error: (err as Error).message });
      await sleep(1000);
      continue;
    }
    if (s.stopping || messages.length === 0) continue;
    s.m.consumed.inc(messages.length);
    for (const m of messages) handleMessage(s, m);
  }
}

/** New clients for one connection attempt: the consumer (subscribed) and the dead-letter producer. */
async function connect(s: Sink): Promise<void> {
  const { config, log } = s;
  const { global, topic } = splitTopicConf(consumerConf(config));
  const consumer = new Kafka.KafkaConsumer(
    {
      ...global,
      rebalance_cb: (err: LibrdKafkaError, assignment: Array<{ topic: string; partition: number }>) =>
        onRebalance(s, consumer, err, assignment),
      offset_commit_cb: (
        err: LibrdKafkaError | undefined,
        offsets: Array<{ partition: number; offset: number; error?: { message?: string } }>,
      ) => onCommitted(s, err, offsets),
    },
    topic,
  ) as Consumer;
  consumer.setDefaultConsumeTimeout(500); // also how often a paused consumer looks for callbacks
  consumer.setDefaultIsTimeoutOnlyForFirstMessage(true);
  consumer.on('event.error', (err: LibrdKafkaError) => {
    s.access.note(err.message);
    log.warn('kafka client error', { component: 'kafka', error: err.message, code: err.code });
  });
  consumer.on('event.log', (e: { severity: number; fac: string; message: string }) => {
    if (e.severity > 4) return;
    s.access.note(e.message);
    log[e.severity <= 3 ? 'error' : 'warn'](e.message, { component: 'kafka', fac: e.fac });
  });
  const dlq = dlqProducer(s);
  try {
    await new Promise<void>((res, rej) => consumer.connect({ timeout: 10_000 }, (err) => (err ? rej(err) : res())));
    await dlq.connect();
    consumer.subscribe([config.topic]);
  } catch (err) {
    await new Promise((res) => consumer.disconnect(res)).catch(() => {});
    await dlq.disconnect().catch(() => {});
    throw err;
  }
  s.consumer = consumer;
  s.dlq = dlq;
}

function dlqProducer(s: Sink): KafkaJS.Producer {
  return kafkaClient(s.config, s.log, 'producer', s.access).producer({ kafkaJS: { idempotent: true, acks: -1 } });
}

/**
 * The dead-letter producer hit a fatal error (an idempotent producer the broker refuses a producer
 * id, e.g. no ACL to write the dead-letter topic): it is done for good, so a new one takes over.
 */
async function renewDlq(s: Sink, failed: KafkaJS.Producer): Promise<void> {
  if (s.dlq !== failed) return; // another write renewed it already
  const fresh = dlqProducer(s);
  await fresh.connect();
  if (s.dlq !== failed) return void fresh.disconnect().catch(() => {});
  s.dlq = fresh;
  void failed.disconnect().catch(() => {});
  s.log.warn('dead-letter producer failed for good; a new one took over');
}

/** Once a second: close files that are old enough, commit what is safe, retry uploads that failed. */
function tick(s: Sink): void {
  const now = Date.now();
  for (const o of s.states.values()) {
    const file = o.files.closeIfOld(now);
    if (file) closed(s, file);
  }
  commitAll(s);
  pump(s);
}

/** SIGTERM, SIGINT or a lost group: upload what is held, commit it, let go of the group. */
async function stop(s: Sink, reason: string, loop: Promise<void>): Promise<number> {
  const { log } = s;
  s.stopping = true;
  log.info('stopping', { reason });
  clearTimeout(s.rejoinWatchdog);
  for (const o of s.states.values()) {
    const file = o.files.close();
    if (file) closed(s, file);
  }
  const deadline = Date.now() + Math.max(1000, s.config.shutdownMs - 3000);
  const owned = () => [...s.states.values()];
  while (
    Date.now() < deadline &&
    owned().some((o) => (o.files.closed.length > 0 || o.files.deadLetters.length > 0) && !o.failing && !o.dlqFailing)
  )
    await sleep(50);
  const left = owned().reduce((n, o) => n + o.files.records(), 0);
  while (Date.now() < deadline && owned().some((o) => o.committed < o.files.safePoint())) {
    commitAll(s);
    await sleep(50);
  }
  s.done = true;
  await loop;
  for (const o of owned()) o.owned = false;
  // Closing the consumer leaves the group, which needs a group coordinator: librdkafka's close then
  // blocks a libuv thread until one answers, and a blocked thread keeps the process from exiting at
  // all (seen: stuck past the deadline). Without one (the group was lost, or no broker answers) the
  // sink goes without closing; the group notices at its session timeout. Nothing held was committed.
  const canLeave = s.consumer && reason !== 'group-lost' && (await anyBrokerReachable(s.config.brokers, 2000)).ok;
  if (canLeave) await new Promise((res) => s.consumer.disconnect(res));
  else if (s.consumer) log.warn('leaving without closing the consumer: no group coordinator to answer', { reason });
  await s.dlq?.disconnect().catch(() => {});
  if (left > 0) {
    log.error('records not uploaded before stop; not committed, the next sink writes them', { count: left });
    return 1;
  }
  return reason === 'group-lost' ? 1 : 0;
}

async function main(): Promise<void> {
  const config = configOrExit('sink', () => loadConfig());
  configOrExit('sink', () => throwIf(kafkaProblem(config)));
  const log = logger('sink', config.logLevel);
  const s = {
    config,
    log,
    states: new Map(),
    access: new KafkaAccess(log),
    nodes: new Map(),
    uploads: 0,
    committing: 0,
    stopping: false,
    done: false,
    s3: s3Client(config),
  } as unknown as Sink;
  const registry = metricsRegistry();
  s.m = sinkMetrics(registry, s);
  s.m.fileMaxAge.set(config.maxAgeMs / 1000);
  // Every reason from the start, at 0: a rate over a series that appears only at the first one sees nothing.
  for (const reason of deadLetterReasons) s.m.deadLettered.inc({ reason }, 0);
  let connected = false;
  let loop: Promise<void> = Promise.resolve();
  const ready = () => connected && !s.stopping && !s.access.denied && [...s.states.values()].every((o) => !o.failing && !o.dlqFailing);
  const stopSink = (reason: string) => stop(s, reason, loop);
  s.runtime = await startRuntime({ log, port: config.httpPort, registry, ready, deadlineMs: config.shutdownMs, stop: stopSink });
  log.info('started', { ...settingsToLog(config), http_port: s.runtime.port });
  connected = await connectWithRetry({
    program: 'sink',
    brokers: config.brokers,
    source: config.passthroughSource,
    log,
    access: s.access,
    stopping: () => s.stopping,
    connect: () => connect(s),
  });
  if (!connected) return;
  setInterval(() => tick(s), Math.min(1000, config.maxAgeMs / 4)).unref();
  loop = consumeLoop(s);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
