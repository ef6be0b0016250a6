/**
 * The Kafka Connect S3 sink (connect/) in a real Connect worker, between a real Kafka broker and a
 * real S3-compatible server: what lands in the bucket, under which keys, where invalid records go,
 * when offsets are committed, and that it is what sink.ts writes from the same topic.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { connectorClass, startConnect, type ConnectWorker } from '../../scripts/connect.ts';
import {
  committedOffsets,
  createTopic,
  exactlyOnce,
  readObjects,
  readTopic,
  reading,
  s3SinkConnector,
  sharedKafka,
  sinkScenario,
  testS3Client,
  uniqueName,
  waitFor,
  type StoredObject,
} from '../helpers.ts';

// One worker for this file (it takes a while to start); each test has its own connector, topic and bucket.
let worker: Promise<ConnectWorker> | undefined;
const connect = () =>
  (worker ??= startConnect({
    bootstrap: sharedKafka(),
    env: { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test-secret' },
  }));
after(async () => {
  await (await worker)?.destroy();
});

type Scenario = Awaited<ReturnType<typeof sinkScenario>>;

/** The connector on the scenario's topic and bucket, with its own dead-letter topic; deleted with the worker. */
async function connector(t: TestContext, s: Scenario, settings: Record<string, string> = {}) {
  const w = await connect();
  const name = uniqueName('s3-sink');
  const dlqTopic = `${s.topic}-connect-dlq`;
  await createTopic(s.bootstrap, dlqTopic, 1);
  await w.createConnector(name, s3SinkConnector(s.topic, dlqTopic, s.s3, settings));
  t.after(() => fetch(`${w.url}/connectors/${name}`, { method: 'DELETE' }).then((r) => r.body?.cancel()));
  await w.waitRunning(name);
  return { name, dlqTopic, worker: w, group: `connect-${name}` };
}

/** The group's committed offset of partition 0 (-1: none). */
const committed = async (bootstrap: string, group: string, topic: string) => (await committedOffsets(bootstrap, group, topic))[0] ?? -1;

const objectsUnder = (s: Scenario, prefix: string, n: number) =>
  waitFor(
    `${n} records under ${prefix}/`,
    async () => {
      const o = await readObjects(s.s3.endpoint, s.s3.bucket, `${prefix}/`);
      return o.reduce((sum, x) => sum + x.lines.length, 0) >= n && o;
    },
    60_000,
  );

test('readings land in S3 through Kafka Connect once each, under sink.ts keys and metadata, gzipped JSON lines', async (t) => {
  const s = await sinkScenario(t);
  // 11:50 to 12:09: the files must split at the hour; one late reading from 09:00 in the middle.
  const values = Array.from({ length: 20 }, (_, i) => reading(50 + i, `pod-${i}`));
  values.splice(12, 0, reading(-120, 'late-pod'));
  await (await s.producer()).send(s.topic, values);

  const c = await connector(t, s, { 's3.prefix': 'readings' });
  const objects = await objectsUnder(s, 'readings', values.length);
  const check = exactlyOnce(objects, values);
  t.diagnostic(`produced ${values.length}, found ${check.found} in ${objects.length} objects`);
  assert.deepEqual(check, { missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: values.length });
  for (const o of objects) {
    const m = /^readings\/dt=(\d{4}-\d{2}-\d{2})\/hour=(\d{2})\/(.+)\+0\+(\d{10})\.jsonl\.gz$/.exec(o.key);
    assert.ok(m, `key ${o.key}`);
    assert.equal(m[3], s.topic);
    assert.equal(o.contentEncoding, 'gzip');
    const first = values.indexOf(o.lines[0]);
    assert.deepEqual(o.metadata, {
      topic: s.topic,
      partition: '0',
      'start-offset': String(first),
      'end-offset': String(first + o.lines.length - 1),
      records: String(o.lines.length),
    });
    assert.equal(Number(m[4]), first);
    for (const line of o.lines) {
      const start = JSON.parse(line).window_start as string;
      assert.equal(`${start.slice(0, 10)}/${start.slice(11, 13)}`, `${m[1]}/${m[2]}`, `${line} is in ${o.key}`);
    }
  }
  assert.deepEqual(
    objects.filter((o) => o.key.includes('hour=09')).flatMap((o) => o.lines),
    [values[12]],
  );
  await waitFor('every offset committed', async () => (await committed(s.bootstrap, c.group, s.topic)) === values.length, 30_000);
});

test("invalid records go to Connect's dead-letter topic with their bytes and sink.ts's reason; the readings around them land in S3", async (t) => {
  const s = await sinkScenario(t);
  const good = [reading(0, 'good-1'), reading(1, 'good-2'), reading(2, 'good-3')];
  const notJson = 'this is not json';
  const wrongVersion = JSON.stringify({ ...JSON.parse(good[0]), schema_version: 2 });
  await (await s.producer()).send(s.topic, [good[0], notJson, good[1], wrongVersion, good[2]]);

  const c = await connector(t, s);
  const objects = await objectsUnder(s, 'cpu-levels', good.length);
  assert.deepEqual(exactlyOnce(objects, good), { missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: 3 });

  const dead = await waitFor('2 records in the dead-letter topic', async () => {
    const m = await readTopic(s.bootstrap, c.dlqTopic);
    return m.length >= 2 && m;
  });
  assert.equal(dead.length, 2);
  assert.deepEqual(
    dead.map((d) => [d.value, d.key, d.headers['__connect.errors.offset'], d.headers['__connect.errors.topic']]),
    [
      [notJson, 'test-node', '1', s.topic],
      [wrongVersion, 'test-node', '3', s.topic],
    ],
  );
  assert.match(dead[0].headers['__connect.errors.exception.message'], /^not-json: /);
  assert.equal(dead[1].headers['__connect.errors.exception.message'], 'schema-version: schema_version 2 is not 1');
  assert.equal(dead[0].headers['__connect.errors.exception.class.name'], 'io.cpupipeline.connect.InvalidReadingException');
  await waitFor('every offset committed', async () => (await committed(s.bootstrap, c.group, s.topic)) === 5, 30_000);
  assert.equal((await c.worker.status(c.name))?.tasks[0].state, 'RUNNING', 'the connector did not stop on invalid records');
});

test('after a crash between upload and commit, the connector finds the object already written and skips exactly what it holds', async (t) => {
  const s = await sinkScenario(t);
  const values = Array.from({ length: 10 }, (_, i) => reading(i, `pod-${i}`));
  await (await s.producer()).send(s.topic, values);
  // What an earlier life left: offsets 0-4 in S3, nothing committed.
  const key = `cpu-levels/dt=2026-11-27/hour=11/${s.topic}+0+0000000000.jsonl.gz`;
  await testS3Client(s.s3.endpoint).send(
    new PutObjectCommand({
      Bucket: s.s3.bucket,
      Key: key,
      Body: gzipSync(values.slice(0, 5).join('\n') + '\n'),
      Metadata: { topic: s.topic, partition: '0', 'start-offset': '0', 'end-offset': '4', records: '5' },
    }),
  );

  // Files of 2 records: the replay's first file (offsets 0-1) collides with the 5-record object.
  const c = await connector(t, s, { 'file.max.records': '2' });
  const objects = await objectsUnder(s, 'cpu-levels', values.length);
  assert.deepEqual(exactlyOnce(objects, values), { missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: values.length });
  assert.deepEqual(objects.find((o) => o.key === key)?.lines, values.slice(0, 5), 'the earlier object is untouched');
  assert.ok(objects.filter((o) => o.key !== key).every((o) => Number(o.metadata['start-offset']) >= 5));
  assert.ok(
    new RegExp(
      `object already in S3; skipping the records it holds: key=${key.replace(/[+.]/g, '\\$&')} partition=0 existing_end_offset=4 skipped=\\d+`,
    ).test(c.worker.log()),
    'the worker logs the collision and what it skipped',
  );
});

test('offsets are committed only once their objects are in S3', async (t) => {
  const s = await sinkScenario(t);
  const values = [reading(0, 'a'), reading(1, 'b'), reading(2, 'c')];
  await s.s3.stop('refuse');
  await (await s.producer()).send(s.topic, values);
  const c = await connector(t, s);
  // The file was closed and S3 refused it; then the task was asked for its offsets and, holding
  // all three records, handed back 0.
  await waitFor(
    'a commit asked after a failed upload',
    () => {
      const log = c.worker.log();
      const failed = log.search(/upload failed; retrying: partition=\S+-0 start_offset=0 /);
      return failed >= 0 && /preCommit: \S+-0 safe 0 of 3 consumed/.test(log.slice(failed));
    },
    30_000,
  );
  assert.ok((await committed(s.bootstrap, c.group, s.topic)) <= 0, 'nothing is committed past a record that is not in S3');
  await s.s3.start();
  const objects = await objectsUnder(s, 'cpu-levels', values.length);
  assert.deepEqual(exactlyOnce(objects, values), { missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: 3 });
  await waitFor('every offset committed', async () => (await committed(s.bootstrap, c.group, s.topic)) === 3, 30_000);
});

test('the worker refuses a connector that would stop at an invalid record or read records as anything but bytes', async () => {
  const w = await connect();
  const errors = await w.validate({ 'connector.class': connectorClass, topics: 'cpu-levels', 's3.bucket': 'Bad_Bucket' });
  assert.match(errors['errors.tolerance']?.[0] ?? '', /expected all/);
  assert.match(errors['errors.deadletterqueue.topic.name']?.[0] ?? '', /expected a topic/);
  assert.match(errors['value.converter']?.[0] ?? '', /ByteArrayConverter/);
  assert.match(errors['s3.bucket']?.[0] ?? '', /Invalid value Bad_Bucket for configuration s3\.bucket: expected an S3 bucket name/);
  await assert.rejects(
    w.createConnector(uniqueName('refused'), { 'connector.class': connectorClass, topics: 'cpu-levels' }),
    /refused connector .* \(400\)/,
  );
});

test('sink.ts and the connector write the same keys, the same lines and the same metadata from one topic', async (t) => {
  const s = await sinkScenario(t, { partitions: 2 });
  // Files close by record count and by a change of hour only (the age is an hour), so where each
  // file ends is a function of the records: both sinks must cut them at the same offsets.
  const at = (day: number, h: number, m: number, tag: string) => reading(0, tag, Date.UTC(2026, 10, day, h, m));
  const p0 = [
    ...Array.from({ length: 6 }, (_, i) => at(27, 10, i, `p0-10-${i}`)),
    at(27, 8, 0, 'p0-late'),
    'not json at all',
    at(27, 10, 6, 'p0-10-6'),
    at(27, 10, 7, 'p0-10-7'),
    ...Array.from({ length: 8 }, (_, i) => at(27, 11, i, `p0-11-${i}`)),
  ];
  // Across midnight, with a reading of another schema version and one pretty-printed over lines
  // (both sinks write that one compact, as JSON.stringify writes it).
  const p1 = [
    ...Array.from({ length: 3 }, (_, i) => at(27, 23, 57 + i, `p1-23-${i}`)),
    JSON.stringify({ ...JSON.parse(at(28, 0, 0, 'p1-v2')), schema_version: 2 }),
    JSON.stringify(JSON.parse(at(28, 0, 0, 'p1-pretty')), null, 2),
    ...Array.from({ length: 3 }, (_, i) => at(28, 0, 1 + i, `p1-00-${i}`)),
  ];
  const producer = await s.producer();
  await producer.send(s.topic, p0, 'node-a', 0);
  await producer.send(s.topic, p1, 'node-b', 1);
  const valid = p0.length + p1.length - 2;

  const ts = s.sink({ S3_PREFIX: 'sink-ts', FILE_MAX_RECORDS: '4', FILE_MAX_AGE_SECONDS: '3600' });
  const c = await connector(t, s, { 's3.prefix': 'connect', 'file.max.records': '4', 'file.max.age.seconds': '3600' });
  const fromTs = await objectsUnder(s, 'sink-ts', valid);
  const fromConnect = await objectsUnder(s, 'connect', valid);
  const byKey = (objects: StoredObject[], prefix: string) =>
    Object.fromEntries(
      objects.map((o) => [o.key.slice(prefix.length + 1), { lines: o.lines, metadata: o.metadata, encoding: o.contentEncoding }]),
    );
  t.diagnostic(`sink.ts wrote ${fromTs.length} objects, the connector ${fromConnect.length}`);
  assert.deepEqual(byKey(fromConnect, 'connect'), byKey(fromTs, 'sink-ts'));
  // p0: 0-3 (records), 4-5 (the late reading), 6 (back to 10:00), 8-9 (11:00), 10-13, 14-17; p1: 0-2 (midnight), 4-7.
  assert.equal(fromTs.length, 8);

  const deadTs = await waitFor('sink.ts dead letters', async () => {
    const m = await readTopic(s.bootstrap, `${s.topic}-dlq`);
    return m.length >= 2 && m;
  });
  const deadConnect = await waitFor('the connector dead letters', async () => {
    const m = await readTopic(s.bootstrap, c.dlqTopic);
    return m.length >= 2 && m;
  });
  const summary = (m: typeof deadTs, reason: (h: Record<string, string>) => string) =>
    m.map((d) => ({ value: d.value, key: d.key, reason: reason(d.headers) })).sort((a, b) => a.value.localeCompare(b.value));
  assert.deepEqual(
    summary(deadConnect, (h) => h['__connect.errors.exception.message'].split(':')[0]),
    summary(deadTs, (h) => h['dlq-reason']),
  );
  ts.proc.kill('SIGTERM');
  assert.equal((await ts.exited).code, 0);
});
