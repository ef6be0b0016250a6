/**
 * The NetworkPolicies (k8s/components/network-policies, the monitoring component's own, the local
 * overlay's for its S3 server, and the chart's), without a cluster that enforces them: the
 * project's test cluster runs the bridge CNI, which ignores NetworkPolicy. So the overlays and the
 * chart are rendered, validated strictly, and their policies put through test/network-policy.ts,
 * a small evaluator of the NetworkPolicy rules (tested first, on hand-made policies), over pods
 * made from the rendered workloads plus a few others: a pod of the namespace that is not the
 * pipeline's, clients in another namespace with and without the opt-in label, the cluster DNS,
 * and addresses outside the cluster for S3 and the API server.
 *
 * Each expected connection is asserted allowed or denied, and each assertion is shown to depend on
 * the policies: with only the default deny left every allowed one is denied, and with an allow-all
 * added every denied one is allowed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { kubeconformArgs, kubernetesVersion, tool } from '../../scripts/k8s-tools.ts';
import { root } from '../helpers.ts';
import { allowed, inCidr, selects, type Cluster, type Endpoint, type NetworkPolicy, type Pod, type Protocol } from '../network-policy.ts';

function run(cmd: string, args: string[], input?: string) {
  const r = spawnSync(cmd, args, { cwd: root, input, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.error) throw r.error;
  return { code: r.status, out: r.stdout, err: r.stderr };
}

type Obj = { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: any };
const objectsOf = (manifests: string) =>
  parseAllDocuments(manifests)
    .map((d) => d.toJS() as Obj)
    .filter(Boolean);

function renderOverlay(overlay: string, dir = join(root, 'k8s')): string {
  const r = run('kubectl', ['kustomize', join(dir, 'overlays', overlay)]);
  assert.equal(r.code, 0, r.err);
  return r.out;
}

/** An overlay rendered from a copy of k8s/ whose kustomization `edit` changes first. */
function renderEdited(t: TestContext, overlay: string, edit: (kustomization: { components?: string[] }) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-k8s-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(root, 'k8s'), dir, { recursive: true });
  const path = join(dir, 'overlays', overlay, 'kustomization.yaml');
  const kustomization = parse(readFileSync(path, 'utf8'));
  edit(kustomization);
  writeFileSync(path, stringify(kustomization));
  return renderOverlay(overlay, dir);
}

const helmNamespace = 'default';
function renderChart(values: Record<string, string> = {}): string {
  const set = {
    'image.repository': '123456789012.dkr.ecr.eu-west-1.amazonaws.com/cpu-pipeline',
    'irsa.roleArn': 'arn:aws:iam::123456789012:role/cpu-pipeline-sink',
    ...values,
  };
  const r = run(tool('helm'), [
    'template',
    'cpu-pipeline',
    'chart',
    '--namespace',
    helmNamespace,
    '--kube-version',
    kubernetesVersion,
    ...Object.entries(set).flatMap(([k, v]) => ['--set', `${k}=${v}`]),
  ]);
  assert.equal(r.code, 0, r.err);
  return r.out;
}

// What the tests put around the rendered pods, by name.
const outside = 'elsewhere'; // another namespace
const endpointsAround = (namespace: string): Endpoint[] => [
  pod('stranger', namespace, { app: 'stranger' }, []), // in the namespace, not the pipeline's
  pod('client elsewhere, opted in', outside, { app: 'client', 'cpu-pipeline.io/kafka-client': 'true' }, []),
  pod('client elsewhere', outside, { app: 'client' }, []),
  pod('kube-dns', 'kube-system', { 'k8s-app': 'kube-dns' }, [
    { name: 'dns', containerPort: 53, protocol: 'UDP' },
    { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
  ]),
  // Documentation ranges (RFC 5737): addresses that are no pod, for AWS's S3 and the API server.
  { kind: 'address', name: 'AWS S3', ip: '203.0.113.10' },
  { kind: 'address', name: 'API server', ip: '198.51.100.7' },
];

let nextIp = 1;
function pod(name: string, namespace: string, labels: Record<string, string>, ports: Pod['ports']): Pod {
  const n = nextIp++;
  return { kind: 'pod', name, namespace, labels, ip: `10.244.${n >> 8}.${n & 255}`, ports };
}

type World = { cluster: Cluster; endpoints: Map<string, Endpoint> };

/**
 * The rendered objects as a cluster: a pod per workload (Deployment, DaemonSet, StatefulSet, Job,
 * Pod) named by its app.kubernetes.io/name label, the endpoints around them, the policies, and the
 * namespaces with the label the API server gives each.
 */
function worldOf(manifests: string, fallbackNamespace = helmNamespace): World {
  const objs = objectsOf(manifests);
  const namespaceOf = (o: Obj) => o.metadata.namespace ?? fallbackNamespace;
  const namespace = namespaceOf(objs.find((o) => o.kind === 'DaemonSet')!);
  const endpoints = new Map<string, Endpoint>();
  for (const o of objs.filter((o) => ['Deployment', 'DaemonSet', 'StatefulSet', 'Job', 'Pod'].includes(o.kind))) {
    const template = o.kind === 'Pod' ? o : o.spec.template;
    const labels = template.metadata.labels as Record<string, string>;
    const name = labels['app.kubernetes.io/name'];
    assert.ok(name && !endpoints.has(name), `${o.kind}/${o.metadata.name}: a pod name of its own`);
    endpoints.set(
      name,
      pod(
        name,
        namespaceOf(o),
        labels,
        template.spec.containers.flatMap((c: any) => c.ports ?? []),
      ),
    );
  }
  for (const e of endpointsAround(namespace)) endpoints.set(e.name, e);
  const policies = objs
    .filter((o) => o.kind === 'NetworkPolicy')
    .map((o) => ({ ...o, metadata: { ...o.metadata, namespace: namespaceOf(o) } }) as NetworkPolicy);
  const namespaces = Object.fromEntries([namespace, 'kube-system', outside].map((n) => [n, { 'kubernetes.io/metadata.name': n }]));
  return { cluster: { policies, namespaces }, endpoints };
}

/** A connection to try: from, to, and the port by number or by the destination's container port name. */
type Case = [from: string, to: string, port: number | string, protocol?: Protocol];

function connection(world: World, [from, to, port, protocol]: Case) {
  const ends = [from, to].map((n) => {
    const e = world.endpoints.get(n);
    assert.ok(e, `${n} is in the rendering`);
    return e;
  });
  const target = ends[1];
  const number =
    typeof port === 'number'
      ? port
      : target.kind === 'pod'
        ? target.ports.find((p) => p.name === port && (p.protocol ?? 'TCP') === (protocol ?? 'TCP'))?.containerPort
        : undefined;
  assert.ok(number, `${to} has a port ${port}`);
  return { from: ends[0], to: target, port: number, protocol };
}

const show = ([from, to, port, protocol]: Case) => `${from} -> ${to}:${port}${protocol && protocol !== 'TCP' ? `/${protocol}` : ''}`;

/** Every case's result, as "from -> to:port allowed|denied" lines: one assertion shows them all. */
function verdicts(world: World, cases: Case[]): string[] {
  return cases.map((c) => `${show(c)} ${allowed(connection(world, c), world.cluster) ? 'allowed' : 'denied'}`);
}
const expect = (cases: Case[], verdict: 'allowed' | 'denied') => cases.map((c) => `${show(c)} ${verdict}`);

const pipelinePods = ['kafka', 'kafka-topics', 'cpu-sampler', 'cpu-sink'];
const fromEach = (pods: string[], to: string, port: number | string): Case[] => pods.map((p): Case => [p, to, port]);
const dnsFrom = (pods: string[]): Case[] =>
  pods.flatMap((p): Case[] => [
    [p, 'kube-dns', 'dns', 'UDP'],
    [p, 'kube-dns', 'dns-tcp', 'TCP'],
  ]);

// What the pipeline needs, wherever it runs.
const pipelineAllows: Case[] = [
  ...fromEach(['cpu-sampler', 'cpu-sink', 'kafka-topics', 'client elsewhere, opted in'], 'kafka', 'client'),
  ['cpu-sink', 'AWS S3', 443],
  // The sampler lists the pods on its node (the API server behind the Service's 443).
  ['cpu-sampler', 'API server', 443],
  ['cpu-sampler', 'API server', 6443],
  ...dnsFrom(pipelinePods),
];
const pipelineDenies: Case[] = [
  ['stranger', 'kafka', 'client'],
  ['client elsewhere', 'kafka', 'client'],
  ['AWS S3', 'kafka', 'client'],
  ...fromEach(['cpu-sampler', 'cpu-sink', 'kafka-topics', 'client elsewhere, opted in', 'stranger'], 'kafka', 9093),
  ['cpu-sink', 'kafka', 'metrics'],
  ['cpu-sampler', 'kafka', 'metrics'],
  ['client elsewhere, opted in', 'kafka', 'metrics'],
  ['client elsewhere, opted in', 'cpu-sink', 'http'],
  ['stranger', 'cpu-sampler', 'http'],
  ['stranger', 'cpu-sink', 'http'],
  ['cpu-sampler', 'AWS S3', 80],
  ['cpu-sampler', 'API server', 80],
  ['kafka-topics', 'AWS S3', 443],
  ['kafka-topics', 'API server', 6443],
  ['kafka', 'AWS S3', 443],
  ['kafka', 'cpu-sink', 'http'],
  ['cpu-sink', 'API server', 6443],
  ['cpu-sink', 'AWS S3', 80],
  ['cpu-sampler', 'kube-dns', 9153],
];
// The Prometheus of the monitoring component, where it is on.
const monitoringAllows: Case[] = [
  ['cpu-prometheus', 'kafka', 'metrics'],
  ['cpu-prometheus', 'cpu-sampler', 'http'],
  ['cpu-prometheus', 'cpu-sink', 'http'],
  ['cpu-prometheus', 'API server', 443],
  ['cpu-prometheus', 'API server', 6443],
  ['stranger', 'cpu-prometheus', 'http'],
  ['client elsewhere', 'cpu-prometheus', 'http'],
  ...dnsFrom(['cpu-prometheus']),
];
const monitoringDenies: Case[] = [
  ['cpu-prometheus', 'kafka', 'client'],
  ['cpu-prometheus', 'kafka', 9093],
  ['cpu-prometheus', 'API server', 80],
  ['cpu-sampler', 'cpu-prometheus', 'http'],
];
// The local overlay's S3 server and its bucket Job.
const localAllows: Case[] = [...fromEach(['cpu-sink', 's3-bucket'], 's3', 's3'), ...dnsFrom(['s3-bucket'])];
const localDenies: Case[] = [
  ...fromEach(['cpu-sampler', 'kafka-topics', 'cpu-prometheus', 'stranger'], 's3', 's3'),
  ['s3', 'AWS S3', 443],
  ['s3-bucket', 'kafka', 'client'],
];

const renderings: Record<string, { manifests: () => string; allows: Case[]; denies: Case[] }> = {
  local: {
    manifests: () => renderOverlay('local'),
    allows: [...pipelineAllows, ...monitoringAllows, ...localAllows],
    denies: [...pipelineDenies, ...monitoringDenies, ...localDenies],
  },
  eks: { manifests: () => renderOverlay('eks'), allows: pipelineAllows, denies: pipelineDenies },
  'chart, monitoring.enabled': {
    manifests: () => renderChart({ 'monitoring.enabled': 'true' }),
    // The `helm test` pod (chart-extra/) checks the broker and the sink's /readyz.
    allows: [...pipelineAllows, ...monitoringAllows, ['cpu-pipeline-test', 'kafka', 'client'], ['cpu-pipeline-test', 'cpu-sink', 'http']],
    denies: [...pipelineDenies, ...monitoringDenies, ['cpu-pipeline-test', 'cpu-sampler', 'http'], ['cpu-pipeline-test', 'AWS S3', 443]],
  },
};

// ---------------------------------------------------------------------------------------------
// The evaluator itself, on policies made by hand.

const ns = (name: string) => ({ [name]: { 'kubernetes.io/metadata.name': name } });
const policy = (name: string, namespace: string, spec: NetworkPolicy['spec']): NetworkPolicy => ({ metadata: { name, namespace }, spec });
const web = pod('web', 'shop', { app: 'web' }, [{ name: 'http', containerPort: 8080 }]);
const db = pod('db', 'shop', { app: 'db' }, [
  { name: 'sql', containerPort: 5432 },
  { name: 'stats', containerPort: 9187, protocol: 'UDP' },
]);
const spy = pod('spy', 'other', { app: 'web' }, [{ name: 'sql', containerPort: 6000 }]);
const namespaces = { ...ns('shop'), ...ns('other') };

test('evaluator: with no policy every connection is allowed; a policy isolates only the pods it selects, per direction', () => {
  const none: Cluster = { policies: [], namespaces };
  assert.ok(allowed({ from: web, to: db, port: 5432 }, none));
  const denyDbIngress = policy('deny', 'shop', { podSelector: { matchLabels: { app: 'db' } } }); // policyTypes left out: Ingress
  const cluster: Cluster = { policies: [denyDbIngress], namespaces };
  assert.ok(!allowed({ from: web, to: db, port: 5432 }, cluster), 'db is isolated for ingress');
  assert.ok(allowed({ from: db, to: web, port: 8080 }, cluster), 'but not for egress: no egress rules, so no Egress type');
  assert.ok(allowed({ from: spy, to: web, port: 8080 }, cluster), 'web is selected by nothing');
  const egressToo = policy('deny', 'shop', { podSelector: {}, policyTypes: ['Egress'] });
  assert.ok(
    !allowed({ from: web, to: spy, port: 8080 }, { policies: [egressToo], namespaces }),
    'podSelector {} selects every pod of its namespace',
  );
  assert.ok(allowed({ from: spy, to: web, port: 8080 }, { policies: [egressToo], namespaces }), 'of its namespace only');
});

test('evaluator: policies only add; a connection needs the egress of its source and the ingress of its destination', () => {
  const isolateAll = policy('deny', 'shop', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
  const dbFromWeb = policy('db', 'shop', {
    podSelector: { matchLabels: { app: 'db' } },
    ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 5432 }] }],
  });
  const webToDb = policy('web', 'shop', {
    podSelector: { matchLabels: { app: 'web' } },
    policyTypes: ['Egress'],
    egress: [{ to: [{ podSelector: { matchLabels: { app: 'db' } } }] }],
  });
  const c = { from: web, to: db, port: 5432 };
  assert.ok(!allowed(c, { policies: [isolateAll, dbFromWeb], namespaces }), "db lets web in, but web's egress is isolated");
  assert.ok(!allowed(c, { policies: [isolateAll, webToDb], namespaces }), "web may go out, but db's ingress is isolated");
  assert.ok(allowed(c, { policies: [isolateAll, dbFromWeb, webToDb], namespaces }), 'both ends agree');
  assert.ok(!allowed({ ...c, port: 5433 }, { policies: [isolateAll, dbFromWeb, webToDb], namespaces }), 'on the port given only');
  assert.ok(!allowed({ ...c, protocol: 'UDP' }, { policies: [isolateAll, dbFromWeb, webToDb], namespaces }), 'a port is TCP by default');
});

test('evaluator: a named port is resolved against the destination pod, in ingress and in egress rules', () => {
  const dbByName = policy('db', 'shop', {
    podSelector: { matchLabels: { app: 'db' } },
    ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 'sql' }] }],
  });
  const cluster: Cluster = { policies: [dbByName], namespaces };
  assert.ok(allowed({ from: web, to: db, port: 5432 }, cluster), "sql is db's 5432");
  assert.ok(allowed({ from: spy, to: db, port: 5432 }, cluster), 'from any namespace, with namespaceSelector {}');
  assert.ok(!allowed({ from: spy, to: db, port: 6000 }, cluster), "not the source's port of that name");
  const statsByName = policy('stats', 'shop', {
    podSelector: { matchLabels: { app: 'db' } },
    ingress: [{ ports: [{ port: 'stats', protocol: 'UDP' }] }],
  });
  assert.ok(allowed({ from: web, to: db, port: 9187, protocol: 'UDP' }, { policies: [statsByName], namespaces }), 'with its protocol');
  assert.ok(!allowed({ from: web, to: db, port: 9187 }, { policies: [statsByName], namespaces }), 'and not another');
  const webOut = policy('web', 'shop', {
    podSelector: { matchLabels: { app: 'web' } },
    policyTypes: ['Egress'],
    egress: [{ ports: [{ port: 'sql' }] }],
  });
  assert.ok(allowed({ from: web, to: spy, port: 6000 }, { policies: [webOut], namespaces }), "egress: sql is spy's 6000 there");
  assert.ok(!allowed({ from: web, to: db, port: 6000 }, { policies: [webOut], namespaces }), "and db's 5432, not 6000");
  const address: Endpoint = { kind: 'address', name: 'x', ip: '192.0.2.1' };
  assert.ok(!allowed({ from: web, to: address, port: 5432 }, { policies: [webOut], namespaces }), 'a name never matches an address');
});

test('evaluator: selectors by namespace and pod, alone and together', () => {
  const from = (peer: object) =>
    policy('db', 'shop', { podSelector: { matchLabels: { app: 'db' } }, ingress: [{ from: [peer] }] }) as NetworkPolicy;
  const c = (source: Pod) => ({ from: source, to: db, port: 5432 });
  const webLabel = { matchLabels: { app: 'web' } };
  const other = { matchLabels: { 'kubernetes.io/metadata.name': 'other' } };
  const check = (peer: object, source: Pod) => allowed(c(source), { policies: [from(peer)], namespaces });
  assert.deepEqual(
    [check({ podSelector: webLabel }, web), check({ podSelector: webLabel }, spy)],
    [true, false],
    'podSelector alone: the policy namespace',
  );
  assert.deepEqual(
    [check({ namespaceSelector: other }, spy), check({ namespaceSelector: other }, web)],
    [true, false],
    'namespaceSelector alone',
  );
  assert.deepEqual(
    [
      check({ namespaceSelector: other, podSelector: { matchLabels: { app: 'db' } } }, spy),
      check({ namespaceSelector: other, podSelector: webLabel }, spy),
    ],
    [false, true],
    'both: pods of those namespaces that match',
  );
  const expressions = { podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['web', 'api'] }] } };
  assert.ok(check(expressions, web), 'matchExpressions');
  assert.throws(() => check({}, web), /ipBlock or selectors/, 'a peer with nothing in it is an error, not everything');
});

test('evaluator: an ipBlock matches its CIDR but not its exceptions, and one IP family only', () => {
  assert.ok(inCidr('10.1.2.3', '10.0.0.0/8') && !inCidr('11.0.0.1', '10.0.0.0/8'));
  assert.ok(inCidr('2001:db8::1', '::/0') && !inCidr('10.1.2.3', '::/0'), '::/0 is IPv6 only');
  assert.ok(!inCidr('2001:db8::1', '0.0.0.0/0'));
  assert.throws(() => inCidr('10.0.0.1', '10.0.0.0'), /not a CIDR/);
  const out = policy('web', 'shop', {
    podSelector: { matchLabels: { app: 'web' } },
    policyTypes: ['Egress'],
    egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['169.254.169.254/32', '10.0.0.0/8'] } }], ports: [{ port: 443 }] }],
  });
  const to = (ip: string, port = 443) =>
    allowed({ from: web, to: { kind: 'address', name: ip, ip }, port }, { policies: [out], namespaces });
  assert.deepEqual([to('203.0.113.1'), to('169.254.169.254'), to('10.2.3.4'), to('203.0.113.1', 80)], [true, false, false, false]);
});

// ---------------------------------------------------------------------------------------------
// The rendered manifests.

for (const overlay of ['local', 'eks']) {
  test(`overlay ${overlay} with its NetworkPolicies validates strictly against the Kubernetes ${kubernetesVersion} schemas`, () => {
    const manifests = renderOverlay(overlay);
    const objs = objectsOf(manifests);
    assert.ok(objs.filter((o) => o.kind === 'NetworkPolicy').length >= 6, 'the component is on');
    const r = run(tool('kubeconform'), kubeconformArgs(), manifests);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, new RegExp(`Valid: ${objs.length}, Invalid: 0, Errors: 0, Skipped: 0`));
  });
}

for (const [name, r] of Object.entries(renderings)) {
  test(`${name}: the connections the pipeline needs are allowed`, () => {
    const world = worldOf(r.manifests());
    assert.deepEqual(verdicts(world, r.allows), expect(r.allows, 'allowed'));
  });

  test(`${name}: the others tried are denied`, () => {
    const world = worldOf(r.manifests());
    assert.deepEqual(verdicts(world, r.denies), expect(r.denies, 'denied'));
  });

  test(`${name}: each verdict comes from the policies (default deny alone: all denied; an allow-all added: all allowed)`, () => {
    const world = worldOf(r.manifests());
    const defaultDeny = world.cluster.policies.filter((p) => p.metadata.name === 'cpu-pipeline-default-deny');
    assert.equal(defaultDeny.length, 1);
    const denyOnly = { ...world, cluster: { ...world.cluster, policies: defaultDeny } };
    assert.deepEqual(verdicts(denyOnly, r.allows), expect(r.allows, 'denied'));
    const allowAll = Object.keys(world.cluster.namespaces).map((n) =>
      policy('allow-all', n, { podSelector: {}, policyTypes: ['Ingress', 'Egress'], ingress: [{}], egress: [{}] }),
    );
    const open = { ...world, cluster: { ...world.cluster, policies: [...world.cluster.policies, ...allowAll] } };
    assert.deepEqual(verdicts(open, r.denies), expect(r.denies, 'allowed'));
  });
}

test('every pod of the pipeline is isolated both ways, and every policy selects a pod', () => {
  for (const [name, r] of Object.entries(renderings)) {
    const world = worldOf(r.manifests());
    const own = [...world.endpoints.values()].filter(
      (e): e is Pod => e.kind === 'pod' && e.labels['app.kubernetes.io/part-of'] === 'cpu-pipeline',
    );
    assert.ok(own.length >= 4, name);
    for (const p of own) {
      // Nothing in, nothing out, on a port no rule names: every pod is under a policy both ways.
      for (const c of [
        { from: world.endpoints.get('stranger')!, to: p, port: 1 },
        { from: p, to: world.endpoints.get('stranger')!, port: 1 },
      ])
        assert.ok(!allowed(c, world.cluster), `${name}: ${c.from.name} -> ${c.to.name}:1 is denied`);
    }
    for (const policy of world.cluster.policies)
      assert.ok(
        own.some((p) => p.namespace === policy.metadata.namespace && selects(policy.spec.podSelector, p.labels)),
        `${name}: NetworkPolicy ${policy.metadata.name} selects a pod`,
      );
  }
});

test("the policies name ports by number, and every Service's port is its pods' container port (the VPC CNI's agent needs both)", () => {
  for (const overlay of ['local', 'eks']) {
    const objs = objectsOf(renderOverlay(overlay));
    for (const p of objs.filter((o) => o.kind === 'NetworkPolicy'))
      for (const rule of [...(p.spec.ingress ?? []), ...(p.spec.egress ?? [])])
        for (const port of rule.ports ?? [])
          assert.equal(typeof port.port, 'number', `${overlay}: NetworkPolicy ${p.metadata.name}: ${port.port}`);
    const templates = objs.filter((o) => ['Deployment', 'DaemonSet', 'StatefulSet'].includes(o.kind)).map((o) => o.spec.template);
    for (const s of objs.filter((o) => o.kind === 'Service')) {
      const pods = templates.filter((t) => Object.entries(s.spec.selector).every(([k, v]) => t.metadata.labels[k] === v));
      assert.equal(pods.length, 1, `${overlay}: Service ${s.metadata.name} selects one workload`);
      const ports = pods[0].spec.containers.flatMap((c: any) => c.ports ?? []);
      for (const sp of s.spec.ports) {
        const target = ports.find((cp: any) => cp.name === sp.targetPort || cp.containerPort === sp.targetPort);
        assert.equal(target?.containerPort, sp.port, `${overlay}: Service ${s.metadata.name} port ${sp.name}`);
      }
    }
  }
});

test('without the network-policies component, the Prometheus and the local S3 server keep their own policies and still work', (t) => {
  const manifests = renderEdited(t, 'local', (k) => {
    k.components = k.components?.filter((c) => !c.endsWith('/network-policies'));
  });
  const world = worldOf(manifests);
  assert.deepEqual(world.cluster.policies.map((p) => p.metadata.name).sort(), ['cpu-prometheus', 's3', 's3-bucket']);
  const cases: Case[] = [
    ...monitoringAllows,
    ['cpu-sampler', 'kafka', 'client'],
    ['stranger', 'kafka', 'client'],
    ['cpu-sink', 's3', 's3'],
    ['s3-bucket', 's3', 's3'],
    ['cpu-sampler', 'AWS S3', 443],
  ];
  assert.deepEqual(verdicts(world, cases), expect(cases, 'allowed'), 'the rest is open, as before the component');
  const closed: Case[] = [
    ['cpu-prometheus', 'kafka', 'client'],
    ['stranger', 's3', 's3'],
  ];
  assert.deepEqual(verdicts(world, closed), expect(closed, 'denied'));
});

test('in the chart, networkPolicies.enabled=false leaves out every NetworkPolicy, the monitoring one included', () => {
  const kinds = (values: Record<string, string>) =>
    objectsOf(renderChart(values))
      .filter((o) => o.kind === 'NetworkPolicy')
      .map((o) => o.metadata.name)
      .sort();
  assert.deepEqual(kinds({}), [
    'cpu-kafka',
    'cpu-kafka-topics',
    'cpu-pipeline-default-deny',
    'cpu-pipeline-dns',
    'cpu-pipeline-test',
    'cpu-sampler',
    'cpu-sink',
    'cpu-sink-from-test',
  ]);
  assert.ok(kinds({ 'monitoring.enabled': 'true' }).includes('cpu-prometheus'));
  assert.deepEqual(kinds({ 'networkPolicies.enabled': 'false', 'monitoring.enabled': 'true' }), []);
  const values = parse(readFileSync(join(root, 'chart', 'values.yaml'), 'utf8'));
  assert.deepEqual(values.networkPolicies, { enabled: true }, 'on by default, as in the overlay');
});
