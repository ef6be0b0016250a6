/**
 * `npm run chart`: renders a Kustomize overlay (default k8s/overlays/eks) and converts it with
 * helmify into chart/. The chart is generated, never edited by hand: CI runs this again and fails
 * on any difference (`npm run chart -- --check`).
 *
 * Before helmify sees the objects, the generated ConfigMap and Secret names lose kustomize's
 * content-hash suffix (`cpu-sink-22496d4km5` -> `cpu-sink`), and so do the references to them
 * and the topic Job named after its ConfigMap; helmify would otherwise freeze the hashes into value
 * keys and template names. Jobs become post-install/post-upgrade hooks, replaced on every upgrade. helmify runs
 * with -original-name so that object names (the `cpu-kafka` Service that KAFKA_BROKERS points at,
 * and that the broker advertises) stay what the programs expect; it still trims the names' common
 * prefix (`cpu-`) from value keys and file names (values `sampler`, `sink`, `kafka`, `kafkaTopics`). helmify folds every ServiceAccount into one shared, optional
 * account used by every pod; that would hand the sink's IAM role (IRSA) to all of them, so the
 * accounts are written back one per workload, as in the manifests, with their annotations as
 * values (serviceAccounts.<name>.annotations). helmify also adds its own
 * `app.kubernetes.io/name: <chart>` to every selector, on top of ours (so the kafka Service would
 * select the apps' pods), and forgets StatefulSet pods: its selector helper is cut down to the
 * release label, which is then added to the StatefulSet too. It drops `clusterIP: None` and
 * `publishNotReadyAddresses` from headless Services; they are put back. Secret references (the
 * aws-secret name and its key names) become values, secrets.<name>.name and .keys.<key>, since
 * helmify leaves them literal. Then chart/README.md (not touched by
 * helmify) is kept, and Chart.yaml gets the project's version and description.
 *
 * Needs kubectl (its built-in kustomize) and helmify (`npm run k8s-tools` builds it into .cache/bin).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parseDocument, stringify } from 'yaml';
import { tool } from './k8s-tools.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const overlay = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 'k8s/overlays/eks';
const check = process.argv.includes('--check');
const chartDir = join(root, 'chart');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; description: string };

function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.error) throw new Error(`${cmd} is required (${r.error.message})`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** Strips kustomize's hash suffix from generated ConfigMaps/Secrets and every reference to them. */
export function withoutHashSuffixes(manifests: string): string {
  const docs = parseAllDocuments(manifests).map((d) => d.toJS() as { kind: string; metadata: { name: string } });
  const renamed = new Map<string, string>();
  for (const d of docs) {
    const m = /^(.*)-[a-z0-9]{10}$/.exec(d.metadata.name);
    if ((d.kind === 'ConfigMap' || d.kind === 'Secret') && m) {
      renamed.set(d.metadata.name, m[1]);
      d.metadata.name = m[1];
    }
  }
  const rename = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(rename);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.entries(v).map(([k, x]) => [k, k === 'name' && typeof x === 'string' && renamed.has(x) ? renamed.get(x) : rename(x)]),
      );
    }
    return v;
  };
  return docs.map((d) => stringify(rename(d))).join('---\n');
}

/**
 * Jobs become Helm hooks (see the header): a Job's pod template is immutable, so `helm upgrade`
 * could not patch it; a post-install/post-upgrade hook with before-hook-creation is replaced
 * instead. The image copy in a Job's ConfigMap that names the Job in kustomize (JOB_IMAGE,
 * k8s/base/kafka/kustomizeconfig.yaml) has no use here and goes.
 */
export function jobsAsHooks(manifests: string): string {
  const docs = parseAllDocuments(manifests).map((d) => d.toJS() as Manifest & { data?: Record<string, string> });
  for (const d of docs) {
    if (d.kind === 'ConfigMap') delete d.data?.JOB_IMAGE;
    if (d.kind !== 'Job') continue;
    d.metadata.annotations = {
      ...d.metadata.annotations,
      'helm.sh/hook': 'post-install,post-upgrade',
      'helm.sh/hook-delete-policy': 'before-hook-creation',
    };
  }
  return docs.map((d) => stringify(d)).join('---\n');
}

type Manifest = {
  kind: string;
  metadata: { name: string; annotations?: Record<string, string> };
  automountServiceAccountToken?: boolean;
  spec?: { template?: { spec?: { serviceAccountName?: string } } };
};

const camel = (name: string) => name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Puts back one ServiceAccount per workload, as the manifests have them (see the header). */
function restoreServiceAccounts(chart: string, objects: Manifest[]): void {
  const accounts = objects.filter((o) => o.kind === 'ServiceAccount');
  writeFileSync(
    join(chart, 'templates', 'serviceaccount.yaml'),
    accounts
      .map((a) =>
        [
          'apiVersion: v1',
          'kind: ServiceAccount',
          'metadata:',
          `  name: ${a.metadata.name}`,
          '  labels:',
          '  {{- include "cpu-pipeline.labels" . | nindent 4 }}',
          `  {{- with .Values.serviceAccounts.${camel(a.metadata.name)}.annotations }}`,
          '  annotations:',
          '    {{- toYaml . | nindent 4 }}',
          '  {{- end }}',
          `automountServiceAccountToken: ${a.automountServiceAccountToken ?? true}`,
        ].join('\n'),
      )
      .join('\n---\n') + '\n',
  );
  for (const file of readdirSync(join(chart, 'templates')).filter((f) => f.endsWith('.yaml'))) {
    const path = join(chart, 'templates', file);
    const text = readFileSync(path, 'utf8');
    const kind = /^kind: (\S+)/m.exec(text)?.[1];
    const name = /^  name: (\S+)/m.exec(text)?.[1];
    const workload = objects.find((o) => o.kind === kind && o.metadata.name === name);
    const account = workload?.spec?.template?.spec?.serviceAccountName;
    const line = /^( *)serviceAccountName: \{\{ include "cpu-pipeline.serviceAccountName" \. \}\}\n/m;
    if (line.test(text)) writeFileSync(path, text.replace(line, account ? `$1serviceAccountName: ${account}\n` : ''));
  }
  const valuesPath = join(chart, 'values.yaml');
  const values = parseDocument(readFileSync(valuesPath, 'utf8')).toJS() as Record<string, unknown>;
  delete values.serviceAccount;
  values.serviceAccounts = Object.fromEntries(accounts.map((a) => [camel(a.metadata.name), { annotations: a.metadata.annotations ?? {} }]));
  writeFileSync(valuesPath, stringify(values, { sortMapEntries: true }));
}

/** Selectors: our own name label plus the release label, for every workload (see the header). */
function fixSelectors(chart: string): void {
  const helpers = join(chart, 'templates', '_helpers.tpl');
  const text = readFileSync(helpers, 'utf8');
  const fixed = text.replace(/(\{\{- define "cpu-pipeline\.selectorLabels" -\}\}\n)app\.kubernetes\.io\/name: [^\n]*\n/, '$1');
  if (fixed === text) throw new Error('helmify changed its selectorLabels helper; review scripts/chart.ts');
  writeFileSync(helpers, fixed);
  for (const file of readdirSync(join(chart, 'templates')).filter((f) => f.endsWith('.yaml'))) {
    const path = join(chart, 'templates', file);
    const t = readFileSync(path, 'utf8');
    if (!/^kind: StatefulSet/m.test(t) || t.includes('selectorLabels')) continue;
    writeFileSync(
      path,
      t
        .replace(
          /(\n  selector:\n    matchLabels:\n(?:      [^\n]+\n)+)/,
          '$1    {{- include "cpu-pipeline.selectorLabels" . | nindent 6 }}\n',
        )
        .replace(
          /(\n  template:\n    metadata:\n      labels:\n(?:        [^\n]+\n)+)/,
          '$1      {{- include "cpu-pipeline.selectorLabels" . | nindent 8 }}\n',
        ),
    );
  }
}

/** Headless Service fields helmify drops (see the header). */
function restoreHeadlessServices(chart: string, objects: Manifest[]): void {
  for (const file of readdirSync(join(chart, 'templates')).filter((f) => f.endsWith('.yaml'))) {
    const path = join(chart, 'templates', file);
    const t = readFileSync(path, 'utf8');
    const name = /^kind: Service\nmetadata:\n  name: (\S+)/m.exec(t)?.[1];
    const svc = objects.find((o) => o.kind === 'Service' && o.metadata.name === name) as
      { spec?: { clusterIP?: string; publishNotReadyAddresses?: boolean } } | undefined;
    if (!svc || svc.spec?.clusterIP !== 'None') continue;
    const extra = `  clusterIP: None\n${svc.spec.publishNotReadyAddresses ? '  publishNotReadyAddresses: true\n' : ''}`;
    writeFileSync(path, t.replace(/^spec:\n/m, `spec:\n${extra}`));
  }
}

/** secretKeyRef names and keys as values (see the header). */
function secretRefsAsValues(chart: string): void {
  const secrets: Record<string, { name: string; keys: Record<string, string> }> = {};
  for (const file of readdirSync(join(chart, 'templates')).filter((f) => f.endsWith('.yaml'))) {
    const path = join(chart, 'templates', file);
    const t = readFileSync(path, 'utf8');
    const out = t.replace(/secretKeyRef:\n( +)key: (\S+)\n\1name: (\S+)\n/g, (_, indent: string, key: string, name: string) => {
      const s = (secrets[camel(name)] ??= { name, keys: {} });
      s.keys[camel(key.replace(/_/g, '-'))] = key;
      return `secretKeyRef:\n${indent}key: {{ .Values.secrets.${camel(name)}.keys.${camel(key.replace(/_/g, '-'))} }}\n${indent}name: {{ .Values.secrets.${camel(name)}.name }}\n`;
    });
    if (out !== t) writeFileSync(path, out);
  }
  if (Object.keys(secrets).length === 0) return;
  const valuesPath = join(chart, 'values.yaml');
  const values = parseDocument(readFileSync(valuesPath, 'utf8')).toJS() as Record<string, unknown>;
  values.secrets = secrets;
  writeFileSync(valuesPath, stringify(values, { sortMapEntries: true }));
}

/** Reads values.yaml, lets `edit` change it, writes it back sorted (as helmify does). */
function editValues(chart: string, edit: (values: Record<string, any>) => void): void {
  const path = join(chart, 'values.yaml');
  const values = parseDocument(readFileSync(path, 'utf8')).toJS() as Record<string, any>;
  edit(values);
  writeFileSync(path, stringify(values, { sortMapEntries: true }));
}

/** Every template file: its path and text. */
const templateFiles = (chart: string) =>
  readdirSync(join(chart, 'templates'))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => ({ path: join(chart, 'templates', f), text: readFileSync(join(chart, 'templates', f), 'utf8') }));

/**
 * The storage class of each volume claim as a value next to its size
 * (<workload>.volumeClaims.<claim>.storageClassName; empty: the cluster's default class): helmify
 * writes the class literally and templates the whole claim value under `resources:`, where a
 * --set storageClassName would land. The overlay's own StorageClass is made only when
 * storageClass.create is on and a claim uses it.
 */
function storageClassesAsValues(chart: string, objects: Manifest[]): void {
  const classes = objects.filter((o) => o.kind === 'StorageClass').map((o) => o.metadata.name);
  if (classes.length > 1) throw new Error(`one StorageClass expected in ${overlay}, found ${classes.join(', ')}; review scripts/chart.ts`);
  const claims: Array<[path: string, storageClass: string]> = [];
  for (const { path, text } of templateFiles(chart)) {
    const out = text.replace(
      /^( +)resources: \{\{ (\.Values\.[\w.]+\.volumeClaims\.\w+) \| toYaml \| nindent (\d+) \}\}\n(?:\1storageClassName: (\S+)\n)?/gm,
      (_, indent: string, value: string, n: string, sc?: string) => {
        claims.push([value.slice('.Values.'.length), sc ?? '']);
        return (
          `${indent}resources: {{- pick ${value} "requests" "limits" | toYaml | nindent ${n} }}\n` +
          `${indent}{{- with ${value}.storageClassName }}\n${indent}storageClassName: {{ . }}\n${indent}{{- end }}\n`
        );
      },
    );
    if (out !== text) writeFileSync(path, out);
  }
  for (const { path, text } of templateFiles(chart).filter((t) => /^kind: StorageClass$/m.test(t.text))) {
    const used = claims.map(([v]) => `(eq .Values.${v}.storageClassName "${classes[0]}")`);
    if (used.length === 0) throw new Error(`no volume claim uses the StorageClass ${classes[0]}; review scripts/chart.ts`);
    writeFileSync(path, `{{- if and .Values.storageClass.create (or ${used.join(' ')}) }}\n${text.trimEnd()}\n{{- end }}\n`);
  }
  editValues(chart, (values) => {
    for (const [path, sc] of claims) {
      const claim = path.split('.').reduce((o, k) => o[k], values);
      claim.storageClassName = sc;
    }
    if (classes.length) values.storageClass = { create: true };
  });
}

const manifests = jobsAsHooks(withoutHashSuffixes(run('kubectl', ['kustomize', join(root, overlay)])));
const objects = parseAllDocuments(manifests).map((d) => d.toJS() as Manifest);
const out = mkdtempSync(join(tmpdir(), 'cpu-pipeline-chart-'));
const target = join(out, 'cpu-pipeline');
run(tool('helmify'), ['-original-name', target], manifests);
restoreServiceAccounts(target, objects);
fixSelectors(target);
restoreHeadlessServices(target, objects);
secretRefsAsValues(target);
storageClassesAsValues(target, objects);

// Chart.yaml: the project's version and description instead of helmify's placeholders.
const chartYaml = join(target, 'Chart.yaml');
writeFileSync(
  chartYaml,
  readFileSync(chartYaml, 'utf8')
    .replace(/^description: .*$/m, `description: ${pkg.description} (generated from ${overlay} by helmify; do not edit)`)
    .replace(/^version: .*$/m, `version: ${pkg.version}`)
    .replace(/^appVersion: .*$/m, `appVersion: "${pkg.version}"`),
);
if (existsSync(join(chartDir, 'README.md'))) cpSync(join(chartDir, 'README.md'), join(target, 'README.md'));

if (check) {
  const diff = spawnSync('diff', ['-ru', chartDir, target], { encoding: 'utf8' });
  rmSync(out, { recursive: true, force: true });
  if (diff.status !== 0) {
    process.stderr.write(
      `chart/ is not what \`npm run chart\` generates from ${overlay}; run it and commit:\n${diff.stdout}${diff.stderr}`,
    );
    process.exit(1);
  }
  console.log(`chart/ matches ${overlay}`);
} else {
  rmSync(chartDir, { recursive: true, force: true });
  cpSync(target, chartDir, { recursive: true });
  rmSync(out, { recursive: true, force: true });
  console.log(`chart/ generated from ${overlay}`);
}
