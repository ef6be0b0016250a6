/**
 * What sampler.ts and sink.ts need identically, written once: environment parsing with named
 * errors (exit 2), one-JSON-object-per-line logs, the /healthz /readyz /metrics server, an
 * idempotent shutdown with a hard deadline, and the Kafka client settings both build from env.
 * The programs' own logic stays in their own files.
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { connect as tcpConnect } from 'node:net';
import Kafka, { KafkaJS } from '@confluentinc/kafka-javascript';
import { Registry, collectDefaultMetrics } from 'prom-client';

// ---------------------------------------------------------------- configuration

/** A setting was wrong: the message names the variable, the value and what was expected. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

/**
 * Reads settings from an env object, collecting every problem so that one run shows them all.
 * Call done() after the last read: it throws one ConfigError listing each bad setting.
 */
export function envReader(env: Env) {
  const problems: string[] = [];
  const bad = (name: string, value: string, expected: string) => problems.push(`${name}=${JSON.stringify(value)}: expected ${expected}`);

  function string(name: string, fallback: string, check?: (v: string) => string | undefined): string {
    const raw = env[name];
    const value = raw === undefined ? fallback : raw.trim();
    const expected = check?.(value);
    if (expected !== undefined) bad(name, raw ?? value, expected);
    return value;
  }

  function number(name: string, fallback: number, opts: { min?: number; max?: number; integer?: boolean; unit?: string } = {}): number {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return fallback;
    const value = Number(raw.trim());
    const { min = -Infinity, max = Infinity, integer = false, unit = '' } = opts;
    const what =
      `${integer ? 'an integer' : 'a number'}${unit ? ` of ${unit}` : ''}` +
      (min > -Infinity && max < Infinity ? ` from ${min} to ${max}` : min > -Infinity ? ` >= ${min}` : max < Infinity ? ` <= ${max}` : '');
    if (!Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max) {
      bad(name, raw, what);
      return fallback;
    }
    return value;
  }

  function choice<T extends string>(name: string, fallback: T, choices: readonly T[]): T {
    return string(name, fallback, (v) => ((choices as readonly string[]).includes(v) ? undefined : `one of ${choices.join(', ')}`)) as T;
  }

  function done(): void {
    if (problems.length) throw new ConfigError(problems.join('\n'));
  }
  return { string, number, choice, done, problems };
}

/** Kafka's legal topic names: 1-249 of [a-zA-Z0-9._-], not "." or "..". */
export function checkTopic(name: string): string | undefined {
  const ok = /^[a-zA-Z0-9._-]{1,249}$/.test(name) && name !== '.' && name !== '..';
  return ok ? undefined : 'a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -';
}

/** A non-empty comma-separated list of host:port. */
export function checkBrokers(list: string): string | undefined {
  const entries = list.split(',').map((s) => s.trim());
  const ok =
    list.trim() !== '' &&
    entries.every((e) => {
      const m = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9._-]+):(\d{1,5})$/.exec(e);
      return m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 65535;
    });
  return ok ? undefined : 'a comma-separated list of host:port, e.g. kafka:9092';
}

/**
 * Any librdkafka property from env, without code changes: KAFKA_CONFIG_<NAME> where the name is
 * upper-cased with `.` written as `_`, `_` as `__` and `-` as `___` (the apache/kafka image's rule).
 * KAFKA_CONFIG_SASL_PASSWORD -> sasl.password, KAFKA_CONFIG_SECURITY_PROTOCOL -> security.protocol.
 * Returns property -> value, and the env var each came from (for error messages).
 */
export function kafkaPassthrough(env: Env): { props: Record<string, string>; source: Record<string, string> } {
  const props: Record<string, string> = {};
  const source: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('KAFKA_CONFIG_') || value === undefined || name.length === 'KAFKA_CONFIG_'.length) continue;
    const prop = name
      .slice('KAFKA_CONFIG_'.length)
      .toLowerCase()
      .replace(/___/g, '\u0001')
      .replace(/__/g, '\u0002')
      .replace(/_/g, '.')
      .replace(/\u0001/g, '-')
      .replace(/\u0002/g, '_');
    props[prop] = value;
    source[prop] = name;
  }
  return { props, source };
}

/** Settings that the programs own; passing them through would fight the named variables. */
const ownedKafkaProps: Record<string, string> = {
  'bootstrap.servers': 'KAFKA_BROKERS',
  'metadata.broker.list': 'KAFKA_BROKERS',
  'client.id': 'KAFKA_CLIENT_ID',
};

export function checkPassthrough(source: Record<string, string>, env: Env): string[] {
  return Object.entries(source).flatMap(([prop, name]) =>
    ownedKafkaProps[prop]
      ? [`${name}=${JSON.stringify(env[name])}: sets ${prop}, which ${ownedKafkaProps[prop]} owns; set that instead`]
      : [],
  );
}

/** The part of every Kafka client config that comes from the shared settings. */
export interface KafkaSettings {
  brokers: string;
  clientId: string;
  passthrough: Record<string, string>;
}

/** The settings both programs have, with the same names and meanings. */
export interface CommonConfig extends KafkaSettings {
  topic: string;
  /** The KAFKA_CONFIG_* variable each passthrough property came from (for error messages). */
  passthroughSource: Record<string, string>;
  httpPort: number;
  shutdownMs: number;
  logLevel: Level;
}

/**
 * librdkafka properties that only one kind of client reads (the "C/P" column of librdkafka's
 * CONFIGURATION.md, checked against the bundled copy by test/unit/config.test.ts). A setting of
 * the other kind would only make librdkafka warn at every start, so each client gets its own.
 */
const consumerOnly = new Set([
  'auto.commit.enable',
  'auto.commit.interval.ms',
  'auto.offset.reset',
  'check.crcs',
  'consume.callback.max.messages',
  'coordinator.query.interval.ms',
  'enable.auto.commit',
  'enable.auto.offset.store',
  'enable.partition.eof',
  'fetch.error.backoff.ms',
  'fetch.max.bytes',
  'fetch.message.max.bytes',
  'fetch.min.bytes',
  'fetch.queue.backoff.ms',
  'fetch.wait.max.ms',
  'group.id',
  'group.instance.id',
  'group.protocol',
  'group.protocol.type',
  'group.remote.assignor',
  'heartbeat.interval.ms',
  'isolation.level',
  'max.partition.fetch.bytes',
  'max.poll.interval.ms',
  'max.poll.records',
  'offset.store.method',
  'offset.store.path',
  'offset.store.sync.interval.ms',
  'partition.assignment.strategy',
  'queued.max.messages.kbytes',
  'queued.min.messages',
  'session.timeout.ms',
  'share.acknowledgement.mode',
]);
const producerOnly = new Set([
  'acks',
  'batch.num.messages',
  'batch.size',
  'compression.codec',
  'compression.level',
  'compression.type',
  'delivery.report.only.error',
  'delivery.timeout.ms',
  'enable.gapless.guarantee',
  'enable.idempotence',
  'linger.ms',
  'message.send.max.retries',
  'message.timeout.ms',
  'partitioner',
  'produce.offset.report',
  'queue.buffering.backpressure.threshold',
  'queue.buffering.max.kbytes',
  'queue.buffering.max.messages',
  'queue.buffering.max.ms',
  'queuing.strategy',
  'request.required.acks',
  'request.timeout.ms',
  'retries',
  'sticky.partitioning.linger.ms',
  'transaction.timeout.ms',
  'transactional.id',
]);
/**
 * Topic-level properties that have no global twin. The librdkafka-style client takes them only in
 * its topic config: given with the global ones they are lost when the client sets its (empty)
 * default topic config, and a new group would start at the end of the topic, not the beginning.
 */
const topicOnly = new Set([
  'acks',
  'auto.commit.enable',
  'auto.offset.reset',
  'compression.level',
  'consume.callback.max.messages',
  'delivery.timeout.ms',
  'message.timeout.ms',
  'offset.store.path',
  'offset.store.sync.interval.ms',
  'partitioner',
  'produce.offset.report',
  'queuing.strategy',
  'request.required.acks',
  'request.timeout.ms',
]);
export const kafkaPropertyScopes = { consumerOnly, producerOnly, topicOnly };

type KafkaConf = Record<string, string | number | boolean>;

/** Splits a librdkafka config into the global and the topic part (see topicOnly). */
export function splitTopicConf(conf: KafkaConf): { global: KafkaConf; topic: KafkaConf } {
  const global: KafkaConf = {};
  const topic: KafkaConf = {};
  for (const [k, v] of Object.entries(conf)) (topicOnly.has(k) ? topic : global)[k] = v;
  return { global, topic };
}

/** The passthrough properties a client of this kind reads (an admin client reads neither kind's own). */
export function propertiesFor(kind: 'consumer' | 'producer' | 'admin', props: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(props).filter(([p]) => !(kind !== 'consumer' && consumerOnly.has(p)) && !(kind !== 'producer' && producerOnly.has(p))),
  );
}

/** A KafkaJS-style client for producers and admin clients, given only the properties of its kind. */
export function kafkaClient(s: KafkaSettings, log: Logger, kind: 'producer' | 'admin' = 'producer', access?: KafkaAccess): KafkaJS.Kafka {
  return new KafkaJS.Kafka({
    ...propertiesFor(kind, s.passthrough),
    kafkaJS: {
      brokers: s.brokers.split(',').map((b) => b.trim()),
      clientId: s.clientId,
      logger: kafkaLogger(log, access),
      logLevel: KafkaJS.logLevel.WARN,
    },
  });
}

/**
 * librdkafka rejects an unknown property, a bad value or an incomplete combination the moment the
 * client is created, before any connection. Map that back to the env vars so the message names
 * the setting; anything else (a broker that does not answer) is not a configuration problem.
 */
export function kafkaConfigProblem(err: unknown, source: Record<string, string>): string | undefined {
  const message = err instanceof Error ? err.message : String(err);
  if (!/configuration property|must be set|Invalid value|Unsupported value|not supported/i.test(message)) return undefined;
  const named = Object.keys(source)
    .filter((p) => message.includes(p))
    .map((p) => source[p]);
  const vars = named.length ? named : Object.values(source);
  return `${vars.length ? vars.join(', ') : 'Kafka client settings'}: ${message}`;
}

/**
 * Lets librdkafka judge a client's settings without connecting: creating the client object parses
 * every property (unknown names and bad values throw). Returns the problem, naming the env vars.
 */
export function checkKafkaConf(kind: 'consumer' | 'producer', conf: KafkaConf, source: Record<string, string>): string | undefined {
  const { global, topic } = splitTopicConf(conf);
  try {
    if (kind === 'consumer') new Kafka.KafkaConsumer(global, topic);
    else new Kafka.Producer(global, topic);
    return undefined;
  } catch (err) {
    return kafkaConfigProblem(err, source) ?? `Kafka client settings: ${(err as Error).message}`;
  }
}

/**
 * Whether any bootstrap broker accepts a TCP connection. The client's own connect() blocks a
 * worker thread for 30 s when nobody answers, and a process cannot exit while it does, so the
 * programs ask this cheap question first and retry on their own schedule.
 */
export async function anyBrokerReachable(brokers: string, timeoutMs = 3000): Promise<{ ok: boolean; error?: string }> {
  const errors: string[] = [];
  for (const entry of brokers.split(',').map((b) => b.trim())) {
    const at = entry.lastIndexOf(':');
    const host = entry.slice(0, at).replace(/^\[|\]$/g, '');
    const port = Number(entry.slice(at + 1));
    const error = await new Promise<string | undefined>((resolve) => {
      const socket = tcpConnect({ host, port, timeout: timeoutMs });
      socket.once('connect', () => {
        socket.destroy();
        resolve(undefined);
      });
      socket.once('timeout', () => {
        socket.destroy();
        resolve(`${entry}: no answer in ${timeoutMs} ms`);
      });
      socket.once('error', (err) => resolve(`${entry}: ${err.message}`));
    });
    if (error === undefined) return { ok: true };
    errors.push(error);
  }
  return { ok: false, error: errors.join('; ') };
}

// ---------------------------------------------------------------- logs

export type Level = 'debug' | 'info' | 'warn' | 'error';
const levels: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: object): void;
  info(msg: string, fields?: object): void;
  warn(msg: string, fields?: object): void;
  error(msg: string, fields?: object): void;
}

/** One JSON object per line on stdout: {time, level, program, msg, ...fields}. */
export function logger(program: string, min: Level = 'info', write = (line: string) => process.stdout.write(line)): Logger {
  const emit =
    (level: Level) =>
    (msg: string, fields: object = {}) => {
      if (levels[level] < levels[min]) return;
      write(JSON.stringify({ time: new Date().toISOString(), level, program, msg, ...fields }) + '\n');
    };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

// ---------------------------------------------------------------- Kafka access (SASL, ACLs)

export type AccessProblem = { cause: 'authentication' | 'authorization'; reason: string };

/**
 * Whether a Kafka client's error says the broker turned this client away, and what to do about it.
 * librdkafka says so in its own words, in log lines and errors; these are the ones it uses.
 */
export function kafkaAccessProblem(message: string): AccessProblem | undefined {
  if (/SASL authentication (error|failed)|authentication failure|invalid credentials/i.test(message)) {
    return {
      cause: 'authentication',
      reason:
        'the broker refused the credentials (SASL authentication failed): check KAFKA_CONFIG_SASL_USERNAME, ' +
        'KAFKA_CONFIG_SASL_PASSWORD and KAFKA_CONFIG_SASL_MECHANISMS',
    };
  }
  const denied = /\b(topic|group|cluster|transactional id) authorization failed/i.exec(message);
  if (denied) {
    return {
      cause: 'authorization',
      reason: `the broker denied this user access to a ${denied[1].toLowerCase()} (${denied[0]}): it needs an ACL for it (README: Kafka authentication)`,
    };
  }
  return undefined;
}

/**
 * What the programs know of their access to Kafka: set by any client error that is an access
 * problem, cleared by anything that shows access works (connected, delivered, assigned). While set,
 * /readyz fails; the problem is logged once, in words that name the cause, and again every five
 * minutes while it lasts (the clients retry by themselves: a fixed password or a new ACL is
 * picked up without a restart).
 */
export class KafkaAccess {
  problem: (AccessProblem & { detail: string }) | undefined;
  #loggedAt = 0;
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** A client's error or log message; true if it was an access problem. */
  note(message: string): boolean {
    const found = kafkaAccessProblem(message);
    if (!found) return false;
    const changed = found.cause !== this.problem?.cause;
    this.problem = { ...found, detail: message };
    if (changed || Date.now() - this.#loggedAt >= 5 * 60_000) {
      this.#loggedAt = Date.now();
      this.#log.error('Kafka refused access', { cause: found.cause, reason: found.reason, detail: message });
    }
    return true;
  }

  ok(): void {
    if (!this.problem) return;
    this.#log.info('Kafka access works again', { was: this.problem.cause });
    this.problem = undefined;
  }

  get denied(): boolean {
    return this.problem !== undefined;
  }
}

/** The Kafka client's own log lines, as ours (it would otherwise print objects to the console). */
function kafkaLogger(log: Logger, access?: KafkaAccess): KafkaJS.Logger {
  const make = (namespace: string): KafkaJS.Logger => {
    const fields = (extra?: object) => ({ component: 'kafka', namespace, ...cleanKafkaExtra(extra) });
    return {
      debug: (m, e) => log.debug(m, fields(e)),
      info: (m, e) => log.info(m, fields(e)),
      warn: (m, e) => {
        access?.note(m);
        log.warn(m, fields(e));
      },
      error: (m, e) => {
        access?.note(m);
        log.error(m, fields(e));
      },
      namespace: (ns) => make(ns),
      setLogLevel: () => {},
    };
  };
  return make('client');
}

function cleanKafkaExtra(extra?: object): object {
  if (!extra) return {};
  const { message, fac, name } = extra as { message?: string; fac?: string; name?: string };
  return message === undefined ? extra : { detail: message, fac, client: name };
}

// ---------------------------------------------------------------- health and metrics

/**
 * A registry with Node's default metrics (process_*, nodejs_*). The event-loop delay monitor
 * samples once a second instead of prom-client's every 10 ms: at 10 ms it alone kept an idle
 * sampler at 0.2-0.8 % of a core (bench/), the loop's lag is still seen, at a coarser grain.
 * prom-client's three gauges named like counters (nodejs_active_{handles,requests,resources}_total,
 * which `promtool check metrics` rejects) go: each is the sum of the same gauge by type.
 */
export function metricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 1000 });
  for (const what of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`nodejs_active_${what}_total`);
  return registry;
}

/** /healthz: the process answers. /readyz: ready() says so (503 otherwise). /metrics: Prometheus text. */
export async function serveHttp(port: number, registry: Registry, ready: () => boolean): Promise<Server> {
  const server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n');
    } else if (path === '/metrics') {
      try {
        const body = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType }).end(body);
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
      }
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  server.listen(port);
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([err]) => {
      throw err;
    }),
  ]);
  return server;
}

// ---------------------------------------------------------------- shutdown

/**
 * Runs `stop` once on SIGTERM or SIGINT (or when shutdown() is called), then exits with the code it
 * returns. A hard deadline exits with 128+signal if stopping hangs; it is unref'd so it never keeps
 * the process alive by itself. Keep the deadline below Kubernetes' terminationGracePeriodSeconds.
 */
export function onShutdown(stop: (reason: string) => Promise<number>, deadlineMs: number, log: Logger) {
  let started: Promise<void> | undefined;
  const signals: Record<string, number> = { SIGINT: 2, SIGTERM: 15 };
  const shutdown = (reason: string): Promise<void> => {
    started ??= (async () => {
      const failCode = 128 + (signals[reason] ?? 1);
      setTimeout(() => {
        log.error('shutdown deadline passed; exiting', { deadline_ms: deadlineMs, exit_code: failCode });
        process.exit(failCode);
      }, deadlineMs).unref();
      let code: number;
      try {
        code = await stop(reason);
      } catch (err) {
        log.error('shutdown failed', { error: (err as Error).message });
        code = failCode;
      }
      log.info('stopped', { exit_code: code });
      process.exit(code);
    })();
    return started;
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  return shutdown;
}

/** Throws a ConfigError with the problem, if there is one. */
export function throwIf(problem: string | undefined): void {
  if (problem !== undefined) throw new ConfigError(problem);
}

/** Runs `load` (the program's config, or a check of it); a ConfigError prints each bad setting and exits 2. */
export function configOrExit<T>(program: string, load: () => T): T {
  try {
    return load();
  } catch (err) {
    exitOnConfigError(program, err);
  }
}

/** Prints a ConfigError the same way in both programs and exits 2. */
export function exitOnConfigError(program: string, err: unknown): never {
  if (err instanceof ConfigError) {
    for (const line of err.message.split('\n')) process.stderr.write(`${program}: config error: ${line}\n`);
    process.exit(2);
  }
  throw err;
}

// ---------------------------------------------------------------- start-up

export interface Runtime {
  /** The port actually served (HTTP_PORT=0 picks a free one). */
  port: number;
  /** Runs the program's stop once, closes the server and exits with its code (also on SIGTERM/SIGINT). */
  shutdown: (reason: string) => Promise<void>;
}

/**
 * What both programs do once their config is loaded: serve /healthz, /readyz and /metrics (exit 1
 * if the port cannot be had), and run `stop` once on SIGTERM or SIGINT within the deadline.
 */
export async function startRuntime(o: {
  log: Logger;
  port: number;
  registry: Registry;
  ready: () => boolean;
  deadlineMs: number;
  stop: (reason: string) => Promise<number>;
}): Promise<Runtime> {
  const server = await serveHttp(o.port, o.registry, o.ready).catch((err: Error) => {
    o.log.error('cannot serve HTTP', { port: o.port, error: err.message });
    process.exit(1);
  });
  const shutdown = onShutdown(
    async (reason) => {
      try {
        return await o.stop(reason);
      } finally {
        server.close();
      }
    },
    o.deadlineMs,
    o.log,
  );
  return { port: (server.address() as { port: number }).port, shutdown };
}

/**
 * Connects for as long as it takes. Each attempt first asks whether any bootstrap broker answers
 * on TCP (cheap, see anyBrokerReachable), then calls `connect`, which must make new clients every
 * time: a client whose connect() failed cannot connect again. Every failed attempt logs `Kafka
 * unreachable; retrying` at level error; the wait doubles from 1 s to 10 s. A setting librdkafka
 * only rejects at connect time exits 2, naming it. Returns false when `stopping()` turned true first.
 */
export async function connectWithRetry(o: {
  program: string;
  brokers: string;
  source: Record<string, string>;
  log: Logger;
  /** Access problems are logged by KafkaAccess, in their own words, not as "unreachable". */
  access?: KafkaAccess;
  stopping: () => boolean;
  connect: () => Promise<void>;
  fields?: () => object;
  onConfigError?: () => void;
}): Promise<boolean> {
  for (let attempt = 1, delay = 1000; !o.stopping(); attempt++, delay = Math.min(delay * 2, 10_000)) {
    const probe = await anyBrokerReachable(o.brokers);
    if (probe.ok) {
      try {
        await o.connect();
        o.log.info('connected to Kafka', { brokers: o.brokers, attempt, ...o.fields?.() });
        return true;
      } catch (err) {
        const problem = kafkaConfigProblem(err, o.source);
        if (problem) {
          o.onConfigError?.();
          exitOnConfigError(o.program, new ConfigError(problem));
        }
        probe.error = (err as Error).message;
        o.access?.note(probe.error);
      }
    }
    const fields = { brokers: o.brokers, attempt, retry_in_ms: delay, error: probe.error, ...o.fields?.() };
    if (o.access?.denied) o.log.debug('Kafka refused access; retrying', { attempt, retry_in_ms: delay });
    else if (!probe.ok) o.log.error('Kafka unreachable; retrying', fields);
    // The port answers but Kafka's handshake fails: what a broker that wants SASL or TLS does to a
    // plaintext client (it closes the connection), so say so when no security protocol is set.
    else if (o.source['security.protocol']) o.log.error('Kafka answered, but the connection failed; retrying', fields);
    else
      o.log.error('Kafka answered, but the connection failed; retrying', {
        ...fields,
        hint: 'a broker that requires authentication (SASL) or TLS closes plaintext connections: set KAFKA_CONFIG_SECURITY_PROTOCOL and the SASL settings',
      });
    await new Promise((res) => setTimeout(res, delay));
  }
  return false;
}
