/**
 * k8s/overlays/local deployed for real on the project's own cluster (scripts/cluster.sh), applied
 * unchanged plus one static PersistentVolume for the broker (what a storage provisioner would do;
 * the cluster has no StorageClass):
 *   - every pod Ready and the setup Jobs Completed; readings in the overlay's S3 server within two
 *     sampling intervals, each valid against schema/cpu-reading.v1.schema.json and naming the
 *     node, the namespace and the sampler's pod;
 *   - failure drills while readings flow: the broker's pod deleted, the sink's pod killed at once
 *     (no grace period) during uploads, the sink's Deployment rolled; afterwards every reading the
 *     broker holds (every one the sampler had confirmed) is in S3 exactly once;
 *   - the monitoring component's Prometheus scrapes the sampler, the sink and the broker (JMX
 *     exporter), has the alert rules, and nothing fires;
 *   - `kubectl delete -k` leaves nothing behind.
 * The overlay's NetworkPolicies are applied with it, but this cluster's CNI does not enforce them
 * (test/integration/network-policies.test.ts checks what they allow); the client in another
 * namespace carries their opt-in label all the same, as it would have to elsewhere.
 *
 *   npm run test:cluster      # starts the cluster (test/e2e/cluster-setup.ts) and stops it after
 *
 * Without a cluster the test fails; it never skips.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { stringify } from 'yaml';
import { root } from '../helpers.ts';
import {
  brokerVolume,
  clientJob,
  clusterScript,
  eventually,
  exactlyOnce,
  kubectl,
  kubectlJson,
  linesOf,
  log,
  parseYaml,
  parts,
  readBucket,
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

const overlay = join(root, 'k8s', 'overlays', 'local');

test('k8s/overlays/local on a real cluster', { timeout: 30 * 60_000 }, async (t) => {
  const nodeName = theNode();
  const objs = parseYaml(kubectl(['kustomize', overlay]).out);
  const namespace = objs.find((o) => o.kind === 'Namespace')!.metadata.name;
  const p = parts(objs);
  const interval = Number(p.samplerEnv.SAMPLE_INTERVAL_SECONDS);
  const topic = p.sinkEnv.KAFKA_TOPIC;
  assert.ok(interval > 0 && topic && p.jobs.length >= 2, 'the overlay has its workloads, jobs, sampling interval and topic');

  brokerVolume(t, p.broker, namespace);
  let applied = false;
  t.after(() => {
    // On failure too: the overlay goes, so that the next run starts clean.
    if (applied)
      kubectl(['delete', '-k', overlay, '--ignore-not-found', '--wait=true', '--timeout=180s'], { allowFail: true, timeoutMs: 240_000 });
  });

  let allReadyAt = 0;
  await t.test('apply -k: every pod Ready, the setup Jobs Completed, the topic created', () => {
    const appliedAt = Date.now();
    applied = true;
    const applied_ = kubectl(['apply', '-k', overlay]);
    log(applied_.out.trim().split('\n').join(', '));
    // The namespace enforces Pod Security "privileged" for the sampler's host mount and warns
    // against "restricted": the one warning is about that volume, every other pod meets it.
    const warnings = applied_.err.split('\n').filter((l) => l.startsWith('Warning:'));
    assert.ok(warnings.length >= 1, 'the API server warns against "restricted"');
    for (const w of warnings)
      assert.match(
        w,
        /^Warning: would violate PodSecurity "restricted:latest": restricted volume types \(volume "host-cgroup" uses restricted volume type "hostPath"\)$/,
      );
    allReadyAt = waitReady(namespace, p.workloads, p.jobs, appliedAt);
    log(`all pods Ready or Completed ${((allReadyAt - appliedAt) / 1000).toFixed(1)} s after apply`);
    const topicsJob = p.jobs.find(
      (j) => j.spec.template.metadata.labels['app.kubernetes.io/component'] === 'setup' && /topic/.test(j.metadata.name),
    )!;
    assert.match(
      kubectl(['-n', namespace, 'logs', `job/${topicsJob.metadata.name}`]).out,
      new RegExp(`Topic: ${topic}\\s.*PartitionCount: \\d+`),
    );
  });

  await t.test('readings from the node are in S3 within two sampling intervals, valid and named', async () => {
    const { bucket, objects } = await eventually(
      'two objects in the bucket',
      () => {
        const b = readBucket(namespace, p.sink);
        return b.objects.length >= 2 && b;
      },
      4 * interval * 1000 + 2 * Number(p.sinkEnv.FILE_MAX_AGE_SECONDS) * 1000 + 60_000,
    );
    const keys = new RegExp(`^${p.sinkEnv.S3_PREFIX}/dt=\\d{4}-\\d{2}-\\d{2}/hour=\\d{2}/${topic}\\+\\d+\\+\\d{10}\\.jsonl(\\.gz)?$`);
    for (const o of objects) {
      assert.match(o.key, keys);
      assert.equal(Number(o.metadata.records), linesOf(o).length, `${o.key}: the records metadata counts its lines`);
      for (const line of linesOf(o)) {
        const reading = JSON.parse(line) as { node: string; namespace: string; pod: string };
        assert.ok(validReading(reading), `${o.key}: ${JSON.stringify(validReading.errors)}`);
        assert.equal(reading.node, nodeName, 'the reading names the node');
        if (!isNodeReading(line)) continue; // a pod's: the next test
        assert.equal(reading.namespace, namespace, 'the reading names the namespace');
        assert.match(reading.pod, new RegExp(`^${p.sampler.metadata.name}-`), 'the reading names the sampler pod');
      }
    }
    // LastModified has whole seconds: one second of slack. The first object may also hold readings
    // taken before the sink joined its group: it is timed from Ready, the second from its first window.
    const [first, second] = objects;
    const afterReady = (Date.parse(first.lastModified) - allReadyAt) / 1000;
    const firstWindowEnd = (o: S3Object) => Math.min(...linesOf(o).map((l) => Date.parse(JSON.parse(l).window_end)));
    const latency = (Date.parse(second.lastModified) - firstWindowEnd(second)) / 1000;
    log(
      `s3://${bucket}/${first.key}: ${first.metadata.records} reading(s), written ${afterReady.toFixed(1)} s after all pods were Ready (interval ${interval} s)`,
    );
    log(
      `s3://${bucket}/${second.key}: ${second.metadata.records} reading(s), written ${latency.toFixed(1)} s after its first window ended`,
    );
    assert.ok(afterReady <= 2 * interval + 1, `the first object came ${afterReady} s after Ready, more than two sampling intervals`);
    assert.ok(latency <= 2 * interval + 1, `the second object came ${latency} s after its first window, more than two sampling intervals`);
  });

  await t.test("every pod on the node is read: the cluster's own pods, named with their namespaces, UIDs and requests", async () => {
    type PodLine = { kind?: string; pod_uid: string; pod: string | null; namespace: string | null; request_cores: number | null };
    // Pods running on the node since before the sampler's last two windows: each must be in S3.
    const pods = (
      kubectlJson(['get', 'pods', '-A', '--field-selector', `spec.nodeName=${nodeName},status.phase=Running`]).items as Obj[]
    ).filter((x) => Date.parse(x.status.startTime) < allReadyAt);
    assert.ok(pods.length >= 4, `pods on the node: ${pods.map((x) => x.metadata.name).join(', ')}`);
    const inS3 = () =>
      readBucket(namespace, p.sink)
        .objects.flatMap(linesOf)
        .map((l) => JSON.parse(l) as PodLine)
        .filter((r) => r.kind === 'pod');
    const readings = await eventually(
      'a reading of every pod, named',
      () => {
        const r = inS3();
        return pods.every((x) => r.some((y) => y.pod_uid === x.metadata.uid && y.pod !== null)) && r;
      },
      3 * interval * 1000 + 2 * Number(p.sinkEnv.FILE_MAX_AGE_SECONDS) * 1000 + 60_000,
      5000,
    );
    const cpuRequest = (x: Obj) =>
      (x.spec.containers as Array<{ resources?: { requests?: { cpu?: string } } }>)
        .map((c) => c.resources?.requests?.cpu ?? '0')
        .reduce((n, q) => n + (q.endsWith('m') ? Number(q.slice(0, -1)) / 1000 : Number(q)), 0);
    for (const x of pods) {
      const r = readings.find((y) => y.pod_uid === x.metadata.uid && y.pod !== null)!;
      assert.deepEqual([r.pod, r.namespace], [x.metadata.name, x.metadata.namespace], `${x.metadata.name}: named by the API`);
      const request = cpuRequest(x);
      if (!x.spec.initContainers && !x.spec.overhead)
        assert.ok(
          request > 0 ? Math.abs(r.request_cores! - request) < 1e-4 : r.request_cores === null,
          `${x.metadata.name}: its request ${request}, read ${r.request_cores}`,
        );
    }
    const namespaces = [...new Set(pods.map((x) => x.metadata.namespace))];
    assert.ok(namespaces.length >= 2, `pods of more than the pipeline's namespace: ${namespaces.join(', ')}`);
    log(`pods read on ${nodeName}: ${pods.map((x) => `${x.metadata.namespace}/${x.metadata.name}`).join(', ')}`);
  });

  await t.test("the monitoring component's Prometheus scrapes the sampler, the sink and the broker, with the alert rules", async () => {
    const prometheus = objs.find((o) => o.kind === 'Service' && o.metadata.labels?.['app.kubernetes.io/name'] === 'cpu-prometheus')!;
    // Through the API server's proxy to the Service: nothing exposed on the host.
    const api = (path: string) =>
      JSON.parse(kubectl(['get', '--raw', `/api/v1/namespaces/${namespace}/services/${prometheus.metadata.name}:http/proxy${path}`]).out)
        .data;
    const since = Date.now();
    const targets = await eventually(
      'the three jobs scraped and up',
      () => {
        const active = api('/api/v1/targets?state=active').activeTargets as Array<{ labels: Record<string, string>; health: string }>;
        const jobs = [...new Set(active.map((x) => x.labels.job))].sort();
        return jobs.join() === 'cpu-kafka,cpu-sampler,cpu-sink' && active.every((x) => x.health === 'up') && active;
      },
      180_000,
      5000,
    );
    log(`Prometheus: ${targets.map((x) => `${x.labels.job} ${x.labels.pod} up`).join(', ')} (${seconds(since)} s)`);
    assert.equal(targets.find((x) => x.labels.job === 'cpu-sampler')!.labels.node, nodeName, 'the sampler target carries its node');
    const query = (expr: string) => api(`/api/v1/query?query=${encodeURIComponent(expr)}`).result as unknown[];
    for (const expr of [
      `sink_node_last_reading_timestamp_seconds{node="${nodeName}"}`,
      `sampler_readings_produced_total{node="${nodeName}"} > 0`,
      'kafka_server_broker_state == 3',
      `kafka_server_topic_messagesin_total{topic="${topic}"} > 0`,
    ]) {
      await eventually(`${expr} in Prometheus`, () => query(expr).length > 0, 120_000, 5000);
    }
    const alerts = (api('/api/v1/rules').groups as Array<{ rules: Array<{ type: string; name: string }> }>)
      .flatMap((g) => g.rules)
      .filter((r) => r.type === 'alerting');
    assert.ok(alerts.length >= 13, `the alert rules are loaded (${alerts.length})`);
    const firing = (api('/api/v1/alerts').alerts as Array<{ state: string; labels: Record<string, string> }>).filter(
      (a) => a.state === 'firing',
    );
    assert.deepEqual(
      firing.map((a) => a.labels.alertname),
      [],
      'nothing is wrong, nothing fires',
    );
  });

  await t.test('a client in another namespace reaches the broker at the address it advertises', async () => {
    const elsewhere = `${namespace}-client`;
    kubectl(['create', 'namespace', elsewhere]);
    t.after(() => kubectl(['delete', 'namespace', elsewhere, '--ignore-not-found', '--wait=false'], { allowFail: true }));
    const port = p.broker.spec.template.spec.containers[0].ports.find((x: { name: string }) => x.name === 'client').containerPort;
    const brokerLabels = p.broker.spec.template.metadata.labels as Record<string, string>;
    const service = objs.find(
      (o) =>
        o.kind === 'Service' &&
        o.spec.clusterIP !== 'None' &&
        Object.entries(o.spec.selector ?? {}).every(([k, v]) => brokerLabels[k] === v) &&
        Object.keys(o.spec.selector ?? {}).length > 0,
    )!;
    // Bootstraps at <service>.<namespace>.svc, then asks the partitions' leader (at its advertised
    // address) for their offsets: with a short advertised name this second step could not resolve.
    const script = `
      import { KafkaJS } from '@confluentinc/kafka-javascript';
      const admin = new KafkaJS.Kafka({ kafkaJS: { brokers: ['${service.metadata.name}.${namespace}.svc:${port}'], logLevel: KafkaJS.logLevel.NOTHING } }).admin();
      await admin.connect();
      const offsets = await admin.fetchTopicOffsets('${topic}');
      console.log(JSON.stringify({ partitions: offsets.length, high: offsets.map((o) => Number(o.high)) }));
      await admin.disconnect();`;
    const client = clientJob({
      name: 'kafka-client',
      namespace: elsewhere,
      image: p.sink.spec.template.spec.containers[0].image,
      command: ['node', '--input-type=module', '-e', script],
      timeoutSeconds: 120,
    });
    const out = client.log.trim();
    assert.ok(client.completed, `the client in ${elsewhere} did not complete: ${out}`);
    const result = JSON.parse(out.split('\n').at(-1)!);
    log(
      `a client in namespace ${elsewhere} read the offsets of ${result.partitions} partitions from ${service.metadata.name}.${namespace}.svc`,
    );
    assert.ok(result.partitions > 0);
    kubectl(['delete', 'namespace', elsewhere, '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
  });

  await t.test('apply -k again after a change to the topic settings: the topic Job runs again, no immutable field', async () => {
    // A kustomization of the overlay with one topic setting changed, as a user's edit of topics.env would be.
    const dir = mkdtempSync(join(root, '.cache', 'e2e-reapply-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const topicsConfig = objs.find((o) => o.kind === 'ConfigMap' && o.data?.RETENTION_MS)!;
    const name = topicsConfig.metadata.name.replace(/-[a-z0-9]{10}$/, '');
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      stringify({
        apiVersion: 'kustomize.config.k8s.io/v1beta1',
        kind: 'Kustomization',
        resources: [relative(dir, overlay)],
        configMapGenerator: [
          { name, behavior: 'merge', literals: [`RETENTION_MS=${Number(topicsConfig.data!.RETENTION_MS) + 3_600_000}`] },
        ],
      }),
    );
    const out = kubectl(['apply', '-k', dir]).out;
    const job = /job\.batch\/(\S+) created/.exec(out)?.[1];
    assert.ok(job, `a new topic Job was created: ${out}`);
    kubectl(['-n', namespace, 'wait', '--for=condition=Complete', `job/${job}`, '--timeout=300s'], { timeoutMs: 320_000 });
    log(`re-applied with RETENTION_MS changed: Job ${job} completed`);
    kubectl(['apply', '-k', overlay]); // back to the overlay as it is (a new Job again, the same settings as at first)
  });

  await t.test('drills: broker pod deleted, sink pod killed during uploads, sink rolled; every reading exactly once', async () => {
    const objectsNow = () => readBucket(namespace, p.sink).objects.length;
    const moreObjects = async (what: string) => {
      const before = objectsNow();
      await eventually(`a new object after ${what}`, () => objectsNow() > before, 4 * interval * 1000 + 120_000, 5000);
    };
    const brokerPod = `${p.broker.metadata.name}-0`;
    let at = Date.now();
    kubectl(['-n', namespace, 'delete', 'pod', brokerPod, '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
    kubectl(['-n', namespace, 'rollout', 'status', `statefulset/${p.broker.metadata.name}`, '--timeout=300s'], { timeoutMs: 320_000 });
    await moreObjects('the broker came back');
    log(`drill: broker pod deleted; back and objects written again after ${seconds(at)} s`);

    // Killed mid-stream: SIGKILL at once, whatever it holds (the conditional writes make the replay harmless).
    at = Date.now();
    const sinkPod = () =>
      (kubectlJson(['-n', namespace, 'get', 'pods', '-l', selector(p.sink)]).items as Obj[]).find(
        (x) => x.status.phase === 'Running' && !('deletionTimestamp' in x.metadata),
      )!.metadata.name;
    await eventually(
      'an upload to interrupt',
      () => kubectl(['-n', namespace, 'logs', `deploy/${p.sink.metadata.name}`, '--since=15s']).out.includes('"object written"'),
      60_000,
      1000,
    );
    kubectl(['-n', namespace, 'delete', 'pod', sinkPod(), '--grace-period=0', '--force', '--wait=false'], { allowFail: true });
    kubectl(['-n', namespace, 'rollout', 'status', `deployment/${p.sink.metadata.name}`, '--timeout=300s'], { timeoutMs: 320_000 });
    await moreObjects('the sink was killed');
    log(`drill: sink pod killed with no grace period; replaced and writing again after ${seconds(at)} s`);

    at = Date.now();
    kubectl(['-n', namespace, 'rollout', 'restart', `deployment/${p.sink.metadata.name}`]);
    kubectl(['-n', namespace, 'rollout', 'status', `deployment/${p.sink.metadata.name}`, '--timeout=300s'], { timeoutMs: 320_000 });
    await moreObjects('the sink was rolled');
    log(`drill: sink Deployment rolled; writing again after ${seconds(at)} s`);

    // No more readings: the sampler's pod goes (SIGTERM: it flushes what it holds), then the sink
    // has until its files' age has passed twice to write what is left.
    await stopSampler(namespace, p.sampler);
    const inTopic = readTopic(namespace, p.broker, topic);
    assert.ok(inTopic.length > 0, 'the topic holds readings');
    const check = await eventually(
      'every reading of the topic in S3',
      () => {
        const c = exactlyOnce(inTopic, readBucket(namespace, p.sink).objects);
        return c.missing === 0 && c;
      },
      6 * Number(p.sinkEnv.FILE_MAX_AGE_SECONDS) * 1000 + 120_000,
      5000,
    );
    log(`after the drills: ${JSON.stringify(check)}`);
    const { missing, duplicated, unexpected, overlaps } = check;
    assert.deepEqual({ missing, duplicated, unexpected, overlaps }, { missing: 0, duplicated: 0, unexpected: 0, overlaps: 0 });
    assert.equal(check.inS3, check.inTopic);
  });

  await t.test('delete -k leaves nothing behind', async () => {
    const at = Date.now();
    kubectl(['delete', '-k', overlay, '--wait=true', '--timeout=240s'], { timeoutMs: 300_000 });
    applied = false;
    await eventually(
      `namespace ${namespace} to be gone`,
      () => kubectl(['get', 'namespace', namespace], { allowFail: true }).code !== 0,
      180_000,
    );
    log(`deleted in ${seconds(at)} s`);
    const left = kubectl([
      'get',
      'all,configmaps,secrets,serviceaccounts,persistentvolumeclaims,jobs',
      '-A',
      '-l',
      'app.kubernetes.io/part-of=cpu-pipeline',
      '-o',
      'name',
    ]);
    assert.equal(left.out.trim(), '', 'no object of the pipeline is left');
    const pods = (kubectlJson(['get', 'pods', '-A']).items as Obj[]).filter((x) => x.metadata.namespace !== 'kube-system');
    assert.deepEqual(
      pods.map((x) => `${x.metadata.namespace}/${x.metadata.name}`),
      [],
      'only kube-system pods are left',
    );
    const containers = () =>
      spawnSync('bash', [clusterScript, 'ctr', 'containers', 'ls', '-q', `labels."io.kubernetes.pod.namespace"==${namespace}`], {
        encoding: 'utf8',
      }).stdout.trim();
    await eventually('no container of the namespace left on the node', () => containers() === '', 60_000);
  });
});

const selector = (w: Obj) =>
  Object.entries(w.spec.selector.matchLabels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
