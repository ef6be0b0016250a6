/**
 * `npm run chart`: renders a Kustomize overlay (default k8s/overlays/eks) and converts it with
 * helmify into chart/. The chart is generated, never edited by hand: CI runs this again and fails
 * on any difference (`npm run chart -- --check`).
 *
 * Before helmify sees the objects, the generated ConfigMap and Secret names lose kustomize's
 * content-hash suffix (`cpu-sink-22496d4km5` -> `cpu-sink`), and so do the references to them
 * and the topic Job named after its ConfigMap; helmify would otherwise freeze the hashes into
 * value keys and template names. The topic Job is named after the release's values (a Job's pod
 * template is immutable; see jobsNamedByValues). helmify runs with -original-name so that object
 * names (the `cpu-kafka` Service that KAFKA_BROKERS points at, and that the broker advertises)
 * stay what the programs expect; it still trims the names' common prefix (`cpu-`) from value keys
 * and file names (values `sampler`, `sink`, `kafka`, `kafkaTopics`).
 *
 * The optional components monitoring and monitoring-operator (k8s/components/) are in the chart
 * too, each behind a value that is off by default (monitoring.enabled, monitoringOperator.enabled:
 * a cluster may have no Prometheus Operator kinds), and so is network-policies, on by default as
 * in the overlay (networkPolicies.enabled; the monitoring component's own NetworkPolicy needs
 * both values). The overlay is rendered with all three; a component's objects are those its own
 * rendering adds to the overlay's, and each is wrapped in an `if` on its value. Their
 * ConfigMaps' files (prometheus.yml, alerts.yaml, dashboard.json) become chart files read with
 * .Files.Get, so they reach the cluster byte for byte, and the PrometheusRule reads its groups
 * from alerts.yaml there: Helm would take the rules' `{{ $labels.node }}` for template text.
 * monitoringOperator.labels go on the PodMonitors and the PrometheusRule, for a Prometheus that
 * selects them by label (kube-prometheus-stack: release).
 *
 * Then deterministic repairs and additions, each in its own function below:
 * - helmify folds every ServiceAccount into one shared, optional account used by every pod; that
 *   would hand the sink's IAM role (IRSA) to all of them, so the accounts are written back one
 *   per workload, as in the manifests, with serviceAccounts.<name>.create/.name/.annotations; the
 *   overlay's role ARN (a placeholder) becomes irsa.roleArn, required unless irsa.enabled=false.
 *   A RoleBinding (the Prometheus's) binds its own subject's account by the same value.
 * - helmify adds its own `app.kubernetes.io/name: <chart>` to every selector, on top of ours (so
 *   the cpu-kafka Service would select the apps' pods), and forgets StatefulSet pods: its selector
 *   helper is cut down to the release label, which is then added to the StatefulSet too.
 * - It drops `clusterIP: None` and `publishNotReadyAddresses` from headless Services; put back.
 * - Secret references (the aws-secret name and its key names) become values,
 *   secrets.<name>.name and .keys.<key>, since helmify leaves them literal.
 * - The volume claim's storage class becomes a value beside its size (helmify writes it literally
 *   and templates the claim value under `resources:`); the overlay's StorageClass is made only
 *   when storageClass.create is on and the claim uses it.
 * - The project's image (the overlay's placeholder registry) becomes one required value,
 *   image.repository (+ image.tag).
 * - The KUBERNETES_CLUSTER_DOMAIN variable helmify gives every container goes: nothing reads it.
 * - Every workload's pods get <workload>.affinity and .podAnnotations (nodeSelector and
 *   tolerations helmify makes itself), and all pods imagePullSecrets.
 * - Pods that read a ConfigMap carry its checksum, so a `helm upgrade` that changes a setting
 *   rolls them (kustomize gets the same from the generators' name hashes).
 * - chart-extra/ (hand-written: templates/NOTES.txt, the `helm test` pod and its NetworkPolicies)
 *   is copied in, so --check verifies it too; chart/README.md (not touched by helmify) is kept,
 *   and Chart.yaml gets the project's version and description.
 *
 * Needs kubectl (its built-in kustomize) and helmify (`npm run k8s-tools` builds it into .cache/bin).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { parseAllDocuments, parseDocument, stringify } from 'yaml';
import { tool } from './k8s-tools.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const overlay = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 'k8s/overlays/eks';
const check = process.argv.includes('--check');
const chartDir = join(root, 'chart');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; version: string; description: string };

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
 * The image copy in a Job's ConfigMap that names the Job in kustomize (JOB_IMAGE,
 * k8s/base/kafka-topics/kustomizeconfig.yaml) has no use in the chart and goes; the chart names
 * its Jobs itself (jobsNamedByValues).
 */
export function withoutJobImage(manifests: string): string {
  const docs = parseAllDocuments(manifests).map((d) => d.toJS() as Manifest & { data?: Record<string, string> });
  for (const d of docs) if (d.kind === 'ConfigMap') delete d.data?.JOB_IMAGE;
  return docs.map((d) => stringify(d)).join('---\n');
}

/**
 * A ConfigMap that only copies another's settings (the connect component's cpu-connect-connector:
 * cpu-sink's, so that kustomize names the connector Job after them) is left out, and the pods that
 * read it read the original: the chart names its Jobs itself (jobsNamedByValues), and a copy would
 * be a second set of values for the same settings.
 */
export function withoutConfigCopies(manifests: string): string {
  const docs = parseAllDocuments(manifests).map((d) => d.toJS() as Manifest);
  const configMaps = docs.filter((d) => d.kind === 'ConfigMap' && Object.keys(d.data ?? {}).length > 0);
  const copies = new Map<string, string>(); // copy -> original
  const jobs = new Set(docs.filter((d) => d.kind === 'Job').map((d) => d.metadata.name));
  for (const c of configMaps.filter((c) => jobs.has(c.metadata.name))) {
    const original = configMaps.find((o) => o !== c && isDeepStrictEqual(o.data, c.data));
    if (original) copies.set(c.metadata.name, original.metadata.name);
  }
  const refer = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(refer);
    if (!v || typeof v !== 'object') return v;
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => {
        const ref = x as { name?: string };
        if (['configMap', 'configMapRef', 'configMapKeyRef'].includes(k) && copies.has(ref?.name ?? ''))
          return [k, { ...ref, name: copies.get(ref.name!) }];
        return [k, refer(x)];
      }),
    );
  };
  return docs
    .filter((d) => !(d.kind === 'ConfigMap' && copies.has(d.metadata.name)))
    .map((d) => stringify(refer(d)))
    .join('---\n');
}

type Manifest = {
  kind: string;
  metadata: { name: string; annotations?: Record<string, string> };
  automountServiceAccountToken?: boolean;
  data?: Record<string, string>;
  subjects?: Array<{ kind: string; name: string }>;
  spec?: { template?: { spec?: { serviceAccountName?: string } }; groups?: unknown };
};

const objectKey = (o: Manifest) => `${o.kind}/${o.metadata.name}`;

/**
 * A component of k8s/components/ that the chart carries behind <value>.enabled, off by default
 * unless `on`. `kinds`: objects of these kinds that other components bring are behind this value
 * too (the monitoring component's NetworkPolicy goes when networkPolicies.enabled is false).
 */
type Optional = { component: string; value: string; labels?: boolean; on?: boolean; kinds?: string[] };
const optionalComponents: Optional[] = [
  { component: 'monitoring', value: 'monitoring' },
  // Off by default also because a cluster without the Prometheus Operator has no such kinds.
  // <value>.labels: kube-prometheus-stack's Prometheus selects them by `release: <its release>`.
  { component: 'monitoring-operator', value: 'monitoringOperator', labels: true },
  // On, as in the overlay; off for a cluster whose CNI does not enforce them, or with policies of its own.
  { component: 'network-policies', value: 'networkPolicies', on: true, kinds: ['NetworkPolicy'] },
  // Kafka Connect instead of cpu-sink: what it removes (cpu-sink's objects, the other components'
  // included) is behind `not` its value. Last, as a user adds it to an overlay: its patches see
  // every object. Not `connect`: helmify names the worker's own values so.
  { component: 'connect', value: 'kafkaConnect' },
];

/**
 * The overlay rendered with these optional components and without the others (the local
 * overlay has monitoring on), with the name and Job changes above. kustomize takes no absolute
 * path to the components, so the overlay's `components:` is rewritten in a copy of k8s/.
 */
function render(components: string[], without: string[]): string {
  const copy = mkdtempSync(join(tmpdir(), 'cpu-pipeline-k8s-'));
  try {
    const k8s = join(copy, 'k8s');
    cpSync(join(root, 'k8s'), k8s, { recursive: true });
    const at = relative(join(root, 'k8s'), resolve(root, overlay));
    if (at.startsWith('..')) throw new Error(`${overlay} is not below k8s/: the optional components are found from there`);
    const dir = join(k8s, at);
    const file = join(dir, 'kustomization.yaml');
    const kustomization = parseDocument(readFileSync(file, 'utf8')).toJS() as { components?: string[] };
    const optional = optionalComponents.map((c) => join(k8s, 'components', c.component));
    const off = [...optional, ...without.map((c) => join(k8s, 'components', c))];
    kustomization.components = [
      ...(kustomization.components ?? []).filter((c) => !off.includes(resolve(dir, c))),
      ...components.map((c) => relative(dir, join(k8s, 'components', c))),
    ];
    writeFileSync(file, stringify(kustomization));
    return withoutConfigCopies(withoutJobImage(withoutHashSuffixes(run('kubectl', ['kustomize', dir]))));
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

/**
 * The overlay with every optional component, and which component made which object: the objects
 * its own rendering adds to the overlay's (kind/name -> component), and those it takes away
 * (`removed`: the connect component's cpu-sink Deployment and Service, and the NetworkPolicy and
 * PodMonitor of cpu-sink where those components are on). A component that changed an object of
 * the overlay could not be switched off by leaving objects out: that stops here.
 */
function withOptionalComponents(without: string[]): { manifests: string; owners: Map<string, Optional>; removed: Map<string, Optional> } {
  const parse = (manifests: string) => parseAllDocuments(manifests).map((d) => d.toJS() as Manifest);
  const base = new Map(parse(render([], without)).map((o) => [objectKey(o), o]));
  const owners = new Map<string, Optional>();
  const made = new Map<string, Manifest>(); // every object of the overlay or a component, by key
  const removed = new Map<string, Optional>();
  for (const c of optionalComponents) {
    const objects = parse(render([c.component], without));
    for (const o of objects) {
      const same = base.get(objectKey(o));
      if (!same) owners.set(objectKey(o), c);
      else if (!isDeepStrictEqual(o, same))
        throw new Error(`${c.component} changes ${objectKey(o)} of ${overlay}, which the chart cannot switch off; review scripts/chart.ts`);
      made.set(objectKey(o), o);
    }
    const kept = new Set(objects.map(objectKey));
    for (const key of base.keys()) if (!kept.has(key)) removed.set(key, c);
  }
  for (const [key, o] of base) made.set(key, o);
  const manifests = render(
    optionalComponents.map((c) => c.component),
    without,
  );
  const all = new Set(parse(manifests).map(objectKey));
  // An object of one component that another removes: found by rendering the two together.
  for (const key of [...owners.keys()].filter((k) => !all.has(k))) {
    const owner = owners.get(key)!;
    const by = optionalComponents.filter(
      (c) => c !== owner && !parse(render([owner.component, c.component], without)).some((o) => objectKey(o) === key),
    );
    if (by.length !== 1) throw new Error(`${key} of ${owner.component} is removed by ${by.length} components; review scripts/chart.ts`);
    removed.set(key, by[0]);
  }
  const expected = [...base.keys(), ...owners.keys()].filter((k) => !removed.has(k)).sort();
  if (!isDeepStrictEqual([...all].sort(), expected))
    throw new Error(`the optional components together make other objects than each alone; review scripts/chart.ts`);
  // The removed objects too: the chart has them, for when what removes them is off.
  const gone = [...removed.keys()].map((k) => stringify(made.get(k)));
  return { manifests: [manifests.trimEnd(), ...gone].join('\n---\n'), owners, removed };
}

const enabled = (c: Optional) => `.Values.${c.value}.enabled`;

const camel = (name: string) => name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

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
 * Lets `edit` change each object of each template file on its own: helmify puts several objects in
 * one file (every Deployment in deployment.yaml, a PodMonitor beside the Service of its name), and
 * the repairs below look for the first match of a pattern, which must be the object's own.
 */
function editObjects(chart: string, edit: (object: string, path: string) => string): void {
  for (const { path, text } of templateFiles(chart)) {
    const out = text
      .split('\n---\n')
      .map((o) => edit(o, path))
      .join('\n---\n');
    if (out !== text) writeFileSync(path, out);
  }
}

const roleArnKey = 'eks.amazonaws.com/role-arn';

/**
 * Puts back one ServiceAccount per workload, as the manifests have them (see the header), each
 * with serviceAccounts.<name>.create (false: made elsewhere, e.g. by eksctl), .name (empty: the
 * manifest's name) and .annotations. The IAM role annotation (IRSA) becomes irsa.roleArn, which
 * is required while irsa.enabled is on and the chart makes the account; no placeholder account id.
 */
function restoreServiceAccounts(chart: string, objects: Manifest[], owners: Map<string, Optional>): void {
  const accounts = objects.filter((o) => o.kind === 'ServiceAccount');
  writeFileSync(
    join(chart, 'templates', 'serviceaccount.yaml'),
    accounts
      .map((a) => {
        const v = `.Values.serviceAccounts.${camel(a.metadata.name)}`;
        const annotations =
          a.metadata.annotations?.[roleArnKey] === undefined
            ? [`  {{- with ${v}.annotations }}`]
            : [
                `  {{- $annotations := deepCopy (${v}.annotations | default dict) }}`,
                '  {{- if .Values.irsa.enabled }}',
                `  {{- $_ := set $annotations "${roleArnKey}" (required "irsa.roleArn is required: the IAM role the sink assumes (IRSA), arn:aws:iam::<account>:role/<name>; or irsa.enabled=false for keys from the Secret secrets.awsSecret.name only" .Values.irsa.roleArn) }}`,
                '  {{- end }}',
                '  {{- with $annotations }}',
              ];
        const owner = owners.get(objectKey(a));
        return [
          `{{- if ${owner ? `and ${enabled(owner)} ` : ''}${v}.create }}`,
          '---',
          'apiVersion: v1',
          'kind: ServiceAccount',
          'metadata:',
          `  name: {{ ${v}.name | default "${a.metadata.name}" }}`,
          '  labels:',
          '  {{- include "cpu-pipeline.labels" . | nindent 4 }}',
          ...annotations,
          '  annotations:',
          '    {{- toYaml . | nindent 4 }}',
          '  {{- end }}',
          `automountServiceAccountToken: ${a.automountServiceAccountToken ?? true}`,
          '{{- end }}',
        ].join('\n');
      })
      .join('\n') + '\n',
  );
  editObjects(chart, (text) => {
    const kind = /^kind: (\S+)/m.exec(text)?.[1];
    const name = /^  name: (\S+)/m.exec(text)?.[1];
    const workload = objects.find((o) => o.kind === kind && o.metadata.name === name);
    const account = workload?.spec?.template?.spec?.serviceAccountName;
    const line = /^( *)serviceAccountName: \{\{ include "cpu-pipeline.serviceAccountName" \. \}\}\n/m;
    const named = `$1serviceAccountName: {{ .Values.serviceAccounts.${camel(account ?? '')}.name | default "${account}" }}\n`;
    // helmify binds its one shared account; bind the subject's own, by the same value.
    const subjects = (workload?.subjects ?? []).filter((s) => s.kind === 'ServiceAccount');
    for (const s of subjects)
      if (!accounts.some((a) => a.metadata.name === s.name))
        throw new Error(`${kind}/${name} binds ${s.name}, not an account of the chart`);
    const subject = /^( *)name: '\{\{ include "cpu-pipeline.serviceAccountName" \. \}\}'\n/gm;
    return text.replace(line, account ? named : '').replace(subject, (_, indent: string) => {
      const s = subjects.shift();
      if (!s) throw new Error(`${kind}/${name}: helmify wrote more subjects than it has; review scripts/chart.ts`);
      return `${indent}name: {{ .Values.serviceAccounts.${camel(s.name)}.name | default "${s.name}" }}\n`;
    });
  });
  editValues(chart, (values) => {
    delete values.serviceAccount;
    values.serviceAccounts = Object.fromEntries(
      accounts.map((a) => {
        const { [roleArnKey]: _role, ...annotations } = a.metadata.annotations ?? {};
        return [camel(a.metadata.name), { create: true, name: '', annotations }];
      }),
    );
    if (accounts.some((a) => a.metadata.annotations?.[roleArnKey] !== undefined)) values.irsa = { enabled: true, roleArn: '' };
  });
}

/**
 * The project's image (the one the overlay names <registry>/cpu-pipeline) is one required value,
 * image.repository, with image.tag, instead of a placeholder registry per container.
 */
function projectImageAsValue(chart: string): void {
  const paths: string[] = [];
  let tag = '';
  editValues(chart, (values) => {
    const walk = (o: Record<string, any>, path: string[]) => {
      for (const [k, v] of Object.entries(o)) {
        if (!v || typeof v !== 'object' || Array.isArray(v)) continue;
        if (k === 'image' && new RegExp(`(^|/)${pkg.name}$`).test(String(v.repository))) {
          paths.push(path.join('.'));
          tag = String(v.tag ?? '');
          delete o[k];
        } else walk(v, [...path, k]);
      }
    };
    walk(values, []);
    values.image = { repository: '', tag };
  });
  if (paths.length === 0) throw new Error(`no ${pkg.name} image in ${overlay}; review scripts/chart.ts`);
  const required = `required "image.repository is required: where the ${pkg.name} image is pushed, e.g. <account>.dkr.ecr.<region>.amazonaws.com/${pkg.name}" .Values.image.repository`;
  let replaced = 0;
  for (const { path, text } of templateFiles(chart)) {
    let out = text;
    for (const p of paths) {
      const v = `\\.Values\\.${p.replace(/\./g, '\\.')}\\.image`;
      out = out.replace(
        new RegExp(`\\{\\{ ${v}\\.repository \\}\\}:\\{\\{ ${v}\\.tag\\s+\\| default \\.Chart\\.AppVersion \\}\\}`, 'g'),
        () => {
          replaced++;
          return `{{ ${required} }}:{{ .Values.image.tag | default .Chart.AppVersion }}`;
        },
      );
    }
    if (out !== text) writeFileSync(path, out);
  }
  if (replaced !== paths.length) throw new Error(`helmify changed how it writes images; review scripts/chart.ts`);
}

/** helmify gives every container KUBERNETES_CLUSTER_DOMAIN (for its own name templating); nothing reads it. */
function withoutClusterDomain(chart: string): void {
  for (const { path, text } of templateFiles(chart)) {
    const out = text
      .replace(/^( +)- name: KUBERNETES_CLUSTER_DOMAIN\n\1  value: \{\{ quote \.Values\.kubernetesClusterDomain \}\}\n/gm, '')
      .replace(/^( +)env:\n(?!\1- )/gm, ''); // an env left empty
    if (out !== text) writeFileSync(path, out);
  }
  editValues(chart, (values) => delete values.kubernetesClusterDomain);
}

/**
 * What users set on the pods of every workload (<workload>.nodeSelector, .tolerations,
 * .affinity, .podAnnotations) and on all pods (imagePullSecrets). helmify makes nodeSelector and
 * tolerations values; affinity only where the manifests have one.
 */
function podSettingsAsValues(chart: string): void {
  const workloads: string[] = [];
  editObjects(chart, (text, path) => {
    const key = /nodeSelector: \{\{- toYaml \.Values\.(\w+)\.nodeSelector/.exec(text)?.[1];
    if (!key) return text;
    workloads.push(key);
    const template = text.indexOf('\n  template:\n    metadata:\n');
    const spec = text.indexOf('\n    spec:\n', template);
    if (template < 0 || spec < 0) throw new Error(`${path}: helmify changed its pod template layout; review scripts/chart.ts`);
    const metadata = text.slice(template, spec + 1);
    const annotations = metadata.includes('\n      annotations:\n')
      ? `        {{- with .Values.${key}.podAnnotations }}\n        {{- toYaml . | nindent 8 }}\n        {{- end }}\n`
      : `      {{- with .Values.${key}.podAnnotations }}\n      annotations:\n        {{- toYaml . | nindent 8 }}\n      {{- end }}\n`;
    const podSpec = [
      '    spec:\n',
      text.includes('      affinity: {{-') ? '' : `      affinity: {{- toYaml .Values.${key}.affinity | nindent 8 }}\n`,
      '      {{- with .Values.imagePullSecrets }}\n      imagePullSecrets:\n        {{- toYaml . | nindent 8 }}\n      {{- end }}\n',
    ].join('');
    return text.slice(0, spec + 1) + annotations + podSpec + text.slice(spec + '\n    spec:\n'.length);
  });
  editValues(chart, (values) => {
    for (const key of workloads) {
      values[key].affinity ??= {};
      values[key].podAnnotations = {};
    }
    values.imagePullSecrets = [];
  });
}

/**
 * A checksum of each ConfigMap a workload's pods read, in their annotations, so that `helm upgrade`
 * with a changed setting rolls exactly the pods that read it (kubectl apply -k gets this from the
 * generators' hash suffixes; the chart's ConfigMap names have none).
 */
function configChecksums(chart: string): void {
  const file = (path: string) => path.slice(path.lastIndexOf('/templates/') + '/templates/'.length);
  const configMaps = new Map<string, string>(); // ConfigMap name -> its template file
  for (const { path, text } of templateFiles(chart)) {
    for (const object of text.split('\n---\n')) {
      const name = /^kind: ConfigMap\nmetadata:\n  name: ([\w-]+)$/m.exec(object)?.[1];
      if (name) configMaps.set(name, file(path));
    }
  }
  editObjects(chart, (text, path) => {
    if (!/^kind: (Deployment|DaemonSet|StatefulSet)$/m.test(text)) return text;
    const read = [...text.matchAll(/(?:configMapRef|configMap):\n\s+name: ([\w-]+)|configMapKeyRef:\n\s+key: \S+\n\s+name: ([\w-]+)/g)]
      .map((m) => m[1] ?? m[2])
      .filter((n) => configMaps.has(n));
    if (read.length === 0) return text;
    const template = text.indexOf('\n  template:\n    metadata:\n');
    const spec = text.indexOf('\n    spec:\n', template);
    if (template < 0 || spec < 0) throw new Error(`${path}: helmify changed its pod template layout; review scripts/chart.ts`);
    if (read.some((n) => configMaps.get(n) === file(path)))
      throw new Error(`${path}: a checksum of its own file would include itself; review scripts/chart.ts`);
    const lines = [...new Set(read)].map(
      (name) => `        checksum/${name}: {{ include (print $.Template.BasePath "/${configMaps.get(name)}") $ | sha256sum }}\n`,
    );
    const has = text.indexOf('\n      annotations:\n', template);
    const [at, insert] =
      has > 0 && has < spec ? [has + '\n      annotations:\n'.length, lines.join('')] : [spec + 1, `      annotations:\n${lines.join('')}`];
    return text.slice(0, at) + insert + text.slice(at);
  });
}

/**
 * helmify writes a StatefulSet's pod annotations before its labels (Deployments and DaemonSets:
 * after). The repairs below expect labels first, then annotations, then spec: put them in that order.
 */
function annotationsAfterLabels(chart: string): void {
  editObjects(chart, (text) =>
    text.replace(/(\n  template:\n    metadata:\n)(      annotations:\n(?: {8}[^\n]+\n)+)(      labels:\n(?: {8}[^\n]+\n)+)/, '$1$3$2'),
  );
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
  editObjects(chart, (t) => {
    const name = /^kind: Service\nmetadata:\n  name: (\S+)/m.exec(t)?.[1];
    const svc = objects.find((o) => o.kind === 'Service' && o.metadata.name === name) as
      { spec?: { clusterIP?: string; publishNotReadyAddresses?: boolean } } | undefined;
    if (!svc || svc.spec?.clusterIP !== 'None') return t;
    const extra = `  clusterIP: None\n${svc.spec.publishNotReadyAddresses ? '  publishNotReadyAddresses: true\n' : ''}`;
    return t.replace(/^spec:\n/m, `spec:\n${extra}`);
  });
}

/**
 * A Job's pod template is immutable, so `helm upgrade` could not change it in place. As kustomize
 * names the topic Job after its settings and image, the chart names each Job after the release's
 * values and the chart's version, `<name>-<10 hex digits>`: any change to them makes a new Job
 * (the old one goes with the upgrade), no change leaves it as it is. Not a hook: a post-install
 * hook runs only after `helm install --wait` has seen every pod Ready, and the apps are not Ready
 * before the topics exist (nor, with kafkaAuth, could they be), so the install would wait forever.
 */
function jobsNamedByValues(chart: string): void {
  const jobs = new Map<string, string>(); // template file -> the Job
  editObjects(chart, (text) => {
    const name = /^kind: Job\nmetadata:\n  name: (\S+)$/m.exec(text)?.[1];
    if (!name) return text;
    const named = text.replace(
      `\n  name: ${name}\n`,
      `\n  name: ${name}-{{ print .Chart.Version (toJson .Values) | sha256sum | trunc 10 }}\n`,
    );
    jobs.set(`${name}-job.yaml`, named);
    return '';
  });
  if (jobs.size === 0) throw new Error('no Job in the chart; review scripts/chart.ts');
  // Each in a file of its own: a config checksum hashes the file of the ConfigMap it reads
  // (configChecksums), which must not change with every value, as the Job's name does.
  for (const { path, text } of templateFiles(chart)) {
    const kept = text.split('\n---\n').filter((o) => o.trim() !== '');
    if (kept.length === 0) rmSync(path);
    else writeFileSync(path, `${kept.join('\n---\n').trimEnd()}\n`);
  }
  for (const [file, text] of jobs) {
    if (existsSync(join(chart, 'templates', file))) throw new Error(`helmify wrote ${file} itself; review scripts/chart.ts`);
    writeFileSync(join(chart, 'templates', file), `${text.trimEnd()}\n`);
  }
}

/** secretKeyRef names and keys as values (see the header). */
function secretRefsAsValues(chart: string): void {
  const secrets: Record<string, { name: string; keys: Record<string, string> }> = {};
  for (const file of readdirSync(join(chart, 'templates')).filter((f) => f.endsWith('.yaml'))) {
    const path = join(chart, 'templates', file);
    const t = readFileSync(path, 'utf8');
    const named = (name: string) => {
      secrets[camel(name)] ??= { name, keys: {} };
      return `{{ .Values.secrets.${camel(name)}.name }}`;
    };
    const keyed = (name: string, key: string) => {
      named(name);
      secrets[camel(name)].keys[camel(key.replace(/_/g, '-'))] = key;
      return `{{ .Values.secrets.${camel(name)}.keys.${camel(key.replace(/_/g, '-'))} }}`;
    };
    const out = t
      .replace(
        /secretKeyRef:\n( +)key: (\S+)\n\1name: (\S+)\n/g,
        (_, indent: string, key: string, name: string) =>
          `secretKeyRef:\n${indent}key: ${keyed(name, key)}\n${indent}name: ${named(name)}\n`,
      )
      // A Secret's keys as files of a projected volume: `- secret: {items: [{key, path}], name}`.
      .replace(/- secret:\n( +)items:\n((?:\1[ -] *[^\n]*\n)+)\1name: (\S+)\n/g, (_, indent: string, items: string, name: string) => {
        const keys = items.replace(/^( *-? *)key: (\S+)$/gm, (__, lead: string, key: string) => `${lead}key: ${keyed(name, key)}`);
        return `- secret:\n${indent}items:\n${keys}${indent}name: ${named(name)}\n`;
      });
    if (out !== t) writeFileSync(path, out);
  }
  if (Object.keys(secrets).length === 0) return;
  const valuesPath = join(chart, 'values.yaml');
  const values = parseDocument(readFileSync(valuesPath, 'utf8')).toJS() as Record<string, unknown>;
  values.secrets = secrets;
  writeFileSync(valuesPath, stringify(values, { sortMapEntries: true }));
}

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

/**
 * The files in the optional components' ConfigMaps (prometheus.yml, alerts.yaml, dashboard.json)
 * become chart files, files/<ConfigMap>/<key>, read with .Files.Get. helmify makes them values,
 * and its copies lose the blank lines and the final newline; a chart file reaches the cluster as
 * it is. A PrometheusRule's groups are read from the rule file among them: one copy of the rules
 * in the chart, and their `{{ $labels.node }}` is not template text for Helm there.
 */
function componentFiles(chart: string, objects: Manifest[], owners: Map<string, Optional>): void {
  const files = new Map<string, string>(); // chart file -> its text
  const values: string[] = [];
  for (const o of objects.filter((o) => o.kind === 'ConfigMap' && owners.has(objectKey(o)))) {
    const keys = Object.keys(o.data ?? {});
    editObjects(chart, (text, path) => {
      if (!new RegExp(`^kind: ConfigMap\nmetadata:\n  name: ${o.metadata.name}$`, 'm').test(text)) return text;
      for (const key of keys) {
        const file = `files/${o.metadata.name}/${key}`;
        const line = new RegExp(`^  ${key.replace(/\./g, '\\.')}: \\{\\{ \\.Values\\.([\\w.]+) \\| toYaml \\| indent 1\\s+\\}\\}$`, 'm');
        // A value, or (a .properties file helmify cannot parse: comments) the text as it is.
        const literal = new RegExp(`^  ${key.replace(/\./g, '\\.')}: \\|[-+]?\n(?:(?: {4}[^\n]*)?\n)*(?: {4}[^\n]*)?`, 'm');
        const value = line.exec(text)?.[1];
        if (!value && !literal.test(text))
          throw new Error(`${path}: helmify wrote ${key} of ConfigMap ${o.metadata.name} otherwise; review scripts/chart.ts`);
        const get = `  ${key}: {{ .Files.Get "${file}" | toYaml | indent 1 }}`;
        text = value ? text.replace(line, get) : text.replace(literal, (m) => (m.endsWith('\n') ? `${get}\n` : get));
        files.set(file, o.data![key]);
        if (value) values.push(value);
      }
      return text;
    });
  }
  for (const [file, text] of files) {
    mkdirSync(dirname(join(chart, file)), { recursive: true });
    writeFileSync(join(chart, file), text);
  }
  for (const rule of objects.filter((o) => o.kind === 'PrometheusRule' && owners.has(objectKey(o)))) {
    const from = [...files].find(([, text]) => isDeepStrictEqual(parseDocument(text).toJS()?.groups, rule.spec?.groups))?.[0];
    if (!from || Object.keys(rule.spec ?? {}).join() !== 'groups')
      throw new Error(`PrometheusRule ${rule.metadata.name}: not the groups of a rule file in the chart; review scripts/chart.ts`);
    editObjects(chart, (text, path) => {
      if (!new RegExp(`^kind: PrometheusRule\nmetadata:\n  name: ${rule.metadata.name}$`, 'm').test(text)) return text;
      const spec = text.indexOf('\nspec:\n'); // the last field helmify writes
      if (spec < 0) throw new Error(`${path}: PrometheusRule ${rule.metadata.name} has no spec; review scripts/chart.ts`);
      const groups = `\nspec:\n  groups: {{- (.Files.Get "${from}" | fromYaml).groups | toYaml | nindent 4 }}`;
      return text.slice(0, spec) + groups + (text.endsWith('\n') ? '\n' : '');
    });
  }
  editValues(chart, (v) => {
    for (const path of values) {
      const keys = path.split('.');
      const parent = keys.slice(0, -1).reduce((o, k) => o[k], v);
      delete parent[keys.at(-1)!];
      if (keys.length === 2 && Object.keys(parent).length === 0) delete v[keys[0]];
    }
  });
}

/**
 * The objects of each optional component inside `{{- if .Values.<value>.enabled }}`, found by
 * kind and name (its ServiceAccount: restoreServiceAccounts does that), with <value>.labels
 * added to their own labels where the component has them; the values, off by default. A template
 * file of one component's objects is wrapped as a whole. Objects in a file with others (helmify
 * groups by kind and by name: the PodMonitor cpu-sink in sink.yaml) move to
 * templates/<component>.yaml (<component>-objects.yaml where helmify wrote that file), so that the overlay's files, which the config checksums hash,
 * render the same whether a component is on or not. The objects a component removes (the
 * connect component: cpu-sink's Deployment, Service and NetworkPolicy) move to
 * templates/without-<component>.yaml, inside `{{- if not .Values.<value>.enabled }}`.
 */
function componentsBehindValues(chart: string, owners: Map<string, Optional>, removed: Map<string, Optional>): void {
  const found = new Set<string>();
  const moved = new Map<Optional, string[]>(); // component -> its objects from files shared with others
  const replaced = new Map<Optional, string[]>(); // component -> the objects it removes
  const labelled = (text: string, c: Optional, path: string) => {
    if (!c.labels) return text;
    const include = '  {{- include "cpu-pipeline.labels" . | nindent 4 }}\n';
    if (!text.includes(include)) throw new Error(`${path}: an object without the labels helper line; review scripts/chart.ts`);
    return text.replace(include, `${include}  {{- with .Values.${c.value}.labels }}\n  {{- toYaml . | nindent 4 }}\n  {{- end }}\n`);
  };
  // An object of a kind another component also gates sits in an `if` of that value, inside its own.
  const gated = (text: string, c: Optional) => {
    const kind = /^kind: (\S+)$/m.exec(text)?.[1] ?? '';
    const gates = optionalComponents.filter((g) => g !== c && g.kinds?.includes(kind));
    if (gates.length === 0) return text;
    const condition = gates.length === 1 ? enabled(gates[0]) : `and ${gates.map(enabled).join(' ')}`;
    return `{{- if ${condition} }}\n${text.trimEnd()}\n{{- end }}`;
  };
  const wrap = (objects: string[], c: Optional, path: string) => {
    const body = objects.map((o) => gated(labelled(o, c, path), c)).join('\n---\n');
    return `{{- if ${enabled(c)} }}\n${body.trimEnd()}\n{{- end }}\n`;
  };
  for (const { path, text } of templateFiles(chart)) {
    const objects = text.split('\n---\n').map((o) => {
      // A Job's name ends in a hash of the values (jobsNamedByValues).
      const key = `${/^kind: (\S+)$/m.exec(o)?.[1]}/${/^metadata:\n  name: ([\w.-]+?)(?:-\{\{[^\n]*\}\})?$/m.exec(o)?.[1]}`;
      return { text: o, key, owner: owners.get(key), remover: removed.get(key) };
    });
    for (const o of objects.filter((o) => o.remover && !o.owner)) {
      found.add(o.key);
      replaced.set(o.remover!, [...(replaced.get(o.remover!) ?? []), o.text]);
    }
    // An object of one component that another removes: inside an `if not` of that one, inside its own.
    const owned = objects
      .filter((o) => o.owner)
      .map((o) => (o.remover ? { ...o, text: `{{- if not ${enabled(o.remover)} }}\n${o.text.trimEnd()}\n{{- end }}` } : o));
    if (owned.length === 0) {
      const kept = objects.filter((o) => !o.remover).map((o) => o.text);
      if (kept.length < objects.length) kept.length ? writeFileSync(path, `${kept.join('\n---\n').trimEnd()}\n`) : rmSync(path);
      continue;
    }
    for (const o of owned) found.add(o.key);
    const others = objects.filter((o) => !o.owner && !o.remover).map((o) => o.text);
    const [c] = owned.map((o) => o.owner!);
    if (others.length === 0 && owned.every((o) => o.owner === c)) {
      const texts = owned.map((o) => o.text);
      writeFileSync(path, wrap(texts, c, path));
      continue;
    }
    for (const o of owned) moved.set(o.owner!, [...(moved.get(o.owner!) ?? []), o.text]);
    if (others.length) writeFileSync(path, `${others.join('\n---\n').trimEnd()}\n`);
    else rmSync(path);
  }
  for (const [c, objects] of moved) {
    // helmify's own <component>.yaml (the connect component's ConfigMap, Service and
    // NetworkPolicy) stays as it is: a pod's config checksum must not hash its own file.
    const [path, alt] = [`${c.component}.yaml`, `${c.component}-objects.yaml`].map((f) => join(chart, 'templates', f));
    const to = existsSync(path) ? alt : path;
    if (existsSync(to)) throw new Error(`helmify wrote ${to} itself; review scripts/chart.ts`);
    writeFileSync(to, wrap(objects, c, to));
  }
  // What a component takes away, where it is off: templates/without-<component>.yaml.
  for (const [c, objects] of replaced) {
    const path = join(chart, 'templates', `without-${c.component}.yaml`);
    if (existsSync(path)) throw new Error(`helmify wrote ${path} itself; review scripts/chart.ts`);
    const body = objects.map((o) => gated(o, c)).join('\n---\n');
    writeFileSync(path, `{{- if not ${enabled(c)} }}\n${body.trimEnd()}\n{{- end }}\n`);
  }
  const missed = [...owners.keys(), ...removed.keys()].filter((k) => !k.startsWith('ServiceAccount/') && !found.has(k));
  if (missed.length) throw new Error(`not found in the templates: ${missed.join(', ')}; review scripts/chart.ts`);
  editValues(chart, (values) => {
    for (const c of optionalComponents) {
      if (c.value in values) throw new Error(`helmify made a value ${c.value} of its own; review scripts/chart.ts`);
      values[c.value] = c.labels ? { enabled: c.on ?? false, labels: {} } : { enabled: c.on ?? false };
    }
  });
}

/**
 * A component of the overlay that changes the overlay's own objects (kafka-auth: settings and
 * Secret references on the broker, the apps and the topic Job) cannot be switched off by leaving
 * objects out. The chart is generated twice, with and without it, and each template file keeps
 * the lines of both: what only the component brings inside `{{- if .Values.<value>.enabled }}`,
 * what it replaces in the `else` (GNU diff's group formats mark them). Its values come from both
 * generations, which must agree on every value they share; <value>.enabled is on, as in the overlay.
 */
type Switch = { component: string; value: string; more?: Record<string, unknown> };
const switches: Switch[] = [
  // createSecrets: chart-extra/templates/kafka-auth-secrets.yaml makes the users' Secrets.
  { component: 'kafka-auth', value: 'kafkaAuth', more: { createSecrets: true } },
];

function switchBehindValue(on: string, off: string, s: Switch): void {
  const cond = `.Values.${s.value}.enabled`;
  const files = (dir: string) =>
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => relative(dir, join(e.parentPath, e.name)))
      .sort();
  const directive = /^\{\{- (if|else|end)\b.*\}\}$/;
  for (const file of [...new Set([...files(on), ...files(off)])]) {
    const [a, b] = [join(off, file), join(on, file)];
    const text = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : '');
    if (text(a) === text(b) || file === 'values.yaml') continue;
    if (!file.startsWith('templates/') || !file.endsWith('.yaml'))
      throw new Error(`${s.component} changes ${file} of the chart, which it cannot switch; review scripts/chart.ts`);
    if (!existsSync(a) || !existsSync(b)) throw new Error(`${s.component} adds or removes ${file}; review scripts/chart.ts`);
    const d = spawnSync(
      'diff',
      [
        `--new-group-format={{- if ${cond} }}\n%>{{- end }}\n`,
        `--old-group-format={{- if not ${cond} }}\n%<{{- end }}\n`,
        `--changed-group-format={{- if ${cond} }}\n%>{{- else }}\n%<{{- end }}\n`,
        '--unchanged-group-format=%=',
        a,
        b,
      ],
      { encoding: 'utf8' },
    );
    if (d.status !== 1) throw new Error(`diff ${a} ${b}: ${d.stderr}`);
    // Each directive indented as the line after it, for a reader; `{{-` takes the indent away again.
    const lines = d.stdout.split('\n');
    for (let i = lines.length - 1; i >= 0; i--) {
      if (!directive.test(lines[i])) continue;
      const next = lines.slice(i + 1).find((l) => l.trim() !== '' && !directive.test(l.trim()));
      lines[i] = (/^ */.exec(next ?? '')?.[0] ?? '') + lines[i];
    }
    writeFileSync(b, lines.join('\n'));
  }
  // Values: the union of both generations, which must agree where both have a value.
  const read = (dir: string) => parseDocument(readFileSync(join(dir, 'values.yaml'), 'utf8')).toJS() as Record<string, any>;
  const merge = (x: any, y: any, path: string): any => {
    if (x && y && typeof x === 'object' && typeof y === 'object' && !Array.isArray(x) && !Array.isArray(y)) {
      return Object.fromEntries(
        [...new Set([...Object.keys(x), ...Object.keys(y)])].map((k) => [
          k,
          k in x ? (k in y ? merge(x[k], y[k], `${path}.${k}`) : x[k]) : y[k],
        ]),
      );
    }
    if (!isDeepStrictEqual(x, y))
      throw new Error(`${s.component} changes the value ${path.slice(1)}, which the chart cannot switch; review scripts/chart.ts`);
    return x;
  };
  const values = merge(read(on), read(off), '');
  editValues(on, (v) => {
    for (const k of Object.keys(v)) delete v[k];
    Object.assign(v, values);
    if (s.value in v) throw new Error(`helmify made a value ${s.value} of its own; review scripts/chart.ts`);
    v[s.value] = { enabled: true, ...s.more };
  });
}

/** The chart of the overlay without the components `without`, generated and repaired in a temporary folder. */
function generate(without: string[]): string {
  const { manifests, owners, removed } = withOptionalComponents(without);
  const objects = parseAllDocuments(manifests).map((d) => d.toJS() as Manifest);
  const target = join(mkdtempSync(join(tmpdir(), 'cpu-pipeline-chart-')), 'cpu-pipeline');
  run(tool('helmify'), ['-original-name', target], manifests);
  componentFiles(target, objects, owners);
  restoreServiceAccounts(target, objects, owners);
  annotationsAfterLabels(target);
  fixSelectors(target);
  restoreHeadlessServices(target, objects);
  jobsNamedByValues(target);
  secretRefsAsValues(target);
  storageClassesAsValues(target, objects);
  projectImageAsValue(target);
  withoutClusterDomain(target);
  componentsBehindValues(target, owners, removed);
  configChecksums(target);
  podSettingsAsValues(target);
  return target;
}

const target = generate([]);
for (const s of switches) {
  const off = generate([s.component]);
  switchBehindValue(target, off, s);
  rmSync(dirname(off), { recursive: true, force: true });
}
const out = dirname(target);
// Hand-written templates helmify knows nothing of: NOTES.txt, the kafka-auth Secrets, the `helm test` pod with its policies.
cpSync(join(root, 'chart-extra'), target, { recursive: true });

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
