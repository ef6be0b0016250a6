/**
 * The connect component (k8s/components/connect) on the project's own cluster: the local overlay
 * with Kafka Connect instead of cpu-sink, as a user would add it (the component, plus the local
 * S3 server's credentials and network way for the worker, which the overlay gives cpu-sink):
 *   - apply -k: the broker, the sampler, the Connect worker Ready; the topic Job and the connector
 *     Job Completed (the connector and its task RUNNING); no cpu-sink;
 *   - readings in S3 through the connector, under sink.ts's keys, valid, from this node;
 *   - the worker killed with no grace period, then the sampler stopped: every reading of the
 *     topic in S3 exactly once;
 *   - the monitoring component's Prometheus scrapes the worker (Connect's JMX through the exporter).
 *
 *   npm run test:cluster      # starts the cluster (test/e2e/cluster-setup.ts) and stops it after
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { overlayWithConnect } from '../helpers.ts';
import {
  brokerVolume,
  eventually,
  exactlyOnce,
  kubectl,
  kubectlJson,
  linesOf,
  log,
  parseYaml,
  readBucketOnServer,
  readTopic,
  seconds,
  stopSampler,
  theNode,
  validReading,
  isNodeReading,
  waitReady,
  type Obj,
  type S3Object,
} from './cluster.ts';

test('the connect component on a real cluster: readings in S3 through Kafka Connect', { timeout: 30 * 60_000 }, async (t) => {
  const nodeName = theNode();
  // The local overlay as a user turns the component on in it, with what the worker needs there.
  const copy = mkdtempSync(join(tmpdir(), 'cpu-pipeline-e2e-connect-'));
  t.after(() => rmSync(copy, { recursive: true, force: true }));
  const dir = overlayWithConnect(copy, 'local');
  const objs = parseYaml(kubectl(['kustomize', dir]).out);
  const namespace = objs.find((o) => o.kind === 'Namespace')!.metadata.name;
  const workloads = objs.filter((o) => ['Deployment', 'DaemonSet', 'StatefulSet'].includes(o.kind));
  const jobs = objs.filter((o) => o.kind === 'Job');
  const broker = workloads.find((o) => o.kind === 'StatefulSet')!;
  const sinkSettings = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('cpu-sink-'))!.data!;
  assert.ok(
    workloads.some((o) => o.metadata.name === 'cpu-connect'),
    'the component adds the worker',
  );
  assert.ok(!workloads.some((o) => o.metadata.name === 'cpu-sink'), 'and cpu-sink goes');
  assert.ok(jobs.some((j) => j.metadata.name.startsWith('cpu-connect-connector-')));

  brokerVolume(t, broker, namespace);
  let applied = false;
  t.after(() => {
    if (applied)
      kubectl(['delete', '-k', dir, '--ignore-not-found', '--wait=true', '--timeout=180s'], { allowFail: true, timeoutMs: 240_000 });
  });

  let readyAt = 0;
  await t.test('apply -k: the worker Ready, the topic and connector Jobs Completed (the connector and its task running)', () => {
    const at = Date.now();
    applied = true;
    log(kubectl(['apply', '-k', dir]).out.trim().split('\n').join(', '));
    readyAt = waitReady(namespace, workloads, jobs, at);
    const connectorJob = jobs.find((j) => j.metadata.name.startsWith('cpu-connect-connector-'))!;
    const said = kubectl(['-n', namespace, 'logs', `job/${connectorJob.metadata.name}`]).out;
    log(`connector Job: ${said.trim().split('\n').join(' | ')}`);
    assert.match(said, /connector cpu-s3-sink and its task are running/);
  });

  const bucket = (): S3Object[] => readBucketOnServer(namespace, sinkSettings.S3_BUCKET, sinkSettings.S3_PREFIX);

  await t.test("readings in S3 through the connector: sink.ts's keys and metadata, valid, from this node", async () => {
    const objects = await eventually('two objects in the bucket', () => bucket().length >= 2 && bucket(), 180_000, 5000);
    log(`${objects.length} objects, the first ${seconds(readyAt)} s after Ready: ${objects[0].key}`);
    const prefix = sinkSettings.S3_PREFIX;
    const topic = sinkSettings.KAFKA_TOPIC;
    for (const o of objects) {
      // sink.ts's key: <prefix>/dt=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first offset, 10 digits>.jsonl.gz
      const m = new RegExp(`^${prefix}/dt=(\\d{4}-\\d{2}-\\d{2})/hour=(\\d{2})/${topic}\\+(\\d+)\\+(\\d{10})\\.jsonl\\.gz$`).exec(o.key);
      assert.ok(m, `a key as sink.ts names it: ${o.key}`);
      assert.equal(o.metadata.topic, topic);
      assert.equal(o.metadata.partition, String(Number(m[3])));
      assert.equal(Number(o.metadata['start-offset']), Number(m[4]));
      const lines = linesOf(o);
      assert.equal(Number(o.metadata.records), lines.length);
      for (const line of lines) {
        const reading = JSON.parse(line) as { node: string; namespace: string; window_start: string };
        assert.ok(validReading(reading), JSON.stringify(validReading.errors));
        assert.equal(reading.node, nodeName);
        if (isNodeReading(line)) assert.equal(reading.namespace, namespace, "the node's reading names the sampler's namespace");
        assert.equal(reading.window_start.slice(0, 13), `${m[1]}T${m[2]}`, 'in the hour of its key');
      }
    }
  });

  await t.test(
    'the worker killed with no grace period, then the readings stopped: every reading of the topic in S3 exactly once',
    async () => {
      const selector = 'app.kubernetes.io/name=cpu-connect';
      const workerPods = () => (kubectlJson(['-n', namespace, 'get', 'pods', '-l', selector]).items as Obj[]).map((x) => x.metadata.name);
      const [killed] = workerPods();
      const count = bucket().length;
      let at = Date.now();
      kubectl(['-n', namespace, 'delete', 'pod', killed, '--grace-period=0', '--force', '--wait=false']);
      kubectl(['-n', namespace, 'rollout', 'status', 'deployment/cpu-connect', '--timeout=300s'], { timeoutMs: 320_000 });
      await eventually('a new object from the new worker', () => bucket().length > count, 180_000, 5000);
      log(`drill: worker ${killed} killed; its replacement writing again after ${seconds(at)} s`);

      // No more readings: the sampler's pod goes (it flushes what it holds), then the connector has
      // until its files' age has passed a few times to write what is left.
      at = Date.now();
      const sampler = workloads.find((o) => o.kind === 'DaemonSet')!;
      await stopSampler(namespace, sampler);
      const inTopic = readTopic(namespace, broker, sinkSettings.KAFKA_TOPIC);
      assert.ok(inTopic.length > 0, 'the topic holds readings');
      const check = await eventually(
        'every reading of the topic in S3',
        () => {
          const c = exactlyOnce(inTopic, bucket());
          return c.missing === 0 && c;
        },
        6 * Number(sinkSettings.FILE_MAX_AGE_SECONDS) * 1000 + 120_000,
        5000,
      );
      log(`after the drill: ${JSON.stringify(check)} (${seconds(at)} s after the sampler stopped)`);
      const { missing, duplicated, unexpected, overlaps } = check;
      assert.deepEqual({ missing, duplicated, unexpected, overlaps }, { missing: 0, duplicated: 0, unexpected: 0, overlaps: 0 });
      assert.equal(check.inS3, check.inTopic);
    },
  );

  await t.test("the monitoring component's Prometheus scrapes the worker's JMX metrics", async () => {
    const prometheus = objs.find((o: Obj) => o.kind === 'Service' && o.metadata.labels?.['app.kubernetes.io/name'] === 'cpu-prometheus')!;
    const api = (path: string) =>
      JSON.parse(kubectl(['get', '--raw', `/api/v1/namespaces/${namespace}/services/${prometheus.metadata.name}:http/proxy${path}`]).out)
        .data;
    const query = (expr: string) => api(`/api/v1/query?query=${encodeURIComponent(expr)}`).result as unknown[];
    for (const expr of [
      'up{job="cpu-connect"} == 1',
      'kafka_connect_worker_connector_count == 1',
      'kafka_connect_task_status{connector="cpu-s3-sink",status="running"} == 1',
      'kafka_connect_sink_task_sink_record_read{connector="cpu-s3-sink"} > 0',
    ]) {
      await eventually(`${expr} in Prometheus`, () => query(expr).length > 0, 180_000, 5000);
    }
    log('Prometheus: cpu-connect up, its connector and task running, records read');
  });

  // The namespace goes, and the broker's claim with it: the next test's broker gets a fresh volume.
  await t.test('delete -k: the namespace goes, with the broker claim in it', async () => {
    const at = Date.now();
    kubectl(['delete', '-k', dir, '--wait=true', '--timeout=240s'], { timeoutMs: 300_000 });
    applied = false;
    await eventually(
      `namespace ${namespace} to be gone`,
      () => kubectl(['get', 'namespace', namespace], { allowFail: true }).code !== 0,
      180_000,
    );
    log(`deleted in ${seconds(at)} s`);
  });
});
