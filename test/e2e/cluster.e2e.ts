/**
 * The pipeline deployed for real: k8s/overlays/local applied unchanged to a running Kubernetes
 * cluster, plus one static PersistentVolume for the broker (what a storage provisioner would do;
 * the cluster has no StorageClass). Then: every pod Ready and both setup Jobs Completed; readings
 * written by the sink into the overlay's S3 server, read back through the S3 Service, each valid
 * against schema/cpu-reading.v1.schema.json; the first object there within two sampling intervals
 * of every pod being Ready, and the next one within two sampling intervals of the end of its first
 * reading's window (the first object may also hold readings taken before the sink had joined its
 * consumer group); and `kubectl delete -k` leaves nothing behind.
 *
 *   npm run test:cluster      # starts the cluster (test/e2e/cluster-setup.ts) and stops it after
 *
 * Without a cluster the test fails; it never skips.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const overlay = join(root, 'k8s', 'overlays', 'local');
const clusterScript = join(root, 'scripts', 'cluster.sh');

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
  status?: any;
};

/** The cluster's own kubectl (scripts/cluster.sh kubectl), with a timeout per call. */
function kubectl(
  args: string[],
  opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {},
): { code: number; out: string; err: string } {
  const r = spawnSync('bash', [clusterScript, 'kubectl', ...args], {
    input: opts.input,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 64 * 2 ** 20,
  });
  if (r.error) throw r.error;
  const result = { code: r.status ?? 1, out: r.stdout, err: r.stderr };
  if (result.code !== 0 && !opts.allowFail)
    throw new Error(`kubectl ${args.join(' ')} failed (exit ${result.code}): ${r.stderr || r.stdout}`);
  return result;
}
const kubectlJson = (args: string[]) => JSON.parse(kubectl([...args, '-o', 'json']).out);

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs: number, everyMs = 2000): Promise<T> {
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

const seconds = (since: number) => ((Date.now() - since) / 1000).toFixed(1);
const log = (line: string) => process.stdout.write(`# ${line}\n`);

// Lists and reads every object of the sink's bucket, from inside the sink's own pod: the project's
// image, its AWS SDK, and the endpoint, bucket and credentials the sink itself is given.
const readBucket = `
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
console.log(JSON.stringify({ endpoint: S3_ENDPOINT, bucket: S3_BUCKET, objects }));
`;
type S3Object = { key: string; lastModified: string; metadata: Record<string, string>; text: string };

test(
  'k8s/overlays/local on a real cluster: pods Ready, readings in S3 within two sampling intervals, nothing left after delete -k',
  { timeout: 20 * 60_000 },
  async (t) => {
    // ------------------------------------------------------------ the cluster is there
    const ready = kubectl(['get', '--raw', '/readyz'], { allowFail: true, timeoutMs: 30_000 });
    assert.equal(ready.code, 0, `no Kubernetes cluster answers (run \`npm run test:cluster\`, which starts one): ${ready.err.trim()}`);
    const nodes = kubectlJson(['get', 'nodes']).items as Obj[];
    assert.equal(nodes.length, 1, 'one node');
    const nodeName = nodes[0].metadata.name;
    assert.ok(
      nodes[0].status.conditions.some((c: any) => c.type === 'Ready' && c.status === 'True'),
      `node ${nodeName} is Ready`,
    );

    // ------------------------------------------------------------ what the overlay says
    const objs = parseAllDocuments(kubectl(['kustomize', overlay]).out)
      .map((d) => d.toJS() as Obj)
      .filter(Boolean);
    const find = (kind: string, name: string) => {
      const o = objs.find((x) => x.kind === kind && (x.metadata.name === name || x.metadata.name.startsWith(`${name}-`)));
      assert.ok(o, `${kind}/${name} is in the rendered overlay`);
      return o;
    };
    const namespace = find('Namespace', 'cpu-pipeline').metadata.name;
    const sampler = find('ConfigMap', 'cpu-sampler').data!;
    const sink = find('ConfigMap', 'cpu-sink').data!;
    const interval = Number(sampler.SAMPLE_INTERVAL_SECONDS);
    const broker = find('StatefulSet', 'kafka');
    const claim = broker.spec.volumeClaimTemplates[0];
    const brokerUid = Number(broker.spec.template.spec.securityContext.runAsUser);
    const workloads = objs.filter((o) => ['Deployment', 'DaemonSet', 'StatefulSet'].includes(o.kind));
    const jobs = objs.filter((o) => o.kind === 'Job');
    assert.ok(interval > 0 && workloads.length >= 4 && jobs.length >= 2, 'the overlay has its workloads, jobs and sampling interval');

    // ------------------------------------------------------------ the broker's volume (the harness's part)
    // hostPath volumes get no fsGroup: the folder belongs to the broker's user from the start.
    const pvDir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-e2e-kafka-'));
    chownSync(pvDir, brokerUid, brokerUid);
    const pvName = `cpu-pipeline-e2e-${claim.metadata.name}-${broker.metadata.name}-0`;
    const pv = {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: pvName, labels: { 'app.kubernetes.io/managed-by': 'cpu-pipeline-e2e' } },
      spec: {
        capacity: { storage: claim.spec.resources.requests.storage },
        accessModes: claim.spec.accessModes,
        persistentVolumeReclaimPolicy: 'Retain',
        storageClassName: '',
        claimRef: { namespace, name: `${claim.metadata.name}-${broker.metadata.name}-0` },
        hostPath: { path: pvDir, type: 'Directory' },
      },
    };
    let applied = false;
    t.after(() => {
      // On failure too: the overlay and the volume go, so that the next run starts clean.
      if (applied)
        kubectl(['delete', '-k', overlay, '--ignore-not-found', '--wait=true', '--timeout=180s'], { allowFail: true, timeoutMs: 240_000 });
      kubectl(['delete', 'pv', pvName, '--ignore-not-found', '--wait=true', '--timeout=60s'], { allowFail: true });
      rmSync(pvDir, { recursive: true, force: true });
    });
    kubectl(['apply', '-f', '-'], { input: stringify(pv) });
    log(`static PersistentVolume ${pvName}: hostPath ${pvDir}, for ${namespace}/${pv.spec.claimRef.name}`);

    // ------------------------------------------------------------ apply, then everything Ready
    const appliedAt = Date.now();
    applied = true;
    log(kubectl(['apply', '-k', overlay]).out.trim().split('\n').join(', '));
    for (const w of workloads) {
      kubectl(['-n', namespace, 'rollout', 'status', `${w.kind.toLowerCase()}/${w.metadata.name}`, '--timeout=300s'], {
        timeoutMs: 320_000,
      });
      log(`${w.kind}/${w.metadata.name} rolled out after ${seconds(appliedAt)} s`);
    }
    for (const j of jobs) {
      kubectl(['-n', namespace, 'wait', '--for=condition=Complete', `job/${j.metadata.name}`, '--timeout=300s'], { timeoutMs: 320_000 });
      log(`Job/${j.metadata.name} Complete after ${seconds(appliedAt)} s`);
    }
    const pods = kubectlJson(['-n', namespace, 'get', 'pods']).items as Obj[];
    for (const p of pods) {
      const isReady = p.status.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True');
      const state = p.status.phase === 'Succeeded' ? 'Completed' : isReady ? 'Ready' : `${p.status.phase}, not Ready`;
      log(
        `pod ${p.metadata.name}: ${state}, restarts ${(p.status.containerStatuses ?? []).reduce((n: number, c: any) => n + c.restartCount, 0)}`,
      );
      assert.ok(isReady || p.status.phase === 'Succeeded', `pod ${p.metadata.name} is Ready or Completed (${state})`);
    }
    for (const w of workloads) {
      const selector = Object.entries(w.spec.selector.matchLabels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',');
      assert.ok(
        pods.some(
          (p) =>
            p.status.phase === 'Running' && Object.entries(w.spec.selector.matchLabels).every(([k, v]) => p.metadata.labels?.[k] === v),
        ),
        `${w.kind}/${w.metadata.name} has a running pod (${selector})`,
      );
    }
    // When the last pod became Ready (its Ready condition's transition, whole seconds).
    const allReadyAt = Math.max(
      ...pods
        .filter((p) => p.status.phase !== 'Succeeded')
        .map((p) => Date.parse(p.status.conditions.find((c: any) => c.type === 'Ready').lastTransitionTime)),
    );
    log(`all pods Ready or Completed ${((allReadyAt - appliedAt) / 1000).toFixed(1)} s after apply`);
    const topics = kubectl(['-n', namespace, 'logs', `job/${find('Job', 'kafka-topics').metadata.name}`]).out;
    assert.match(topics, new RegExp(`Topic: ${sink.KAFKA_TOPIC}\\s.*PartitionCount: \\d+`), 'the topic Job created the readings topic');

    // ------------------------------------------------------------ readings in S3
    const sinkDeployment = find('Deployment', 'cpu-sink');
    let bucket: { endpoint: string; bucket: string; objects: S3Object[] } | undefined;
    await waitFor(
      'two objects written by the sink in the local S3 server',
      () => {
        const r = kubectl(
          [
            '-n',
            namespace,
            'exec',
            `deploy/${sinkDeployment.metadata.name}`,
            '-c',
            sinkDeployment.spec.template.spec.containers[0].name,
            '--',
            'node',
            '--input-type=module',
            '-e',
            readBucket,
          ],
          { allowFail: true, timeoutMs: 60_000 },
        );
        if (r.code !== 0) throw new Error(r.err.trim());
        bucket = JSON.parse(r.out.trim().split('\n').at(-1)!);
        return bucket!.objects.length >= 2;
      },
      4 * interval * 1000 + 2 * Number(sink.FILE_MAX_AGE_SECONDS) * 1000 + 60_000,
    );
    const objects = bucket!.objects.sort((a, b) => Date.parse(a.lastModified) - Date.parse(b.lastModified));
    log(`${objects.length} objects in s3://${bucket!.bucket} at ${bucket!.endpoint}`);

    const ajv = new Ajv2020({ allErrors: true, strict: true });
    (addFormatsModule as unknown as (a: Ajv2020) => void)(ajv);
    const validate = ajv.compile(JSON.parse(readFileSync(join(root, 'schema', 'cpu-reading.v1.schema.json'), 'utf8')));
    const keyPattern = new RegExp(
      `^${sink.S3_PREFIX}/dt=\\d{4}-\\d{2}-\\d{2}/hour=\\d{2}/${sink.KAFKA_TOPIC}\\+\\d+\\+\\d{10}\\.jsonl(\\.gz)?$`,
    );
    let readings = 0;
    for (const o of objects) {
      assert.match(o.key, keyPattern, 'object key: <prefix>/dt=/hour=/<topic>+<partition>+<first offset>');
      const lines = o.text.split('\n').filter(Boolean);
      assert.equal(Number(o.metadata.records), lines.length, `${o.key}: the records metadata counts its lines`);
      for (const line of lines) {
        const reading = JSON.parse(line) as { node: string; namespace: string; pod: string };
        assert.ok(validate(reading), `${o.key}: ${JSON.stringify(validate.errors)}`);
        assert.equal(reading.node, nodeName, 'the reading names the node');
        assert.equal(reading.namespace, namespace, 'the reading names the namespace');
        assert.match(reading.pod, /^cpu-sampler-/, 'the reading names the sampler pod');
        readings++;
      }
    }
    // LastModified has whole seconds: one second of slack.
    const firstWindowEnd = (o: S3Object) =>
      Math.min(
        ...o.text
          .split('\n')
          .filter(Boolean)
          .map((l) => Date.parse(JSON.parse(l).window_end)),
      );
    const [first, second] = objects;
    const afterReady = (Date.parse(first.lastModified) - allReadyAt) / 1000;
    log(
      `read back s3://${bucket!.bucket}/${first.key}: ${first.metadata.records} reading(s), written ${afterReady.toFixed(1)} s after all pods were Ready (sampling interval ${interval} s)`,
    );
    log(`first reading: ${first.text.split('\n')[0]}`);
    assert.ok(
      afterReady <= 2 * interval + 1,
      `the first object was written ${afterReady} s after all pods were Ready, more than two sampling intervals (${2 * interval} s)`,
    );
    const latency = (Date.parse(second.lastModified) - firstWindowEnd(second)) / 1000;
    log(
      `read back s3://${bucket!.bucket}/${second.key}: ${second.metadata.records} reading(s), written ${latency.toFixed(1)} s after its first window ended; ${readings} valid reading(s) in all`,
    );
    assert.ok(
      latency <= 2 * interval + 1,
      `the second object was written ${latency} s after the end of its first window, more than two sampling intervals (${2 * interval} s)`,
    );

    // ------------------------------------------------------------ delete -k leaves nothing behind
    const deletedAt = Date.now();
    kubectl(['delete', '-k', overlay, '--wait=true', '--timeout=240s'], { timeoutMs: 300_000 });
    applied = false;
    await waitFor(
      `namespace ${namespace} to be gone`,
      () => kubectl(['get', 'namespace', namespace], { allowFail: true }).code !== 0,
      180_000,
    );
    kubectl(['delete', 'pv', pvName, '--wait=true', '--timeout=60s']);
    log(`deleted in ${seconds(deletedAt)} s`);
    const leftovers = kubectl([
      'get',
      'all,configmaps,secrets,serviceaccounts,persistentvolumeclaims,jobs',
      '-A',
      '-l',
      'app.kubernetes.io/part-of=cpu-pipeline',
      '-o',
      'name',
    ]).out.trim();
    assert.equal(leftovers, '', 'no object of the pipeline is left');
    const ourPvs = kubectl(['get', 'pv', '-o', 'name']).out.trim();
    assert.equal(ourPvs, '', 'no PersistentVolume is left');
    const podsLeft = (kubectlJson(['get', 'pods', '-A']).items as Obj[])
      .filter((p) => p.metadata.namespace !== 'kube-system')
      .map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
    assert.deepEqual(podsLeft, [], 'only kube-system pods are left');
    const containers = spawnSync(
      'bash',
      [clusterScript, 'ctr', 'containers', 'ls', '-q', `labels."io.kubernetes.pod.namespace"==${namespace}`],
      { encoding: 'utf8' },
    );
    assert.equal(containers.status, 0, containers.stderr);
    await waitFor(
      'no container of the namespace left on the node',
      () =>
        containers.stdout.trim() === '' ||
        spawnSync('bash', [clusterScript, 'ctr', 'containers', 'ls', '-q', `labels."io.kubernetes.pod.namespace"==${namespace}`], {
          encoding: 'utf8',
        }).stdout.trim() === '',
      60_000,
    );
    log('nothing of the pipeline is left: objects, volume, pods, containers');
  },
);
