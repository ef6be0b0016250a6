/**
 * `npm start`: the whole pipeline on one machine, no cloud account needed.
 *
 * Starts a real Kafka broker (KRaft) on localhost:9092, an S3-compatible server on
 * localhost:9000 with the bucket created, then sampler.ts and sink.ts with demo settings
 * (a reading every 5 s, files closed after 15 s), and prints each file as it lands.
 * Ctrl-C stops the programs (they flush and commit), then S3 and Kafka; nothing is left running.
 *
 * `npm start -- --monitoring` adds a real Prometheus (Debian's, scripts/prometheus.ts) on
 * localhost:9090 that scrapes the sampler, the sink and the broker (JMX exporter on :9404) with the
 * alert rules of k8s/components/monitoring/alerts.yaml; its URL is printed.
 *
 * Environment: KAFKA_PORT [9092], S3_PORT [9000], SAMPLER_HTTP_PORT [8080], SINK_HTTP_PORT [8081],
 * SAMPLE_INTERVAL_SECONDS [5], FILE_MAX_AGE_SECONDS [15], S3_BUCKET [cpu-pipeline-local],
 * HOST_CGROUP_ROOT [/sys/fs/cgroup where it exists: the pods of a machine that is a Kubernetes node,
 * read by UID; none elsewhere];
 * with --monitoring also PROMETHEUS_PORT [9090], KAFKA_METRICS_PORT [9404].
 * The objects live in the S3 server's memory and go when it stops.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { KafkaJS } from '@confluentinc/kafka-javascript';
import { startKafka } from './kafka.ts';
import { localScrapeConfigs, startPrometheus } from './prometheus.ts';
import { startS3 } from './s3.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const kafkaPort = Number(env.KAFKA_PORT ?? 9092);
const s3Port = Number(env.S3_PORT ?? 9000);
const bucket = env.S3_BUCKET ?? 'cpu-pipeline-local';
const topic = 'cpu-levels';
const monitoring = process.argv.includes('--monitoring');
const metricsPort = Number(env.KAFKA_METRICS_PORT ?? 9404);
const say = (line: string) => process.stdout.write(`[dev] ${line}\n`);

const stoppers: Array<() => Promise<void>> = [];
let stopping = false;
async function stopAll(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say('stopping: sampler and sink flush first, then S3 and Kafka');
    for (const stop of stoppers.reverse()) await stop().catch((err: Error) => say(`stop failed: ${err.message}`));
    say('stopped; nothing left running');
  }
  process.exit(code);
}
// Ctrl-C reaches only this process (the others run in their own process groups), so the stop is in order.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => void stopAll(0));

try {
  say(`starting Kafka on localhost:${kafkaPort} (first run downloads it with Maven)`);
  const kafka = await startKafka({
    port: kafkaPort,
    controllerPort: Number(env.KAFKA_CONTROLLER_PORT ?? kafkaPort + 1),
    metricsPort: monitoring ? metricsPort : undefined,
    detached: true,
  });
  stoppers.push(() => kafka.destroy());
  say(`starting the S3-compatible server on localhost:${s3Port} (first run installs it from PyPI)`);
  const s3 = await startS3({ port: s3Port, detached: true });
  stoppers.push(() => s3.destroy());

  const credentials = { AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local-secret' };
  await new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local-secret' },
  }).send(new CreateBucketCommand({ Bucket: bucket }));
  const admin = new KafkaJS.Kafka({ kafkaJS: { brokers: [kafka.bootstrap], logLevel: KafkaJS.logLevel.NOTHING } }).admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }] });
  await admin.disconnect();

  const common = {
    PATH: env.PATH,
    HOME: env.HOME,
    NODE_EXTRA_CA_CERTS: env.NODE_EXTRA_CA_CERTS,
    KAFKA_BROKERS: kafka.bootstrap,
    KAFKA_TOPIC: topic,
    LOG_LEVEL: 'info',
  };
  const run = (name: string, extra: Record<string, string | undefined>, onLog: (l: Record<string, unknown>) => void): ChildProcess => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, `${name}.ts`)], {
      cwd: root,
      env: { ...common, ...extra },
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    });
    let partial = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          onLog(JSON.parse(line));
        } catch {
          process.stdout.write(`[${name}] ${line}\n`);
        }
      }
    });
    const exited = once(child, 'exit');
    child.on('exit', (code) => {
      if (!stopping) {
        say(`${name} exited (${code}); stopping everything`);
        void stopAll(1);
      }
    });
    stoppers.push(async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    });
    return child;
  };

  run(
    'sampler',
    {
      SAMPLE_INTERVAL_SECONDS: env.SAMPLE_INTERVAL_SECONDS ?? '5',
      HTTP_PORT: env.SAMPLER_HTTP_PORT ?? '8080',
      NODE_NAME: env.NODE_NAME,
      HOST_CGROUP_ROOT: env.HOST_CGROUP_ROOT ?? (existsSync('/sys/fs/cgroup') ? '/sys/fs/cgroup' : ''),
    },
    (l) => {
      if (l.msg === 'reading')
        say(
          `reading ${l.window_end}: machine ${l.host_busy_percent}% busy, this process's cgroup ${l.container_cpu_percent ?? 'n/a'}%` +
            (l.pods === undefined ? '' : `, ${l.pods} pod(s)`),
        );
      else if (l.level === 'error' || l.level === 'warn') say(`sampler ${l.level}: ${l.msg}`);
    },
  );
  run(
    'sink',
    {
      ...credentials,
      S3_ENDPOINT: s3.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      S3_REGION: 'us-east-1',
      S3_BUCKET: bucket,
      S3_PREFIX: 'cpu-levels',
      FILE_MAX_AGE_SECONDS: env.FILE_MAX_AGE_SECONDS ?? '15',
      HTTP_PORT: env.SINK_HTTP_PORT ?? '8081',
    },
    (l) => {
      if (l.msg === 'object written') say(`file written: s3://${bucket}/${l.key} (${l.records} readings)`);
      else if (l.level === 'error' || l.level === 'warn') say(`sink ${l.level}: ${l.msg}`);
    },
  );

  if (monitoring) {
    const samplerPort = env.SAMPLER_HTTP_PORT ?? '8080';
    const prom = await startPrometheus({
      scrapeConfigs: localScrapeConfigs({
        sampler: [{ address: `127.0.0.1:${samplerPort}`, labels: { node: env.NODE_NAME || hostname() } }],
        sink: [{ address: `127.0.0.1:${env.SINK_HTTP_PORT ?? '8081'}` }],
        kafka: [{ address: `127.0.0.1:${metricsPort}` }],
      }),
      ruleFiles: [join(root, 'k8s', 'components', 'monitoring', 'alerts.yaml')],
      interval: '5s',
      port: Number(env.PROMETHEUS_PORT ?? 9090),
      detached: true,
    });
    stoppers.unshift(() => prom.destroy()); // stopped last of all (the list runs in reverse)
    say(`Prometheus at ${prom.url}: targets ${prom.url}/api/v1/targets, alerts ${prom.url}/api/v1/alerts`);
  }
  say(`pipeline running: sampler -> Kafka topic ${topic} at ${kafka.bootstrap} -> sink -> s3://${bucket}/cpu-levels/ at ${s3.endpoint}`);
  say(`look at the files: npm run --silent s3 -- --ls ${s3.endpoint} ${bucket}   (Ctrl-C here stops everything)`);
} catch (err) {
  say(`cannot start: ${(err as Error).message}`);
  await stopAll(1);
}
