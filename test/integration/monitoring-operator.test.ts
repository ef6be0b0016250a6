/**
 * The monitoring-operator component, without a cluster: switched on in each overlay (one line
 * under `components:`), everything renders and validates strictly, PodMonitor and PrometheusRule
 * against the Prometheus Operator's own CRD schemas; the PodMonitors give the job and node labels
 * the alert rules select on; the PrometheusRule is exactly alerts.yaml's groups, up to date with
 * `npm run monitoring`, and promtool accepts the groups as rendered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { kubeconformArgs, prometheusOperatorVersion, tool } from '../../scripts/k8s-tools.ts';
import { promtool } from '../../scripts/prometheus.ts';
import { root } from '../helpers.ts';

const component = 'monitoring-operator';
const alertsFile = join(root, 'k8s/components/monitoring/alerts.yaml');
const overlays = readdirSync(join(root, 'k8s', 'overlays'));

type Obj = { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: any };

function run(cmd: string, args: string[], opts: { input?: string; cwd?: string } = {}) {
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? root, input: opts.input, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.error) throw r.error;
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const tempDir = (t: TestContext, prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

/** An overlay as a user switches the component on: one more entry under `components:`, from a copy of k8s/. */
function renderWithComponent(t: TestContext, overlay: string): string {
  const dir = tempDir(t, 'cpu-pipeline-k8s-');
  cpSync(join(root, 'k8s'), dir, { recursive: true });
  const path = join(dir, 'overlays', overlay, 'kustomization.yaml');
  const kustomization = parse(readFileSync(path, 'utf8'));
  kustomization.components = [...(kustomization.components ?? []), `../../components/${component}`];
  writeFileSync(path, stringify(kustomization));
  const r = run('kubectl', ['kustomize', join(dir, 'overlays', overlay)]);
  assert.equal(r.code, 0, r.err);
  return r.out;
}

const objects = (manifests: string) => parseAllDocuments(manifests).map((d) => d.toJS() as Obj);
const kubeconform = (manifests: string) => run(tool('kubeconform'), kubeconformArgs(), { input: manifests });
const alertGroups = () => parse(readFileSync(alertsFile, 'utf8')).groups as Array<{ name: string; rules: Array<Record<string, any>> }>;

for (const overlay of overlays) {
  test(`overlay ${overlay} with ${component} validates strictly, PodMonitor and PrometheusRule against the operator's v${prometheusOperatorVersion} CRDs`, (t) => {
    const manifests = renderWithComponent(t, overlay);
    const objs = objects(manifests);
    const added = objs.filter((o) => o.kind === 'PodMonitor' || o.kind === 'PrometheusRule');
    assert.deepEqual(added.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
      'PodMonitor/cpu-kafka',
      'PodMonitor/cpu-sampler',
      'PodMonitor/cpu-sink',
      'PrometheusRule/cpu-pipeline-alerts',
    ]);
    const namespace = objs.find((o) => o.kind === 'DaemonSet')!.metadata.namespace;
    for (const o of added) assert.equal(o.metadata.namespace, namespace, `${o.kind}/${o.metadata.name} is in the pipeline's namespace`);
    const r = kubeconform(manifests);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, new RegExp(`${objs.length} resources found .* Valid: ${objs.length}, Invalid: 0, Errors: 0, Skipped: 0`));
  });
}

test('the schema check rejects a misspelt field in a PodMonitor, a PrometheusRule and their metadata', (t) => {
  const objs = objects(renderWithComponent(t, 'eks'));
  const rename = (o: Record<string, any>, from: string, to: string) => {
    assert.ok(from in o, `${from} is there to misspell`);
    o[to] = o[from];
    delete o[from];
  };
  const sampler = objs.find((o) => o.kind === 'PodMonitor' && o.metadata.name === 'cpu-sampler')!;
  rename(sampler.spec.podMetricsEndpoints[0].relabelings[0], 'targetLabel', 'targetlabel');
  const rule = objs.find((o) => o.kind === 'PrometheusRule')!;
  rename(rule.spec.groups[0].rules[0], 'for', 'fro');
  rename(rule.metadata, 'labels', 'lables');
  const r = kubeconform(objs.map((o) => stringify(o)).join('---\n'));
  assert.notEqual(r.code, 0);
  for (const field of ['targetlabel', 'fro', 'lables']) assert.match(r.out, new RegExp(`additional properties '${field}' not allowed`));
  assert.match(r.out, /Invalid: 2,/, 'only the two changed objects');
});

test('each PodMonitor selects one workload by name and part-of, scrapes a named port of its pods, and sets the job (and node) labels the rules select on', (t) => {
  const objs = objects(renderWithComponent(t, 'local'));
  const workloads = objs.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind));
  const jobs = new Map<string, string>();
  for (const monitor of objs.filter((o) => o.kind === 'PodMonitor')) {
    const what = `PodMonitor/${monitor.metadata.name}`;
    const selector: Record<string, string> = monitor.spec.selector.matchLabels;
    assert.deepEqual(Object.keys(selector).sort(), ['app.kubernetes.io/name', 'app.kubernetes.io/part-of'], what);
    assert.equal(selector['app.kubernetes.io/part-of'], 'cpu-pipeline');
    const selected = workloads.filter((w) => Object.entries(selector).every(([k, v]) => w.spec.template.metadata.labels[k] === v));
    assert.deepEqual(
      selected.map((w) => w.metadata.name),
      [monitor.metadata.name],
      `${what} selects the pods of ${monitor.metadata.name} only`,
    );
    assert.equal(monitor.spec.jobLabel, undefined, `${what}: job comes from a relabeling (see the component's kustomization.yaml)`);
    assert.equal(monitor.spec.podMetricsEndpoints.length, 1);
    const port = monitor.spec.podMetricsEndpoints[0].port;
    const ports = selected[0].spec.template.spec.containers.flatMap((c: any) => (c.ports ?? []).map((p: any) => p.name));
    assert.ok(ports.includes(port), `${what} scrapes port ${port}, a named port of the pods it selects (${ports.join(', ')})`);
    const relabelings: Array<Record<string, any>> = monitor.spec.podMetricsEndpoints[0].relabelings;
    const job = relabelings.filter((r) => r.targetLabel === 'job');
    assert.equal(job.length, 1, `${what} sets job once`);
    assert.equal(job[0].sourceLabels, undefined, `${what}: job is a fixed value`);
    assert.equal(job[0].action ?? 'replace', 'replace');
    jobs.set(job[0].replacement, monitor.metadata.name);
    const node = relabelings.filter((r) => r.targetLabel === 'node');
    if (monitor.metadata.name === 'cpu-sampler') {
      assert.deepEqual(node, [{ sourceLabels: ['__meta_kubernetes_pod_node_name'], targetLabel: 'node' }], 'node: where the sampler runs');
    } else assert.deepEqual(node, [], `${what} sets no node label`);
  }
  assert.deepEqual(
    Object.fromEntries(jobs),
    { 'cpu-sampler': 'cpu-sampler', 'cpu-sink': 'cpu-sink', 'cpu-kafka': 'cpu-kafka' },
    'one job per workload, named after it',
  );
  const selectedInRules = new Set(
    readFileSync(alertsFile, 'utf8')
      .match(/job="[^"]+"/g)!
      .map((m) => m.slice(5, -1)),
  );
  assert.deepEqual([...selectedInRules].sort(), [...jobs.keys()].sort(), 'the rules select on exactly these jobs');
});

test('the PrometheusRule cpu-pipeline-alerts carries exactly the groups of alerts.yaml', (t) => {
  const rule = objects(renderWithComponent(t, 'eks')).find((o) => o.kind === 'PrometheusRule' && o.metadata.name === 'cpu-pipeline-alerts');
  assert.ok(rule, 'PrometheusRule/cpu-pipeline-alerts is rendered');
  assert.deepEqual(rule.spec.groups, alertGroups());
});

test('`npm run monitoring -- --check` passes: the PrometheusRule is up to date with alerts.yaml', () => {
  const r = run('npm', ['run', '--silent', 'monitoring', '--', '--check']);
  assert.equal(r.code, 0, r.out + r.err);
});

test('`npm run monitoring -- --check` fails and names both files when alerts.yaml changed after the last run', (t) => {
  // A copy of the script and the components: the check compares files next to the script.
  const dir = tempDir(t, 'cpu-pipeline-monitoring-');
  mkdirSync(join(dir, 'scripts'));
  cpSync(join(root, 'scripts', 'monitoring.ts'), join(dir, 'scripts', 'monitoring.ts'));
  cpSync(join(root, 'k8s', 'components'), join(dir, 'k8s', 'components'), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  const alerts = join(dir, 'k8s/components/monitoring/alerts.yaml');
  writeFileSync(alerts, readFileSync(alerts, 'utf8').replace('for: 2m', 'for: 3m'));
  const r = run(process.execPath, ['--import', 'tsx', 'scripts/monitoring.ts', '--check'], { cwd: dir });
  assert.equal(r.code, 1, r.out + r.err);
  assert.match(r.err, /k8s\/components\/monitoring-operator\/prometheusrule\.yaml is not what `npm run monitoring` generates/);
  assert.match(r.err, /k8s\/components\/monitoring\/alerts\.yaml/);
  assert.match(r.err, /^\+ +for: 3m$/m, 'the difference is shown');
});

test('promtool check rules passes on the groups of the rendered PrometheusRule', (t) => {
  const rule = objects(renderWithComponent(t, 'local')).find((o) => o.kind === 'PrometheusRule')!;
  const file = join(tempDir(t, 'cpu-pipeline-rules-'), 'rules.yaml');
  writeFileSync(file, stringify({ groups: rule.spec.groups }));
  const r = promtool(['check', 'rules', file]);
  assert.equal(r.status, 0, r.output);
  const count = alertGroups().reduce((n, g) => n + g.rules.length, 0);
  assert.match(r.output, new RegExp(`SUCCESS: ${count} rules found`));
});
