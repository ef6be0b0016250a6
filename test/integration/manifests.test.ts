/**
 * The Kubernetes manifests and the programs agree: every overlay renders; every setting a
 * manifest gives a program is one it reads and accepts; probes, ports, broker address and topic
 * names match; and the programs, started with the env of the rendered manifests (broker and S3
 * rewritten to local ones), answer on the manifests' own probe paths.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, parseDocument, stringify } from 'yaml';
import { freePort } from '../../scripts/kafka.ts';
import { loadConfig as samplerConfig } from '../../sampler.ts';
import { loadConfig as sinkConfig } from '../../sink.ts';
import { httpGet, root, runCommand, s3ForTest, sharedKafka, uniqueName, waitFor } from '../helpers.ts';

type Obj = {
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: any;
  data?: Record<string, string>;
};

const overlays = readdirSync(join(root, 'k8s', 'overlays'));

function render(dir: string): Obj[] {
  let out: string;
  try {
    out = execFileSync('kubectl', ['kustomize', dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error('kubectl (with its built-in kustomize) is required to render the manifests');
    throw new Error(`kubectl kustomize ${dir} failed: ${e.stderr}`);
  }
  return parseAllDocuments(out).map((d) => d.toJS() as Obj);
}

const find = (objs: Obj[], kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is in the rendered manifests`);
  return o;
};

/** The Job that creates the topics: cpu-kafka-topics-<hash of its settings and image>. */
const findTopicsJob = (objs: Obj[]) => {
  const jobs = objs.filter((o) => o.kind === 'Job' && /^cpu-kafka-topics-[a-z0-9]{10}$/.test(o.metadata.name));
  assert.equal(jobs.length, 1, 'one cpu-kafka-topics-<hash> Job');
  return jobs[0];
};

/** Renders an overlay from a copy of k8s/ that `edit` may change first. */
function renderEdited(overlay: string, edit?: (dir: string) => void): Obj[] {
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-k8s-'));
  try {
    cpSync(join(root, 'k8s'), dir, { recursive: true });
    edit?.(dir);
    return render(join(dir, 'overlays', overlay));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The environment a container would get: envFrom ConfigMaps and Secrets, then env (Downward API and secrets get stand-ins). */
function containerEnv(objs: Obj[], container: any): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, find(objs, 'ConfigMap', from.configMapRef.name).data);
    if (from.secretRef) for (const k of Object.keys(find(objs, 'Secret', from.secretRef.name).data ?? {})) env[k] = `secret-${k}`;
  }
  for (const e of container.env ?? []) {
    env[e.name] =
      e.value ?? (e.valueFrom?.fieldRef ? `downward-${e.valueFrom.fieldRef.fieldPath}` : `from-${Object.keys(e.valueFrom ?? {})[0]}`);
  }
  return env;
}

/** Runs loadConfig on an env and returns the names it looked at. */
function namesRead(load: (env: Record<string, string | undefined>) => unknown, env: Record<string, string>): Set<string> {
  const read = new Set<string>();
  const proxy = new Proxy(env, {
    get: (o, k) => {
      if (typeof k === 'string') read.add(k);
      return o[k as string];
    },
  });
  load(proxy);
  return read;
}

// Read by the AWS SDK's credential chain, not by the sink itself.
const sdkNames = new Set([
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_ROLE_ARN',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
]);

/**
 * A container's environment as the manifests give it, where a folder the pod gets from the host
 * (the sampler's HOST_CGROUP_ROOT) is the same folder of this machine: a setting that must name an
 * existing folder is checked against it.
 */
function envHere(objs: any[], pod: any, container: any): Record<string, string> {
  const fromHost = new Map<string, string>(
    (container.volumeMounts ?? []).flatMap((m: any) => {
      const host = pod.volumes.find((v: any) => v.name === m.name)?.hostPath?.path;
      return host ? [[m.mountPath, host]] : [];
    }),
  );
  return Object.fromEntries(Object.entries(containerEnv(objs, container)).map(([k, v]) => [k, fromHost.get(v as string) ?? v])) as Record<
    string,
    string
  >;
}

for (const overlay of overlays) {
  test(`overlay ${overlay}: the programs read and accept every setting the manifests give them`, () => {
    const objs = render(join(root, 'k8s', 'overlays', overlay));
    for (const [kind, name, load] of [
      ['DaemonSet', 'cpu-sampler', samplerConfig],
      ['Deployment', 'cpu-sink', sinkConfig],
    ] as const) {
      const pod = find(objs, kind, name).spec.template.spec;
      const container = pod.containers[0];
      const env = envHere(objs, pod, container);
      const read = namesRead(load, env); // throws a ConfigError naming any bad setting
      const unknown = Object.keys(env).filter((k) => !read.has(k) && !sdkNames.has(k));
      assert.deepEqual(unknown, [], `${name} is given settings it never reads`);

      const port = Number(env.HTTP_PORT);
      const http = container.ports.find((p: any) => p.name === 'http');
      assert.equal(http.containerPort, port, `${name}: container port http is HTTP_PORT`);
      for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        assert.equal(container[probe].httpGet.port, 'http', `${name} ${probe} uses the http port`);
      }
      assert.equal(container.readinessProbe.httpGet.path, '/readyz');
      assert.equal(container.livenessProbe.httpGet.path, '/healthz');
      const annotations = find(objs, kind, name).spec.template.metadata.annotations;
      assert.equal(Number(annotations['prometheus.io/port']), port, `${name}: the scrape port is HTTP_PORT`);
      assert.equal(annotations['prometheus.io/path'], '/metrics');
      assert.equal(container.args.at(-1), `dist/${name.replace('cpu-', '')}.js`, `${name} runs its own program`);
      assert.equal(container.args[0], 'node');
      for (const [ctx, key] of [
        [pod.securityContext, 'runAsNonRoot'],
        [container.securityContext, 'readOnlyRootFilesystem'],
      ] as const) {
        assert.equal(ctx[key], true, `${name}: ${key}`);
      }
      assert.equal(container.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(container.securityContext.capabilities.drop, ['ALL']);
      assert.ok(container.resources.requests && container.resources.limits, `${name} has requests and limits`);
    }
  });

  test(`overlay ${overlay}: the apps, the topic job and the Kafka Service agree on the broker address and the topics`, () => {
    const objs = render(join(root, 'k8s', 'overlays', overlay));
    const service = find(objs, 'Service', 'cpu-kafka');
    const broker = find(objs, 'StatefulSet', 'cpu-kafka').spec.template.spec;
    assert.equal(broker.enableServiceLinks, false, 'no KAFKA_* service-link variables reach the broker');
    const topicsJob = findTopicsJob(objs).spec.template.spec.containers[0];
    const topics = containerEnv(objs, topicsJob);
    assert.equal(topics.BOOTSTRAP, `cpu-kafka:${service.spec.ports[0].port}`);
    for (const [kind, name] of [
      ['DaemonSet', 'cpu-sampler'],
      ['Deployment', 'cpu-sink'],
    ] as const) {
      const env = containerEnv(objs, find(objs, kind, name).spec.template.spec.containers[0]);
      assert.equal(env.KAFKA_BROKERS, `${service.metadata.name}:${service.spec.ports[0].port}`, `${name} uses the kafka Service`);
      assert.equal(env.KAFKA_TOPIC, topics.TOPIC, `${name} uses the topic the job creates`);
    }
    const sinkEnv = containerEnv(objs, find(objs, 'Deployment', 'cpu-sink').spec.template.spec.containers[0]);
    assert.equal(sinkEnv.KAFKA_DLQ_TOPIC, topics.DLQ_TOPIC, 'the sink dead-letters into the topic the job creates');
  });

  test(`overlay ${overlay}: the broker advertises <service>.<namespace>.svc, which clients in any namespace resolve`, () => {
    const objs = render(join(root, 'k8s', 'overlays', overlay));
    // The broker and the Service in front of it, found by what selects what rather than by name.
    const [statefulSet] = objs.filter((o) => o.kind === 'StatefulSet');
    const podLabels = statefulSet.spec.template.metadata.labels;
    const service = objs.find(
      (o) => o.kind === 'Service' && o.spec.clusterIP !== 'None' && Object.entries(o.spec.selector).every(([k, v]) => podLabels[k] === v),
    );
    assert.ok(service, 'a ClusterIP Service selects the broker');
    const env: any[] = statefulSet.spec.template.spec.containers[0].env;
    const at = (name: string) => env.findIndex((e) => e.name === name);
    const listener = env[at('KAFKA_ADVERTISED_LISTENERS')].value;
    const port = service.spec.ports.find((p: any) => p.name === 'client').port;
    // The client listener first; any other is the broker's own, on loopback, never reached by other pods.
    const [client, ...own] = listener.split(',');
    assert.match(client, new RegExp(`^CLIENT://${service.metadata.name}\\.\\$\\(POD_NAMESPACE\\)\\.svc:${port}$`));
    for (const l of own) assert.match(l, /^[A-Z_]+:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(env[at('POD_NAMESPACE')]?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace', 'the namespace from the Downward API');
    assert.ok(at('POD_NAMESPACE') < at('KAFKA_ADVERTISED_LISTENERS'), 'POD_NAMESPACE comes first: $(VAR) only expands earlier variables');
    assert.match(statefulSet.spec.template.spec.containers[0].args[0], /advertised\.listeners=\$KAFKA_ADVERTISED_LISTENERS/);
    // What the kubelet makes of it: the Service's name in the namespace the overlay deploys into,
    // with no cluster domain assumed (the resolver's search list adds it).
    const expanded = client.replace(/^\w+:\/\//, '').replace('$(POD_NAMESPACE)', statefulSet.metadata.namespace!);
    assert.equal(expanded, `${service.metadata.name}.${service.metadata.namespace}.svc:${port}`);
  });

  test(`overlay ${overlay}: the pipeline's objects have names of their own, and every selector includes part-of cpu-pipeline`, () => {
    const objs = render(join(root, 'k8s', 'overlays', overlay));
    // Kafka's usual names (kafka, kafka-headless, kafka-topics, kafka-config) are taken by any other
    // Kafka in a shared namespace; ours all start with cpu-.
    const base = render(join(root, 'k8s', 'base'));
    assert.deepEqual(
      base.filter((o) => !o.metadata.name.startsWith('cpu-')).map((o) => `${o.kind}/${o.metadata.name}`),
      [],
      'every object of the pipeline is named cpu-*',
    );
    const unhashed = (name: string) => name.replace(/-[a-z0-9]{10}$/, ''); // generated names and the topic Job's
    for (const o of base) {
      const rendered = objs.filter((x) => x.kind === o.kind && unhashed(x.metadata.name) === unhashed(o.metadata.name));
      assert.equal(rendered.length, 1, `${o.kind}/${o.metadata.name} keeps its name in the overlay`);
    }
    const selectors = objs.flatMap((o) =>
      o.kind === 'Service'
        ? [[`Service/${o.metadata.name}`, o.spec.selector]]
        : ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind)
          ? [[`${o.kind}/${o.metadata.name}`, o.spec.selector.matchLabels]]
          : [],
    );
    assert.ok(selectors.length >= 5);
    for (const [what, selector] of selectors) {
      assert.equal(selector['app.kubernetes.io/part-of'], 'cpu-pipeline', `${what} selects only the pipeline's pods`);
      assert.ok(selector['app.kubernetes.io/name'], `${what} selects by name too`);
    }
    const statefulSet = find(objs, 'StatefulSet', 'cpu-kafka');
    const headless = find(objs, 'Service', statefulSet.spec.serviceName);
    assert.equal(headless.spec.clusterIP, 'None', "the StatefulSet's serviceName is its headless Service");
  });

  test(`overlay ${overlay}: the topic Job is named after its settings and image, so re-applying after a change makes a new Job`, () => {
    // A Job's pod template is immutable: re-applying a changed Job under the same name fails.
    const job = (edit?: (dir: string) => void) => findTopicsJob(renderEdited(overlay, edit));
    const before = job();
    assert.equal(job().metadata.name, before.metadata.name, 'unchanged settings: the same Job, so re-applying changes nothing');
    const topicsChanged = job((dir) => {
      const env = join(dir, 'base', 'kafka-topics', 'topics.env');
      writeFileSync(env, readFileSync(env, 'utf8').replace(/^PARTITIONS=.*$/m, 'PARTITIONS=6'));
    });
    assert.notEqual(topicsChanged.metadata.name, before.metadata.name, 'a change to topics.env names a new Job');
    const imageChanged = job((dir) => {
      const path = join(dir, 'overlays', overlay, 'kustomization.yaml');
      const k = parseDocument(readFileSync(path, 'utf8')).toJS();
      k.images = [...(k.images ?? []), { name: 'apache/kafka', newTag: '9.9.9' }];
      writeFileSync(path, stringify(k));
    });
    assert.equal(imageChanged.spec.template.spec.containers[0].image, 'apache/kafka:9.9.9');
    assert.notEqual(imageChanged.metadata.name, before.metadata.name, "a change to the Job's image names a new Job");
    assert.equal(
      before.metadata.labels?.['app.kubernetes.io/name'],
      'kafka-topics',
      'found without knowing its hash: kubectl wait -l app.kubernetes.io/name=kafka-topics',
    );
    // Finished Jobs go away by themselves, but not before `kubectl wait --for=condition=Complete` can see them.
    assert.ok(before.spec.ttlSecondsAfterFinished >= 300, 'a finished Job stays at least 5 minutes');
  });

  test(`overlay ${overlay}: the apps run only on Linux amd64 nodes, and the sampler never on Fargate`, () => {
    const objs = render(join(root, 'k8s', 'overlays', overlay));
    for (const [kind, name] of [
      ['DaemonSet', 'cpu-sampler'],
      ['Deployment', 'cpu-sink'],
    ] as const) {
      const terms = find(objs, kind, name).spec.template.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
        ?.nodeSelectorTerms;
      assert.equal(terms?.length, 1, `${name} has one required node selector term`);
      const exprs = Object.fromEntries(terms[0].matchExpressions.map((e: any) => [e.key, [e.operator, e.values]]));
      assert.deepEqual(exprs['kubernetes.io/os'], ['In', ['linux']], `${name}: Linux nodes only`);
      assert.deepEqual(exprs['kubernetes.io/arch'], ['In', ['amd64']], `${name}: the image is amd64 only`);
      if (kind === 'DaemonSet')
        assert.deepEqual(exprs['eks.amazonaws.com/compute-type'], ['NotIn', ['fargate']], 'no DaemonSet pod on Fargate');
    }
  });
}

test('overlay eks: the real bucket and region, IRSA on the sink, aws-secret as the alternative, in its namespace', () => {
  const objs = render(join(root, 'k8s', 'overlays', 'eks'));
  const sinkPod = find(objs, 'Deployment', 'cpu-sink');
  const env = containerEnv(objs, sinkPod.spec.template.spec.containers[0]);
  assert.equal(env.S3_BUCKET, 'elementor-data-candidates-bucket');
  assert.equal(env.S3_REGION, 'eu-west-1');
  assert.equal(env.S3_ENDPOINT || undefined, undefined, "AWS's own endpoint");
  const sa = find(objs, 'ServiceAccount', sinkPod.spec.template.spec.serviceAccountName);
  assert.match(sa.metadata.annotations!['eks.amazonaws.com/role-arn'], /^arn:aws:iam::\d{12}:role\//);
  const fromSecret = sinkPod.spec.template.spec.containers[0].env.filter((e: any) => e.valueFrom?.secretKeyRef?.name === 'aws-secret');
  assert.deepEqual(
    fromSecret.map((e: any) => [e.name, e.valueFrom.secretKeyRef.key]),
    [
      ['AWS_ACCESS_KEY_ID', 'aws_access_key_id'],
      ['AWS_SECRET_ACCESS_KEY', 'aws_secret_access_key'],
      ['AWS_SESSION_TOKEN', 'aws_session_token'],
    ],
  );
  assert.ok(
    fromSecret.every((e: any) => e.valueFrom.secretKeyRef.optional === true),
    'every key is optional: without the Secret, IRSA; without a session token, long-term keys',
  );
  assert.ok(
    objs
      .filter((o) => !['StorageClass', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind))
      .every((o) => o.metadata.namespace === 'default'),
    'everything in default, where aws-secret is (but what belongs to the cluster)',
  );
});

test("overlay eks: the broker's volume comes from the overlay's own gp3 StorageClass on the EBS CSI driver", () => {
  const objs = render(join(root, 'k8s', 'overlays', 'eks'));
  const claim = find(objs, 'StatefulSet', 'cpu-kafka').spec.volumeClaimTemplates[0];
  const sc: any = find(objs, 'StorageClass', claim.spec.storageClassName);
  assert.equal(
    sc.provisioner,
    'ebs.csi.aws.com',
    'the EBS CSI driver (gp2 of the in-tree plugin needs it too, and is not a default on new clusters)',
  );
  assert.equal(sc.volumeBindingMode, 'WaitForFirstConsumer', "the volume is made in the zone of the broker's node");
  assert.equal(sc.parameters.type, 'gp3');
  assert.equal(sc.parameters.encrypted, 'true');
  assert.equal(sc.metadata.annotations?.['storageclass.kubernetes.io/is-default-class'], undefined, "not the cluster's default");
});

test("the programs started with the env of the rendered local overlay answer on the manifests' probe paths", async (t) => {
  const objs = render(join(root, 'k8s', 'overlays', 'local'));
  const bootstrap = sharedKafka();
  const s3 = await s3ForTest(t);
  const topic = uniqueName('readings');
  for (const [kind, name] of [
    ['DaemonSet', 'cpu-sampler'],
    ['Deployment', 'cpu-sink'],
  ] as const) {
    const pod = find(objs, kind, name).spec.template.spec;
    const container = pod.containers[0];
    const port = await freePort();
    const env = {
      ...envHere(objs, pod, container),
      KAFKA_BROKERS: bootstrap,
      KAFKA_TOPIC: topic,
      KAFKA_DLQ_TOPIC: `${topic}-dlq`,
      HTTP_PORT: String(port),
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: s3.bucket,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test-secret',
    };
    // What the image runs: node, its flags and the bundle that test/global-setup.ts built.
    const p = runCommand(t, [process.execPath, ...container.args.slice(1)], env, name);
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
      const path = container[probe].httpGet.path;
      await waitFor(
        `${name} ${probe} ${path} to answer 200`,
        async () => {
          if (p.proc.exitCode !== null) throw new Error(`${name} exited: ${p.stderr()}`);
          return (await httpGet(port, path).catch(() => ({ status: 0 }))).status === 200;
        },
        60_000,
      );
    }
    p.proc.kill('SIGTERM');
    assert.equal((await p.exited).code, 0, `${name} stops cleanly`);
  }
});
