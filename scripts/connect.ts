/**
 * A real Kafka Connect worker (distributed mode) on loopback with the project's S3 sink connector
 * (connect/), for tests and for trying the connector on one machine.
 *
 * Why: the connector is only worth trusting inside the runtime that will run it, so tests start
 * Apache Kafka's own worker (connect-runtime, among the jars scripts/kafka.ts fetches from Maven
 * Central for the broker: one pinned Kafka version, one download) with the plugin built from
 * connect/ by Maven, and talk to it through its REST API as an operator would.
 *
 *   node --import tsx scripts/connect.ts --fetch   # only download the worker and build the plugin (CI)
 *
 *   import { startConnect } from './scripts/connect.ts'
 *   const worker = await startConnect({ bootstrap, env: { AWS_ACCESS_KEY_ID: ..., ... } })
 *   await worker.createConnector('s3', { 'connector.class': ..., topics: ..., ... })
 *   await worker.waitRunning('s3')
 *   await worker.kill(); await worker.start()    // SIGKILL, then the same worker again (port, group, topics)
 *   await worker.destroy()                       // SIGTERM, then deletes its temp folder
 *
 * The worker's log goes to <data folder>/connect.log (every life of it, appended); its errors also
 * to worker.stderr(). Each worker gets its own group and its own config, offset and status topics.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { fetchKafka, freePort, kafkaVersion } from './kafka.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
/** The Kafka version of the worker: the broker's (scripts/kafka/pom.xml). */
export const connectVersion = kafkaVersion;
export const pluginPath = join(root, 'connect', 'target', 'plugin');
export const connectorClass = 'io.cpupipeline.connect.S3SinkConnector';

function mvn(args: string[], what: string): void {
  const r = spawnSync('mvn', ['-B', '-q', ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) throw new Error(`${what} needs Maven (Debian: apt-get install maven): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${what} with Maven failed (exit ${r.status})`);
}

/** The worker's jars: the broker's, which include connect-runtime and connect-json. */
export const fetchConnect = fetchKafka;

/** Builds the connector (connect/, unit tests left to `mvn -f connect/pom.xml test`); returns the plugin.path folder. */
export function buildConnectorPlugin(): string {
  mvn(['-f', join(root, 'connect', 'pom.xml'), 'package', '-DskipTests'], 'building the connector');
  return pluginPath;
}

export interface ConnectorStatus {
  name: string;
  connector: { state: string; trace?: string };
  tasks: Array<{ id: number; state: string; trace?: string }>;
}

export interface ConnectWorker {
  /** The REST API, http://127.0.0.1:PORT. */
  readonly url: string;
  readonly dataDir: string;
  /** The worker's group id; a sink connector's consumer group is connect-<connector name>. */
  readonly groupId: string;
  /** The worker's log so far. */
  log(): string;
  /** The last of what the worker wrote to stderr (its errors). */
  stderr(): string;
  /** PUT /connectors/<name>/config; throws with the worker's answer when it refuses the config. */
  createConnector(name: string, config: Record<string, string>): Promise<void>;
  /** PUT /connector-plugins/<class>/config/validate: the error messages by setting. */
  validate(config: Record<string, string>): Promise<Record<string, string[]>>;
  status(name: string): Promise<ConnectorStatus | undefined>;
  /** Until the connector and all its tasks are RUNNING; throws at once if one FAILED. */
  waitRunning(name: string, timeoutMs?: number): Promise<ConnectorStatus>;
  /** The JVM's process id while the worker runs (its memory is in /proc/<pid>/status). */
  readonly pid: number | undefined;
  /** SIGTERM: the worker stops its tasks, which commit what preCommit hands back (SIGKILL after 30 s). */
  stop(): Promise<void>;
  /** SIGKILL, for fault tests: no task is stopped, nothing more is committed. */
  kill(): Promise<void>;
  /**
   * Runs the worker again after stop() or kill(): same port, group, topics and folder, so it reads
   * its connectors back from its config topic. Resolves when its REST API lists the connector class.
   */
  start(): Promise<void>;
  /** stop(), then the temp folder goes. */
  destroy(): Promise<void>;
}

export interface ConnectOptions {
  bootstrap: string;
  /** Environment of the worker, added to PATH and HOME (e.g. AWS credentials for the SDK's chain). */
  env?: Record<string, string>;
  /** Extra worker.properties lines. */
  properties?: Record<string, string>;
  /** Milliseconds to wait for the worker's REST API and the plugin; default 90 s. */
  startTimeoutMs?: number;
  /** JVM options (heap, garbage collector); default testJvm. */
  jvm?: string[];
}

/** Small and quick to start, for tests: a worker that runs a connector or two. */
export const testJvm = ['-Xms128m', '-Xmx512m', '-XX:+UseSerialGC'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let built: string | undefined;

export async function startConnect(opts: ConnectOptions): Promise<ConnectWorker> {
  const cp = join(fetchConnect(), '*');
  // The plugin as the sources are now, built once per process.
  built ??= buildConnectorPlugin();
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-connect-'));
  const groupId = `cpu-pipeline-connect-${randomUUID()}`;
  const props: Record<string, string> = {
    'bootstrap.servers': opts.bootstrap,
    'group.id': groupId,
    'config.storage.topic': `${groupId}-configs`,
    'offset.storage.topic': `${groupId}-offsets`,
    'status.storage.topic': `${groupId}-status`,
    'config.storage.replication.factor': '1',
    'offset.storage.replication.factor': '1',
    'offset.storage.partitions': '1',
    'status.storage.replication.factor': '1',
    'status.storage.partitions': '1',
    'key.converter': 'org.apache.kafka.connect.converters.ByteArrayConverter',
    'value.converter': 'org.apache.kafka.connect.converters.ByteArrayConverter',
    listeners: `http://127.0.0.1:${port}`,
    'rest.advertised.host.name': '127.0.0.1',
    'rest.advertised.port': String(port),
    'plugin.path': pluginPath,
    'plugin.discovery': 'service_load',
    // Sink offsets are committed (what preCommit hands back) every second instead of every minute.
    'offset.flush.interval.ms': '1000',
    ...opts.properties,
  };
  const config = join(dataDir, 'worker.properties');
  writeFileSync(
    config,
    Object.entries(props)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n') + '\n',
  );
  const logFile = join(dataDir, 'connect.log');
  const url = `http://127.0.0.1:${port}`;
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  let stderr = '';
  let proc: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();

  async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; text: string }> {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text };
  }

  async function signal(sig: NodeJS.Signals, graceMs: number): Promise<void> {
    const p = proc;
    if (!p) return;
    p.kill(sig);
    const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
  const stop = () => signal('SIGTERM', 30_000);
  const kill = () => signal('SIGKILL', 0);

  async function start(): Promise<void> {
    if (proc) return;
    const p = spawn(
      'java',
      [
        ...(opts.jvm ?? testJvm),
        '-Djava.awt.headless=true',
        `-Dlog4j2.configurationFile=${join(here, 'connect', 'log4j2.properties')}`,
        `-Dconnect.logs.dir=${dataDir}`,
        '-cp',
        cp,
        'org.apache.kafka.connect.cli.ConnectDistributed',
        config,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH, HOME: process.env.HOME, ...opts.env } },
    );
    proc = p;
    p.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-20_000);
    });
    exited = once(p, 'exit').then(() => {
      if (proc === p) proc = undefined;
    });

    // Ready: the REST API answers and lists the connector (the plugin loaded).
    const timeoutMs = opts.startTimeoutMs ?? 90_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (p.exitCode !== null || p.signalCode !== null)
        throw new Error(`the Connect worker exited (${p.exitCode ?? p.signalCode}) during start: ${stderr.slice(-2000)}`);
      let plugins: Awaited<ReturnType<typeof api>> | undefined;
      try {
        plugins = await api('GET', '/connector-plugins?connectorsOnly=true');
      } catch {
        /* not listening yet */
      }
      if (plugins?.status === 200) {
        if ((plugins.json as Array<{ class: string }>).some((c) => c.class === connectorClass)) return;
        await kill();
        throw new Error(`the worker does not list ${connectorClass}: ${plugins.text}`);
      }
      if (Date.now() > deadline) {
        await kill();
        throw new Error(`the Connect worker did not answer within ${timeoutMs} ms; its log ends: ${log().slice(-3000)}`);
      }
      await sleep(250);
    }
  }

  async function destroy(): Promise<void> {
    await stop();
    rmSync(dataDir, { recursive: true, force: true });
  }

  try {
    await start();
  } catch (err) {
    await destroy();
    throw err;
  }

  const status = async (name: string) => {
    const r = await api('GET', `/connectors/${encodeURIComponent(name)}/status`);
    return r.status === 200 ? (r.json as ConnectorStatus) : undefined;
  };

  return {
    url,
    dataDir,
    groupId,
    get pid() {
      return proc?.pid;
    },
    log,
    stderr: () => stderr,
    async createConnector(name, connectorConfig) {
      const until = Date.now() + 60_000;
      for (;;) {
        const r = await api('PUT', `/connectors/${encodeURIComponent(name)}/config`, connectorConfig);
        if (r.status === 200 || r.status === 201) return;
        // 409: the worker is still joining its group (a rebalance is under way); ask again.
        if (r.status !== 409 || Date.now() > until) throw new Error(`the worker refused connector ${name} (${r.status}): ${r.text}`);
        await sleep(250);
      }
    },
    async validate(connectorConfig) {
      const r = await api('PUT', `/connector-plugins/${connectorClass}/config/validate`, connectorConfig);
      if (r.status !== 200) throw new Error(`validate answered ${r.status}: ${r.text}`);
      const out: Record<string, string[]> = {};
      for (const c of (r.json as { configs: Array<{ value: { name: string; errors: string[] } }> }).configs) {
        if (c.value.errors.length > 0) out[c.value.name] = c.value.errors;
      }
      return out;
    },
    status,
    async waitRunning(name, timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const s = await status(name);
        const failed = s && [s.connector, ...s.tasks].find((x) => x.state === 'FAILED');
        if (failed) throw new Error(`connector ${name} FAILED: ${failed.trace ?? ''}`);
        if (s && s.connector.state === 'RUNNING' && s.tasks.length > 0 && s.tasks.every((t) => t.state === 'RUNNING')) return s;
        if (Date.now() > until) throw new Error(`connector ${name} not RUNNING within ${timeoutMs} ms: ${JSON.stringify(s)}`);
        await sleep(250);
      }
    },
    stop,
    kill,
    start,
    destroy,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--fetch')) {
    console.log(`Kafka Connect ${connectVersion} worker jars in ${fetchConnect()}`);
    console.log(`connector plugin in ${buildConnectorPlugin()}`);
  } else {
    console.error('usage: node --import tsx scripts/connect.ts --fetch');
    process.exit(2);
  }
}
