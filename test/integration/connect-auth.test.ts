/**
 * Kafka Connect against a broker with authentication on, as the eks overlay with the connect
 * component runs them: the worker's settings are what its start script in the manifests writes
 * (run here with bash), and the broker has exactly the ACLs its own start script sets (read from
 * the manifests), nothing more. Readings go through the worker to S3, exactly once, and an invalid
 * record to the dead-letter topic; without the password the worker does not start, and says which
 * Secret is missing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KafkaJS } from '@confluentinc/kafka-javascript';
import { parseAllDocuments } from 'yaml';
import { startConnect } from '../../scripts/connect.ts';
import { kafkaTool, startKafka, type KafkaBroker } from '../../scripts/kafka.ts';
import {
  brokerAcls,
  exactlyOnce,
  overlayWithConnect,
  readObjects,
  reading,
  s3ForTest,
  s3SinkConnector,
  uniqueName,
  waitFor,
} from '../helpers.ts';

const password = () => randomBytes(18).toString('base64url');
const users = { admin: password(), connect: password() };
const admin = { user: 'admin', password: users.admin };
let kafka: KafkaBroker;

before(async () => {
  kafka = await startKafka({ auth: { users, admin: 'admin' } });
});
after(() => kafka?.destroy());

/** The eks overlay with the connect component, as objects. */
function manifests(): any[] {
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-connect-auth-'));
  try {
    const r = spawnSync('kubectl', ['kustomize', overlayWithConnect(dir, 'eks')], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
    assert.equal(r.status, 0, r.stderr);
    return parseAllDocuments(r.stdout)
      .map((d) => d.toJS())
      .filter(Boolean);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const find = (objs: any[], kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && (x.metadata.name === name || x.metadata.name.startsWith(`${name}-`)));
  assert.ok(o, `${kind}/${name} is rendered`);
  return o;
};

function tool(mainClass: string, args: string[], configOption = '--command-config') {
  const r = kafkaTool(mainClass, ['--bootstrap-server', kafka.bootstrap, ...args], { ...admin, option: configOption });
  assert.equal(r.status, 0, `${mainClass} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/**
 * The worker's start script from the manifests, up to where it starts Connect, run with bash on
 * the rendered worker.properties and this environment: the worker.properties it writes, or its
 * error.
 */
function workerSettings(script: string, workerProperties: string, env: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-connect-script-'));
  try {
    writeFileSync(join(dir, 'worker.properties'), workerProperties);
    const start = script.indexOf('KAFKA_OPTS=');
    assert.ok(start > 0, 'the script starts Connect with KAFKA_OPTS');
    const part = script.slice(0, start).replaceAll('/etc/connect-config/', `${dir}/`).replaceAll('/tmp/connect', `${dir}/out`);
    const r = spawnSync('bash', ['-ec', part], { encoding: 'utf8', env: { PATH: process.env.PATH, POD_IP: '127.0.0.1', ...env } });
    const file = join(dir, 'out', 'worker.properties');
    return { code: r.status, stderr: r.stderr, settings: r.status === 0 ? readFileSync(file, 'utf8') : '' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const parse = (text: string) =>
  Object.fromEntries(
    text
      .split('\n')
      .filter((l) => /^[a-z]/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );

test('Kafka Connect logs in as connect: with the ACLs the broker sets, readings reach S3 exactly once and an invalid record the dead-letter topic', async (t) => {
  const objs = manifests();
  const sink = find(objs, 'ConfigMap', 'cpu-sink').data;
  const worker = find(objs, 'Deployment', 'cpu-connect').spec.template.spec.containers[0];
  const job = find(objs, 'Job', 'cpu-connect-connector').spec.template.spec.containers[0];
  const connector = job.env.find((e: any) => e.name === 'CONNECTOR').value;

  // The topics (new names on this broker), and the ACLs of the broker's script on them.
  const topic = uniqueName('readings');
  const dlq = `${topic}-dlq`;
  for (const name of [topic, dlq]) tool('org.apache.kafka.tools.TopicCommand', ['--create', '--topic', name, '--partitions', '1']);
  const broker = find(objs, 'StatefulSet', 'cpu-kafka').spec.template.spec.containers[0];
  const vars = Object.fromEntries(
    Object.entries(find(objs, 'ConfigMap', broker.envFrom[0].configMapRef.name).data as Record<string, string>).map(([k, v]) => [
      `${broker.envFrom[0].prefix}${k}`,
      v,
    ]),
  );
  const acls = brokerAcls(broker.args[0], { ...vars, ACL_TOPIC: topic, ACL_DLQ_TOPIC: dlq }).filter(([user]) => user === 'connect');
  assert.ok(acls.length >= 5, `the connect user's ACLs (${acls.length})`);
  for (const [user, ...args] of acls) tool('org.apache.kafka.tools.AclCommand', ['--add', '--allow-principal', `User:${user}`, ...args]);

  // The worker's settings as its start script writes them, with the auth component's protocol.
  const env = {
    KAFKA_SECURITY_PROTOCOL: sink.KAFKA_CONFIG_SECURITY_PROTOCOL,
    KAFKA_SASL_MECHANISM: sink.KAFKA_CONFIG_SASL_MECHANISMS,
  };
  const properties = find(objs, 'ConfigMap', 'cpu-connect').data['worker.properties'];
  const missing = workerSettings(worker.args[0], properties, env);
  assert.notEqual(missing.code, 0, 'no start without the password');
  assert.match(missing.stderr, /the Secret cpu-kafka-connect \(key password\).*is missing/);
  const written = workerSettings(worker.args[0], properties, { ...env, KAFKA_PASSWORD: users.connect });
  assert.equal(written.code, 0, written.stderr);
  const settings = parse(written.settings);
  for (const prefix of ['', 'producer.', 'consumer.', 'admin.'])
    assert.equal(settings[`${prefix}security.protocol`], 'SASL_PLAINTEXT', prefix);
  // The test's own: the broker's and the REST API's addresses, and where the plugin is here.
  for (const k of ['bootstrap.servers', 'listeners', 'plugin.path', 'rest.advertised.host.name']) delete settings[k];
  settings['offset.flush.interval.ms'] = '1000';

  const s3 = await s3ForTest(t);
  const w = await startConnect({
    bootstrap: kafka.bootstrap,
    properties: settings,
    env: { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test-secret' },
  });
  t.after(() => w.destroy());
  await w.createConnector(connector, s3SinkConnector(topic, dlq, s3));
  await w.waitRunning(connector, 120_000);

  // Readings and one invalid record, written as the admin.
  const producer = new KafkaJS.Kafka({
    kafkaJS: {
      brokers: [kafka.bootstrap],
      sasl: { mechanism: 'scram-sha-512', username: admin.user, password: admin.password },
      logLevel: KafkaJS.logLevel.NOTHING,
    },
  }).producer({ kafkaJS: { idempotent: true, acks: -1 }, 'linger.ms': 0 });
  await producer.connect();
  t.after(() => producer.disconnect());
  const readings = Array.from({ length: 5 }, (_, i) => reading(i, uniqueName('auth')));
  await producer.send({
    topic,
    messages: [...readings.slice(0, 2), 'not a reading', ...readings.slice(2)].map((value) => ({ key: 'node-a', value })),
  });

  const objects = await waitFor(
    '5 readings in S3',
    async () => {
      const o = await readObjects(s3.endpoint, s3.bucket);
      return o.reduce((n, x) => n + x.lines.length, 0) >= 5 && o;
    },
    90_000,
  );
  assert.deepEqual(exactlyOnce(objects, readings), { missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: 5 });
  const dead = tool(
    'org.apache.kafka.tools.consumer.ConsoleConsumer',
    ['--topic', dlq, '--from-beginning', '--timeout-ms', '10000', '--property', 'print.offset=true'],
    '--consumer.config',
  );
  assert.deepEqual(
    dead.split('\n').filter((l) => l.startsWith('Offset:')),
    ['Offset:0\tnot a reading'],
  );
  assert.doesNotMatch(w.log() + w.stderr(), new RegExp(users.connect), 'the password is in no log line');
});
