/**
 * Fault tests: records flow while something breaks, and each scenario ends with
 * "every produced record is in S3 exactly once" (and no two objects of a partition overlap).
 * Each prints how many records it produced and how many it found.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKafka } from '../../scripts/kafka.ts';
import { exactlyOnce, httpGet, produceSteadily, readObjects, reportExactlyOnce, sinkScenario, waitFor, type Program } from '../helpers.ts';

async function allInS3(endpoint: string, bucket: string, expected: string[], timeoutMs = 90_000, sinks: Program[] = []) {
  try {
    await waitFor(
      `all ${expected.length} records in S3`,
      async () => {
        const objects = await readObjects(endpoint, bucket);
        return objects.reduce((n, o) => n + o.lines.length, 0) >= expected.length;
      },
      timeoutMs,
    );
  } catch (err) {
    const check = exactlyOnce(await readObjects(endpoint, bucket), expected);
    const file = join(tmpdir(), `sink-fault-${Date.now()}.log`);
    writeFileSync(file, sinks.flatMap((p) => p.logs.map((l) => JSON.stringify(l))).join('\n') + '\n');
    throw new Error(`${(err as Error).message}: ${JSON.stringify(check)}; the sinks' logs are in ${file}`);
  }
  await new Promise((r) => setTimeout(r, 2000)); // time for a duplicate to show up, if one were coming
  const objects = await readObjects(endpoint, bucket);
  return { objects, check: exactlyOnce(objects, expected) };
}

// A killed member is noticed after the session timeout: the broker's minimum (6 s) instead of 45 s.
const fastFailover = { KAFKA_CONFIG_SESSION_TIMEOUT_MS: '6000', KAFKA_CONFIG_HEARTBEAT_INTERVAL_MS: '1000' };

const clean = (n: number) => ({ missing: 0, duplicated: 0, unexpected: 0, overlaps: [], found: n });

test('a sink killed with SIGKILL at random moments while records flow writes every record exactly once', async (t) => {
  const { bootstrap, s3, topic, sink } = await sinkScenario(t, { partitions: 2 });
  // Many small files: many chances to die between upload and commit.
  const env = { FILE_MAX_RECORDS: '7', FILE_MAX_AGE_SECONDS: '1', ...fastFailover };
  let done = false;
  const producing = produceSteadily(t, bootstrap, topic, 600, 5, 200).finally(() => {
    done = true;
  });
  let kills = 0;
  let current: Program = sink(env);
  while (!done && kills < 5) {
    // Once it owns partitions and has started writing, kill it at a random moment.
    await current.waitForLog('partitions assigned', (l) => l.msg === 'partitions assigned', 60_000);
    await new Promise((r) => setTimeout(r, 500 + Math.random() * 2500));
    current.proc.kill('SIGKILL');
    await current.exited;
    kills++;
    current = sink(env);
  }
  const produced = await producing;
  const { objects, check } = await allInS3(s3.endpoint, s3.bucket, produced);
  reportExactlyOnce(t, `SIGKILL x${kills}`, produced.length, check, objects.length);
  assert.deepEqual(check, clean(produced.length));
});

test('S3 stopped for longer than the upload timeout and restarted: the sink is not ready meanwhile, recovers, and writes every record once', async (t) => {
  const { bootstrap, s3, topic, sink } = await sinkScenario(t);
  const p = sink({ S3_REQUEST_TIMEOUT_SECONDS: '1', FILE_MAX_RECORDS: '20' });
  const port = (await p.waitForLog('started', (l) => l.msg === 'started')).http_port as number;
  const first = await produceSteadily(t, bootstrap, topic, 40, 10, 20);
  await p.waitForLog('an object written', (l) => l.msg === 'object written');

  // First a black hole (requests time out: longer than the 1 s request timeout), then a dead port.
  await s3.stop('hang');
  const during = produceSteadily(t, bootstrap, topic, 60, 10, 100);
  const timedOut = await p.waitForLog('an upload timing out', (l) => l.msg === 'upload failed; retrying', 30_000);
  await waitFor('/readyz to say not ready', async () => (await httpGet(port, '/readyz')).status === 503);
  await new Promise((r) => setTimeout(r, 3000));
  await s3.stop('refuse');
  await new Promise((r) => setTimeout(r, 3000));
  await s3.start();
  t.diagnostic(`S3 unreachable for about 6 s; first failure: ${timedOut.code} ${timedOut.error}`);
  const produced = [...first, ...(await during)];

  const { objects, check } = await allInS3(s3.endpoint, s3.bucket, produced);
  reportExactlyOnce(t, 'S3 outage', produced.length, check, objects.length);
  assert.deepEqual(check, clean(produced.length));
  await waitFor('/readyz to say ready again', async () => (await httpGet(port, '/readyz')).status === 200);
  assert.match((await httpGet(port, '/metrics')).body, /^sink_upload_failures_total [1-9]/m);
});

test('the Kafka broker restarted while records flow: every record is in S3 exactly once', async (t) => {
  const kafka = await startKafka();
  t.after(() => kafka.destroy());
  const { s3, topic, sink } = await sinkScenario(t, { partitions: 2, bootstrap: kafka.bootstrap });
  // As Kubernetes would: a sink that exits is started again (the sink exits 1 when its consumer
  // lost the group and was not given partitions again within GROUP_REJOIN_TIMEOUT_SECONDS).
  const sinks: Program[] = [];
  let restarts = 0;
  let done = false;
  const supervise = () => {
    const p = sink({ FILE_MAX_RECORDS: '15', GROUP_REJOIN_TIMEOUT_SECONDS: '10' });
    sinks.push(p);
    void p.exited.then(() => {
      if (!done) {
        restarts++;
        supervise();
      }
    });
    return p;
  };
  t.after(() => {
    done = true;
  });
  const first = supervise();
  const before = await produceSteadily(t, kafka.bootstrap, topic, 100, 10, 20);
  await first.waitForLog('an object written', (l) => l.msg === 'object written');
  await kafka.stop();
  await new Promise((r) => setTimeout(r, 3000));
  await kafka.start();
  const after = await produceSteadily(t, kafka.bootstrap, topic, 100, 10, 20);
  const produced = [...before, ...after];
  const { objects, check } = await allInS3(s3.endpoint, s3.bucket, produced, 120_000, sinks);
  done = true;
  reportExactlyOnce(t, `Kafka restart (sink restarts: ${restarts})`, produced.length, check, objects.length);
  assert.deepEqual(check, clean(produced.length));
});

test('two sinks in one group, one killed mid-stream: the survivor takes over and every record is in S3 exactly once', async (t) => {
  const { bootstrap, s3, topic, sink } = await sinkScenario(t, { partitions: 4 });
  const env = { FILE_MAX_RECORDS: '9', FILE_MAX_AGE_SECONDS: '2', ...fastFailover };
  const a = sink(env);
  const b = sink(env);
  await Promise.all([a, b].map((p) => p.waitForLog('assignment', (l) => l.msg === 'partitions assigned', 60_000)));
  const producing = produceSteadily(t, bootstrap, topic, 400, 10, 40);
  await a.waitForLog('an object written by the first sink', (l) => l.msg === 'object written', 60_000);
  await b.waitForLog('an object written by the second sink', (l) => l.msg === 'object written', 60_000);
  a.proc.kill('SIGKILL');
  await a.exited;
  const produced = await producing;
  const { objects, check } = await allInS3(s3.endpoint, s3.bucket, produced, 120_000);
  reportExactlyOnce(t, 'rebalance after a kill', produced.length, check, objects.length);
  assert.deepEqual(check, clean(produced.length));
  const lastAssignment = b.logs.filter((l) => l.msg === 'partitions assigned').at(-1)?.partitions as number[];
  assert.deepEqual([...lastAssignment].sort(), [0, 1, 2, 3], 'the survivor owns every partition');
});

test('a sink that lost its group and is not given partitions again exits 1 so that it is restarted', async (t) => {
  const kafka = await startKafka();
  t.after(() => kafka.destroy());
  const { sink } = await sinkScenario(t, { bootstrap: kafka.bootstrap });
  const p = sink({ GROUP_REJOIN_TIMEOUT_SECONDS: '5', ...fastFailover });
  await p.waitForLog('partitions assigned', (l) => l.msg === 'partitions assigned', 60_000);
  await kafka.stop(); // the session times out, the partitions are revoked, and no coordinator answers
  const gone = await p.waitForLog(
    'the watchdog',
    (l) => l.msg === 'no partitions assigned since they were revoked; exiting so that the sink is restarted',
    60_000,
  );
  assert.equal(gone.level, 'error');
  const { code } = await p.exited;
  assert.equal(code, 1);
});
