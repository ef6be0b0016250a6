/**
 * Helpers for the end-to-end tests on a real cluster (scripts/cluster.sh): kubectl, what a
 * rendered overlay or chart holds, a static volume for the broker, and the pipeline's data read
 * back from inside the cluster (the topic with Kafka's own console consumer in the broker's pod,
 * the bucket with the project's image and AWS SDK in the sink's pod).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseAllDocuments, stringify } from 'yaml';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { root } from '../helpers.ts';

export const clusterScript = join(root, 'scripts', 'cluster.sh');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; labels?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
  status?: any;
};

/** The cluster's own kubectl (scripts/cluster.sh kubectl), with a timeout per call. */
export function kubectl(args: string[], opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {}) {
  const r = spawnSync('bash', [clusterScript, 'kubectl', ...args], {
    input: opts.input,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 256 * 2 ** 20,
  });
  if (r.error) throw r.error;
  const result = { code: r.status ?? 1, out: r.stdout, err: r.stderr };
  if (result.code !== 0 && !opts.allowFail)
    throw new Error(`kubectl ${args.join(' ')} failed (exit ${result.code}): ${r.stderr || r.stdout}`);
  return result;
}
export const kubectlJson = (args: string[]) => JSON.parse(kubectl([...args, '-o', 'json']).out);

/** Polls a synchronous check (kubectl calls) every `everyMs` until it returns something truthy. */
export async function eventually<T>(what: string, check: () => T | undefined | false, timeoutMs: number, everyMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const log = (line: string) => process.stdout.write(`# ${line}\n`);
export const seconds = (since: number) => ((Date.now() - since) / 1000).toFixed(1);

/** Fails (never skips) when no cluster answers; returns the one node's name. */
export function theNode(): string {
  const ready = kubectl(['get', '--raw', '/readyz'], { allowFail: true, timeoutMs: 30_000 });
  assert.equal(ready.code, 0, `no Kubernetes cluster answers (run \`npm run test:cluster\`, which starts one): ${ready.err.trim()}`);
  const nodes = kubectlJson(['get', 'nodes']).items as Obj[];
  assert.equal(nodes.length, 1, 'one node');
  assert.ok(
    nodes[0].status.conditions.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True'),
    'the node is Ready',
  );
  return nodes[0].metadata.name;
}

export const parseYaml = (text: string) =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as Obj)
    .filter(Boolean);

/** The pipeline's parts in rendered objects, found by kind and app.kubernetes.io/component, whatever their names. */
export function parts(objs: Obj[]) {
  const one = (kind: string, component: string) => {
    const found = objs.filter((o) => o.kind === kind && o.spec?.template?.metadata?.labels?.['app.kubernetes.io/component'] === component);
    assert.equal(found.length, 1, `one ${kind} of component ${component}`);
    return found[0];
  };
  const configOf = (w: Obj) => {
    const ref = w.spec.template.spec.containers[0].envFrom?.find((e: { configMapRef?: { name: string } }) => e.configMapRef)?.configMapRef
      .name;
    return objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === ref)?.data ?? {};
  };
  const broker = one('StatefulSet', 'broker');
  const sink = one('Deployment', 'sink');
  const sampler = one('DaemonSet', 'sampler');
  return {
    broker,
    sink,
    sampler,
    sinkEnv: configOf(sink),
    samplerEnv: configOf(sampler),
    workloads: objs.filter((o) => ['Deployment', 'DaemonSet', 'StatefulSet'].includes(o.kind)),
    jobs: objs.filter((o) => o.kind === 'Job'),
  };
}

/**
 * A PersistentVolume for the broker's claim, on a folder of this machine (what a provisioner would
 * do; the cluster has no StorageClass), removed after the test. hostPath volumes get no fsGroup:
 * the folder belongs to the broker's user from the start.
 */
export function brokerVolume(t: TestContext, broker: Obj, namespace: string): void {
  const claim = broker.spec.volumeClaimTemplates[0];
  const uid = Number(broker.spec.template.spec.securityContext.runAsUser);
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-e2e-kafka-'));
  chownSync(dir, uid, uid);
  const name = `cpu-pipeline-e2e-${namespace}-${claim.metadata.name}-${broker.metadata.name}-0`;
  const pv = {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'cpu-pipeline-e2e' } },
    spec: {
      capacity: { storage: claim.spec.resources.requests.storage },
      accessModes: claim.spec.accessModes,
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: claim.spec.storageClassName ?? '',
      claimRef: { namespace, name: `${claim.metadata.name}-${broker.metadata.name}-0` },
      hostPath: { path: dir, type: 'Directory' },
    },
  };
  // One left by an earlier test that failed before its claim went (its source cannot be changed).
  kubectl(['delete', 'pv', name, '--ignore-not-found', '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
  kubectl(['apply', '-f', '-'], { input: stringify(pv) });
  t.after(() => {
    kubectl(['delete', 'pv', name, '--ignore-not-found', '--wait=true', '--timeout=60s'], { allowFail: true });
    rmSync(dir, { recursive: true, force: true });
  });
  log(`static PersistentVolume ${name}: hostPath ${dir}, for ${namespace}/${pv.spec.claimRef.name}`);
}

/** Waits for every workload to roll out and every Job to complete; returns when the last pod became Ready. */
export function waitReady(namespace: string, workloads: Obj[], jobs: Obj[], since: number, selector?: string): number {
  for (const w of workloads) {
    kubectl(['-n', namespace, 'rollout', 'status', `${w.kind.toLowerCase()}/${w.metadata.name}`, '--timeout=300s'], { timeoutMs: 320_000 });
    log(`${w.kind}/${w.metadata.name} rolled out after ${seconds(since)} s`);
  }
  for (const j of jobs) {
    kubectl(['-n', namespace, 'wait', '--for=condition=Complete', `job/${j.metadata.name}`, '--timeout=300s'], { timeoutMs: 320_000 });
    log(`Job/${j.metadata.name} Complete after ${seconds(since)} s`);
  }
  const pods = kubectlJson(['-n', namespace, 'get', 'pods', ...(selector ? ['-l', selector] : [])]).items as Obj[];
  for (const p of pods) {
    const ready = p.status.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
    const state = p.status.phase === 'Succeeded' ? 'Completed' : ready ? 'Ready' : `${p.status.phase}, not Ready`;
    log(`pod ${p.metadata.name}: ${state}`);
    assert.ok(ready || p.status.phase === 'Succeeded', `pod ${p.metadata.name} is Ready or Completed (${state})`);
  }
  return Math.max(
    ...pods
      .filter((p) => p.status.phase !== 'Succeeded')
      .map((p) => Date.parse(p.status.conditions.find((c: { type: string }) => c.type === 'Ready').lastTransitionTime)),
  );
}

// Lists and reads every object of the sink's bucket, from inside the sink's own pod: the project's
// image, its AWS SDK, and the endpoint, bucket and credentials the sink itself is given.
const bucketScript = `
import { S3Client, ListObjectsV2Command, GetObjectCommand } from '@aws-sdk/client-s3';
import { gunzipSync } from 'node:zlib';
const { S3_ENDPOINT, S3_REGION, S3_BUCKET, S3_PREFIX } = process.env;
const s3 = new S3Client({ endpoint: S3_ENDPOINT, region: S3_REGION, forcePathStyle: true });
const objects = [];
let token;
do {
  const page = await s3.send(new ListObjectsV2Command({ Bucket: S3_BUCKET, Prefix: S3_PREFIX ? S3_PREFIX + '/' : undefined, ContinuationToken: token }));
  for (const o of page.Contents ?? []) {
    const got = await s3.send(new GetObjectCommand({ Bucket: S3_BUCKET, Key: o.Key }));
    const body = Buffer.from(await got.Body.transformToByteArray());
    objects.push({ key: o.Key, lastModified: o.LastModified, metadata: got.Metadata, text: (o.Key.endsWith('.gz') ? gunzipSync(body) : body).toString('utf8') });
  }
  token = page.IsTruncated ? page.NextContinuationToken : undefined;
} while (token);
console.log(JSON.stringify({ endpoint: S3_ENDPOINT, bucket: S3_BUCKET, objects }));`;

export type S3Object = { key: string; lastModified: string; metadata: Record<string, string>; text: string };
export const linesOf = (o: S3Object) => o.text.split('\n').filter(Boolean);

/** Every object in the sink's bucket, oldest first, read through the sink's own pod. */
export function readBucket(namespace: string, sink: Obj): { endpoint: string; bucket: string; objects: S3Object[] } {
  const container = sink.spec.template.spec.containers[0].name;
  const r = kubectl(
    ['-n', namespace, 'exec', `deploy/${sink.metadata.name}`, '-c', container, '--', 'node', '--input-type=module', '-e', bucketScript],
    {
      timeoutMs: 60_000,
    },
  );
  const bucket = JSON.parse(r.out.trim().split('\n').at(-1)!);
  bucket.objects.sort((a: S3Object, b: S3Object) => Date.parse(a.lastModified) - Date.parse(b.lastModified));
  return bucket;
}

// Lists and reads the bucket from inside the S3 server's own pod (moto, with its boto3), on loopback:
// a reader independent of the connector, and no NetworkPolicy in the way.
const serverBucketScript = `
import boto3, gzip, json, sys
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:5000", region_name="us-east-1",
                  aws_access_key_id="local", aws_secret_access_key="local")
out = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1], Prefix=sys.argv[2] + "/"):
    for o in page.get("Contents", []):
        got = s3.get_object(Bucket=sys.argv[1], Key=o["Key"])
        body = got["Body"].read()
        text = gzip.decompress(body) if o["Key"].endswith(".gz") else body
        out.append({"key": o["Key"], "lastModified": o["LastModified"].isoformat(), "metadata": got["Metadata"], "text": text.decode()})
print(json.dumps(out))
`;

/**
 * Every object under <prefix>/ in a bucket of the local overlay's S3 server, oldest first, read
 * inside the server's pod (deploy/s3): for when no sink pod runs (Kafka Connect instead).
 */
export function readBucketOnServer(namespace: string, bucket: string, prefix: string): S3Object[] {
  // moto's own Python (the image made by scripts/cluster/images/moto has it in a venv; the official one on PATH).
  const python = 'for p in /opt/moto/bin/python3 python3; do command -v "$p" >/dev/null && exec "$p" -c "$0" "$@"; done; exit 127';
  const args = ['sh', '-c', python, serverBucketScript, bucket, prefix];
  const r = kubectl(['-n', namespace, 'exec', 'deploy/s3', '--', ...args], { timeoutMs: 60_000 });
  return (JSON.parse(r.out.trim().split('\n').at(-1)!) as S3Object[]).sort(
    (a, b) => Date.parse(a.lastModified) - Date.parse(b.lastModified),
  );
}

/**
 * Runs a one-off Kafka client as a Job with the opt-in label the broker's NetworkPolicy accepts
 * from any namespace (`cpu-pipeline.io/kafka-client`, k8s/components/network-policies): restricted
 * pod security, no retries, no service account token. Returns whether it completed and its log;
 * the Job is deleted after.
 */
export function clientJob(opts: {
  name: string;
  namespace: string;
  image: string;
  command: string[];
  env?: Array<Record<string, unknown>>;
  /** false where the client writes files (Kafka's tools write to /tmp) */
  readOnlyRootFilesystem?: boolean;
  timeoutSeconds: number;
}): { completed: boolean; log: string } {
  const job = {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: opts.name, namespace: opts.namespace },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { labels: { 'cpu-pipeline.io/kafka-client': 'true' } },
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'client',
              image: opts.image,
              imagePullPolicy: 'IfNotPresent',
              command: opts.command,
              env: opts.env ?? [],
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: opts.readOnlyRootFilesystem ?? true,
                capabilities: { drop: ['ALL'] },
              },
            },
          ],
        },
      },
    },
  };
  kubectl(['apply', '-f', '-'], { input: stringify(job) });
  const wait = ['-n', opts.namespace, 'wait', '--for=condition=Complete', `job/${opts.name}`, `--timeout=${opts.timeoutSeconds}s`];
  const done = kubectl(wait, { allowFail: true, timeoutMs: (opts.timeoutSeconds + 30) * 1000 });
  const log = kubectl(['-n', opts.namespace, 'logs', `job/${opts.name}`], { allowFail: true }).out;
  kubectl(['-n', opts.namespace, 'delete', 'job', opts.name, '--wait=false'], { allowFail: true });
  return { completed: done.code === 0, log };
}

/**
 * No more readings: the sampler's pods go (SIGTERM: each flushes what it holds) by a node selector
 * no node has; resolves once none is left. Then the topic holds all there will be.
 */
export async function stopSampler(namespace: string, sampler: Obj): Promise<void> {
  const patch = { spec: { template: { spec: { nodeSelector: { 'cpu-pipeline.e2e/no-node': 'true' } } } } };
  kubectl(['-n', namespace, 'patch', 'daemonset', sampler.metadata.name, '--type=merge', '-p', JSON.stringify(patch)]);
  const selector = Object.entries(sampler.spec.selector.matchLabels as Record<string, string>)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  await eventually(
    'the sampler pods to be gone',
    () => (kubectlJson(['-n', namespace, 'get', 'pods', '-l', selector]).items as Obj[]).length === 0,
    120_000,
  );
}

/**
 * Every record of a topic, read with Kafka's own console consumer inside the broker's pod (an
 * independent client), on the broker's own INTERNAL listener (127.0.0.1:9094, server.properties),
 * which needs no login with the kafka-auth component either.
 */
export function readTopic(namespace: string, broker: Obj, topic: string): string[] {
  const script =
    'KAFKA_HEAP_OPTS=-Xmx128m KAFKA_GC_LOG_OPTS= exec /opt/kafka/bin/kafka-console-consumer.sh ' +
    `--bootstrap-server 127.0.0.1:9094 --topic ${topic} --from-beginning --timeout-ms 15000 2>/dev/null`;
  const r = kubectl(
    ['-n', namespace, 'exec', `${broker.metadata.name}-0`, '-c', broker.spec.template.spec.containers[0].name, '--', 'bash', '-c', script],
    {
      allowFail: true,
      timeoutMs: 120_000,
    },
  );
  // The console consumer exits 0 after its timeout, or 1 when it ends on the timeout with records read.
  if (r.code !== 0 && r.code !== 1) throw new Error(`reading ${topic}: ${r.err}`);
  return r.out.split('\n').filter((l) => l.startsWith('{'));
}

const addFormats = addFormatsModule as unknown as (a: Ajv2020) => void;
const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats(ajv);
const schema = (file: string) => ajv.compile(JSON.parse(readFileSync(join(root, 'schema', file), 'utf8')));
const validNode = schema('cpu-reading.v1.schema.json');
const validPod = schema('cpu-pod-reading.v1.schema.json');
/** A line of the bucket against its own schema: a pod's (kind "pod") or a node's; `.errors` says why not. */
export const validReading = Object.assign(
  (r: unknown): boolean => {
    const valid = (r as { kind?: string }).kind === 'pod' ? validPod : validNode;
    const ok = valid(r);
    validReading.errors = valid.errors;
    return ok;
  },
  { errors: null as unknown },
);
/** A line that is a node's own reading (a pod's says kind "pod"). */
export const isNodeReading = (line: string) => (JSON.parse(line) as { kind?: string }).kind === undefined;

/**
 * The exactly-once check on a cluster: every record in the topic is in exactly one object, nothing
 * else is there, and no two objects of a partition overlap in offsets.
 */
export function exactlyOnce(topic: string[], objects: S3Object[]) {
  const seen = new Map<string, number>();
  for (const o of objects) for (const l of linesOf(o)) seen.set(l, (seen.get(l) ?? 0) + 1);
  const missing = topic.filter((r) => !seen.has(r)).length;
  const duplicated = [...seen.values()].reduce((n, c) => n + (c > 1 ? c - 1 : 0), 0);
  const want = new Set(topic);
  const unexpected = [...seen.keys()].filter((l) => !want.has(l)).length;
  const ranges = new Map<string, Array<[number, number]>>();
  for (const o of objects)
    ranges.set(o.metadata.partition, [
      ...(ranges.get(o.metadata.partition) ?? []),
      [Number(o.metadata['start-offset']), Number(o.metadata['end-offset'])],
    ]);
  const overlaps = [...ranges.values()].flatMap((r) => r.sort((a, b) => a[0] - b[0]).filter((x, i) => i > 0 && x[0] <= r[i - 1][1])).length;
  return { inTopic: topic.length, inS3: [...seen.values()].reduce((a, b) => a + b, 0), missing, duplicated, unexpected, overlaps };
}
