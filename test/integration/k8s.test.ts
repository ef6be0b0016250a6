/**
 * Offline proof of the Kubernetes delivery: every overlay and the Helm chart render, validate
 * strictly against the Kubernetes OpenAPI schemas of a pinned version (unknown fields are errors),
 * pass a linter (kube-score) with each exception written down here, and the chart is exactly
 * what `npm run chart` generates, with Services that select the pods they should. The monitoring
 * components are in the chart behind values that are off by default, their files byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, parseDocument } from 'yaml';
import { kubeconformArgs, kubernetesVersion, tool } from '../../scripts/k8s-tools.ts';
import { root } from '../helpers.ts';
import { loadConfig as sinkConfig } from '../../sink.ts';

function run(cmd: string, args: string[], input?: string) {
  const r = spawnSync(cmd, args, {
    cwd: root,
    input,
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  if (r.error) throw r.error;
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const overlays = readdirSync(join(root, 'k8s', 'overlays'));
const renderOverlay = (name: string) => {
  const r = run('kubectl', ['kustomize', join('k8s', 'overlays', name)]);
  assert.equal(r.code, 0, r.err);
  return r.out;
};
// What a user must give the chart (it has no placeholders for them): the image and the sink's IAM role.
const requiredValues = {
  'image.repository': '123456789012.dkr.ecr.eu-west-1.amazonaws.com/cpu-pipeline',
  'irsa.roleArn': 'arn:aws:iam::123456789012:role/cpu-pipeline-sink',
};
const setArgs = (values: Record<string, string>) => Object.entries(values).flatMap(([k, v]) => ['--set', `${k}=${v}`]);
const template = (values: Record<string, string> = {}) =>
  run(tool('helm'), [
    'template',
    'cpu-pipeline',
    'chart',
    '--namespace',
    'default',
    '--kube-version',
    kubernetesVersion,
    ...setArgs({ ...requiredValues, ...values }),
  ]);
const renderChart = (values: Record<string, string> = {}) => {
  const r = template(values);
  assert.equal(r.code, 0, r.err);
  return r.out;
};
const objectsOf = (manifests: string): any[] =>
  parseAllDocuments(manifests)
    .map((d) => d.toJS())
    .filter(Boolean);
const chartObjects = (values: Record<string, string> = {}) => objectsOf(renderChart(values));
const chartFind = (objs: any[], kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is in the rendered chart`);
  return o;
};
const podSpecs = (objs: any[]) =>
  objs.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet', 'Job'].includes(o.kind)).map((o) => [o, o.spec.template.spec]);
const rendered = () => [...overlays.map((o) => [`overlay ${o}`, renderOverlay(o)]), ['chart', renderChart()]];

const kubeconform = (manifests: string) => run(tool('kubeconform'), kubeconformArgs(), manifests);

// kube-score checks switched off for everything, and why. Object-specific exceptions are
// annotations (kube-score/ignore) on the objects themselves, with the reason beside them.
const kubeScoreIgnored: Record<string, string> = {
  'container-security-context-user-group-id': "uid/gid 1000 are the images' own non-root users (node, appuser); runAsNonRoot is enforced",
  'container-image-pull-policy': 'tags are pinned; IfNotPresent is what images loaded into kind/minikube need',
};

test('chart/ is exactly what `npm run chart` generates from the eks overlay', () => {
  const r = run(process.execPath, ['--import', 'tsx', 'scripts/chart.ts', '--check']);
  assert.equal(r.code, 0, r.err);
});

test('helm lint --strict passes on the chart', () => {
  const r = run(tool('helm'), ['lint', '--strict', 'chart', '--kube-version', kubernetesVersion]);
  assert.equal(r.code, 0, r.out + r.err);
});

const assertValid = (name: string, manifests: string) => {
  const r = kubeconform(manifests);
  assert.equal(r.code, 0, `${name}: ${r.out}${r.err}`);
  assert.match(r.out, /Invalid: 0, Errors: 0, Skipped: 0/, name);
};

const assertKubeScore = (name: string, manifests: string) => {
  const r = run(tool('kube-score'), ['score', '-', '-o', 'ci', '--ignore-test', Object.keys(kubeScoreIgnored).join(',')], manifests);
  const problems = r.out.split('\n').filter((l) => /^\[(CRITICAL|WARNING)\]/.test(l));
  assert.deepEqual(problems, [], name);
  assert.equal(r.code, 0, `${name}: ${r.err}`);
};

test(`every overlay and the chart validate strictly against the Kubernetes ${kubernetesVersion} schemas`, () => {
  for (const [name, manifests] of rendered()) assertValid(name, manifests);
});

test('the schema check rejects an unknown field and a wrong type (it is strict, not a formality)', () => {
  const base = renderOverlay('eks');
  const typo = base.replace('imagePullPolicy: IfNotPresent', 'imagePullPolice: IfNotPresent');
  assert.notEqual(typo, base);
  assert.match(kubeconform(typo).out, /additional properties 'imagePullPolice' not allowed/);
  const wrongType = base.replace(/replicas: 1\n/, 'replicas: one\n');
  assert.notEqual(wrongType, base);
  assert.notEqual(kubeconform(wrongType).code, 0);
});

test('kube-score passes on every overlay and the chart, with each exception written down', () => {
  for (const [name, manifests] of rendered()) assertKubeScore(name, manifests);
});

test("in the chart, every Service selects the pods of exactly one workload, and the apps' broker is a Service of the chart", () => {
  const objs = chartObjects();
  const workloads = objs.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind));
  const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
    Object.entries(selector).every(([k, v]) => labels[k] === v);
  for (const svc of objs.filter((o) => o.kind === 'Service')) {
    const selected = workloads.filter((w) => matches(svc.spec.selector, w.spec.template.metadata.labels)).map((w) => w.metadata.name);
    assert.equal(selected.length, 1, `Service ${svc.metadata.name} selects ${selected.join(', ') || 'nothing'}`);
  }
  for (const w of workloads)
    assert.ok(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), `${w.metadata.name} selects its own pods`);
  for (const o of [...workloads, ...objs.filter((x) => x.kind === 'Service')]) {
    const selector = o.kind === 'Service' ? o.spec.selector : o.spec.selector.matchLabels;
    assert.equal(selector['app.kubernetes.io/part-of'], 'cpu-pipeline', `${o.kind}/${o.metadata.name} selects only the pipeline's pods`);
  }
  const broker = workloads.find((w) => w.kind === 'StatefulSet');
  const brokers = objs.find((o) => o.kind === 'ConfigMap' && o.data?.KAFKA_BROKERS).data.KAFKA_BROKERS;
  // The client listener comes first; the others are the broker's own, on loopback.
  const [advertised] = broker.spec.template.spec.containers[0].env
    .find((e: any) => e.name === 'KAFKA_ADVERTISED_LISTENERS')
    .value.split(',');
  assert.equal(
    advertised,
    `CLIENT://${brokers.replace(':', '.$(POD_NAMESPACE).svc:')}`,
    'the broker advertises its Service by <name>.<namespace>.svc',
  );
  const services = new Set(objs.filter((o) => o.kind === 'Service').map((s) => `${s.metadata.name}:${s.spec.ports[0].port}`));
  for (const cm of objs.filter((o) => o.kind === 'ConfigMap' && o.data?.KAFKA_BROKERS)) {
    assert.ok(
      services.has(cm.data.KAFKA_BROKERS),
      `ConfigMap ${cm.metadata.name}: KAFKA_BROKERS=${cm.data.KAFKA_BROKERS} is a Service of the chart`,
    );
  }
  const sink = objs.find((o) => o.kind === 'ServiceAccount' && o.metadata.name === 'cpu-sink');
  assert.match(
    sink.metadata.annotations['eks.amazonaws.com/role-arn'],
    /^arn:aws:iam::/,
    "the IRSA annotation survives on the sink's own account",
  );
  const sampler = workloads.find((w) => w.metadata.name === 'cpu-sampler');
  assert.equal(sampler.spec.template.spec.serviceAccountName, 'cpu-sampler', "the sampler does not get the sink's IAM role");
});

test('in the chart, the aws-secret name and its key names are values', () => {
  const sink = chartFind(
    chartObjects({
      'secrets.awsSecret.name': 'my-aws',
      'secrets.awsSecret.keys.awsAccessKeyId': 'AccessKeyId',
      'secrets.awsSecret.keys.awsSecretAccessKey': 'SecretAccessKey',
      'secrets.awsSecret.keys.awsSessionToken': 'SessionToken',
    }),
    'Deployment',
    'cpu-sink',
  );
  const refs = sink.spec.template.spec.containers[0].env
    .filter((e: any) => e.valueFrom?.secretKeyRef && e.name.startsWith('AWS_'))
    .map((e: any) => [e.name, e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key]);
  assert.deepEqual(refs, [
    ['AWS_ACCESS_KEY_ID', 'my-aws', 'AccessKeyId'],
    ['AWS_SECRET_ACCESS_KEY', 'my-aws', 'SecretAccessKey'],
    ['AWS_SESSION_TOKEN', 'my-aws', 'SessionToken'],
  ]);
});

test('in the chart, the topic Job is no hook and is named after the values: the same values, the same Job; any change, a new one', () => {
  const jobOf = (values: Record<string, string> = {}) => {
    const jobs = objectsOf(renderChart(values)).filter((o) => o.kind === 'Job');
    assert.equal(jobs.length, 1);
    return jobs[0];
  };
  const job = jobOf();
  assert.match(job.metadata.name, /^cpu-kafka-topics-[0-9a-f]{10}$/);
  // A post-install hook would run only after `helm install --wait` saw the apps Ready, which they
  // are not before the topics exist: the install would never end.
  assert.equal(job.metadata.annotations?.['helm.sh/hook'], undefined);
  assert.equal(jobOf().metadata.name, job.metadata.name, 'the same values make the same Job: an upgrade leaves it alone');
  const changes: Array<Record<string, string>> = [
    { 'kafkaTopics.retentionMs': '86400000' },
    { 'kafkaTopics.createTopics.image.tag': '4.1.2' },
    { 'kafkaAuth.enabled': 'false' },
  ];
  for (const change of changes)
    assert.notEqual(
      jobOf(change).metadata.name,
      job.metadata.name,
      `${JSON.stringify(change)} makes a new Job (its pod template cannot change)`,
    );
  assert.ok(job.spec.ttlSecondsAfterFinished >= 300, 'a finished Job goes by itself, after `kubectl wait` has seen it');
  assert.ok(
    chartObjects().some(
      (o) => o.kind === 'ConfigMap' && o.metadata.name === job.spec.template.spec.containers[0].envFrom[0].configMapRef.name,
    ),
    'its settings are a ConfigMap of the release',
  );
});

test("in the chart, the broker's StorageClass is a value that --set reaches; empty means the cluster's default", () => {
  const claim = (objs: any[]) => chartFind(objs, 'StatefulSet', 'cpu-kafka').spec.volumeClaimTemplates[0].spec;
  const byDefault = chartObjects();
  const sc = chartFind(byDefault, 'StorageClass', claim(byDefault).storageClassName);
  assert.equal(sc.provisioner, 'ebs.csi.aws.com');
  const gp2 = chartObjects({
    'kafka.volumeClaims.data.storageClassName': 'gp2',
    'storageClass.create': 'false',
  });
  assert.equal(claim(gp2).storageClassName, 'gp2');
  assert.deepEqual(claim(gp2).resources, { requests: { storage: '10Gi' } }, 'the class is not put under resources');
  assert.ok(!gp2.some((o) => o.kind === 'StorageClass'), 'storageClass.create=false makes none');
  const clusterDefault = chartObjects({
    'kafka.volumeClaims.data.storageClassName': '',
  });
  assert.equal(claim(clusterDefault).storageClassName, undefined, "no storageClassName: the cluster's default class");
  assert.ok(!clusterDefault.some((o) => o.kind === 'StorageClass'));
});

test('in the chart, nodeSelector, affinity, tolerations, podAnnotations and imagePullSecrets reach the pods of every workload', () => {
  const defaults = chartObjects();
  const sampler = chartFind(defaults, 'DaemonSet', 'cpu-sampler').spec.template.spec;
  const terms = sampler.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
  assert.ok(
    terms[0].matchExpressions.some((e: any) => e.key === 'eks.amazonaws.com/compute-type' && e.operator === 'NotIn'),
    "the sampler's own node affinity is the default",
  );
  const values: Record<string, string> = {
    'imagePullSecrets[0].name': 'regcred',
  };
  for (const w of ['sampler', 'sink', 'kafka', 'kafkaTopics']) {
    values[`${w}.nodeSelector.pool`] = w;
    values[`${w}.tolerations[0].key`] = w;
    values[`${w}.tolerations[0].operator`] = 'Exists';
    values[`${w}.affinity.podAffinity`] = 'null';
    values[`${w}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key`] = w;
    values[`${w}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator`] =
      'Exists';
    values[`${w}.podAnnotations.team`] = w;
  }
  const objs = chartObjects(values);
  const specs = podSpecs(objs);
  assert.equal(specs.length, 4);
  for (const [o, spec] of specs) {
    const w = {
      'cpu-sampler': 'sampler',
      'cpu-sink': 'sink',
      'cpu-kafka': 'kafka',
      'cpu-kafka-topics': 'kafkaTopics',
    }[(o.metadata.name as string).replace(/-[0-9a-f]{10}$/, '')]!; // the topic Job's name ends in a hash of the values
    assert.ok(w, `${o.kind}/${o.metadata.name} is a known workload`);
    assert.equal(spec.nodeSelector.pool, w, `${w}: nodeSelector`);
    assert.equal(spec.tolerations[0].key, w, `${w}: tolerations`);
    assert.equal(spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key, w);
    assert.equal(o.spec.template.metadata.annotations.team, w, `${w}: podAnnotations`);
    assert.deepEqual(spec.imagePullSecrets, [{ name: 'regcred' }], `${w}: imagePullSecrets`);
  }
  const r = kubeconform(renderChart(values));
  assert.equal(r.code, 0, r.out + r.err);
});

test('in the chart, the image repository is required: without it helm template fails and names the value', () => {
  const r = run(tool('helm'), ['template', 'x', 'chart', '--set', `irsa.roleArn=${requiredValues['irsa.roleArn']}`]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /image\.repository/);
  const images = podSpecs(chartObjects()).flatMap(([, spec]) => spec.containers.map((c: any) => c.image));
  assert.ok(images.includes(`${requiredValues['image.repository']}:0.1.0`), 'both apps run the given image');
  assert.ok(!renderChart().includes('111122223333'), 'no placeholder account id anywhere');
});

test("in the chart, the sink's IAM role is required unless credentials come from the Secret only", () => {
  const r = run(tool('helm'), ['template', 'x', 'chart', '--set', `image.repository=${requiredValues['image.repository']}`]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /irsa\.roleArn/);
  const account = (objs: any[]) => chartFind(objs, 'ServiceAccount', 'cpu-sink');
  assert.equal(account(chartObjects()).metadata.annotations['eks.amazonaws.com/role-arn'], requiredValues['irsa.roleArn']);
  const secretOnly = chartObjects({
    'irsa.enabled': 'false',
    'irsa.roleArn': '',
  });
  assert.equal(account(secretOnly).metadata.annotations?.['eks.amazonaws.com/role-arn'], undefined, 'no role on the account');
  const env = chartFind(secretOnly, 'Deployment', 'cpu-sink').spec.template.spec.containers[0].env;
  assert.ok(env.some((e: any) => e.name === 'AWS_ACCESS_KEY_ID' && e.valueFrom.secretKeyRef));
});

test('in the chart, each ServiceAccount can be made elsewhere (eksctl): create=false and name point the workload at it', () => {
  const objs = chartObjects({
    'serviceAccounts.cpuSink.create': 'false',
    'serviceAccounts.cpuSink.name': 'made-by-eksctl',
  });
  assert.ok(!objs.some((o) => o.kind === 'ServiceAccount' && /sink|eksctl/.test(o.metadata.name)), 'no account made for the sink');
  assert.equal(chartFind(objs, 'Deployment', 'cpu-sink').spec.template.spec.serviceAccountName, 'made-by-eksctl');
  assert.equal(chartFind(objs, 'DaemonSet', 'cpu-sampler').spec.template.spec.serviceAccountName, 'cpu-sampler');
  chartFind(objs, 'ServiceAccount', 'cpu-sampler');
  const renamed = chartObjects({
    'serviceAccounts.cpuSampler.name': 'sampler-sa',
  });
  chartFind(renamed, 'ServiceAccount', 'sampler-sa');
  assert.equal(chartFind(renamed, 'DaemonSet', 'cpu-sampler').spec.template.spec.serviceAccountName, 'sampler-sa');
});

test('in the chart, the sink can point at an S3-compatible server with keys from a Secret, and accepts those settings', () => {
  const objs = chartObjects({
    'irsa.enabled': 'false',
    'sink.s3Endpoint': 'http://minio.storage.svc:9000',
    'sink.s3ForcePathStyle': 'true',
    'secrets.awsSecret.name': 'minio-keys',
  });
  const sink = chartFind(objs, 'Deployment', 'cpu-sink').spec.template.spec.containers[0];
  const config = chartFind(objs, 'ConfigMap', sink.envFrom[0].configMapRef.name).data;
  assert.equal(config.S3_ENDPOINT, 'http://minio.storage.svc:9000');
  assert.equal(config.S3_FORCE_PATH_STYLE, 'true');
  const loaded = sinkConfig({
    ...config,
    AWS_ACCESS_KEY_ID: 'k',
    AWS_SECRET_ACCESS_KEY: 's',
  });
  assert.equal(loaded.endpoint, 'http://minio.storage.svc:9000');
  assert.equal(loaded.forcePathStyle, true);
  assert.deepEqual(
    sink.env
      .filter((e: any) => e.valueFrom?.secretKeyRef && e.name.startsWith('AWS_'))
      .map((e: any) => [e.name, e.valueFrom.secretKeyRef.name]),
    [
      ['AWS_ACCESS_KEY_ID', 'minio-keys'],
      ['AWS_SECRET_ACCESS_KEY', 'minio-keys'],
      ['AWS_SESSION_TOKEN', 'minio-keys'],
    ],
  );
  const aws = chartFind(chartObjects(), 'ConfigMap', 'cpu-sink').data;
  assert.equal(sinkConfig(aws).endpoint, undefined, "by default, AWS's own endpoint");
});

test('in the chart, no container gets the KUBERNETES_CLUSTER_DOMAIN variable helmify adds and nothing reads', () => {
  const text = renderChart();
  assert.doesNotMatch(text, /KUBERNETES_CLUSTER_DOMAIN/);
  assert.doesNotMatch(readFileSync(join(root, 'chart', 'values.yaml'), 'utf8'), /kubernetesClusterDomain/);
});

test('the chart has a helm test: a restricted, non-root pod with an image of the chart that checks the broker and the sink', () => {
  const objs = chartObjects();
  const tests = objs.filter((o) => o.metadata.annotations?.['helm.sh/hook'] === 'test');
  assert.equal(tests.length, 1, 'one test pod');
  const [pod] = tests;
  assert.equal(pod.kind, 'Pod');
  const spec = pod.spec;
  assert.equal(spec.restartPolicy, 'Never');
  assert.equal(spec.securityContext.runAsNonRoot, true);
  assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault');
  for (const c of spec.containers) {
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.ok(c.resources.limits && c.resources.requests);
  }
  const images = new Set(podSpecs(objs).flatMap(([, s]) => s.containers.map((c: any) => c.image)));
  assert.ok(
    spec.containers.every((c: any) => images.has(c.image)),
    'an image the chart already pulls',
  );
  // It talks to Services of the chart: the broker's (by the address it advertises) and the sink's /readyz.
  const script = spec.containers[0].args.join(' ');
  const services = objs.filter((o) => o.kind === 'Service');
  const broker = chartFind(objs, 'StatefulSet', 'cpu-kafka');
  const advertised = broker.spec.template.spec.containers[0].env
    .find((e: any) => e.name === 'KAFKA_ADVERTISED_LISTENERS')
    .value.split(',')[0]
    .replace(/^\w+:\/\//, '')
    .replace('$(POD_NAMESPACE)', 'default');
  assert.ok(script.includes(advertised.replace(':', '/')), `the test reaches the broker at ${advertised}`);
  const sinkService = services.find((s) => s.spec.selector['app.kubernetes.io/name'] === 'cpu-sink');
  assert.ok(sinkService, 'the sink has a Service');
  assert.ok(script.includes(`${sinkService.metadata.name}.default.svc/${sinkService.spec.ports[0].port}`), 'the test reaches the sink');
  assert.match(script, /\/readyz/);
  // With Kafka Connect instead: the worker's REST API, through its Service, for the connector the Job puts on.
  const connect = chartObjects({ 'kafkaConnect.enabled': 'true' });
  const withConnect = connect.find((o) => o.metadata.annotations?.['helm.sh/hook'] === 'test').spec.containers[0].args.join(' ');
  const worker = connect.find((o) => o.kind === 'Service' && o.spec.selector['app.kubernetes.io/name'] === 'cpu-connect');
  const rest = worker.spec.ports.find((p: any) => p.name === 'rest' || p.port === 8083);
  assert.ok(withConnect.includes(`${worker.metadata.name}.default.svc/${rest.port}`), 'the test reaches the worker');
  const connector = chartFind(
    connect,
    'Job',
    connect.find((o) => o.metadata.name.startsWith('cpu-connect-connector-')).metadata.name,
  ).spec.template.spec.containers[0].env.find((e: any) => e.name === 'CONNECTOR').value;
  assert.ok(withConnect.includes(`/connectors/${connector}/status`), 'and asks for the status of the connector the Job puts on');
  assert.doesNotMatch(withConnect, /readyz/);
});

test('the chart has NOTES that say what was installed, how the sink gets credentials and how to check it, monitoring and Kafka Connect included', () => {
  // helm renders NOTES.txt only on install (which needs a cluster): a copy of the chart renders
  // the same text offline, as a named template inside a ConfigMap.
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-notes-'));
  try {
    cpSync(join(root, 'chart'), dir, { recursive: true });
    const text = readFileSync(join(dir, 'templates', 'NOTES.txt'), 'utf8');
    const wrapper = `{{- define "notes-copy" -}}\n${text}{{- end -}}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include "notes-copy" . | toJson }}\n`;
    writeFileSync(join(dir, 'templates', 'notes-copy.yaml'), wrapper);
    const notes = (values: Record<string, string>) => {
      const r = run(tool('helm'), [
        'template',
        'cpu-pipeline',
        dir,
        '--namespace',
        'default',
        '--show-only',
        'templates/notes-copy.yaml',
        ...setArgs({ ...requiredValues, ...values }),
      ]);
      assert.equal(r.code, 0, r.err);
      return parseDocument(r.out).toJS().data.notes as string;
    };
    const irsa = notes({});
    for (const what of [
      'cpu-kafka',
      'cpu-sampler',
      'cpu-sink',
      'cpu-kafka-topics',
      'helm test cpu-pipeline',
      requiredValues['irsa.roleArn'],
    ])
      assert.ok(irsa.includes(what), `NOTES mention ${what}`);
    assert.match(notes({ 'irsa.enabled': 'false' }), /aws-secret/, 'without IRSA, NOTES say the keys come from the Secret');
    assert.doesNotMatch(irsa, /cpu-prometheus|PodMonitor/, 'no monitoring by default');
    assert.match(irsa, /cpu-pipeline\.io\/kafka-client: "true"/, 'NOTES say how another Kafka client gets through the NetworkPolicies');
    assert.doesNotMatch(notes({ 'networkPolicies.enabled': 'false' }), /NetworkPolicies/);
    const monitoring = notes({ 'monitoring.enabled': 'true', 'monitoringOperator.enabled': 'true' });
    assert.match(monitoring, /port-forward svc\/cpu-prometheus 9090/, 'NOTES say how to reach the Prometheus');
    assert.match(monitoring, /get podmonitors,prometheusrules/, 'and how to see the operator objects');
    const connect = notes({ 'kafkaConnect.enabled': 'true', 'monitoringOperator.enabled': 'true' });
    assert.match(connect, /Deployment cpu-connect +Kafka Connect instead of cpu-sink/);
    assert.match(connect, /the connector and its task are RUNNING/);
    assert.doesNotMatch(connect, /Deployment cpu-sink|cpu-sink-\*|deploy\/cpu-sink|cpu-sampler, cpu-sink/, 'no cpu-sink to look for');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('in the chart, pods carry a checksum of the ConfigMap they read: a changed setting rolls exactly those pods', () => {
  const checksums = (values: Record<string, string>): Record<string, Record<string, string>> =>
    Object.fromEntries(
      chartObjects(values)
        .filter((o) => ['Deployment', 'DaemonSet', 'StatefulSet'].includes(o.kind))
        .map((o) => [o.metadata.name, (o.spec.template.metadata.annotations ?? {}) as Record<string, string>]),
    );
  const before = checksums({});
  const after = checksums({ 'sink.fileMaxAgeSeconds': '60' });
  for (const [name, annotations] of Object.entries(before)) {
    assert.ok(
      Object.keys(annotations).some((k) => k.startsWith('checksum/')),
      `${name} has a config checksum`,
    );
  }
  assert.notDeepEqual(after['cpu-sink'], before['cpu-sink'], 'the sink rolls when its setting changes');
  assert.deepEqual(after['cpu-sampler'], before['cpu-sampler'], 'the sampler does not');
  assert.deepEqual(after['cpu-kafka'], before['cpu-kafka'], 'the broker does not');
});

// The monitoring components of k8s/components/, in the chart behind values that are off by default.
const monitoringFile = (file: string) => readFileSync(join(root, 'k8s', 'components', 'monitoring', file), 'utf8');
const operatorObject = (file: string) =>
  parseDocument(readFileSync(join(root, 'k8s', 'components', 'monitoring-operator', file), 'utf8')).toJS();
// The topic Job's name ends in a hash of the values (scripts/chart.ts jobsNamedByValues): the same Job whatever it is.
const keyOf = (o: any) => `${o.kind}/${o.kind === 'Job' ? o.metadata.name.replace(/-[0-9a-f]{10}$/, '') : o.metadata.name}`;
/** What the values add to the default chart, as kind/name. */
const addedTo = (objs: any[]) => {
  const defaults = new Set(chartObjects().map(keyOf));
  return objs
    .map(keyOf)
    .filter((k) => !defaults.has(k))
    .sort();
};
/** The pipeline's own pods are as in the default chart: switching monitoring on rolls none of them. */
const assertNoRoll = (objs: any[]) => {
  const pods = (of: any[]) => new Map(podSpecs(of).map(([o]) => [keyOf(o), o.spec.template]));
  const now = pods(objs);
  for (const [key, pod] of pods(chartObjects())) assert.deepEqual(now.get(key), pod, `${key} is unchanged`);
};

test('by default the chart has no monitoring objects: no Prometheus, dashboard, PodMonitor or PrometheusRule', () => {
  const objs = chartObjects();
  const found = objs.filter(
    (o) =>
      ['PodMonitor', 'PrometheusRule', 'Role', 'RoleBinding'].includes(o.kind) ||
      ['cpu-prometheus', 'cpu-pipeline-dashboard', 'cpu-pipeline-alerts'].includes(o.metadata.name) ||
      o.metadata.labels?.grafana_dashboard,
  );
  assert.deepEqual(found.map(keyOf), []);
  const values = parseDocument(readFileSync(join(root, 'chart', 'values.yaml'), 'utf8')).toJS();
  assert.deepEqual(values.monitoring, { enabled: false });
  assert.deepEqual(values.monitoringOperator, { enabled: false, labels: {} });
});

test("with monitoring.enabled the chart has the component's Prometheus, its rules and config byte for byte, and the dashboard", () => {
  const manifests = renderChart({ 'monitoring.enabled': 'true' });
  const objs = objectsOf(manifests);
  const prometheus = ['ConfigMap', 'Deployment', 'NetworkPolicy', 'Role', 'RoleBinding', 'Service', 'ServiceAccount'].map(
    (k) => `${k}/cpu-prometheus`,
  );
  assert.deepEqual(addedTo(objs), ['ConfigMap/cpu-pipeline-dashboard', ...prometheus]);
  // Go template text of Prometheus ({{ $labels.node }}) and Grafana ({{node}}) reaches the cluster as written.
  const config = chartFind(objs, 'ConfigMap', 'cpu-prometheus').data;
  assert.deepEqual(Object.keys(config).sort(), ['alerts.yaml', 'prometheus.yml']);
  assert.equal(config['alerts.yaml'], monitoringFile('alerts.yaml'));
  assert.match(config['alerts.yaml'], /\{\{ \$labels\.node \}\}/);
  assert.equal(config['prometheus.yml'], monitoringFile('prometheus.yml'));
  const dashboard = chartFind(objs, 'ConfigMap', 'cpu-pipeline-dashboard');
  assert.equal(dashboard.data['dashboard.json'], monitoringFile('dashboard.json'));
  assert.match(dashboard.data['dashboard.json'], /\{\{node\}\}/);
  assert.equal(dashboard.metadata.labels.grafana_dashboard, '1', "for the Grafana chart's dashboard sidecar");

  const pod = chartFind(objs, 'Deployment', 'cpu-prometheus').spec.template;
  assert.deepEqual(
    pod.spec.volumes.filter((v: any) => v.configMap).map((v: any) => v.configMap.name),
    ['cpu-prometheus'],
  );
  assert.ok(pod.metadata.annotations?.['checksum/cpu-prometheus'], 'a changed rule or scrape setting rolls the Prometheus');
  const component = parseDocument(monitoringFile('prometheus-deployment.yaml')).toJS();
  assert.equal(pod.spec.containers[0].image, component.spec.template.spec.containers[0].image);
  const account = chartFind(objs, 'ServiceAccount', pod.spec.serviceAccountName);
  const binding = chartFind(objs, 'RoleBinding', 'cpu-prometheus');
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: account.metadata.name, namespace: 'default' }]);
  assert.deepEqual(chartFind(objs, 'Role', binding.roleRef.name).rules, [
    { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
  ]);
  const selector = chartFind(objs, 'Service', 'cpu-prometheus').spec.selector;
  assert.ok(
    Object.entries(selector).every(([k, v]) => pod.metadata.labels[k] === v),
    'its Service selects its pods',
  );
  assertNoRoll(objs);

  assertValid('chart with monitoring', manifests);
  assertKubeScore('chart with monitoring', manifests);
});

test('with monitoring.enabled the Prometheus image, resources and account are values', () => {
  const image = { 'prometheus.prometheus.image.repository': 'mirror.example/prometheus', 'prometheus.prometheus.image.tag': 'v9' };
  const account = { 'serviceAccounts.cpuPrometheus.create': 'false', 'serviceAccounts.cpuPrometheus.name': 'made-elsewhere' };
  const objs = chartObjects({ 'monitoring.enabled': 'true', 'prometheus.prometheus.resources.limits.memory': '2Gi', ...image, ...account });
  const pod = chartFind(objs, 'Deployment', 'cpu-prometheus').spec.template.spec;
  assert.equal(pod.containers[0].image, 'mirror.example/prometheus:v9');
  assert.equal(pod.containers[0].resources.limits.memory, '2Gi');
  assert.equal(pod.serviceAccountName, 'made-elsewhere');
  assert.equal(chartFind(objs, 'RoleBinding', 'cpu-prometheus').subjects[0].name, 'made-elsewhere', 'the Role is bound to that account');
  assert.ok(!objs.some((o) => o.kind === 'ServiceAccount' && /prometheus|elsewhere/.test(o.metadata.name)), 'no account made for it');
});

test("with monitoringOperator.enabled the chart has the component's PodMonitors and PrometheusRule, with the labels a Prometheus selects", () => {
  const manifests = renderChart({
    'monitoringOperator.enabled': 'true',
    'monitoringOperator.labels.release': 'kps',
  });
  const objs = objectsOf(manifests);
  const podMonitors = ['cpu-kafka', 'cpu-sampler', 'cpu-sink'].map((n) => `PodMonitor/${n}`);
  assert.deepEqual(addedTo(objs), [...podMonitors, 'PrometheusRule/cpu-pipeline-alerts']);
  for (const o of objs.filter((o) => ['PodMonitor', 'PrometheusRule'].includes(o.kind))) {
    assert.equal(o.metadata.labels.release, 'kps', `${keyOf(o)}: monitoringOperator.labels`);
    assert.equal(o.metadata.labels['app.kubernetes.io/part-of'], 'cpu-pipeline', `${keyOf(o)}: its own labels stay`);
  }
  for (const name of ['kafka', 'sampler', 'sink'])
    assert.deepEqual(
      chartFind(objs, 'PodMonitor', `cpu-${name}`).spec,
      operatorObject(`${name}-podmonitor.yaml`).spec,
      `PodMonitor cpu-${name}`,
    );
  const rule = chartFind(objs, 'PrometheusRule', 'cpu-pipeline-alerts');
  assert.deepEqual(rule.spec.groups, parseDocument(monitoringFile('alerts.yaml')).toJS().groups, 'the groups of alerts.yaml');
  assertNoRoll(objs);

  // kubeconformArgs() knows the operator's CRD schemas: Skipped: 0 means the four were checked.
  assertValid('chart with monitoringOperator', manifests);
  assertKubeScore('chart with monitoringOperator', manifests);
});

// The cluster of the end-to-end tests runs the broker's manifests on a stand-in for apache/kafka
// (scripts/cluster/images/kafka/) whose bin/ has only the scripts it needs: every Kafka script the
// manifests and the chart call must be among them, or a script would fail only on that cluster.
test('every Kafka script the manifests and the chart run is in the stand-in broker image', () => {
  const texts = [
    ...overlays.map(renderOverlay),
    renderChart({ 'monitoring.enabled': 'true' }),
    ...readdirSync(join(root, 'chart', 'templates', 'tests')).map((f) =>
      readFileSync(join(root, 'chart', 'templates', 'tests', f), 'utf8'),
    ),
    // and every component's files, those in no overlay (connect) too
    ...readdirSync(join(root, 'k8s', 'components'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => readFileSync(join(root, 'k8s', 'components', f), 'utf8')),
  ];
  // Called by path (/opt/kafka/bin/kafka-topics.sh) or by name through a helper (tool kafka-acls.sh ...).
  const used = new Set(texts.flatMap((t) => [...t.matchAll(/\b((?:kafka|connect)-[\w-]+\.sh)\b/g)].map((m) => m[1])));
  assert.ok(
    ['kafka-server-start.sh', 'kafka-acls.sh', 'connect-distributed.sh'].every((x) => used.has(x)),
    `found: ${[...used].join(', ')}`,
  );
  const standIn = new Set(readdirSync(join(root, 'scripts', 'cluster', 'images', 'kafka', 'bin')));
  assert.deepEqual(
    [...used].filter((s) => !standIn.has(s)),
    [],
  );
});
