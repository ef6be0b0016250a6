/**
 * sink.ts: the readings topic into S3, as newline-delimited JSON files, every record exactly once.
 *
 * Why: a reading lost or written twice makes every sum over the bucket wrong, and sinks die at
 * any instant (OOM kill, node drain, S3 or Kafka outage). So the files are named after the data
 * they hold and written with a conditional PUT, which makes a replay after a crash harmless.
 *
 * How (the exactly-once design, after Confluent's S3 sink and Secor):
 *   - One open file per Kafka partition. A file holds a contiguous run of that partition's
 *     offsets whose readings fall in one hour (by window_start), so its key is a function of
 *     the data: <prefix>/dt=YYYY-MM-DD/hour=HH/<topic>+<partition>+<startOffset>.jsonl.gz.
 *     A reading of another hour closes the file first (late readings get their own files).
 *   - A file is closed by record count, byte size or age (a timer, so quiet topics flush too).
 *   - Upload with If-None-Match: * and the end offset in the object's metadata. 200: commit
 *     end+1. 412: the key exists, written by an earlier life of this partition (crash before
 *     commit) or by another instance during a rebalance; it starts at the same offset (files
 *     start where the committed offset points, or right after another file), so read its end
 *     offset, drop every record up to it, commit past it, and write the rest as the next file.
 *   - Offsets are committed only after the object is in S3; never auto-committed. On restart
 *     or rebalance, open files are dropped and rebuilt from the committed offset.
 *   - S3 down: the upload retries with backoff; the partition keeps buffering up to a bound,
 *     then is paused (never skipped); /readyz says not ready until it recovers by itself.
 *   - A record that is not JSON, has another schema_version, fails the schema or is too big
 *     goes to the dead-letter topic with its original bytes and the reason in headers; its
 *     offset is committed only once the dead-letter write is confirmed (at-least-once there).
 *
 * Environment (defaults in brackets):
 *   KAFKA_BROKERS [localhost:9092], KAFKA_TOPIC [cpu-levels], KAFKA_CLIENT_ID [cpu-sink],
 *   KAFKA_GROUP_ID [cpu-sink]             consumer group; one sink per partition scales out
 *   KAFKA_DLQ_TOPIC [<topic>-dlq]         dead-letter topic
 *   KAFKA_CONFIG_<PROPERTY>               any librdkafka property (see sampler.ts)
 *   S3_BUCKET [elementor-data-candidates-bucket], S3_PREFIX [cpu-levels],
 *   S3_REGION [$AWS_REGION or eu-west-1], S3_ENDPOINT [AWS], S3_FORCE_PATH_STYLE [false]
 *   S3_REQUEST_TIMEOUT_SECONDS [30]       per S3 request
 *   FILE_GZIP [true]                      gzip the files (.jsonl.gz), or not (.jsonl)
 *   FILE_MAX_RECORDS [10000], FILE_MAX_BYTES [8388608], FILE_MAX_AGE_SECONDS [300]
 *   BUFFER_MAX_BYTES [67108864]           per partition, before it is paused while S3 is down
 *   RECORD_MAX_BYTES [65536]              larger records are dead-lettered
 *   GROUP_REJOIN_TIMEOUT_SECONDS [120]    after partitions are revoked, how long to wait for the group
 *                                         to assign again before exiting for a restart (see below)
 *   HTTP_PORT [8080], SHUTDOWN_TIMEOUT_SECONDS [20], LOG_LEVEL [info]
 *   Credentials: the AWS SDK default chain (IRSA web identity, EKS Pod Identity, AWS_ACCESS_KEY_ID/
 *   AWS_SECRET_ACCESS_KEY, shared config, instance profile); nothing here reads keys itself.
 *
 * Crash-only recovery: if the consumer loses its group and is not given partitions again within
 * GROUP_REJOIN_TIMEOUT_SECONDS (seen once a broker restart left the client without a coordinator),
 * the sink exits 1 so that Kubernetes restarts it; nothing it held was committed, so nothing is lost.
 *
 * Run: `npx tsx sink.ts` (or `npm run sink`). Bad settings: named message, exit 2. SIGTERM/SIGINT:
 * stop consuming, upload open files, commit, disconnect, exit 0 (1 if some could not be uploaded in
 * time: they were not committed, so the next sink writes them).
 */
import { gzipSync } from 'node:zlib';
import { pathToFileURL } from 'node:url';
import { readFileSync } from 'node:fs';
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Ajv2020 } from 'ajv/dist/2020.js';
import ajvFormats from 'ajv-formats';
import { Counter, Gauge, Histogram } from 'prom-client';
import {
  anyBrokerReachable, checkBrokers, checkKafkaSettings, checkPassthrough, checkTopic, ConfigError, envReader,
  exitOnConfigError, kafkaClient, kafkaConfigProblem, kafkaPassthrough, logger, metricsRegistry, onShutdown, serveHttp,
  type Level, type Logger,
} from './lib/runtime.ts';

// ---------------------------------------------------------------- configuration

export interface SinkConfig {
  brokers: string;
  topic: string;
  clientId: string;
  groupId: string;
  dlqTopic: string;
  passthrough: Record<string, string>;
  passthroughSource: Record<string, string>;
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
  recordMaxBytes: number;
  rejoinTimeoutMs: number;
  httpPort: number;
  shutdownMs: number;
  logLevel: Level;
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
    dlqTopic: e.string('KAFKA_DLQ_TOPIC', `${topic}-dlq`, (v) => (env.KAFKA_DLQ_TOPIC === undefined && checkTopic(topic) ? undefined
      : checkTopic(v) ?? (v === topic ? 'a topic other than KAFKA_TOPIC' : undefined))),
    passthrough: props,
    passthroughSource: source,
    // S3 bucket naming rules: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit.
    bucket: e.string('S3_BUCKET', 'elementor-data-candidates-bucket',
      (v) => (/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(v) ? undefined : 'an S3 bucket name (3-63 of a-z 0-9 . -)')),
    prefix: e.string('S3_PREFIX', 'cpu-levels', (v) => (/^[^/].*[^/]$|^[^/]$|^$/.test(v) ? undefined : 'a key prefix without leading or trailing /')),
    region: e.string(regionVar, 'eu-west-1', checkRegion),
    endpoint: endpoint || undefined,
    forcePathStyle: isTrue(e.string('S3_FORCE_PATH_STYLE', 'false', bool)),
    requestTimeoutMs: 1000 * e.number('S3_REQUEST_TIMEOUT_SECONDS', 30, { min: 1, max: 600, unit: 'seconds' }),
    gzip: isTrue(e.string('FILE_GZIP', 'true', bool)),
    maxRecords: e.number('FILE_MAX_RECORDS', 10_000, { min: 1, max: 10_000_000, integer: true }),
    maxBytes: e.number('FILE_MAX_BYTES', 8 * 2 ** 20, { min: 1024, max: 4 * 2 ** 30, integer: true }),
    maxAgeMs: 1000 * e.number('FILE_MAX_AGE_SECONDS', 300, { min: 1, max: 86_400, unit: 'seconds' }),
    bufferMaxBytes: e.number('BUFFER_MAX_BYTES', 64 * 2 ** 20, { min: 1024, max: 16 * 2 ** 30, integer: true }),
    recordMaxBytes: e.number('RECORD_MAX_BYTES', 65_536, { min: 64, max: 100 * 2 ** 20, integer: true }),
    rejoinTimeoutMs: 1000 * e.number('GROUP_REJOIN_TIMEOUT_SECONDS', 120, { min: 5, max: 3600, unit: 'seconds' }),
    httpPort: e.number('HTTP_PORT', 8080, { min: 0, max: 65_535, integer: true }),
    shutdownMs: 1000 * e.number('SHUTDOWN_TIMEOUT_SECONDS', 20, { min: 1, max: 3600, unit: 'seconds' }),
    logLevel: e.choice('LOG_LEVEL', 'info', ['debug', 'info', 'warn', 'error'] as const),
  };
  if (config.bufferMaxBytes < config.maxBytes) {
    e.problems.push(`BUFFER_MAX_BYTES=${JSON.stringify(String(config.bufferMaxBytes))}: expected at least FILE_MAX_BYTES (${config.maxBytes}), or a full file could never be buffered`);
  }
  e.done();
  return config;
}

function checkUrl(v: string): string | undefined {
  if (v === '') return undefined;
  try {
    const u = new URL(v);
    if ((u.protocol === 'http:' || u.protocol === 'https:') && u.hostname && v.trim() === v && !/\s/.test(v)) return undefined;
  } catch { /* not a URL */ }
  return 'an http(s):// URL such as http://127.0.0.1:9000';
}

// ---------------------------------------------------------------- records

const schema = JSON.parse(readFileSync(new URL('./schema/cpu-reading.v1.schema.json', import.meta.url), 'utf8'));
const ajv = new Ajv2020({ allErrors: false, strict: true });
ajvFormats.default(ajv);
const validReading = ajv.compile(schema);
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export type Checked =
  | { ok: true; windowStart: string; line: Buffer }
  | { ok: false; reason: 'empty' | 'oversize' | 'not-json' | 'schema-version' | 'schema'; detail: string };

/** Decides whether a record can go into a file, and if not, why (the dead-letter reason). */
export function checkRecord(value: Buffer | null, maxBytes: number): Checked {
  if (!value || value.length === 0) return { ok: false, reason: 'empty', detail: 'no value' };
  if (value.length > maxBytes) return { ok: false, reason: 'oversize', detail: `${value.length} bytes > ${maxBytes}` };
  let parsed: unknown;
  let text: string;
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
  const version = (parsed as { schema_version?: unknown } | null)?.schema_version;
  if (typeof parsed !== 'object' || parsed === null || version !== 1) {
    return { ok: false, reason: 'schema-version', detail: `schema_version ${JSON.stringify(version)} is not 1` };
  }
  if (!validReading(parsed)) {
    const e = validReading.errors?.[0];
    return { ok: false, reason: 'schema', detail: `${e?.instancePath || '/'} ${e?.message ?? 'invalid'}` };
  }
  const windowStart = (parsed as { window_start: string }).window_start;
  if (!Number.isFinite(Date.parse(windowStart))) return { ok: false, reason: 'schema', detail: `/window_start ${windowStart} is not a time this sink can place` };
  // One record per line: a pretty-printed record is written compact (same JSON, other whitespace).
  const line = value.includes(10) || value.includes(13) ? Buffer.from(JSON.stringify(parsed)) : value;
  return { ok: true, windowStart, line };
}

/** Hive-style time partition of a reading, by its own window_start (UTC), not by arrival. */
export function timePartition(windowStart: string): string {
  const iso = new Date(windowStart).toISOString();
  return `dt=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}`;
}

/** The object key of a file: a function of its data only, so a replay lands on the same key. */
export function objectKey(prefix: string, partitionPath: string, topic: string, partition: number, startOffset: number, gzip: boolean): string {
  const name = `${topic}+${partition}+${String(startOffset).padStart(10, '0')}.jsonl${gzip ? '.gz' : ''}`;
  return [prefix, partitionPath, name].filter(Boolean).join('/');
}

// ---------------------------------------------------------------- files

export interface FileRecord { offset: number; line: Buffer }

export interface OpenFile {
  partitionPath: string;
  records: FileRecord[];
  bytes: number;
  openedAt: number;
}

export interface Limits { maxRecords: number; maxBytes: number; maxAgeMs: number }

/** Why a file must be closed now, or undefined. Age is measured from its first record. */
export function rotationDue(file: OpenFile, nowMs: number, limits: Limits): 'records' | 'bytes' | 'age' | undefined {
  if (file.records.length >= limits.maxRecords) return 'records';
  if (file.bytes >= limits.maxBytes) return 'bytes';
  if (nowMs - file.openedAt >= limits.maxAgeMs) return 'age';
  return undefined;
}

/** The object body: one record per line, exactly the bytes that were produced. */
export function encodeFile(records: FileRecord[], gzip: boolean): Buffer {
  const body = Buffer.concat(records.flatMap((r) => [r.line, Buffer.from('\n')]));
  return gzip ? gzipSync(body) : body;
}

/** Drops the records at or below an offset that is already in S3; returns what is left. */
export function dropThrough(records: FileRecord[], offset: number): FileRecord[] {
  return records.filter((r) => r.offset > offset);
}

// ---------------------------------------------------------------- S3

export type PutResult = { written: true } | { written: false; endOffset: number };

/**
 * Writes an object only if its key is free (If-None-Match: *). When it exists, returns the end
 * offset recorded in its metadata, so that the caller can skip what it already holds.
 */
export async function putIfAbsent(s3: S3Client, bucket: string, key: string, body: Buffer, meta: Record<string, string>, gzip: boolean): Promise<PutResult> {
  try {
    await s3.send(new PutObjectCommand({
      Bucket: bucket, Key: key, Body: body, IfNoneMatch: '*', Metadata: meta,
      ContentType: 'application/x-ndjson', ...(gzip ? { ContentEncoding: 'gzip' } : {}),
    }));
    return { written: true };
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 412) throw err;
  }
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  const end = Number(head.Metadata?.['end-offset']);
  if (!Number.isInteger(end)) throw new Error(`s3://${bucket}/${key} exists without an end-offset in its metadata; it was not written by this sink`);
  return { written: false, endOffset: end };
}

/** Rejects after ms if the promise has not settled (the promise itself carries on). */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------- main

/** Everything this instance holds for one assigned partition. */
interface PartitionState {
  partition: number;
  owned: boolean;
  open: OpenFile | undefined;
  closed: OpenFile[]; // waiting for (or in) upload, oldest first
  bufferedBytes: number;
  handled: number; // highest offset that is in a file here, dead-lettered, or known to be in S3
  skipThrough: number; // offsets up to this one are already in S3 (learnt from a 412)
  committed: number; // next offset the group will start from, as far as we committed it
  draining: boolean;
  failing: boolean;
  resume: (() => void) | undefined;
}

class PartitionPaused extends Error {
  override name = 'PartitionPaused';
}

async function main(): Promise<void> {
  let config: SinkConfig;
  try {
    config = loadConfig();
  } catch (err) {
    exitOnConfigError('sink', err);
  }
  const log: Logger = logger('sink', config.logLevel);
  const limits: Limits = { maxRecords: config.maxRecords, maxBytes: config.maxBytes, maxAgeMs: config.maxAgeMs };

  // Metrics.
  const registry = metricsRegistry();
  const r = [registry];
  const consumed = new Counter({ name: 'sink_records_consumed_total', help: 'Records read from the topic', registers: r });
  const written = new Counter({ name: 'sink_records_written_total', help: 'Records written to S3 in an object of this sink', registers: r });
  const present = new Counter({ name: 'sink_records_already_present_total', help: 'Records skipped because an existing object already held them (replay after a crash or rebalance)', registers: r });
  const deadLettered = new Counter({ name: 'sink_records_dead_lettered_total', help: 'Records sent to the dead-letter topic', labelNames: ['reason'], registers: r });
  const objects = new Counter({ name: 'sink_objects_written_total', help: 'Objects written to S3', registers: r });
  const bytesWritten = new Counter({ name: 'sink_bytes_written_total', help: 'Bytes written to S3 (object bodies)', registers: r });
  const uploadSeconds = new Histogram({ name: 'sink_upload_duration_seconds', help: 'Duration of successful object uploads', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: r });
  const uploadFailures = new Counter({ name: 'sink_upload_failures_total', help: 'Failed upload attempts (retried)', registers: r });
  const lastUpload = new Gauge({ name: 'sink_last_upload_timestamp_seconds', help: 'When an object was last written, Unix time', registers: r });
  const lag = new Gauge({ name: 'sink_consumer_lag_records', help: 'Records in the partition not yet committed (not yet durably in S3)', labelNames: ['partition'], registers: r });
  const buffered = new Gauge({ name: 'sink_buffered_records', help: 'Records held in memory, not yet in S3', registers: r });
  const pausedGauge = new Gauge({ name: 'sink_partitions_paused', help: 'Partitions paused because S3 is not taking their files', registers: r });

  const s3 = new S3Client({
    region: config.region,
    endpoint: config.endpoint,
    forcePathStyle: config.forcePathStyle,
    maxAttempts: 3,
    // Without throwOnRequestTimeout the SDK only warns and a black-holed request hangs for ever.
    requestHandler: { requestTimeout: config.requestTimeoutMs, connectionTimeout: Math.min(config.requestTimeoutMs, 10_000), throwOnRequestTimeout: true },
  });

  const kafka = kafkaClient(config, log);
  const settingsProblem = checkKafkaSettings(config, config.passthroughSource, { 'group.id': config.groupId })
    ?? checkKafkaSettings(config, config.passthroughSource, { 'enable.idempotence': 'true' });
  if (settingsProblem) exitOnConfigError('sink', new ConfigError(settingsProblem));

  const states = new Map<number, PartitionState>();
  let rejoinWatchdog: NodeJS.Timeout | undefined;
  let stopping = false;
  let connected = false;

  const newState = (partition: number): PartitionState => ({
    partition, owned: true, open: undefined, closed: [], bufferedBytes: 0, handled: -1, skipThrough: -1,
    committed: -1, draining: false, failing: false, resume: undefined,
  });
  const updateGauges = () => {
    let records = 0;
    let paused = 0;
    for (const st of states.values()) {
      records += (st.open?.records.length ?? 0) + st.closed.reduce((n, f) => n + f.records.length, 0);
      if (st.resume) paused++;
    }
    buffered.set(records);
    pausedGauge.set(paused);
  };

  // A consumer whose connect() failed cannot connect again, so each attempt makes new clients.
  let consumer = kafka.consumer({
    kafkaJS: { groupId: config.groupId, fromBeginning: true, autoCommit: false },
    rebalance_cb: onRebalance,
  });
  let dlq = kafka.producer({ kafkaJS: { idempotent: true, acks: -1 } });

  /**
   * Commits run one at a time, in the background, coalescing the latest wanted offset of every
   * partition: a synchronous librdkafka commit can block a thread-pool thread while the group
   * coordinator is away, and one per partition would starve the pool. Uploads never wait for
   * commits (the objects are already durable); a lost commit only means a replay, which the
   * conditional writes absorb.
   */
  const wanted = new Map<number, { st: PartitionState; next: number }>();
  let committing: Promise<void> | undefined;
  function commit(st: PartitionState, next: number): void {
    if (next <= st.committed || next <= (wanted.get(st.partition)?.next ?? -1)) return;
    wanted.set(st.partition, { st, next });
    committing ??= commitLoop().finally(() => { committing = undefined; });
  }
  async function commitLoop(): Promise<void> {
    while (wanted.size > 0) {
      const batch = [...wanted.values()].filter(({ st }) => st.owned || stopping);
      wanted.clear();
      if (batch.length === 0) return;
      try {
        await withTimeout(consumer.commitOffsets(batch.map(({ st, next }) => ({ topic: config.topic, partition: st.partition, offset: String(next) }))), 15_000, 'commit');
        for (const { st, next } of batch) st.committed = Math.max(st.committed, next);
        log.debug('committed', { offsets: batch.map(({ st, next }) => [st.partition, next]) });
      } catch (err) {
        log.warn('commit failed; retrying with the next one', { error: (err as Error).message });
        for (const b of batch) if (!wanted.has(b.st.partition)) wanted.set(b.st.partition, b);
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
  }

  /** The offset the group may start from once everything before the first file still held is safe. */
  function safePoint(st: PartitionState): number {
    return st.closed[0]?.records[0]?.offset ?? st.open?.records[0]?.offset ?? st.handled + 1;
  }

  function forget(st: PartitionState, offset: number): void {
    st.skipThrough = Math.max(st.skipThrough, offset);
    st.handled = Math.max(st.handled, offset);
    for (const f of [...st.closed, ...(st.open ? [st.open] : [])]) {
      const kept = dropThrough(f.records, offset);
      const keptBytes = kept.reduce((n, x) => n + x.line.length + 1, 0);
      st.bufferedBytes -= f.bytes - keptBytes;
      f.records = kept;
      f.bytes = keptBytes;
    }
    st.closed = st.closed.filter((f) => f.records.length > 0);
    if (st.open && st.open.records.length === 0) st.open = undefined;
  }

  /** Writes one closed file, splitting off what earlier objects already hold. */
  async function upload(st: PartitionState, file: OpenFile): Promise<void> {
    while (file.records.length > 0) {
      const start = file.records[0].offset;
      const end = file.records.at(-1)!.offset;
      const key = objectKey(config.prefix, file.partitionPath, config.topic, st.partition, start, config.gzip);
      const body = encodeFile(file.records, config.gzip);
      const meta = { topic: config.topic, partition: String(st.partition), 'start-offset': String(start), 'end-offset': String(end), records: String(file.records.length) };
      const timer = uploadSeconds.startTimer();
      const result = await putIfAbsent(s3, config.bucket, key, body, meta, config.gzip);
      if (result.written) {
        timer();
        written.inc(file.records.length);
        objects.inc();
        bytesWritten.inc(body.length);
        lastUpload.set(Date.now() / 1000);
        log.info('object written', { key, partition: st.partition, start_offset: start, end_offset: end, records: file.records.length, bytes: body.length });
        st.bufferedBytes -= file.bytes;
        file.records = [];
        file.bytes = 0;
        return;
      }
      const held = file.records.filter((x) => x.offset <= result.endOffset).length;
      present.inc(held);
      log.info('object already in S3; skipping the records it holds', { key, partition: st.partition, existing_end_offset: result.endOffset, skipped: held });
      forget(st, result.endOffset);
    }
  }

  /** Uploads the partition's closed files in order, retrying with backoff; commits after each. */
  async function drain(st: PartitionState): Promise<void> {
    if (st.draining) return;
    st.draining = true;
    try {
      for (let delay = 500; st.owned && st.closed.length > 0;) {
        const file = st.closed[0];
        try {
          await upload(st, file);
          if (st.closed[0] === file) st.closed.shift();
          st.failing = false;
          delay = 500;
          commit(st, safePoint(st));
          if (st.resume && st.bufferedBytes < config.bufferMaxBytes / 2) {
            const resume = st.resume;
            st.resume = undefined;
            try { resume(); } catch (err) { log.warn('resume failed', { partition: st.partition, error: (err as Error).message }); }
            log.info('partition resumed', { partition: st.partition });
          }
        } catch (err) {
          uploadFailures.inc();
          st.failing = true;
          log.error('upload failed; retrying', { partition: st.partition, start_offset: file.records[0]?.offset, retry_in_ms: delay, error: (err as Error).message, code: (err as { name?: string }).name });
          await new Promise((res) => setTimeout(res, delay));
          delay = Math.min(delay * 2, 30_000);
        }
        updateGauges();
      }
    } finally {
      st.draining = false;
    }
  }

  function close(st: PartitionState, why: string): void {
    if (!st.open) return;
    log.debug('file closed', { partition: st.partition, reason: why, records: st.open.records.length });
    st.closed.push(st.open);
    st.open = undefined;
    void drain(st);
  }

  async function deadLetter(partition: number, message: { key: Buffer | null; value: Buffer | null; offset: string; timestamp: string }, reason: string, detail: string): Promise<void> {
    await dlq.send({
      topic: config.dlqTopic,
      messages: [{
        key: message.key, value: message.value,
        headers: {
          'dlq-reason': reason, 'dlq-detail': detail.slice(0, 1000), 'dlq-topic': config.topic,
          'dlq-partition': String(partition), 'dlq-offset': message.offset, 'dlq-timestamp': message.timestamp,
        },
      }],
    });
    deadLettered.inc({ reason });
    log.warn('record dead-lettered', { partition, offset: Number(message.offset), reason, detail: detail.slice(0, 200), dlq_topic: config.dlqTopic });
  }

  function onRebalance(err: { code: number }, assignment: Array<{ topic: string; partition: number }>): void {
    // -175: partitions assigned, -174: partitions revoked (librdkafka ERR__ASSIGN/REVOKE_PARTITIONS).
    if (err.code === -174) {
      for (const { partition } of assignment) {
        const st = states.get(partition);
        if (st) st.owned = false;
        states.delete(partition);
      }
      log.info('partitions revoked; their open files are dropped and will be rebuilt by the next owner', { partitions: assignment.map((a) => a.partition) });
      clearTimeout(rejoinWatchdog);
      rejoinWatchdog = setTimeout(() => {
        log.error('no partitions assigned since they were revoked; exiting so that the sink is restarted', { waited_ms: config.rejoinTimeoutMs });
        void shutdown('group-lost');
      }, config.rejoinTimeoutMs);
      rejoinWatchdog.unref();
    } else if (err.code === -175) {
      clearTimeout(rejoinWatchdog);
      for (const { partition } of assignment) states.set(partition, newState(partition));
      log.info('partitions assigned', { partitions: assignment.map((a) => a.partition) });
    }
    updateGauges();
  }

  async function eachMessage({ partition, message, pause }: {
    partition: number; message: { key: Buffer | null; value: Buffer | null; offset: string; timestamp: string }; pause: () => () => void;
  }): Promise<void> {
    let st = states.get(partition);
    if (!st) {
      st = newState(partition);
      states.set(partition, st);
    }
    const holdBack = (why: string) => {
      if (!st.resume) {
        st.resume = pause();
        log.warn('partition paused', { partition, reason: why, buffered_bytes: st.bufferedBytes });
        updateGauges();
      }
      throw new PartitionPaused(why); // the client seeks back: this record comes again after resume
    };
    if (stopping) holdBack('stopping');
    const offset = Number(message.offset);
    if (offset <= st.handled) return; // redelivered after a pause, already in hand
    consumed.inc();
    if (offset <= st.skipThrough) {
      st.handled = offset;
      present.inc();
      if (!st.open && st.closed.length === 0) commit(st, offset + 1);
      return;
    }
    const checked = checkRecord(message.value, config.recordMaxBytes);
    if (!checked.ok) {
      try {
        await deadLetter(partition, message, checked.reason, checked.detail);
      } catch (err) {
        log.error('dead-letter write failed; will retry this record', { partition, offset, error: (err as Error).message });
        holdBack('dead-letter topic not writable');
      }
      st.handled = offset;
      if (!st.open && st.closed.length === 0) commit(st, offset + 1);
      return;
    }
    const partitionPath = timePartition(checked.windowStart);
    if (st.open && st.open.partitionPath !== partitionPath) close(st, 'time partition changed');
    if (st.bufferedBytes >= config.bufferMaxBytes) holdBack('buffer full while S3 is not taking files');
    st.open ??= { partitionPath, records: [], bytes: 0, openedAt: Date.now() };
    const line = checked.line;
    st.open.records.push({ offset, line });
    st.open.bytes += line.length + 1;
    st.bufferedBytes += line.length + 1;
    st.handled = offset;
    const due = rotationDue(st.open, Date.now(), limits);
    if (due === 'records' || due === 'bytes') close(st, due);
    updateGauges();
  }

  // Age-based rotation: a timer, so a quiet topic still flushes.
  const ticker = setInterval(() => {
    const now = Date.now();
    for (const st of states.values()) {
      if (st.open && rotationDue(st.open, now, limits)) close(st, 'age');
      else if (st.closed.length && !st.draining) void drain(st);
    }
  }, Math.min(1000, config.maxAgeMs / 4));

  // Lag: records not yet committed, from the partitions' high watermarks.
  const admin = kafka.admin();
  let adminConnected = false;
  let measuring = false;
  const lagTimer = setInterval(async () => {
    if (!connected || states.size === 0 || measuring) return;
    measuring = true;
    try {
      if (!adminConnected) { await admin.connect(); adminConnected = true; }
      const high = await admin.fetchTopicOffsets(config.topic);
      const [group] = await admin.fetchOffsets({ groupId: config.groupId, topics: [config.topic] });
      for (const p of high) {
        if (!states.has(p.partition)) continue;
        const committed = Number(group?.partitions.find((g) => g.partition === p.partition)?.offset ?? -1);
        const from = committed >= 0 ? committed : Number(p.low);
        lag.set({ partition: String(p.partition) }, Math.max(0, Number(p.high) - from));
      }
    } catch (err) {
      log.debug('lag not measured', { error: (err as Error).message });
    } finally {
      measuring = false;
    }
  }, 15_000);

  const ready = () => connected && !stopping && [...states.values()].every((st) => !st.failing);
  const server = await serveHttp(config.httpPort, registry, ready).catch((err: Error) => {
    log.error('cannot serve HTTP', { port: config.httpPort, error: err.message });
    process.exit(1);
  });

  const shutdown = onShutdown(async (reason) => {
    stopping = true;
    log.info('stopping', { reason });
    clearInterval(ticker);
    clearInterval(lagTimer);
    for (const st of states.values()) close(st, 'shutdown');
    const deadline = Date.now() + Math.max(1000, config.shutdownMs - 3000);
    while (Date.now() < deadline && [...states.values()].some((st) => st.closed.length > 0 && !st.failing)) {
      await new Promise((res) => setTimeout(res, 50));
    }
    const left = [...states.values()].reduce((n, st) => n + st.closed.reduce((m, f) => m + f.records.length, 0), 0);
    while (Date.now() < deadline && (committing || wanted.size > 0)) await new Promise((res) => setTimeout(res, 50));
    for (const st of states.values()) st.owned = false;
    await consumer.disconnect().catch((err: Error) => log.warn('consumer disconnect failed', { error: err.message }));
    await dlq.disconnect().catch(() => {});
    if (adminConnected) await admin.disconnect().catch(() => {});
    server.close();
    if (left > 0) {
      log.error('records not uploaded before stop; not committed, the next sink writes them', { count: left });
      return 1;
    }
    return reason === 'group-lost' ? 1 : 0;
  }, config.shutdownMs, log);

  log.info('started', {
    brokers: config.brokers, topic: config.topic, group: config.groupId, dlq_topic: config.dlqTopic,
    bucket: config.bucket, prefix: config.prefix, region: config.region, endpoint: config.endpoint ?? null,
    gzip: config.gzip, max_records: config.maxRecords, max_bytes: config.maxBytes, max_age_seconds: config.maxAgeMs / 1000,
    http_port: (server.address() as { port: number }).port,
  });

  for (let attempt = 1, delay = 1000; !stopping; attempt++, delay = Math.min(delay * 2, 10_000)) {
    const probe = await anyBrokerReachable(config.brokers);
    if (probe.ok) {
      try {
        await dlq.connect();
        await consumer.connect();
        await consumer.subscribe({ topics: [config.topic] });
        await consumer.run({ eachMessage });
        connected = true;
        log.info('connected to Kafka', { brokers: config.brokers, attempt });
        return;
      } catch (err) {
        const problem = kafkaConfigProblem(err, config.passthroughSource);
        if (problem) exitOnConfigError('sink', new ConfigError(problem));
        await consumer.disconnect().catch(() => {});
        await dlq.disconnect().catch(() => {});
        consumer = kafka.consumer({ kafkaJS: { groupId: config.groupId, fromBeginning: true, autoCommit: false }, rebalance_cb: onRebalance });
        dlq = kafka.producer({ kafkaJS: { idempotent: true, acks: -1 } });
        probe.error = (err as Error).message;
      }
    }
    log.error('Kafka unreachable; retrying', { brokers: config.brokers, attempt, retry_in_ms: delay, error: probe.error });
    await new Promise((res) => setTimeout(res, delay));
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
