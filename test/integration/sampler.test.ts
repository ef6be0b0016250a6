/**
 * sampler.ts as a process against a real Apache Kafka broker: what arrives, in what order, and
 * what happens when the broker goes away or the process is told to stop.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, startKafka } from '../../scripts/kafka.ts';
import { httpGet, readTopic, runProgram, sharedKafka, uniqueName, validateReading, waitFor, type Program } from '../helpers.ts';
import type { TestContext } from 'node:test';
import type { Reading } from '../../sampler.ts';

const INTERVAL_MS = 1000;

function sampler(t: TestContext, bootstrap: string, topic: string, node: string, extra: Record<string, string> = {}): Program {
  return runProgram(t, 'sampler.ts', {
    KAFKA_BROKERS: bootstrap,
    KAFKA_TOPIC: topic,
    SAMPLE_INTERVAL_SECONDS: String(INTERVAL_MS / 1000),
    HTTP_PORT: '0',
    NODE_NAME: node,
    POD_NAME: `${node}-pod`,
    POD_NAMESPACE: 'test',
    ...extra,
  });
}

/** window_end of each reading the sampler logged as taken, in order. */
const taken = (p: Program) => p.logs.filter((l) => l.msg === 'reading').map((l) => l.window_end as string);

async function stopWithSigterm(p: Program) {
  p.proc.kill('SIGTERM');
  const exit = await p.exited;
  return { ...exit, last: p.logs.at(-1) };
}

test('readings arrive keyed by node name, valid against the schema, one per aligned window', async (t) => {
  const bootstrap = sharedKafka();
  const topic = uniqueName('readings');
  const node = uniqueName('node');
  const p = sampler(t, bootstrap, topic, node);
  const started = await p.waitForLog('start', (l) => l.msg === 'started');

  const messages = await waitFor('3 readings in the topic', async () => {
    const m = await readTopic(bootstrap, topic);
    return m.length >= 3 && m;
  });
  for (const m of messages) {
    assert.equal(m.key, node);
    assert.equal(m.headers['content-type'], 'application/json');
    const reading = JSON.parse(m.value) as Reading;
    assert.ok(validateReading(reading), JSON.stringify(validateReading.errors));
    assert.equal(reading.node, node);
    assert.equal(reading.pod, `${node}-pod`);
    assert.equal(reading.namespace, 'test');
    assert.equal(Date.parse(reading.window_end) % INTERVAL_MS, 0, `window_end ${reading.window_end} is not on a boundary`);
  }
  const readings = messages.map((m) => JSON.parse(m.value));
  for (let i = 1; i < readings.length; i++) {
    assert.equal(readings[i].window_start, readings[i - 1].window_end, 'windows are contiguous');
    assert.equal(Date.parse(readings[i].window_end) - Date.parse(readings[i - 1].window_end), INTERVAL_MS);
  }

  const port = started.http_port as number;
  assert.equal((await httpGet(port, '/healthz')).status, 200);
  await waitFor('/readyz to say ready', async () => (await httpGet(port, '/readyz')).status === 200);
  const metrics = (await httpGet(port, '/metrics')).body;
  const produced = Number(/^sampler_readings_produced_total (\d+)/m.exec(metrics)?.[1]);
  assert.ok(produced >= 3, `sampler_readings_produced_total is ${produced}`);
  assert.match(metrics, /^sampler_last_reading_host_cpu_percent \d/m);
  assert.match(metrics, /^process_cpu_user_seconds_total /m);

  const { code } = await stopWithSigterm(p);
  assert.equal(code, 0);
});

test('SIGTERM flushes the reading in flight, disconnects and exits 0', async (t) => {
  const bootstrap = sharedKafka();
  const topic = uniqueName('readings');
  const p = sampler(t, bootstrap, topic, uniqueName('node'));
  await p.waitForLog('the connection', (l) => l.msg === 'connected to Kafka');
  const first = await p.waitForLog(
    'a reading',
    (l) => l.msg === 'reading' && p.logs.indexOf(l) > p.logs.findIndex((c) => c.msg === 'connected to Kafka'),
  );
  // Stop right after the reading was taken, before its delivery is confirmed by this test.
  const { code, signal, last } = await stopWithSigterm(p);
  assert.equal(signal, null);
  assert.equal(code, 0, p.stderr());
  assert.equal(last?.msg, 'stopped');
  assert.equal(last?.exit_code, 0);
  const inTopic = (await readTopic(bootstrap, topic)).map((m) => JSON.parse(m.value).window_end as string);
  assert.deepEqual(inTopic, taken(p));
  assert.ok(inTopic.includes(first.window_end as string));
});

test('every reading taken while the broker was down for more than two intervals arrives once, in order', async (t) => {
  const kafka = await startKafka();
  t.after(() => kafka.destroy());
  const topic = uniqueName('readings');
  const p = sampler(t, kafka.bootstrap, topic, uniqueName('node'));
  await waitFor('2 readings delivered before the outage', async () => (await readTopic(kafka.bootstrap, topic)).length >= 2);

  await kafka.stop();
  const before = taken(p).length;
  await waitFor('3 readings taken while the broker is down', () => taken(p).length >= before + 3, 15_000);
  await kafka.start();

  const expected = taken(p).length;
  await waitFor(
    'the readings of the outage in the topic',
    async () => (await readTopic(kafka.bootstrap, topic)).length >= expected + 1,
    60_000,
  );
  const { code } = await stopWithSigterm(p);
  assert.equal(code, 0, p.stderr());

  const all = taken(p);
  const inTopic = (await readTopic(kafka.bootstrap, topic)).map((m) => JSON.parse(m.value).window_end as string);
  t.diagnostic(`taken ${all.length}, in topic ${inTopic.length}, taken during the outage ${expected - before}`);
  assert.equal(new Set(inTopic).size, inTopic.length, 'no reading is duplicated');
  assert.deepEqual(inTopic, all, 'every reading arrives, in the order taken');
});

test('started before the broker, the sampler keeps retrying, says so, and delivers the readings taken meanwhile', async (t) => {
  const port = await freePort();
  const topic = uniqueName('readings');
  const p = sampler(t, `127.0.0.1:${port}`, topic, uniqueName('node'));
  const complaint = await p.waitForLog('a "Kafka unreachable" error', (l) => l.msg === 'Kafka unreachable; retrying', 60_000);
  assert.equal(complaint.level, 'error');
  assert.equal(complaint.brokers, `127.0.0.1:${port}`);
  const port2 = await freePort();
  const kafka = await startKafka({ port, controllerPort: port2 });
  t.after(() => kafka.destroy());
  await p.waitForLog('connected', (l) => l.msg === 'connected to Kafka', 60_000);
  const expected = taken(p).length;
  assert.ok(expected >= 3, `only ${expected} readings were taken before the broker came`);
  await waitFor(
    'the readings taken before the broker came',
    async () => (await readTopic(kafka.bootstrap, topic)).length >= expected,
    30_000,
  );
  const { code } = await stopWithSigterm(p);
  assert.equal(code, 0, p.stderr());
  const inTopic = (await readTopic(kafka.bootstrap, topic)).map((m) => JSON.parse(m.value).window_end as string);
  assert.deepEqual(inTopic, taken(p));
});

test('SIGTERM with the broker unreachable exits before the deadline and reports the readings it could not deliver', async (t) => {
  const port = await freePort();
  const p = sampler(t, `127.0.0.1:${port}`, uniqueName('readings'), uniqueName('node'), { SHUTDOWN_TIMEOUT_SECONDS: '5' });
  await p.waitForLog('a reading', (l) => l.msg === 'reading');
  const { code, last } = await stopWithSigterm(p);
  assert.equal(code, 1);
  assert.equal(last?.msg, 'stopped');
  const lost = p.logs.find((l) => l.msg === 'readings not delivered before stop');
  assert.ok(lost, 'the loss is logged');
  assert.equal(lost.count, taken(p).length);
});
