/**
 * `npm run k8s-tools`: the tools that prove the manifests and the chart without a cluster, pinned,
 * built from the Go module proxy into .cache/bin (Go is the only prerequisite):
 *   helm        lint and render the chart             helm.sh/helm/v3
 *   helmify     generate the chart from kustomize     github.com/arttor/helmify
 *   kubeconform strict schema validation             github.com/yannh/kubeconform
 *   kube-score  Kubernetes best-practice linter      github.com/zegl/kube-score
 * and the Kubernetes OpenAPI schemas of one pinned version, from the k8s.io/kubernetes module
 * (api/openapi-spec/swagger.json), converted to kubeconform's layout in strict form: every object
 * rejects unknown fields (.cache/k8s-schemas/v<version>-standalone-strict/<kind>[-<group>]-<ver>.json).
 * The same for the Prometheus Operator's PodMonitor and PrometheusRule (the monitoring-operator
 * component), from the CRDs its Go module ships (example/prometheus-operator-crd/), into
 * prometheus-operator-v<version>/ below that folder: their metadata is the Kubernetes ObjectMeta
 * of ../_definitions.json, which the CRDs leave open (`type: object`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse } from 'yaml';

export const kubernetesVersion = '1.32.4';
// The newest release when the monitoring-operator component was written; its CRDs are what
// kubeconform checks that component against.
export const prometheusOperatorVersion = '0.93.0';
const operatorModule = 'github.com/prometheus-operator/prometheus-operator';
const operatorCrds = ['podmonitors', 'prometheusrules'];
const tools: Record<string, string> = {
  helm: 'helm.sh/helm/v3/cmd/helm@v3.22.0',
  helmify: 'github.com/arttor/helmify/cmd/helmify@v0.4.20',
  kubeconform: 'github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0',
  'kube-score': 'github.com/zegl/kube-score/cmd/kube-score@v1.20.0',
};

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const binDir = join(root, '.cache', 'bin');
export const schemaRoot = join(root, '.cache', 'k8s-schemas');
export const schemaDir = join(schemaRoot, `v${kubernetesVersion}-standalone-strict`);
export const crdSchemaDir = join(schemaDir, `prometheus-operator-v${prometheusOperatorVersion}`);

/** kubeconform's arguments to validate stdin strictly, the operator's kinds included, offline. */
export const kubeconformArgs = () => [
  '-strict',
  '-summary',
  '-kubernetes-version',
  kubernetesVersion,
  '-schema-location',
  join(schemaDir, '{{ .ResourceKind }}{{ .KindSuffix }}.json'),
  '-schema-location',
  join(crdSchemaDir, '{{ .ResourceKind }}{{ .KindSuffix }}.json'),
  '-',
];

/** The path of a pinned tool, or an error that says how to get it. */
export function tool(name: keyof typeof tools | string): string {
  const path = join(binDir, name);
  if (!existsSync(path)) throw new Error(`${name} is not installed in .cache/bin: run \`npm run k8s-tools\``);
  return path;
}

function go(args: string[], env: Record<string, string> = {}): string {
  const r = spawnSync('go', args, {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 64 * 2 ** 20,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.error) throw new Error(`go is required to build the Kubernetes tools (${r.error.message})`);
  if (r.status !== 0) throw new Error(`go ${args.join(' ')} failed (exit ${r.status})`);
  return r.stdout;
}

type Node = Record<string, unknown>;

/**
 * One OpenAPI schema node (swagger 2, or a CRD's openAPIV3Schema) in strict JSON Schema form,
 * refs into _definitions.json. A CRD node with x-kubernetes-preserve-unknown-fields stays open.
 */
function strict(node: unknown): unknown {
  if (!node || typeof node !== 'object' || Array.isArray(node)) return node;
  const n: Node = { ...(node as Node) };
  if (n.format === 'int-or-string') return { oneOf: [{ type: 'string' }, { type: 'integer' }] };
  if (n.properties) n.properties = Object.fromEntries(Object.entries(n.properties as Node).map(([k, v]) => [k, strict(v)]));
  for (const k of ['items', 'additionalProperties']) if (n[k] && typeof n[k] === 'object') n[k] = strict(n[k]);
  for (const k of ['allOf', 'oneOf', 'anyOf']) if (Array.isArray(n[k])) n[k] = (n[k] as unknown[]).map(strict);
  if (typeof n.$ref === 'string') n.$ref = `_definitions.json#/definitions/${n.$ref.split('/').at(-1)}`;
  if (n.properties && n.additionalProperties === undefined && !n['x-kubernetes-preserve-unknown-fields']) n.additionalProperties = false;
  if (typeof n.type === 'string') n.type = [n.type, 'null']; // an explicit null is allowed, as kubectl does
  return n;
}

export function writeSchemas(swagger: { definitions: Record<string, Node> }, out: string): number {
  mkdirSync(out, { recursive: true });
  const defs = Object.fromEntries(Object.entries(swagger.definitions).map(([k, v]) => [k, strict(v)]));
  defs['io.k8s.apimachinery.pkg.api.resource.Quantity'] = { oneOf: [{ type: 'string' }, { type: 'number' }] };
  writeFileSync(join(out, '_definitions.json'), JSON.stringify({ definitions: defs }));
  let count = 0;
  for (const [name, def] of Object.entries(swagger.definitions)) {
    for (const gvk of (def['x-kubernetes-group-version-kind'] ?? []) as GroupVersionKind[]) {
      writeKindSchema(out, structuredClone(defs[name]) as Node, gvk);
      count++;
    }
  }
  return count;
}

type GroupVersionKind = { group: string; version: string; kind: string };

/** One kind's schema as kubeconform looks it up: <kind>[-<first part of group>]-<version>.json. */
function writeKindSchema(out: string, schema: Node, { group, version, kind }: GroupVersionKind): void {
  schema.$schema = 'http://json-schema.org/draft-07/schema#';
  schema.properties = {
    ...(schema.properties as Node),
    apiVersion: { type: 'string', enum: [group ? `${group}/${version}` : version] },
    kind: { type: 'string', enum: [kind] },
  };
  const suffix = group ? `-${group.split('.')[0]}-${version}` : `-${version}`;
  writeFileSync(join(out, `${kind.toLowerCase()}${suffix}.json`), JSON.stringify(schema));
}

type Crd = {
  spec: { group: string; names: { kind: string }; versions: Array<{ name: string; served: boolean; schema: { openAPIV3Schema: Node } }> };
};

/** Each served version of each CRD, strict, with metadata checked as the Kubernetes ObjectMeta. */
export function writeCrdSchemas(crds: Crd[], out: string): number {
  mkdirSync(out, { recursive: true });
  let count = 0;
  for (const { spec } of crds) {
    for (const v of spec.versions.filter((v) => v.served)) {
      const schema = strict(v.schema.openAPIV3Schema) as Node & { properties: Node };
      schema.properties.metadata = { $ref: '../_definitions.json#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta' };
      writeKindSchema(out, schema, { group: spec.group, version: v.name, kind: spec.names.kind });
      count++;
    }
  }
  return count;
}

/** A Go module's zip in the module cache (downloaded through the Go module proxy once). */
const moduleZip = (module: string, version: string) =>
  (JSON.parse(go(['mod', 'download', '-json', `${module}@v${version}`])) as { Zip: string }).Zip;

function unzipText(zip: string, path: string): string {
  const r = spawnSync('unzip', ['-p', zip, path], { maxBuffer: 256 * 2 ** 20 });
  if (r.error) throw new Error(`unzip is required (${r.error.message})`);
  if (r.status !== 0) throw new Error(`unzip of ${path} failed: ${r.stderr}`);
  return r.stdout.toString('utf8');
}

export function fetchK8sTools(): void {
  mkdirSync(binDir, { recursive: true });
  for (const [name, module] of Object.entries(tools)) {
    const stamp = join(binDir, `.${name}-${module.split('@')[1]}`);
    if (existsSync(stamp) && existsSync(join(binDir, name))) continue;
    console.log(`building ${module}`);
    go(['install', module], { GOBIN: binDir, CGO_ENABLED: '0' });
    writeFileSync(stamp, '');
  }
  if (!existsSync(join(schemaDir, '_definitions.json'))) {
    console.log(`Kubernetes ${kubernetesVersion} OpenAPI schemas`);
    const zip = moduleZip('k8s.io/kubernetes', kubernetesVersion);
    const swagger = unzipText(zip, `k8s.io/kubernetes@v${kubernetesVersion}/api/openapi-spec/swagger.json`);
    console.log(`${writeSchemas(JSON.parse(swagger), schemaDir)} kinds in ${schemaDir}`);
  }
  const crdsDone = join(crdSchemaDir, '.complete');
  if (!existsSync(crdsDone)) {
    console.log(`Prometheus Operator ${prometheusOperatorVersion} CRD schemas (${operatorCrds.join(', ')})`);
    const zip = moduleZip(operatorModule, prometheusOperatorVersion);
    const crds = operatorCrds.map(
      (name) =>
        parse(
          unzipText(
            zip,
            `${operatorModule}@v${prometheusOperatorVersion}/example/prometheus-operator-crd/monitoring.coreos.com_${name}.yaml`,
          ),
        ) as Crd,
    );
    console.log(`${writeCrdSchemas(crds, crdSchemaDir)} kinds in ${crdSchemaDir}`);
    writeFileSync(crdsDone, '');
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  fetchK8sTools();
  console.log(
    `tools in ${binDir}: ${Object.keys(tools).join(', ')}; schemas of Kubernetes ${kubernetesVersion} and Prometheus Operator ${prometheusOperatorVersion}`,
  );
}
