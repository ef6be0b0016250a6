/**
 * Fault tests of the Kafka Connect S3 sink (connect/), as sink-faults.test.ts has them for sink.ts:
 * records flow through a real Connect worker while something breaks, and each scenario ends with
 * "every produced record is in S3 exactly once" (and no two objects of a partition overlap).
 * Each prints how many records it produced and how many it found.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startConnect, type ConnectWorker } from '../../scripts/connect.ts';
import {
  committedOffsets,
  createTopic,
  exactlyOnce,
  produceSteadily,
  readObjects,
  reportExactlyOnce,
  s3SinkConnector,
  sharedKafka,
  sinkScenario,
  uniqueName,
  waitFor,
  type StoredObject,
} from '../helpers.ts';

type Scenario = Awaited<ReturnType<typeof sinkScenario>>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// A killed worker's group members are noticed after their session timeouts: the broker's minimum
// (6 s) instead of 10 s for the worker's own group and 45 s for its tasks' consumers.
const fastFailover = {
  'session.timeout.ms': '6000',
  'heartbeat.interval.ms': '1000',
  'consumer.session.timeout.ms': '6000',
  'consumer.heartbeat.interval.ms': '1000',
};

/** A Connect worker of its own for one test (it is killed or sees S3 go), destroyed after it. */
async function worker(t: TestContext): Promise<ConnectWorker> {
  const w = await startConnect({
    bootstrap: sharedKafka(),
    env: { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test-secret' },
    properties: fastFailover,
  });
  t.after(() => w.destroy());
  return w;
}

/** The connector on the scenario's topic and bucket, running. */
async function connector(w: ConnectWorker, s: Scenario, settings: Record<string, string>) {
  const name = uniqueName('s3-sink');
  const dlqTopic = `${s.topic}-connect-dlq`;
  await createTopic(s.bootstrap, dlqTopic, 1);
  await w.createConnector(name, s3SinkConnector(s.topic, dlqTopic, s.s3, settings));
  await w.waitRunning(name);
  return { name, group: `connect-${name}` };
}

/** Once S3 holds as many records as were produced (then 2 s more, for a duplicate to show up): what it holds. */
async function allInS3(s: Scenario, w: ConnectWorker, expected: string[], timeoutMs = 120_000) {
  try {
    await waitFor(
      `all ${expected.length} records in S3`,
      async () => (await s.objects()).reduce((n, o) => n + o.lines.length, 0) >= expected.length,
      timeoutMs,
    );
  } catch (err) {
    const check = exactlyOnce(await s.objects(), expected);
    const file = join(tmpdir(), `connect-fault-${Date.now()}.log`);
    writeFileSync(file, w.log());
    throw new Error(`${(err as Error).message}: ${JSON.stringify(check)}; the worker's log is in ${file}`);
  }
  await sleep(2000);
  const objects = await s.objects();
  return { objects, check: exactlyOnce(objects, expected) };
}

/** Per partition, the offset below which every offset is in an object. */
function inS3Below(objects: StoredObject[]): Record<string, number> {
  const below: Record<string, number> = {};
  const byStart = [...objects].sort((a, b) => Number(a.metadata['start-offset']) - Number(b.metadata['start-offset']));
  for (const o of byStart) {
    const from = below[o.metadata.partition] ?? 0;
    if (Number(o.metadata['start-offset']) <= from) below[o.metadata.partition] = Math.max(from, Number(o.metadata['end-offset']) + 1);
  }
  return below;
}

const clean = (n: number) => ({ missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: n });

test('a Connect worker killed with SIGKILL at random moments while records flow, started again each time, writes every record exactly once', async (t) => {
  const s = await sinkScenario(t, { partitions: 2 });
  const w = await worker(t);
  // Many small files: many chances to die between an upload and its commit.
  await connector(w, s, { 'file.max.records': '7' });
  let done = false;
  const producing = produceSteadily(t, s.bootstrap, s.topic, () => done, 5, 200);
  let kills = 0;
  let lifeStart = 0; // where this life of the worker starts in its log
  while (kills < 5) {
    // Once this life's task owns the partitions (after the dead one's session ran out), kill it at a random moment.
    await waitFor('the task given its partitions', () => w.log().indexOf('partitions assigned: [', lifeStart) >= 0, 90_000);
    await sleep(500 + Math.random() * 2500);
    await w.kill();
    kills++;
    lifeStart = w.log().length;
    await w.start();
  }
  done = true;
  const produced = await producing;
  const { objects, check } = await allInS3(s, w, produced);
  const log = w.log();
  t.diagnostic(
    `${log.split('object written: ').length - 1} objects written, ${log.split('object already in S3; skipping').length - 1} found already written by a killed life`,
  );
  reportExactlyOnce(t, `Connect worker SIGKILL x${kills}`, produced.length, check, objects.length);
  assert.deepEqual(check, clean(produced.length));
});

test('S3 taken away and brought back while records flow: no offset is committed past what S3 holds, and every record lands exactly once', async (t) => {
  const s = await sinkScenario(t, { partitions: 2 });
  const w = await worker(t);
  const c = await connector(w, s, { 's3.request.timeout.seconds': '1', 'file.max.records': '20' });
  const first = await produceSteadily(t, s.bootstrap, s.topic, 40, 10, 20);
  await waitFor('an object written', () => w.log().includes('object written: '), 60_000);

  // While S3 is away, again and again: the group's committed offsets, then what the S3 server
  // holds (read past the relay that keeps the worker out). Objects are never deleted, so the
  // commit read first must not pass them.
  let checks = 0;
  let held: Record<string, number> = {};
  const watch = async (what: string, until: () => boolean, timeoutMs = 30_000) => {
    for (const deadline = Date.now() + timeoutMs; !until();) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      const committed = await committedOffsets(s.bootstrap, c.group, s.topic);
      held = inS3Below(await readObjects(s.s3.backendEndpoint, s.s3.bucket));
      for (const [p, offset] of Object.entries(committed)) {
        assert.ok(
          offset <= (held[p] ?? 0),
          `partition ${p} committed up to ${offset} while S3 holds its offsets below ${held[p] ?? 0} only`,
        );
      }
      checks++;
      await sleep(200);
    }
  };
  const seconds = (n: number) => {
    const end = Date.now() + n * 1000;
    return () => Date.now() >= end;
  };

  // First a black hole (requests time out after the 1 s request timeout), then a dead port.
  const outage = w.log().length;
  await s.s3.stop('hang');
  const during = produceSteadily(t, s.bootstrap, s.topic, 60, 10, 100);
  await watch('an upload timing out', () => w.log().indexOf('upload failed; retrying', outage) >= 0);
  await watch('3 s', seconds(3));
  await s.s3.stop('refuse');
  await watch('3 s', seconds(3));
  const seen = w.log().slice(outage);
  await s.s3.start();
  const produced = [...first, ...(await during)];

  // Not vacuous: Connect asked the task to commit offsets past what S3 held, and was handed back less.
  const asked = [...seen.matchAll(/preCommit: \S+-(\d+) safe (\d+) of (\d+) consumed/g)].filter((m) => Number(m[3]) > (held[m[1]] ?? 0));
  t.diagnostic(`${checks} checks of the committed offsets while S3 was away; ${asked.length} commits asked past S3, e.g. ${asked[0]?.[0]}`);
  assert.ok(asked.length > 0, 'while S3 was away the task consumed records past what S3 held');

  const { objects, check } = await allInS3(s, w, produced);
  reportExactlyOnce(t, 'Connect worker, S3 outage', produced.length, check, objects.length);
  assert.deepEqual(check, clean(produced.length));
  await waitFor(
    'every offset committed',
    async () =>
      Object.values(await committedOffsets(s.bootstrap, c.group, s.topic)).reduce((a, b) => a + Math.max(b, 0), 0) === produced.length,
    30_000,
  );
  assert.deepEqual(
    (await w.status(c.name))?.tasks.map((x) => x.state),
    ['RUNNING'],
    'the task rode out the outage',
  );
});
