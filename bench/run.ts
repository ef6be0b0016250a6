/**
 * The pipeline's costs against well-known yardsticks, measured in one run; prints numbers, asserts
 * nothing.   npm run bench   (as root: the sampler comparison uses CPU-accounting cgroups)
 *
 * 1. Sink catch-up: a backlog of BENCH_READINGS (1,000,000) readings in 3 partitions, read by Kafka's
 *    own ConsumerPerformance (its fetch rate, group join excluded), then caught up by the sink as
 *    its Deployment runs it (bundle, V8 flags) into a local S3 server: records/s from its first record
 *    read to its last record in S3, the ratio, peak RSS against memoryBound(), and where its main
 *    thread's time went (a V8 CPU profile). Then the same backlog caught up by the Kafka Connect S3
 *    sink (connect/) in a fresh Connect worker, with tasks.max=1 and then 3, each into its own prefix
 *    (sink.ts into sink-ts/): records/s from its task's partitions assigned to its last record in S3
 *    (from the worker's log), and the worker JVM's peak RSS, with the heap and collector that Kafka's
 *    bin/connect-distributed.sh starts it with.
 * 2. Sampler at rest: the sampler as its DaemonSet runs it, at the default 60 s interval, beside
 *    Debian's prometheus-node-exporter, both scraped once a minute, for BENCH_IDLE_SECONDS (180):
 *    CPU-seconds per hour (cgroup CPU accounting, every thread counted) and RSS (with its anonymous,
 *    private part: most of a Node process's RSS is the node binary's own code pages, shared).
 * 3. S3 PUTs per 1,000 readings with 10 nodes at the default settings: a simulated day through the
 *    sink's own file rules (PartitionFiles), with the nodes spread over 3 partitions by key.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { connectVersion, startConnect } from '../scripts/connect.ts';
import { fetchKafka, freePort, startKafka } from '../scripts/kafka.ts';
import { startS3 } from '../scripts/s3.ts';
import { loadConfig, memoryBound, PartitionFiles } from '../sink.ts';
import { createBucket, createTopic, produceBacklog, root, deployedContainer, s3SinkConnector, uniqueName } from '../test/helpers.ts';

const READINGS = Number(process.env.BENCH_READINGS ?? 1_000_000);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 180);
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const results: string[] = [];
const say = (line: string) => {
  console.log(line);
  results.push(line);
};

function build(): void {
  const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm run build: ${r.stderr}`);
}

/** Kafka's ConsumerPerformance on the topic: its fetch rate in messages/s (group join excluded). */
function consumerPerformance(bootstrap: string, topic: string, n: number): number {
  const logs = mkdtempSync(join(tmpdir(), 'cpu-pipeline-consumer-perf-'));
  const r = spawnSync(
    'java',
    [
      '-Xmx512m',
      '-cp',
      join(fetchKafka(), '*'),
      `-Dlog4j2.configurationFile=${join(root, 'scripts/kafka/log4j2.properties')}`,
      `-Dkafka.logs.dir=${logs}`, // the log4j2 file's appender writes there
      'org.apache.kafka.tools.ConsumerPerformance',
      '--bootstrap-server',
      bootstrap,
      '--topic',
      topic,
      '--messages',
      String(n),
      '--timeout',
      '120000',
    ],
    { encoding: 'utf8' },
  );
  rmSync(logs, { recursive: true, force: true });
  const lines = r.stdout.trim().split('\n');
  const header = lines.findIndex((l) => l.startsWith('start.time'));
  const cols = lines[header].split(', ');
  const row = lines[header + 1].split(', ');
  return Number(row[cols.indexOf('fetch.nMsg.sec')]);
}

const status = (pid: number, field: string) =>
  Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
const anonymous = (pid: number) => Number(/^Anonymous:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;

async function metric(port: number, name: string): Promise<number> {
  try {
    const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Where a process's RSS lives: the node binary's own pages, other files (shared libraries), private memory. */
function rssBreakdown(pid: number): string {
  const parts = new Map<string, number>();
  let name = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) name = head[1];
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (!rss) continue;
    const kind =
      name === process.execPath || name.endsWith('/bin/node')
        ? 'node binary'
        : name.startsWith('/')
          ? /librdkafka/.test(name)
            ? 'librdkafka'
            : 'other files'
          : 'private';
    parts.set(kind, (parts.get(kind) ?? 0) + Number(rss[1]) * 1024);
  }
  return [...parts]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${mib(v)}`)
    .join(', ');
}

/** Self time of a V8 CPU profile, grouped into what a reader can act on. */
function profileSummary(file: string): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: Array<{ id: number; callFrame: { functionName: string; url: string } }>;
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const groups = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const { functionName: fn, url } = byId.get(id)!.callFrame;
    const group =
      fn === '(idle)'
        ? 'idle (waiting for librdkafka, S3, gzip)'
        : fn === '(program)'
          ? 'native: librdkafka messages into JS objects'
          : fn === '(garbage collector)'
            ? 'garbage collection'
            : /ajv|formats|validate/.test(url + fn)
              ? 'JSON Schema validation'
              : /checkRecord|membersInText|membersParsed|decode|timePartition/.test(fn)
                ? 'JSON.parse, UTF-8 and duplicate-key checks'
                : /zlib/.test(url)
                  ? 'gzip (main-thread part)'
                  : /aws-sdk|smithy/.test(url)
                    ? 'AWS SDK'
                    : 'other JavaScript';
    groups.set(group, (groups.get(group) ?? 0) + (p.timeDeltas[i] ?? 0));
    total += p.timeDeltas[i] ?? 0;
  });
  return [...groups]
    .sort((a, b) => b[1] - a[1])
    .map(([g, t]) => `${g} ${((100 * t) / total).toFixed(0)} %`)
    .join(', ');
}

async function sinkCatchUp(): Promise<void> {
  const kafka = await startKafka();
  const s3 = await startS3();
  try {
    const topic = uniqueName('bench');
    await createTopic(kafka.bootstrap, topic, 3);
    await createBucket(s3.endpoint, 'bench');
    console.log(`# producing ${READINGS} readings (1,000 nodes, 3 partitions)...`);
    await produceBacklog(kafka.bootstrap, topic, READINGS);
    const cp = [consumerPerformance(kafka.bootstrap, topic, READINGS), consumerPerformance(kafka.bootstrap, topic, READINGS)];
    const { args } = deployedContainer('sink');
    const port = await freePort();
    const env = {
      PATH: process.env.PATH!,
      KAFKA_BROKERS: kafka.bootstrap,
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: uniqueName('group'),
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: 'bench',
      S3_FORCE_PATH_STYLE: 'true',
      S3_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'bench',
      AWS_SECRET_ACCESS_KEY: 'bench',
      S3_PREFIX: 'sink-ts',
      HTTP_PORT: String(port),
      LOG_LEVEL: 'error',
      FILE_MAX_AGE_SECONDS: '1',
    };
    const profDir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-prof-'));
    const sink = spawn(process.execPath, [`--cpu-prof`, `--cpu-prof-dir=${profDir}`, ...args.slice(1)], {
      cwd: root,
      env,
      stdio: 'inherit',
    });
    let first = 0;
    let consumed = 0;
    for (const deadline = Date.now() + 600_000; Date.now() < deadline;) {
      await sleep(250);
      if (!first && (await metric(port, 'sink_records_consumed_total')) > 0) first = Date.now();
      if (!consumed && (await metric(port, 'sink_records_consumed_total')) >= READINGS) consumed = Date.now();
      if ((await metric(port, 'sink_records_written_total')) >= READINGS) break;
    }
    const done = Date.now();
    const peak = status(sink.pid!, 'VmHWM');
    sink.kill('SIGTERM');
    await new Promise((r) => sink.once('exit', r));
    const rate = READINGS / ((done - first) / 1000);
    const best = Math.max(...cp);
    say(
      `sink catch-up: ${READINGS} readings, ${Math.round(rate)} records/s into S3 (all read after ${((consumed - first) / 1000).toFixed(1)} s, all in S3 after ${((done - first) / 1000).toFixed(1)} s, files closed 1 s after their last record)`,
    );
    say(
      `  Kafka ConsumerPerformance on the same topic: ${cp.map((x) => Math.round(x)).join(' and ')} messages/s; sink/ConsumerPerformance = ${(rate / best).toFixed(2)} (against the faster run)`,
    );
    say(`  sink peak RSS ${mib(peak)}; memoryBound() at these settings ${mib(memoryBound(loadConfig(env)))}`);
    const profile = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (profile) say(`  sink main thread: ${profileSummary(join(profDir, profile))}`);
    say(
      `connect: the same backlog through the Kafka Connect S3 sink in a Connect ${connectVersion} worker, a fresh one per run, JVM ${connectDistributedJvm.join(' ')} (as bin/connect-distributed.sh starts it)`,
    );
    for (const tasks of [1, 3]) await connectCatchUp(kafka.bootstrap, s3.endpoint, topic, tasks, { rate, peak });
  } finally {
    await s3.destroy();
    await kafka.destroy();
  }
}

/**
 * The JVM options a user starting Connect with Kafka's own scripts gets: KAFKA_HEAP_OPTS of
 * bin/connect-distributed.sh and KAFKA_JVM_PERFORMANCE_OPTS of bin/kafka-run-class.sh.
 */
const connectDistributedJvm = [
  '-Xms256M',
  '-Xmx2G',
  '-server',
  '-XX:+UseG1GC',
  '-XX:MaxGCPauseMillis=20',
  '-XX:InitiatingHeapOccupancyPercent=35',
  '-XX:+ExplicitGCInvokesConcurrent',
  '-XX:MaxInlineLevel=15',
];

/** A line of the worker's log: its time ([yyyy-MM-dd HH:mm:ss,SSS], read as UTC: only differences count). */
const logTime = (line: string) => Date.parse(`${line.slice(1, 24).replace(' ', 'T').replace(',', '.')}Z`);

/**
 * The connector catching up on the backlog in a fresh worker: from the first of its tasks' partitions
 * assigned (the group joined, as for sink.ts) to the log line of the object that holds the last record.
 */
async function connectCatchUp(bootstrap: string, endpoint: string, topic: string, tasks: number, sink: { rate: number; peak: number }) {
  const worker = await startConnect({
    bootstrap,
    env: { AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench' },
    jvm: connectDistributedJvm,
  });
  try {
    await sleep(5000); // started and joined its group: the idle worker's memory
    const idle = status(worker.pid!, 'VmRSS');
    const dlqTopic = `${topic}-connect-dlq-${tasks}`;
    await createTopic(bootstrap, dlqTopic, 1);
    const settings = { 'tasks.max': String(tasks), 's3.prefix': `connect-tasks-${tasks}` };
    await worker.createConnector(uniqueName('bench'), s3SinkConnector(topic, dlqTopic, { endpoint, bucket: 'bench' }, settings));
    let first = 0;
    let done = 0;
    for (const deadline = Date.now() + 600_000; !done;) {
      if (Date.now() > deadline) throw new Error(`the connector did not write ${READINGS} records within 600 s`);
      await sleep(250);
      let written = 0;
      for (const line of worker.log().split('\n')) {
        if (!first && line.includes(' INFO partitions assigned: [')) first = logTime(line);
        const m = / INFO object written: .* records=(\d+) /.exec(line);
        if (m && (written += Number(m[1])) >= READINGS) {
          done = logTime(line);
          break;
        }
      }
    }
    const peak = status(worker.pid!, 'VmHWM');
    const rate = READINGS / ((done - first) / 1000);
    say(
      `connect catch-up, tasks.max=${tasks}: ${READINGS} readings, ${Math.round(rate)} records/s into S3 (all in S3 after ${((done - first) / 1000).toFixed(1)} s from its partitions assigned, files closed 1 s after their last record); connector/sink = ${(rate / sink.rate).toFixed(2)}`,
    );
    say(`  worker peak RSS ${mib(peak)} (idle before the connector: ${mib(idle)}); sink peak RSS ${mib(sink.peak)}`);
  } finally {
    await worker.destroy();
  }
}

/** A CPU-accounting cgroup (v1 cpuacct or v2) the process joins before exec; its CPU time in seconds. */
function cpuCgroup(name: string): { wrap: (argv: string[]) => string[]; seconds: () => number; remove: () => void } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const dir = v2 ? join('/sys/fs/cgroup', name) : join('/sys/fs/cgroup/cpuacct', name);
  mkdirSync(dir);
  return {
    wrap: (argv) => ['sh', '-c', `echo $$ > ${join(dir, 'cgroup.procs')} && exec "$@"`, 'sh', ...argv],
    seconds: () =>
      v2
        ? Number(/^usage_usec (\d+)/m.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'))![1]) / 1e6
        : Number(readFileSync(join(dir, 'cpuacct.usage'), 'utf8')) / 1e9,
    remove: () => rmdirSync(dir),
  };
}

async function samplerAtRest(): Promise<void> {
  const kafka = await startKafka();
  const procs: ChildProcess[] = [];
  try {
    const samplerArgs = deployedContainer('sampler').args;
    const samplerPort = await freePort();
    const exporterPort = await freePort();
    const cg = [cpuCgroup(uniqueName('bench-sampler')), cpuCgroup(uniqueName('bench-exporter'))];
    const wrap = (i: number, argv: string[]) => cg[i]?.wrap(argv) ?? argv;
    const run = (argv: string[], env: NodeJS.ProcessEnv) => {
      const p = spawn(argv[0], argv.slice(1), { cwd: root, env, stdio: 'ignore' });
      procs.push(p);
      return p;
    };
    const sampler = run(wrap(0, [process.execPath, ...samplerArgs.slice(1)]), {
      PATH: process.env.PATH,
      KAFKA_BROKERS: kafka.bootstrap,
      HTTP_PORT: String(samplerPort),
    });
    const exporter = run(wrap(1, ['prometheus-node-exporter', `--web.listen-address=127.0.0.1:${exporterPort}`]), {
      PATH: process.env.PATH,
    });
    await sleep(5000); // both started and connected: measure from here
    const cpu0 = cg.map((c) => c?.seconds() ?? 0);
    for (let t = 0; t < IDLE_SECONDS; t += 60) {
      await Promise.all([samplerPort, exporterPort].map((port) => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text())));
      await sleep(Math.min(60, IDLE_SECONDS - t) * 1000);
    }
    const cpu = cg.map((c, i) => (c ? c.seconds() - cpu0[i] : NaN));
    const perHour = cpu.map((s) => (s * 3600) / IDLE_SECONDS);
    const rss = [sampler, exporter].map((p) => status(p.pid!, 'VmRSS'));
    const anon = [sampler, exporter].map((p) => anonymous(p.pid!));
    const where = rssBreakdown(sampler.pid!);
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)))));
    cg.forEach((c) => c?.remove());
    say(`sampler at rest (60 s interval, ${IDLE_SECONDS} s, one scrape a minute each):`);
    say(
      `  CPU: sampler ${perHour[0].toFixed(2)} CPU-s/hour, node_exporter ${perHour[1].toFixed(2)} CPU-s/hour; ratio ${(perHour[0] / perHour[1]).toFixed(2)}`,
    );
    say(
      `  RSS: sampler ${mib(rss[0])} (private ${mib(anon[0])}), node_exporter ${mib(rss[1])} (private ${mib(anon[1])}); ratio ${(rss[0] / rss[1]).toFixed(2)} (private ${(anon[0] / anon[1]).toFixed(2)})`,
    );
    const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60000)'], { stdio: 'ignore' });
    await sleep(1000);
    say(`  the sampler's RSS: ${where}`);
    say(`  for scale: a bare node process idling has RSS ${mib(status(bare.pid!, 'VmRSS'))} (private ${mib(anonymous(bare.pid!))})`);
    bare.kill();
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    await kafka.destroy();
  }
}

/**
 * The sampler's memory with every pod's readings held for an absent broker: a node of PODS pods
 * (a cgroup tree of that many pod folders, as the kubelet lays them out), readings every tenth of
 * a second until POD_READINGS_QUEUE_MAX of them wait, then its RSS (what the bound costs).
 */
async function samplerPodQueue(): Promise<void> {
  const PODS = 110; // the kubelet's default maxPods
  const tree = mkdtempSync(join(tmpdir(), 'cpu-pipeline-bench-pods-'));
  writeFileSync(join(tree, 'cgroup.controllers'), 'cpu\n');
  for (let i = 0; i < PODS; i++) {
    const dir = join(
      tree,
      'kubepods.slice',
      'kubepods-burstable.slice',
      `kubepods-burstable-pod${randomUUID().replaceAll('-', '_')}.slice`,
    );
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'cpu.stat'), `usage_usec ${i * 1000}\nthrottled_usec 0\n`);
    writeFileSync(join(dir, 'cpu.max'), 'max 100000\n');
  }
  const port = await freePort();
  const closed = await freePort(); // nothing listens: the broker is away
  const queueMax = Number(process.env.POD_READINGS_QUEUE_MAX ?? 10_000);
  const sampler = spawn(process.execPath, [...deployedContainer('sampler').args.slice(1)], {
    cwd: root,
    env: {
      PATH: process.env.PATH,
      KAFKA_BROKERS: `127.0.0.1:${closed}`,
      HTTP_PORT: String(port),
      SAMPLE_INTERVAL_SECONDS: '0.1',
      HOST_CGROUP_ROOT: tree,
      POD_READINGS_QUEUE_MAX: String(queueMax),
      LOG_LEVEL: 'error',
    },
    stdio: 'ignore',
  });
  try {
    await sleep(2000);
    const rssAtStart = status(sampler.pid!, 'VmRSS');
    const pending = async () =>
      Number(/^sampler_pod_readings_pending (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1]);
    const started = Date.now();
    while ((await pending()) < queueMax && Date.now() - started < 120_000) await sleep(1000);
    const full = await pending();
    await sleep(3000); // past the bound: the newest pods' readings are dropped, the memory stays
    const rss = status(sampler.pid!, 'VmRSS');
    const heap = Number(/^nodejs_heap_size_used_bytes (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1]);
    say(`sampler with ${PODS} pods and the broker away (a reading every 0.1 s, POD_READINGS_QUEUE_MAX=${queueMax}):`);
    say(`  ${full} pods' readings held: RSS ${mib(rss)} (private ${mib(anonymous(sampler.pid!))}), ${mib(rssAtStart)} at start`);
    say(
      `  JS heap in use ${mib(heap)}; about ${((rss - rssAtStart) / full).toFixed(0)} bytes of RSS per held reading; the DaemonSet's memory limit is 128 MiB`,
    );
  } finally {
    sampler.kill('SIGKILL');
    rmSync(tree, { recursive: true, force: true });
  }
}

/** A day of 10 nodes, one reading a minute each, through the sink's own file rules at the defaults. */
function putsPer1000(): void {
  const config = loadConfig({});
  const nodes = Array.from({ length: 10 }, (_, i) => `ip-10-0-1-${i}.eu-west-1.compute.internal`);
  const partitions = Array.from({ length: 3 }, (_, p) => new PartitionFiles(p, config));
  const offsets = [0, 0, 0];
  let puts = 0;
  let readings = 0;
  const start = Date.UTC(2026, 10, 27);
  for (let second = 0; second < 86_400; second++) {
    const now = start + second * 1000;
    if (second % 60 === 0) {
      const hour = `dt=2026-11-27/hour=${String(Math.floor(second / 3600)).padStart(2, '0')}`;
      for (const node of nodes) {
        const p = crc32(node) % 3; // librdkafka's default partitioner hashes the key (CRC32)
        puts += partitions[p].add(offsets[p]++, hour, Buffer.alloc(480, 0x61), now).length;
        readings++;
      }
    }
    for (const p of partitions) puts += p.closeIfOld(now) ? 1 : 0;
  }
  say(
    `S3 PUTs per 1,000 readings: ${((1000 * puts) / readings).toFixed(1)} (10 nodes, a simulated day, FILE_MAX_AGE_SECONDS=${config.maxAgeMs / 1000}, 3 partitions: ${puts} PUTs for ${readings} readings)`,
  );
}

// BENCH_ONLY=puts|sink|sampler|pods runs one part (sink: sink.ts and the connector).
const only = process.env.BENCH_ONLY;
build();
if (!only || only === 'puts') putsPer1000();
if (!only || only === 'sink') await sinkCatchUp();
if (!only || only === 'sampler') await samplerAtRest();
if (!only || only === 'pods') await samplerPodQueue();
console.log('\n--- summary\n' + results.join('\n'));
