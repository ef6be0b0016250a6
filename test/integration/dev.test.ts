/**
 * `npm start`, as a person runs it: files with readings appear in the local S3 within a minute,
 * and Ctrl-C (SIGINT to the whole process group, as a terminal sends it) leaves nothing running.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { npmStart, readObjects, waitFor } from '../helpers.ts';

test('npm start shows readings in S3 within a minute, and Ctrl-C stops every process it started', async (t) => {
  const { ports, output, ctrlC } = await npmStart(t, []);
  const started = Date.now();
  await waitFor('a file written', () => output().includes('[dev] file written: s3://'), 120_000);
  t.diagnostic(`first file after ${((Date.now() - started) / 1000).toFixed(1)} s (including Kafka and S3 start-up)`);
  const objects = await readObjects(`http://127.0.0.1:${ports.S3_PORT}`, 'cpu-pipeline-local');
  const first = JSON.parse(objects[0].lines[0]);
  assert.equal(first.schema_version, 1);
  assert.ok(objects[0].key.startsWith('cpu-levels/dt='), objects[0].key);

  await ctrlC();
});

test('npm start -- --monitoring: a real Prometheus at the printed URL scrapes all three, with the alert rules', async (t) => {
  const { ports, output, ctrlC } = await npmStart(t, ['--', '--monitoring'], ['PROMETHEUS_PORT', 'KAFKA_METRICS_PORT']);
  const url = await waitFor('the Prometheus URL', () => /\[dev\] Prometheus at (http:\/\/\S+):/.exec(output())?.[1], 120_000);
  assert.equal(url, `http://127.0.0.1:${ports.PROMETHEUS_PORT}`);
  const api = async (path: string) => ((await (await fetch(`${url}${path}`)).json()) as { data: never }).data;
  const jobs = await waitFor(
    'the sampler, the sink and the broker up',
    async () => {
      const { activeTargets } = (await api('/api/v1/targets')) as { activeTargets: Array<{ labels: { job: string }; health: string }> };
      const up = activeTargets.filter((x) => x.health === 'up').map((x) => x.labels.job);
      return up.length === 3 && up.sort();
    },
    60_000,
  );
  assert.deepEqual(jobs, ['cpu-kafka', 'cpu-sampler', 'cpu-sink']);
  const { groups } = (await api('/api/v1/rules')) as { groups: Array<{ rules: Array<{ type: string }> }> };
  assert.ok(groups.flatMap((g) => g.rules).filter((r) => r.type === 'alerting').length >= 13, 'the alert rules are loaded');
  await ctrlC();
});
