/**
 * The pipeline against a broker with authentication on, as k8s/components/kafka-auth runs it:
 * SASL/SCRAM-SHA-512 on the client listener, the StandardAuthorizer, and ACLs that let the sampler
 * only write the readings topic and the sink only read it in its group and write the dead-letter
 * topic. Readings are read back with Kafka's own console consumer (Debian's kcat cannot
 * SCRAM-authenticate to Kafka 4). Every refusal must show in the program's log, by its cause, and
 * in /readyz.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { kafkaTool, startKafka, type KafkaBroker } from '../../scripts/kafka.ts';
import { exactlyOnce, httpGet, readObjects, runProgram, s3ForTest, uniqueName, waitFor, type Program } from '../helpers.ts';
import type { TestContext } from 'node:test';

const password = () => randomBytes(18).toString('base64url');
const users = { admin: password(), sampler: password(), sink: password(), other: password() };
const admin = { user: 'admin', password: users.admin };
let kafka: KafkaBroker;

before(async () => {
  kafka = await startKafka({ auth: { users, admin: 'admin' } });
});
after(() => kafka?.destroy());

function tool(mainClass: string, args: string[], configOption = '--command-config') {
  const r = kafkaTool(mainClass, ['--bootstrap-server', kafka.bootstrap, ...args], { ...admin, option: configOption });
  assert.equal(r.status, 0, `${mainClass} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A readings topic and its dead-letter topic, and the ACLs of the pipeline's two users on them. */
function topicsWithAcls(group: string) {
  const topic = uniqueName('readings');
  const dlq = `${topic}-dlq`;
  for (const t of [topic, dlq]) tool('org.apache.kafka.tools.TopicCommand', ['--create', '--topic', t, '--partitions', '1']);
  const acl = (...args: string[]) => tool('org.apache.kafka.tools.AclCommand', ['--add', ...args]);
  acl('--allow-principal', 'User:sampler', '--operation', 'Write', '--operation', 'Describe', '--topic', topic);
  acl('--allow-principal', 'User:sink', '--operation', 'Read', '--operation', 'Describe', '--topic', topic);
  acl('--allow-principal', 'User:sink', '--operation', 'Read', '--group', group);
  acl('--allow-principal', 'User:sink', '--operation', 'Write', '--operation', 'Describe', '--topic', dlq);
  return { topic, dlq };
}

const sasl = (user: string, pw: string) => ({
  KAFKA_CONFIG_SECURITY_PROTOCOL: 'SASL_PLAINTEXT',
  KAFKA_CONFIG_SASL_MECHANISMS: 'SCRAM-SHA-512',
  KAFKA_CONFIG_SASL_USERNAME: user,
  KAFKA_CONFIG_SASL_PASSWORD: pw,
});

function sampler(t: TestContext, topic: string, auth: Record<string, string>): Program {
  return runProgram(t, 'sampler.ts', {
    KAFKA_BROKERS: kafka.bootstrap,
    KAFKA_TOPIC: topic,
    SAMPLE_INTERVAL_SECONDS: '1',
    HTTP_PORT: '0',
    NODE_NAME: uniqueName('node'),
    ...auth,
  });
}

async function sink(t: TestContext, topic: string, group: string, auth: Record<string, string>) {
  const s3 = await s3ForTest(t);
  const p = runProgram(t, 'sink.ts', {
    KAFKA_BROKERS: kafka.bootstrap,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP_ID: group,
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: s3.bucket,
    S3_FORCE_PATH_STYLE: 'true',
    S3_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test-secret',
    FILE_MAX_AGE_SECONDS: '1',
    HTTP_PORT: '0',
    ...auth,
  });
  return { p, s3 };
}

const port = async (p: Program) => Number((await p.waitForLog('started', (l) => l.msg === 'started')).http_port);
const readyz = async (p: Program) => (await httpGet(await port(p), '/readyz')).status;

/** The program's one "Kafka refused access" line, with its cause; /readyz fails meanwhile. */
async function refused(p: Program, cause: string) {
  const line = await p.waitForLog(`"Kafka refused access" (${cause})`, (l) => l.msg === 'Kafka refused access', 60_000);
  assert.equal(line.level, 'error');
  assert.equal(line.cause, cause);
  assert.equal(await readyz(p), 503, '/readyz fails while Kafka refuses access');
  // Said once, not once per retry: the clients retry every second or so.
  await new Promise((r) => setTimeout(r, 5000));
  assert.equal(p.count('Kafka refused access'), 1, 'logged once, not at every retry');
  assert.equal(await readyz(p), 503);
  return line;
}

test('with SASL/SCRAM and least-privilege ACLs, readings go from the sampler through Kafka to S3, exactly once', async (t) => {
  const group = uniqueName('group');
  const { topic } = topicsWithAcls(group);
  const s = sampler(t, topic, sasl('sampler', users.sampler));
  const { p: k, s3 } = await sink(t, topic, group, sasl('sink', users.sink));
  await waitFor('both ready', async () => (await readyz(s)) === 200 && (await readyz(k)) === 200, 60_000);
  await waitFor('3 readings in S3', async () => (await recordsIn(s3)) >= 3, 60_000);
  s.proc.kill('SIGTERM');
  await s.exited;
  // Everything in the topic, read back by an independent client as the admin, is in S3 exactly
  // once, once the sink has caught up.
  const inTopic = readTopicAsAdmin(topic);
  assert.ok(inTopic.length >= 3, `the topic holds ${inTopic.length} readings`);
  await waitFor('the whole topic in S3', async () => (await recordsIn(s3)) >= inTopic.length, 60_000);
  const check = exactlyOnce(await readObjects(s3.endpoint, s3.bucket), inTopic);
  assert.deepEqual(check, { missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: inTopic.length });
});

test('a client without credentials is refused: its log says the broker may want SASL, and /readyz fails', async (t) => {
  const { topic } = topicsWithAcls(uniqueName('group'));
  const s = sampler(t, topic, {});
  const line = await s.waitForLog('a failed connection', (l) => l.msg === 'Kafka answered, but the connection failed; retrying', 60_000);
  assert.match(String(line.hint), /KAFKA_CONFIG_SECURITY_PROTOCOL/);
  assert.equal(await readyz(s), 503);
});

test('a wrong password is refused: one log line names authentication, and /readyz fails', async (t) => {
  const { topic } = topicsWithAcls(uniqueName('group'));
  const s = sampler(t, topic, sasl('sampler', 'not-the-password'));
  const line = await refused(s, 'authentication');
  assert.match(String(line.reason), /KAFKA_CONFIG_SASL_PASSWORD/);
  assert.doesNotMatch(JSON.stringify(s.logs), /not-the-password/, 'the password is in no log line');
});

test("the sampler's credentials cannot read: a sink using them is refused by the ACLs, by name", async (t) => {
  const group = uniqueName('group');
  const { topic } = topicsWithAcls(group);
  const { p: k } = await sink(t, topic, group, sasl('sampler', users.sampler));
  const line = await refused(k, 'authorization');
  assert.match(String(line.detail), /(group|topic) authorization failed/i);
  assert.doesNotMatch(JSON.stringify(k.logs), new RegExp(users.sampler), 'the password is in no log line');
});

test('a user without the write ACL is refused; once the ACL is added, the readings it held arrive, no restart', async (t) => {
  const group = uniqueName('group');
  const { topic } = topicsWithAcls(group);
  const s = sampler(t, topic, sasl('other', users.other));
  await refused(s, 'authorization');
  tool('org.apache.kafka.tools.AclCommand', ['--add', '--allow-principal', 'User:other', '--operation', 'Write', '--topic', topic]);
  await s.waitForLog('access restored', (l) => l.msg === 'Kafka access works again', 120_000);
  await waitFor('ready again', async () => (await readyz(s)) === 200, 60_000);
  // Stopped, it delivers what it holds and exits 0; then every reading it took is in the topic.
  s.proc.kill('SIGTERM');
  assert.equal((await s.exited).code, 0, 'nothing left undelivered at stop');
  const taken = s.logs.filter((l) => l.msg === 'reading').map((l) => l.window_end);
  const inTopic = readTopicAsAdmin(topic).map((l) => (JSON.parse(l) as { window_end: string }).window_end);
  assert.deepEqual(inTopic.sort(), taken.sort(), 'every reading, those taken while refused included, is in the topic once');
  assert.equal(s.count('reading not delivered'), 0, 'none was given up on');
});

/** Every record of the topic, read by Kafka's own console consumer as the admin. */
function readTopicAsAdmin(topic: string): string[] {
  const out = tool(
    'org.apache.kafka.tools.consumer.ConsoleConsumer',
    ['--topic', topic, '--from-beginning', '--timeout-ms', '10000'],
    '--consumer.config',
  );
  return out.split('\n').filter((l) => l.startsWith('{'));
}

const recordsIn = async (s3: { endpoint: string; bucket: string }) =>
  (await readObjects(s3.endpoint, s3.bucket)).reduce((n, x) => n + x.lines.length, 0);
