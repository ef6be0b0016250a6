/**
 * A real Apache Kafka broker on loopback, for tests and for running the pipeline on one machine.
 *
 * Why: the programs are only worth trusting against the broker they will meet in production,
 * so tests and local runs use Apache Kafka itself (KRaft, one node acting as broker and
 * controller), not a mock. The jars come from Maven Central (scripts/kafka/pom.xml pins the
 * version) and are cached in .cache/kafka/<version>/ inside the checkout; Java 17+ runs them.
 *
 * How:
 *   npm run kafka                         # broker on localhost:9092 until Ctrl-C
 *   KAFKA_PORT=19092 npm run kafka        # another port
 *   npm run kafka -- --fetch              # only download the jars (CI does this first)
 *
 *   import { startKafka } from './scripts/kafka.ts'
 *   const kafka = await startKafka()      // free ports, data in a temp folder
 *   kafka.bootstrap                       // '127.0.0.1:PORT'
 *   await kafka.stop(); await kafka.start() // a restart keeps ports and data
 *   await kafka.destroy()                 // stop and delete the data
 *
 * The broker's own log goes to <data folder>/server.log; errors also reach stderr.
 * With `metricsPort`, the Prometheus JMX exporter (java agent, pinned in the pom too) serves the
 * broker's metrics on 127.0.0.1:<metricsPort>/metrics, by the rules Kubernetes uses as well
 * (k8s/base/kafka/jmx-exporter.yaml).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const pom = join(here, 'kafka', 'pom.xml');

/** The Kafka version pinned in the pom (one place to change it). */
export const kafkaVersion = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(readFileSync(pom, 'utf8'))![1];
const libs = join(root, '.cache', 'kafka', kafkaVersion, 'libs');
const fetched = join(libs, '.complete');
export const jmxExporterVersion = /<jmx\.exporter\.version>([^<]+)<\/jmx\.exporter\.version>/.exec(readFileSync(pom, 'utf8'))![1];
const jmxAgent = join(root, '.cache', 'jmx-exporter', jmxExporterVersion, `jmx_prometheus_javaagent-${jmxExporterVersion}.jar`);
export const jmxExporterRules = join(root, 'k8s', 'base', 'kafka', 'jmx-exporter.yaml');

function requireCommand(cmd: string, args: string[], why: string): void {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  if (r.error || r.status !== 0) {
    throw new Error(
      `${cmd} is required ${why} but \`${cmd} ${args.join(' ')}\` failed` +
        ` (${r.error?.message ?? `exit ${r.status}`}); install it (Debian: apt-get install ${cmd === 'java' ? 'openjdk-17-jre-headless' : 'maven'})`,
    );
  }
}

/** Downloads the broker's jars into the cache once; returns the folder that holds them. */
export function fetchKafka(): string {
  if (existsSync(fetched)) return libs;
  requireCommand('mvn', ['-v'], 'to download Kafka from Maven Central');
  rmSync(libs, { recursive: true, force: true });
  const r = spawnSync(
    'mvn',
    ['-B', '-q', '-f', pom, 'dependency:copy-dependencies', `-DoutputDirectory=${libs}`, '-DincludeScope=runtime'],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (r.status !== 0) throw new Error(`downloading Kafka ${kafkaVersion} with Maven failed (exit ${r.status})`);
  writeFileSync(fetched, `${new Date().toISOString()}\n`);
  return libs;
}

/** Downloads the JMX exporter's java agent into the cache once; returns the jar. */
export function fetchJmxExporter(): string {
  if (existsSync(jmxAgent)) return jmxAgent;
  requireCommand('mvn', ['-v'], 'to download the JMX exporter from Maven Central');
  const artifact = `io.prometheus.jmx:jmx_prometheus_javaagent:${jmxExporterVersion}`;
  const r = spawnSync(
    'mvn',
    ['-B', '-q', '-f', pom, 'dependency:copy', `-Dartifact=${artifact}`, `-DoutputDirectory=${dirname(jmxAgent)}`],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  if (r.status !== 0 || !existsSync(jmxAgent)) throw new Error(`downloading ${artifact} with Maven failed (exit ${r.status})`);
  return jmxAgent;
}

/** Client settings of a SCRAM-SHA-512 user, for Kafka's Java tools (--command-config) and clients. */
export function scramClientProperties(user: string, password: string): string {
  return [
    'security.protocol=SASL_PLAINTEXT',
    'sasl.mechanism=SCRAM-SHA-512',
    `sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${user}" password="${password}";`,
  ].join('\n');
}

/**
 * Runs one of Kafka's own command-line tools (a class of kafka-tools, e.g.
 * org.apache.kafka.tools.AclCommand) with the broker's jars, optionally as a SCRAM user.
 */
export function kafkaTool(mainClass: string, args: string[], as?: { user: string; password: string; option?: string }) {
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-kafka-tool-'));
  try {
    const extra: string[] = [];
    if (as) {
      writeFileSync(join(dir, 'client.properties'), scramClientProperties(as.user, as.password));
      extra.push(as.option ?? '--command-config', join(dir, 'client.properties'));
    }
    const r = spawnSync(
      'java',
      [
        '-Xmx256m',
        `-Dlog4j2.configurationFile=${join(here, 'kafka', 'log4j2.properties')}`,
        `-Dkafka.logs.dir=${dir}`,
        '-cp',
        join(fetchKafka(), '*'),
        mainClass,
        ...args,
        ...extra,
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A port that was free a moment ago (bind to 0, read it, close). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

export interface KafkaOptions {
  /** Client port; default: a free one. */
  port?: number;
  /** Controller (KRaft quorum) port; default: a free one. */
  controllerPort?: number;
  /** Data folder; default: a new temp folder, deleted by destroy(). */
  dataDir?: string;
  /** Serve the broker's metrics (JMX exporter) on 127.0.0.1 at this port; default: none. */
  metricsPort?: number;
  /** SASL/SCRAM-SHA-512 and ACLs on the client listener (see kafkaAuthProperties). */
  auth?: KafkaAuth;
  /** Extra server.properties lines (`key=value`). */
  properties?: Record<string, string>;
  /** Milliseconds to wait for the broker to answer; default 60 s. */
  startTimeoutMs?: number;
  /**
   * Own process group, so that a terminal's Ctrl-C reaches only the owner, which then stops the
   * broker in order (npm start). Default false: the broker dies with its group (tests).
   */
  detached?: boolean;
}

export interface KafkaBroker {
  readonly bootstrap: string;
  readonly port: number;
  /** Where the broker's Prometheus metrics are served (with KafkaOptions.metricsPort). */
  readonly metricsPort?: number;
  readonly dataDir: string;
  /** Starts the broker again after stop(), same ports and data. */
  start(): Promise<void>;
  /** Clean shutdown (SIGTERM, SIGKILL after 30 s). */
  stop(): Promise<void>;
  /** Abrupt death (SIGKILL), for fault tests. */
  kill(): Promise<void>;
  /** stop() and delete the data folder if it was a temp one. */
  destroy(): Promise<void>;
}

const clusterId = 'cpu-pipeline-local-01'.padEnd(22, '0').slice(0, 22); // 22 chars, like a base64 UUID

export interface KafkaAuth {
  /** SCRAM-SHA-512 users made when the storage is formatted: name -> password. */
  users: Record<string, string>;
  /** The one super user among them (what the topic Job uses in Kubernetes). */
  admin: string;
}

/**
 * The broker with authentication, as k8s/components/kafka-auth sets it up: the client listener
 * takes SASL/SCRAM-SHA-512 only, the StandardAuthorizer allows what ACLs allow (nothing without
 * one) and the admin everything. The broker talks to itself (controller, inter-broker) on
 * listeners bound to 127.0.0.1, where it is User:ANONYMOUS: a super user there, since KRaft's own
 * requests go through the authorizer, but no other machine or pod can reach those listeners.
 */
export function kafkaAuthProperties(
  ports: { client: number; internal: number; controller: number },
  auth: KafkaAuth,
): Record<string, string> {
  const { client: port, internal: internalPort, controller } = ports;
  return {
    listeners: `CLIENT://127.0.0.1:${port},INTERNAL://127.0.0.1:${internalPort},CONTROLLER://127.0.0.1:${controller}`,
    'advertised.listeners': `CLIENT://127.0.0.1:${port},INTERNAL://127.0.0.1:${internalPort}`,
    'listener.security.protocol.map': 'CLIENT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'inter.broker.listener.name': 'INTERNAL',
    'sasl.enabled.mechanisms': 'SCRAM-SHA-512',
    // The server side of SCRAM needs a login module entry, no credentials: it checks clients
    // against the users in the cluster metadata.
    'listener.name.client.scram-sha-512.sasl.jaas.config': 'org.apache.kafka.common.security.scram.ScramLoginModule required;',
    'authorizer.class.name': 'org.apache.kafka.metadata.authorizer.StandardAuthorizer',
    'super.users': `User:${auth.admin};User:ANONYMOUS`,
    'allow.everyone.if.no.acl.found': 'false',
  };
}

export async function startKafka(opts: KafkaOptions = {}): Promise<KafkaBroker> {
  requireCommand('java', ['-version'], 'to run the local Kafka broker (Java 17 or later)');
  const cp = join(fetchKafka(), '*');
  const port = opts.port ?? (await freePort());
  const controllerPort = opts.controllerPort ?? (await freePort());
  const ownDir = !opts.dataDir;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'cpu-pipeline-kafka-'));
  mkdirSync(dataDir, { recursive: true });
  const internalPort = opts.auth ? await freePort() : 0;
  const props: Record<string, string> = {
    'process.roles': 'broker,controller',
    'node.id': '1',
    'controller.quorum.voters': `1@127.0.0.1:${controllerPort}`,
    listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': join(dataDir, 'data'),
    'num.partitions': '1',
    'offsets.topic.replication.factor': '1',
    'transaction.state.log.replication.factor': '1',
    'transaction.state.log.min.isr': '1',
    'share.coordinator.state.topic.replication.factor': '1',
    'share.coordinator.state.topic.min.isr': '1',
    'group.initial.rebalance.delay.ms': '0',
    ...(opts.auth ? kafkaAuthProperties({ client: port, internal: internalPort, controller: controllerPort }, opts.auth) : {}),
    ...opts.properties,
  };
  const config = join(dataDir, 'server.properties');
  writeFileSync(
    config,
    Object.entries(props)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n') + '\n',
  );
  const jvm = [
    '-Xms128m',
    '-Xmx512m',
    '-XX:+UseSerialGC',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${join(here, 'kafka', 'log4j2.properties')}`,
    `-Dkafka.logs.dir=${dataDir}`,
    '-cp',
    cp,
  ];
  const serverLog = join(dataDir, 'server.log');
  // The agent only on the broker itself (not on the storage format run): it binds the port.
  const agent = opts.metricsPort ? [`-javaagent:${fetchJmxExporter()}=127.0.0.1:${opts.metricsPort}:${jmxExporterRules}`] : [];

  if (!existsSync(join(dataDir, 'data', 'meta.properties'))) {
    const scram = Object.entries(opts.auth?.users ?? {}).flatMap(([name, password]) => [
      '--add-scram',
      `SCRAM-SHA-512=[name=${name},password=${password}]`,
    ]);
    const r = spawnSync('java', [...jvm, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', config, ...scram], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`formatting Kafka storage failed: ${r.stderr || r.stdout}`);
  }

  let child: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  const timeoutMs = opts.startTimeoutMs ?? 60_000;

  async function start(): Promise<void> {
    if (child) return;
    const startedAt = existsSync(serverLog) ? readFileSync(serverLog).length : 0;
    const proc = spawn('java', [...agent, ...jvm, 'kafka.Kafka', config], {
      stdio: ['ignore', 'ignore', 'inherit'],
      detached: opts.detached ?? false,
    });
    child = proc;
    exited = once(proc, 'exit');
    let died = false;
    exited.then(() => {
      died = true;
      if (child === proc) child = undefined;
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (died) throw new Error(`Kafka exited during start; see ${serverLog}`);
      const log = existsSync(serverLog) ? readFileSync(serverLog).subarray(startedAt).toString() : '';
      if (log.includes('Kafka Server started')) return;
      if (Date.now() > deadline) {
        await kill();
        throw new Error(`Kafka did not start within ${timeoutMs} ms; see ${serverLog}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function signal(sig: NodeJS.Signals, graceMs: number): Promise<void> {
    const proc = child;
    if (!proc) return;
    proc.kill(sig);
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
    child = undefined;
  }
  const stop = () => signal('SIGTERM', 30_000);
  const kill = () => signal('SIGKILL', 0);

  await start();
  return {
    bootstrap: `127.0.0.1:${port}`,
    port,
    metricsPort: opts.metricsPort,
    dataDir,
    start,
    stop,
    kill,
    async destroy() {
      await stop();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// `npm run kafka`: a broker for people, on localhost:9092 unless KAFKA_PORT says otherwise.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--fetch')) {
    console.log(`Kafka ${kafkaVersion} jars in ${fetchKafka()}`);
    console.log(`JMX exporter ${jmxExporterVersion} in ${fetchJmxExporter()}`);
  } else {
    const port = Number(process.env.KAFKA_PORT ?? 9092);
    const controllerPort = Number(process.env.KAFKA_CONTROLLER_PORT ?? port + 1);
    try {
      const kafka = await startKafka({ port, controllerPort });
      console.log(`Kafka ${kafkaVersion} (KRaft, single node) ready at localhost:${port}; data and server.log in ${kafka.dataDir}`);
      console.log('Ctrl-C stops it and deletes the data.');
      let stopping = false;
      const shutdown = async () => {
        if (stopping) return;
        stopping = true;
        await kafka.destroy();
        console.log('Kafka stopped.');
        process.exit(0);
      };
      process.once('SIGINT', shutdown);
      process.once('SIGTERM', shutdown);
    } catch (err) {
      console.error(`cannot start Kafka: ${(err as Error).message}`);
      process.exit(1);
    }
  }
}
