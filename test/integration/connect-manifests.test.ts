/**
 * The connect component (k8s/components/connect) as the local and eks overlays render it with it,
 * offline: valid against the Kubernetes schemas and kube-score's checks, Kafka Connect instead of
 * cpu-sink, the connector Job with exactly the sink's settings under the connector's own names
 * (connect/README.md's table), a new Job when a setting changes, and the NetworkPolicies letting
 * the worker reach what it needs and nothing else in. test/e2e/connect.e2e.ts deploys it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, parseDocument, stringify } from 'yaml';
import { kubeconformArgs, kubernetesVersion, tool } from '../../scripts/k8s-tools.ts';
import { chartTemplateArgs, overlayWithConnect, root } from '../helpers.ts';
import { allowed as isAllowed, type Address, type Cluster, type Pod } from '../network-policy.ts';

function run(cmd: string, args: string[], input?: string) {
  const r = spawnSync(cmd, args, { cwd: root, input, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The overlay with the component, as YAML; `setting`: one more sink setting in the overlay, as a user's own. */
function render(overlay: 'local' | 'eks', setting?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-connect-'));
  try {
    const at = overlayWithConnect(dir, overlay);
    if (setting) {
      const file = join(at, 'kustomization.yaml');
      const k = parseDocument(readFileSync(file, 'utf8')).toJS() as { configMapGenerator: Array<{ name: string; literals?: string[] }> };
      k.configMapGenerator.find((g) => g.name === 'cpu-sink')!.literals!.push(setting);
      writeFileSync(file, stringify(k));
    }
    const r = run('kubectl', ['kustomize', at]);
    assert.equal(r.code, 0, r.err);
    return r.out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const objectsOf = (yaml: string): any[] =>
  parseAllDocuments(yaml)
    .map((d) => d.toJS())
    .filter(Boolean);
const find = (objs: any[], kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && (x.metadata.name === name || x.metadata.name.startsWith(`${name}-`)));
  assert.ok(o, `${kind}/${name} is rendered`);
  return o;
};

for (const overlay of ['local', 'eks'] as const) {
  test(`${overlay} overlay with connect: valid (kubeconform, strict) and kube-score clean`, () => {
    const yaml = render(overlay);
    const valid = run(tool('kubeconform'), kubeconformArgs(), yaml);
    assert.equal(valid.code, 0, valid.out + valid.err);
    assert.match(valid.out, /Invalid: 0, Errors: 0, Skipped: 0/);
    const ignored = ['container-security-context-user-group-id', 'container-image-pull-policy']; // as test/integration/k8s.test.ts, with its reasons
    const score = run(tool('kube-score'), ['score', '-', '-o', 'ci', '--ignore-test', ignored.join(',')], yaml);
    assert.deepEqual(
      score.out.split('\n').filter((l) => /^\[(CRITICAL|WARNING)\]/.test(l)),
      [],
    );
  });

  test(`${overlay} overlay with connect: the worker instead of cpu-sink, with the sink's account, the connector and the JMX agent from the project's image`, () => {
    const objs = objectsOf(render(overlay));
    assert.equal(
      objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'cpu-sink'),
      undefined,
      'no cpu-sink',
    );
    const worker = find(objs, 'Deployment', 'cpu-connect').spec.template;
    assert.equal(worker.spec.serviceAccountName, 'cpu-sink', "the sink's account: its IAM role (IRSA)");
    assert.equal(worker.metadata.labels['cpu-pipeline.io/kafka-client'], 'true', 'a Kafka client the broker lets in');
    const [init] = worker.spec.initContainers;
    const project = find(objs, 'DaemonSet', 'cpu-sampler').spec.template.spec.containers[0].image;
    assert.equal(init.image, project, "the plugin and the agent come from the project's image");
    assert.match(init.command.join(' '), /\/app\/connect-plugins\/\. \/plugins\/.*\/app\/jmx\/jmx_prometheus_javaagent\.jar \/jmx\//);
    const container = worker.spec.containers[0];
    assert.equal(container.image, find(objs, 'StatefulSet', 'cpu-kafka').spec.template.spec.containers[0].image, "the broker's image");
    const properties = find(objs, 'ConfigMap', 'cpu-connect').data['worker.properties'];
    assert.match(properties, /^plugin\.path=\/opt\/connect-plugins$/m);
    assert.ok(container.volumeMounts.some((m: any) => m.mountPath === '/opt/connect-plugins'));
    const brokers = find(objs, 'ConfigMap', 'cpu-sink').data.KAFKA_BROKERS;
    assert.match(properties, new RegExp(`^bootstrap\\.servers=${brokers}$`, 'm'), 'the broker the sink would use');
    assert.deepEqual(
      container.env.filter((e: any) => e.name.startsWith('AWS_')).map((e: any) => [e.name, e.valueFrom.secretKeyRef.optional]),
      [
        ['AWS_ACCESS_KEY_ID', true],
        ['AWS_SECRET_ACCESS_KEY', true],
        ['AWS_SESSION_TOKEN', true],
      ],
      'keys from aws-secret where it exists, as the sink has them',
    );
  });
}

test("the connector Job maps every sink setting the connector has to its name in connect/README.md's table, and no other", () => {
  const objs = objectsOf(render('local'));
  const job = find(objs, 'Job', 'cpu-connect-connector').spec.template.spec.containers[0];
  const script: string = job.args[0];
  const mapping = Object.fromEntries([...script.matchAll(/([A-Z0-9_]+): "([a-z0-9.]+)"/g)].map((m) => [m[1], m[2]]));
  const readme = readFileSync(join(root, 'connect', 'README.md'), 'utf8');
  const table = Object.fromEntries([...readme.matchAll(/^\| `([a-z0-9.]+)` +\| `([A-Z0-9_]+)` +\|/gm)].map((m) => [m[2], m[1]]));
  assert.ok(Object.keys(table).length >= 10, `the README's table (${Object.keys(table).length} rows)`);
  assert.deepEqual(mapping, table);
  // Its settings are the sink's, whole.
  const settings = find(objs, 'ConfigMap', job.envFrom[0].configMapRef.name).data;
  const sink = find(objs, 'ConfigMap', 'cpu-sink').data;
  for (const [k, v] of Object.entries(sink)) assert.equal(settings[k], v, k);
  assert.equal(settings.S3_ENDPOINT, 'http://s3:5000', "the local overlay's S3 server");
});

test('a change to a sink setting names a new connector Job (its pod template cannot change in place); the same settings, the same Job', () => {
  const name = (setting?: string) => find(objectsOf(render('local', setting)), 'Job', 'cpu-connect-connector').metadata.name;
  assert.equal(name(), name());
  assert.notEqual(name('FILE_MAX_RECORDS=5000'), name());
});

test("NetworkPolicies: the worker reaches the broker, S3 and DNS; its API only from the connector Job, its metrics only from the pipeline's Prometheus", () => {
  const objs = objectsOf(render('local'));
  const cluster: Cluster = {
    policies: objs.filter((o) => o.kind === 'NetworkPolicy'),
    namespaces: Object.fromEntries(['cpu-pipeline', 'kube-system', 'elsewhere'].map((n) => [n, { 'kubernetes.io/metadata.name': n }])),
  };
  let n = 0;
  const pod = (kind: string, name: string): Pod => {
    const t = find(objs, kind, name).spec.template;
    const ports = t.spec.containers.flatMap((c: any) => c.ports ?? []);
    return { kind: 'pod', name, namespace: 'cpu-pipeline', labels: t.metadata.labels, ip: `10.244.0.${++n}`, ports };
  };
  const worker = pod('Deployment', 'cpu-connect');
  const job = pod('Job', 'cpu-connect-connector');
  const broker = pod('StatefulSet', 'cpu-kafka');
  const prometheus = pod('Deployment', 'cpu-prometheus');
  const sampler = pod('DaemonSet', 'cpu-sampler');
  const s3 = pod('Deployment', 's3');
  const aws: Address = { kind: 'address', name: 'AWS S3', ip: '52.218.0.10' };
  const stranger: Pod = { kind: 'pod', name: 'stranger', namespace: 'elsewhere', labels: { app: 'x' }, ip: '10.244.1.1', ports: [] };
  const allowed = (from: Pod, to: Pod | Address, port: number) => isAllowed({ from, to, port, protocol: 'TCP' }, cluster);
  assert.ok(allowed(worker, broker, 9092), 'worker -> broker');
  assert.ok(allowed(worker, s3, 5000), "worker -> the local overlay's S3 server");
  assert.ok(allowed(worker, aws, 443), 'worker -> S3 over HTTPS');
  assert.ok(allowed(job, worker, 8083), 'connector Job -> worker API');
  assert.ok(allowed(prometheus, worker, 9404), 'Prometheus -> worker metrics');
  assert.ok(!allowed(stranger, worker, 8083), 'no one else to the API');
  assert.ok(!allowed(sampler, worker, 8083), 'not even the sampler');
  assert.ok(!allowed(job, broker, 9092), 'the Job talks to the worker only');
  assert.ok(!allowed(worker, aws, 80), 'no plain HTTP out');
});

// ---------------------------------------------------------------- the chart, kafkaConnect.enabled

const chart = (values: string[] = []) => {
  const r = run(tool('helm'), [...chartTemplateArgs(values), '--kube-version', kubernetesVersion]);
  assert.equal(r.code, 0, r.err);
  return r.out;
};
/** kind/name, without kustomize's hash suffix or the hash of the values that names the chart's Jobs. */
const keys = (objs: any[]) => objs.map((o) => `${o.kind}/${o.metadata.name.replace(/-[a-z0-9]{10}$/, '')}`).sort();

test('with kafkaConnect.enabled the chart has the objects of the eks overlay with the connect component, and the same worker', () => {
  for (const values of [[], ['kafkaAuth.enabled=false']]) {
    const objs = objectsOf(chart(['kafkaConnect.enabled=true', ...values]));
    const overlay = objectsOf(render('eks'));
    // Only the chart's own: the `helm test` pod and its policies, the Kafka users' Secrets; the
    // overlay's copy of the sink's settings for the connector Job, which the chart's reads directly.
    const own = (k: string) => /^(Pod|NetworkPolicy)\/cpu-(pipeline-test|connect-from-test)$|^Secret\/cpu-kafka-/.test(k);
    // (kafka-auth adds no objects of its own to the overlay: the same with kafkaAuth.enabled=false.)
    const expected = keys(overlay).filter((k) => k !== 'ConfigMap/cpu-connect-connector');
    assert.deepEqual(
      keys(objs).filter((k) => !own(k)),
      expected,
      values.join() || 'defaults',
    );
    const worker = find(objs, 'Deployment', 'cpu-connect').spec.template.spec;
    const kustomized = find(overlay, 'Deployment', 'cpu-connect').spec.template.spec;
    assert.equal(worker.containers[0].args[0], kustomized.containers[0].args[0], 'the same start script');
    assert.deepEqual(
      worker.containers[0].env.map((e: any) => e.name),
      kustomized.containers[0].env.map((e: any) => e.name),
    );
    for (const file of ['worker.properties', 'log4j2.properties', 'jmx-exporter.yaml'])
      assert.equal(
        find(objs, 'ConfigMap', 'cpu-connect').data[file],
        find(overlay, 'ConfigMap', 'cpu-connect').data[file],
        `${file}, byte for byte`,
      );
    const job = find(objs, 'Job', 'cpu-connect-connector').spec.template.spec.containers[0];
    assert.equal(job.args[0], find(overlay, 'Job', 'cpu-connect-connector').spec.template.spec.containers[0].args[0]);
    assert.deepEqual(job.envFrom, [{ configMapRef: { name: 'cpu-sink' } }], "the connector's settings are the sink's");
  }
});

test('by default the chart runs cpu-sink and nothing of Kafka Connect; with kafkaConnect.enabled no cpu-sink pods, Service, policy or PodMonitor', () => {
  const names = (values: string[]) => keys(objectsOf(chart(values)));
  const off = names(['monitoringOperator.enabled=true']);
  assert.ok(off.includes('Deployment/cpu-sink') && off.includes('Service/cpu-sink') && off.includes('PodMonitor/cpu-sink'));
  assert.deepEqual(
    off.filter((k) => k.includes('connect')),
    [],
  );
  const on = names(['monitoringOperator.enabled=true', 'kafkaConnect.enabled=true']);
  assert.deepEqual(
    on.filter((k) => k.includes('cpu-sink')),
    ['ConfigMap/cpu-sink', 'ServiceAccount/cpu-sink'],
    "the sink's settings (the connector's) and its account (the worker's) stay",
  );
});

test('with kafkaConnect.enabled the chart is valid (kubeconform, strict) and kube-score clean, with and without its options', () => {
  for (const values of [[], ['kafkaAuth.enabled=false', 'monitoring.enabled=true']]) {
    const yaml = chart(['kafkaConnect.enabled=true', ...values]);
    const valid = run(tool('kubeconform'), kubeconformArgs(), yaml);
    assert.equal(valid.code, 0, valid.out + valid.err);
    assert.match(valid.out, /Invalid: 0, Errors: 0, Skipped: 0/);
    const ignored = ['container-security-context-user-group-id', 'container-image-pull-policy']; // as test/integration/k8s.test.ts
    const score = run(tool('kube-score'), ['score', '-', '-o', 'ci', '--ignore-test', ignored.join(',')], yaml);
    assert.deepEqual(
      score.out.split('\n').filter((l) => /^\[(CRITICAL|WARNING)\]/.test(l)),
      [],
      values.join(),
    );
  }
});
