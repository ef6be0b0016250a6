/**
 * sink.ts as a process between a real Kafka broker and a real S3-compatible server: what lands
 * in the bucket, under which keys, and where bad records go.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import {
  createTopic,
  exactlyOnce,
  httpGet,
  readObjects,
  readTopic,
  reading,
  runProgram,
  sink,
  sinkScenario,
  testS3Client,
  uniqueName,
  waitFor,
} from '../helpers.ts';

test('every record lands in S3 once, in hour-partitioned gzip files named after their first offset', async (t) => {
  const { topic, sink, producer: newProducer, objectsWith } = await sinkScenario(t);
  const producer = await newProducer();
  // 11:50 to 12:09: the files must split at the hour; one late reading from 09:00 in the middle.
  const values = Array.from({ length: 20 }, (_, i) => reading(50 + i, `pod-${i}`));
  values.splice(12, 0, reading(-120, 'late-pod'));
  await producer.send(topic, values);

  const p = sink({ S3_PREFIX: 'readings' });
  const objects = await objectsWith(values.length);
  const check = exactlyOnce(objects, values);
  t.diagnostic(`produced ${values.length}, found ${check.found} in ${objects.length} objects`);
  assert.deepEqual(check, { missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: values.length });

  for (const o of objects) {
    const m = /^readings\/dt=(\d{4}-\d{2}-\d{2})\/hour=(\d{2})\/(.+)\+(\d+)\+(\d{10})\.jsonl\.gz$/.exec(o.key);
    assert.ok(m, `key ${o.key}`);
    assert.equal(m[3], topic);
    assert.equal(Number(m[5]), Number(o.metadata['start-offset']));
    assert.equal(o.lines.length, Number(o.metadata.records));
    for (const line of o.lines) {
      const start = JSON.parse(line).window_start as string;
      assert.equal(`${start.slice(0, 10)}/${start.slice(11, 13)}`, `${m[1]}/${m[2]}`, `${line} is in ${o.key}`);
    }
  }
  const hours = objects.map((o) => /hour=(\d\d)/.exec(o.key)![1]);
  assert.ok(hours.includes('09') && hours.includes('11') && hours.includes('12'), `hours ${hours}`);
  assert.deepEqual(
    objects.filter((o) => o.key.includes('hour=09')).flatMap((o) => o.lines),
    [values[12]],
  );

  const port = (await p.waitForLog('started', (l) => l.msg === 'started')).http_port as number;
  await waitFor('/readyz', async () => (await httpGet(port, '/readyz')).status === 200);
  const metrics = (await httpGet(port, '/metrics')).body;
  assert.match(metrics, new RegExp(`^sink_records_written_total ${values.length}$`, 'm'));
  assert.match(metrics, /^sink_upload_duration_seconds_count [1-9]/m);
  // Lag: the partition's end minus the group's committed offset; everything is in S3, so 0.
  await waitFor('the lag gauge at 0', async () =>
    /^sink_consumer_lag_records\{partition="0"\} 0$/m.test((await httpGet(port, '/metrics')).body),
  );
  p.proc.kill('SIGTERM');
  assert.equal((await p.exited).code, 0);
});

test('a quiet topic still flushes: a single record reaches S3 on the age timer alone', async (t) => {
  const { topic, sink, producer, objectsWith } = await sinkScenario(t);
  const value = reading(0, 'only-one');
  await (await producer()).send(topic, [value]);
  sink({ FILE_MAX_AGE_SECONDS: '2' });
  const objects = await objectsWith(1);
  assert.deepEqual(
    objects.flatMap((o) => o.lines),
    [value],
  );
});

test('poison records go to the dead-letter topic with their bytes and the reason; the good records around them land in S3', async (t) => {
  const { bootstrap, topic, sink, producer: newProducer, objectsWith } = await sinkScenario(t);
  const dlqTopic = `${topic}-dlq`;
  const good = [reading(0, 'good-1'), reading(1, 'good-2'), reading(2, 'good-3')];
  const notJson = 'this is not json';
  const wrongVersion = JSON.stringify({ ...JSON.parse(good[0]), schema_version: 2 });
  const producer = await newProducer();
  await producer.send(topic, [good[0], notJson, good[1], wrongVersion, good[2]]);

  const p = sink();
  const objects = await objectsWith(good.length);
  assert.deepEqual(exactlyOnce(objects, good), { missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: 3 });

  const dead = await waitFor('2 records in the dead-letter topic', async () => {
    const m = await readTopic(bootstrap, dlqTopic);
    return m.length >= 2 && m;
  });
  assert.equal(dead.length, 2);
  assert.equal(dead[0].value, notJson);
  assert.equal(dead[0].headers['dlq-reason'], 'not-json');
  assert.equal(dead[0].headers['dlq-offset'], '1');
  assert.equal(dead[0].headers['dlq-topic'], topic);
  assert.equal(dead[1].value, wrongVersion);
  assert.equal(dead[1].headers['dlq-reason'], 'schema-version');
  assert.equal(dead[1].key, 'test-node');

  const port = (await p.waitForLog('started', (l) => l.msg === 'started')).http_port as number;
  const metrics = (await httpGet(port, '/metrics')).body;
  assert.match(metrics, /^sink_records_dead_lettered_total\{reason="not-json"\} 1$/m);
  assert.match(metrics, /^sink_records_dead_lettered_total\{reason="schema-version"\} 1$/m);
  p.proc.kill('SIGTERM');
  assert.equal((await p.exited).code, 0, 'the pipeline did not stop on poison');
});

test('end to end: every reading the sampler produced is in S3, record for record', async (t) => {
  const { bootstrap, topic, sink, objects, objectsWith } = await sinkScenario(t);
  const sampler = runProgram(t, 'sampler.ts', {
    KAFKA_BROKERS: bootstrap,
    KAFKA_TOPIC: topic,
    SAMPLE_INTERVAL_SECONDS: '1',
    HTTP_PORT: '0',
    NODE_NAME: 'e2e-node',
  });
  const s = sink();
  await objectsWith(3);
  sampler.proc.kill('SIGTERM');
  assert.equal((await sampler.exited).code, 0);
  const produced = (await readTopic(bootstrap, topic)).map((m) => m.value);
  s.proc.kill('SIGTERM'); // uploads what it holds before it exits
  assert.equal((await s.exited).code, 0);
  const check = exactlyOnce(await objects(), produced);
  t.diagnostic(`produced ${produced.length}, found ${check.found}`);
  assert.deepEqual(check, { missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: produced.length });
});

test('after a crash between upload and commit, the replay finds the object already written and skips exactly what it holds', async (t) => {
  const { s3, topic, sink, producer, objectsWith } = await sinkScenario(t);
  const values = Array.from({ length: 10 }, (_, i) => reading(i, `pod-${i}`));
  await (await producer()).send(topic, values);
  // What an earlier life of the sink left: offsets 0-4 in S3, nothing committed.
  const key = `cpu-levels/dt=2026-11-27/hour=11/${topic}+0+0000000000.jsonl.gz`;
  await testS3Client(s3.endpoint).send(
    new PutObjectCommand({
      Bucket: s3.bucket,
      Key: key,
      Body: gzipSync(values.slice(0, 5).join('\n') + '\n'),
      Metadata: { topic, partition: '0', 'start-offset': '0', 'end-offset': '4', records: '5' },
    }),
  );

  // Files of 2 records: the replay's first file (offsets 0-1) collides with the 5-record object.
  const p = sink({ FILE_MAX_RECORDS: '2' });
  const objects = await objectsWith(values.length);
  assert.deepEqual(exactlyOnce(objects, values), { missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: values.length });
  const skipped = await p.waitForLog('the collision', (l) => l.msg === 'object already in S3; skipping the records it holds');
  assert.equal(skipped.key, key);
  assert.equal(skipped.existing_end_offset, 4);
  assert.deepEqual(objects.find((o) => o.key === key)?.lines, values.slice(0, 5), 'the earlier object is untouched');
  assert.ok(objects.filter((o) => o.key !== key).every((o) => Number(o.metadata['start-offset']) >= 5));
});

test('the lag gauge has a value as soon as partitions are assigned, before anything is written', async (t) => {
  const { topic, sink, producer } = await sinkScenario(t, { partitions: 2 });
  const values = Array.from({ length: 30 }, (_, i) => reading(i, `pod-${i}`));
  await (await producer()).send(topic, values.slice(0, 20), 'node-a', 0);
  await (await producer()).send(topic, values.slice(20), 'node-b', 1);
  // Files close only after an hour of quiet, and S3 is never reached: nothing is committed.
  const p = sink({ FILE_MAX_AGE_SECONDS: '3600', FILE_MAX_RECORDS: '1000' });
  const port = (await p.waitForLog('started', (l) => l.msg === 'started')).http_port as number;
  await p.waitForLog('partitions assigned', (l) => l.msg === 'partitions assigned');
  const metrics = await waitFor(
    'a lag for both partitions',
    async () => {
      const body = (await httpGet(port, '/metrics')).body;
      return /^sink_consumer_lag_records\{partition="1"\}/m.test(body) && /^sink_consumer_lag_records\{partition="0"\}/m.test(body) && body;
    },
    5_000,
  );
  assert.match(metrics, /^sink_consumer_lag_records\{partition="0"\} 20$/m);
  assert.match(metrics, /^sink_consumer_lag_records\{partition="1"\} 10$/m);
});

test('the lag gauge drops the partitions a rebalance took away', async (t) => {
  const { topic, sink, producer } = await sinkScenario(t, { partitions: 2 });
  await (await producer()).send(topic, [reading(0, 'a')], 'node-a', 0);
  await (await producer()).send(topic, [reading(1, 'b')], 'node-b', 1);
  const first = sink({ FILE_MAX_AGE_SECONDS: '1' });
  const port = (await first.waitForLog('started', (l) => l.msg === 'started')).http_port as number;
  await waitFor(
    'lag for both partitions',
    async () => ((await httpGet(port, '/metrics')).body.match(/^sink_consumer_lag_records\{/gm) ?? []).length === 2,
  );
  const second = sink({ FILE_MAX_AGE_SECONDS: '1' });
  await second.waitForLog('partitions assigned', (l) => l.msg === 'partitions assigned', 60_000);
  const lagSeries = async () => (await httpGet(port, '/metrics')).body.match(/^sink_consumer_lag_records\{partition="(\d)"\}/gm) ?? [];
  await waitFor(
    'the first sink to keep one partition',
    async () => (await lagSeries()).length === 1 && first.logs.filter((l) => l.msg === 'partitions assigned').length >= 2,
    60_000,
  );
  const kept = first.logs.filter((l) => l.msg === 'partitions assigned').at(-1)!.partitions as number[];
  assert.deepEqual(
    await lagSeries(),
    kept.map((p) => `sink_consumer_lag_records{partition="${p}"}`),
  );
});

test('consumer-only settings reach only the consumer: no librdkafka warning at start', async (t) => {
  const { topic, sink, producer, objectsWith } = await sinkScenario(t);
  await (await producer()).send(topic, [reading(0, 'only')]);
  const p = sink({ KAFKA_CONFIG_SESSION_TIMEOUT_MS: '6000', KAFKA_CONFIG_HEARTBEAT_INTERVAL_MS: '1000', FILE_MAX_AGE_SECONDS: '1' });
  await objectsWith(1);
  const warnings = p.logs.filter((l) => l.level === 'warn' || l.level === 'error');
  assert.deepEqual(warnings, [], 'a warning was logged');
  p.proc.kill('SIGTERM');
  assert.equal((await p.exited).code, 0);
});

test('a sink started before its topic exists picks the topic up once it is made (within seconds, not minutes)', async (t) => {
  const { bootstrap, s3, env, producer } = await sinkScenario(t);
  const topic = uniqueName('later');
  const p = sink(t, { ...env, KAFKA_TOPIC: topic, FILE_MAX_AGE_SECONDS: '1' });
  await p.waitForLog('connected', (l) => l.msg === 'connected to Kafka');
  await new Promise((r) => setTimeout(r, 3000)); // subscribed to a topic that is not there yet
  await createTopic(bootstrap, topic, 1);
  const value = reading(0, 'late-topic');
  await (await producer()).send(topic, [value]);
  const objects = await waitFor(
    'the record in S3',
    async () => {
      const o = await readObjects(s3.endpoint, s3.bucket);
      return o.length > 0 && o;
    },
    60_000,
  );
  assert.deepEqual(
    objects.flatMap((o) => o.lines),
    [value],
  );
});

test('a sink stopped before it ever reached Kafka exits 0: it held nothing', async (t) => {
  const p = sink(t, { KAFKA_BROKERS: '127.0.0.1:1', S3_BUCKET: 'unused-bucket' });
  await p.waitForLog('a failed connection attempt', (l) => l.msg === 'Kafka unreachable; retrying');
  p.proc.kill('SIGTERM');
  assert.equal((await p.exited).code, 0, p.stderr());
  assert.equal(p.logs.at(-1)?.msg, 'stopped');
});
