/**
 * `npm start`, as a person runs it: files with readings appear in the local S3 within a minute,
 * and Ctrl-C (SIGINT to the whole process group, as a terminal sends it) leaves nothing running.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { freePort } from '../../scripts/kafka.ts';
import { readObjects, root, waitFor } from '../helpers.ts';
import type { TestContext } from 'node:test';

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });

/** `npm start [-- args]` in a process group of its own, on free ports; its output collected. */
async function npmStart(t: TestContext, args: string[], extraPorts: string[] = []) {
  const ports: Record<string, number> = {
    KAFKA_PORT: await freePort(),
    KAFKA_CONTROLLER_PORT: await freePort(),
    S3_PORT: await freePort(),
    SAMPLER_HTTP_PORT: await freePort(),
    SINK_HTTP_PORT: await freePort(),
  };
  for (const name of extraPorts) ports[name] = await freePort();
  const proc = spawn('npm', ['start', ...args], {
    cwd: root,
    env: {
      ...process.env,
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      SAMPLE_INTERVAL_SECONDS: '2',
      FILE_MAX_AGE_SECONDS: '4',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, like a terminal's foreground job
  });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const exited = once(proc, 'exit');
  t.after(() => {
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  });
  /** Ctrl-C as a terminal sends it; then every port it opened must be closed. */
  const ctrlC = async () => {
    process.kill(-proc.pid!, 'SIGINT');
    const [code, signal] = await exited;
    // npm itself dies of the SIGINT at once; the pipeline script carries on stopping in order.
    assert.ok(code === 0 || signal === 'SIGINT', `npm exited with ${code ?? signal}`);
    await waitFor('the orderly stop to finish', () => out.includes('[dev] stopped; nothing left running'), 60_000);
    assert.match(out, /\[dev\] stopping: sampler and sink flush first, then S3 and Kafka/);
    for (const [name, port] of Object.entries(ports)) {
      if (name === 'KAFKA_CONTROLLER_PORT') continue;
      assert.ok(await refused(port), `${name} ${port} still answers after Ctrl-C`);
    }
  };
  return { ports, output: () => out, ctrlC };
}

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
