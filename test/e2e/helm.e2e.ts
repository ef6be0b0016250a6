/**
 * The Helm chart (chart/, generated from k8s/overlays/eks) installed for real on the project's own
 * cluster, pointed through values at an S3-compatible server in the same namespace (the local
 * overlay's moto, with its bucket and its credentials Secret), as MinIO users would:
 *   - `helm install`: every pod Ready, readings in S3 within two sampling intervals, valid;
 *   - `helm test` passes (the broker answers on its Service, the sink's /readyz is 200);
 *   - `helm upgrade` with a changed setting: the sink's pod rolls and runs with the new value, the
 *     topic Job (named after the values) runs again, readings keep arriving;
 *   - `helm upgrade --set kafkaConnect.enabled=true`: Kafka Connect takes over from cpu-sink (no
 *     sink pod left), logs in as the user connect (its Secret made by the chart, set by the broker),
 *     writes the readings under the same keys, `helm test` checks it; with the sampler stopped,
 *     every reading of the topic is in S3 exactly once, cpu-sink's files and Connect's together;
 *   - `helm uninstall`: nothing of the release is left but the broker's volume claim, as documented.
 *   - Kafka authentication (on by default, with the chart's generated Secrets): the broker sets the
 *     users and ACLs, the apps deliver as sampler and sink, and a client pod with no credentials,
 *     a wrong password, or the sampler's password reading, is refused; a password rotated as the
 *     README says is set by the running broker and the sink delivers with it; `helm upgrade` keeps
 *     the passwords.
 * The chart's NetworkPolicies are on (the default); this cluster's CNI does not enforce them, so
 * test/integration/network-policies.test.ts checks what they allow.
 *
 *   npm run test:cluster      # starts the cluster (test/e2e/cluster-setup.ts) and stops it after
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { root } from '../helpers.ts';
import {
  brokerVolume,
  clientJob,
  eventually,
  exactlyOnce,
  kubectl,
  kubectlJson,
  linesOf,
  log,
  parseYaml,
  parts,
  readBucket,
  readBucketOnServer,
  readTopic,
  seconds,
  stopSampler,
  theNode,
  validReading,
  isNodeReading,
  waitReady,
  type Obj,
} from './cluster.ts';

const namespace = 'cpu-pipeline-helm';
const release = 'cpu-pipeline';
const chart = join(root, 'chart');
const kubeconfig = join(root, '.cache', 'k8s', 'state', 'pki', 'admin.kubeconfig');

/** helm (the pinned one in .cache/bin, from `npm run k8s-tools`) against the cluster. */
function helm(args: string[], timeoutMs = 600_000) {
  const r = spawnSync(join(root, '.cache', 'bin', 'helm'), [...args, '--kubeconfig', kubeconfig], { encoding: 'utf8', timeout: timeoutMs });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`helm ${args.join(' ')} failed (exit ${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

test('the Helm chart on a real cluster, pointed at an S3-compatible server', { timeout: 30 * 60_000 }, async (t) => {
  const nodeName = theNode();
  // The local overlay's S3 server, its bucket Job (and the settings it reads) and the credentials, moved into this namespace.
  const local = parseYaml(kubectl(['kustomize', join(root, 'k8s', 'overlays', 'local')]).out);
  const server = local.filter((o) => o.metadata.labels?.['app.kubernetes.io/name'] === 's3');
  const bucketJob = local.find((o) => o.kind === 'Job' && o.metadata.name.startsWith('s3-bucket'))!;
  const bucketEnv = bucketJob.spec.template.spec.containers[0].envFrom as Array<{
    configMapRef?: { name: string };
    secretRef?: { name: string };
  }>;
  const read = local.filter((o) =>
    bucketEnv.some((e) => e.configMapRef?.name === o.metadata.name || e.secretRef?.name === o.metadata.name),
  );
  const credentials = read.find((o) => o.kind === 'Secret')!;
  const s3Settings = read.find((o) => o.kind === 'ConfigMap')!.data!;
  assert.ok(
    server.length >= 2 && credentials && s3Settings.S3_ENDPOINT,
    'the local overlay has an S3 server, its bucket Job, its settings and credentials',
  );
  kubectl(['create', 'namespace', namespace]);
  // As chart/README.md says for a cluster that enforces Pod Security: the sampler's read-only mount
  // of the host's cgroups needs "privileged"; the rest is warned about against "restricted".
  kubectl([
    'label',
    'namespace',
    namespace,
    'pod-security.kubernetes.io/enforce=privileged',
    'pod-security.kubernetes.io/warn=restricted',
    'pod-security.kubernetes.io/audit=restricted',
  ]);
  t.after(() =>
    kubectl(['delete', 'namespace', namespace, '--ignore-not-found', '--wait=true', '--timeout=180s'], {
      allowFail: true,
      timeoutMs: 240_000,
    }),
  );
  // The chart's NetworkPolicies let the sink out to S3 on 443 only: a server in the cluster needs
  // the sink's way to it added, as chart/README.md says; here the local overlay's own rule for it.
  // (The server's side, NetworkPolicy s3, came with the server: it has the server's name label.)
  const sinkPolicy = local.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'cpu-sink')!;
  const sinkToServer = {
    apiVersion: sinkPolicy.apiVersion,
    kind: 'NetworkPolicy',
    metadata: { name: 'cpu-sink-to-s3' },
    spec: {
      podSelector: sinkPolicy.spec.podSelector,
      policyTypes: ['Egress'],
      egress: sinkPolicy.spec.egress.filter((r: { to?: Array<{ podSelector?: { matchLabels?: Record<string, string> } }> }) =>
        r.to?.some((peer) => peer.podSelector?.matchLabels?.['app.kubernetes.io/name'] === 's3'),
      ),
    },
  };
  assert.equal(sinkToServer.spec.egress.length, 1, "the local overlay has the sink's rule to its S3 server");
  const moved = [...server, ...read, bucketJob, sinkToServer].map((o) => stringify({ ...o, metadata: { ...o.metadata, namespace } }));
  kubectl(['apply', '-f', '-'], { input: moved.join('---\n') });
  kubectl(['-n', namespace, 'wait', '--for=condition=Complete', `job/${bucketJob.metadata.name}`, '--timeout=300s'], {
    timeoutMs: 320_000,
  });

  const values = {
    'image.repository': 'cpu-pipeline',
    'image.tag': '0.1.0',
    'kafka.volumeClaims.data.storageClassName': '',
    'sink.s3Endpoint': s3Settings.S3_ENDPOINT,
    'sink.s3ForcePathStyle': 'true',
    'sink.s3Bucket': s3Settings.S3_BUCKET,
    'sink.s3Region': s3Settings.S3_REGION,
    'sink.fileMaxAgeSeconds': '10',
    'sampler.sampleIntervalSeconds': '10',
    'secrets.awsSecret.name': credentials.metadata.name,
    'secrets.awsSecret.keys.awsAccessKeyId': 'AWS_ACCESS_KEY_ID',
    'secrets.awsSecret.keys.awsSecretAccessKey': 'AWS_SECRET_ACCESS_KEY',
  };
  // Booleans with --set (a string "false" would be true to the templates), the rest as strings.
  const set = (v: Record<string, string>) => [
    ...['irsa.enabled=false', 'storageClass.create=false'].flatMap((x) => ['--set', x]),
    ...Object.entries(v).flatMap(([k, x]) => ['--set-string', `${k}=${x}`]),
  ];
  const chartObjects = parseYaml(helm(['template', release, chart, '-n', namespace, ...set(values)]));
  const p = parts(chartObjects);
  brokerVolume(t, p.broker, namespace);
  let installed = false;
  t.after(() => {
    if (installed)
      spawnSync(join(root, '.cache', 'bin', 'helm'), ['uninstall', release, '-n', namespace, '--wait', '--kubeconfig', kubeconfig]);
  });

  let readyAt = 0;
  await t.test('helm install: every pod Ready, the topic Job done, readings in S3 within two sampling intervals', async () => {
    const at = Date.now();
    installed = true;
    log(
      helm(['install', release, chart, '-n', namespace, '--wait', '--timeout', '10m', ...set(values)])
        .split('\n')
        .slice(0, 6)
        .join(' | '),
    );
    readyAt = waitReady(namespace, p.workloads, p.jobs, at, `app.kubernetes.io/instance=${release}`);
    log(`installed, every pod Ready ${((readyAt - at) / 1000).toFixed(1)} s after helm install began`);
    const objects = await eventually(
      'an object in the bucket',
      () => {
        const b = readBucket(namespace, p.sink);
        return b.objects.length >= 1 && b.objects;
      },
      4 * 10_000 + 60_000,
    );
    const afterReady = (Date.parse(objects[0].lastModified) - readyAt) / 1000;
    log(`${objects[0].key}: ${objects[0].metadata.records} reading(s), written ${afterReady.toFixed(1)} s after every pod was Ready`);
    assert.ok(afterReady <= 2 * 10 + 1, `the first object came ${afterReady} s after Ready, more than two sampling intervals`);
    for (const line of linesOf(objects[0])) {
      const reading = JSON.parse(line) as { node: string; namespace: string };
      assert.ok(validReading(reading), JSON.stringify(validReading.errors));
      assert.equal(reading.node, nodeName);
      // The node's reading names the sampler's namespace; a pod's, its own pod's.
      if (isNodeReading(line)) assert.equal(reading.namespace, namespace);
    }
  });

  await t.test('helm test passes', () => {
    let out: string;
    try {
      out = helm(['test', release, '-n', namespace, '--timeout', '5m']);
    } catch (err) {
      // A test pod that failed stays (hook-delete-policy hook-succeeded): its log says why.
      const pod = kubectl(['-n', namespace, 'logs', '-l', 'app.kubernetes.io/component=test'], { allowFail: true }).out;
      throw new Error(`${(err as Error).message}\ntest pod: ${pod}`);
    }
    log(
      out
        .split('\n')
        .filter((l) => /TEST SUITE|Phase/.test(l))
        .join(' | '),
    );
    assert.match(out, /Phase:\s+Succeeded/);
  });

  await t.test(
    "Kafka authentication (on by default): the broker set the users from the chart's Secrets; no credentials, a wrong password, or the sampler's reading, are refused",
    async () => {
      const broker = `${p.broker.metadata.name}-0`;
      const usersSet = await eventually(
        'the broker has set the users and their ACLs',
        () =>
          /kafka-auth: the passwords of the users \(admin sampler sink\) and their ACLs are set/.test(
            kubectl(['-n', namespace, 'logs', broker, '-c', 'kafka']).out,
          ),
        120_000,
        5000,
      );
      assert.ok(usersSet);
      const secret = (key: string) =>
        chartObjects.find((o) => o.kind === 'Secret' && o.metadata.name === `cpu-kafka-${key}`)!.metadata.name;
      const topic = p.samplerEnv.KAFKA_TOPIC;
      // A Kafka client pod that the NetworkPolicies let in (its label), with the admin's and the
      // sampler's passwords from the chart's Secrets: the admin lists the topics (the way in
      // works), then each refused case, with Kafka's own tools.
      const script = [
        'export KAFKA_HEAP_OPTS=-Xmx64m KAFKA_GC_LOG_OPTS= LOG_DIR=/tmp/logs',
        `b=cpu-kafka.${namespace}.svc:9092`,
        'umask 077',
        'props() { printf "%s\\n" default.api.timeout.ms=20000 request.timeout.ms=10000; [ -z "$1" ] || printf "%s\\n" security.protocol=SASL_PLAINTEXT sasl.mechanism=SCRAM-SHA-512 "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\\"$1\\" password=\\"$2\\";"; }',
        'props admin "$ADMIN_PASSWORD" >/tmp/admin; props "" "" >/tmp/none; props sampler wrong-password >/tmp/wrong; props sampler "$SAMPLER_PASSWORD" >/tmp/sampler',
        'run() { out=$(timeout 100 "$@" 2>&1); code=$?; echo "exit=$code $(echo "$out" | grep -Eo "[A-Za-z]+(Exception|Error)|\\b' +
          topic +
          '\\b" | sort -u | tr "\\n" " ")"; }',
        'for c in admin none wrong; do echo "== $c"; run /opt/kafka/bin/kafka-topics.sh --bootstrap-server $b --command-config /tmp/$c --list; done',
        `echo "== sampler reads"; run /opt/kafka/bin/kafka-console-consumer.sh --bootstrap-server $b --consumer.config /tmp/sampler --topic ${topic} --group auth-probe --from-beginning --max-messages 1 --timeout-ms 20000`,
      ].join('\n');
      const fromSecret = (name: string, key: string) => ({ name, valueFrom: { secretKeyRef: { name: secret(key), key: 'password' } } });
      // Kafka's tools write to /tmp: a writable root file system for this one.
      const probe = clientJob({
        name: 'kafka-auth-probe',
        namespace,
        image: p.broker.spec.template.spec.containers[0].image,
        command: ['/bin/bash', '-c', script],
        env: [fromSecret('ADMIN_PASSWORD', 'admin'), fromSecret('SAMPLER_PASSWORD', 'sampler')],
        readOnlyRootFilesystem: false,
        timeoutSeconds: 400,
      });
      const out = probe.log;
      assert.ok(probe.completed, `the probe did not complete: ${out}`);
      const result = Object.fromEntries(
        out
          .split('== ')
          .slice(1)
          .map((part) => [part.split('\n')[0], part.split('\n')[1] ?? '']),
      );
      log(`Kafka auth probe: ${JSON.stringify(result)}`);
      assert.match(
        result.admin,
        new RegExp(`^exit=0 .*\\b${topic}\\b`),
        'the admin lists the topics: the broker can be reached and logged in to',
      );
      assert.match(result.none, /^exit=[1-9]/, 'no credentials: refused');
      assert.doesNotMatch(result.none, new RegExp(`\\b${topic}\\b`));
      assert.match(result.wrong, /^exit=[1-9].*SaslAuthenticationException/, 'a wrong password: refused at authentication');
      assert.match(result['sampler reads'], /(Topic|Group)AuthorizationException/, "the sampler's credentials: refused by the ACLs");
    },
  );

  await t.test(
    "rotating the sink's password as the README says: the broker sets it without a restart, the sink rolls onto it, readings go on",
    async () => {
      const broker = `${p.broker.metadata.name}-0`;
      const setLines = () =>
        kubectl(['-n', namespace, 'logs', broker, '-c', 'kafka'])
          .out.split('\n')
          .filter((l) => l.includes('and their ACLs are set')).length;
      const before = setLines();
      const restartsBefore = kubectlJson(['-n', namespace, 'get', 'pod', broker]).status.containerStatuses[0].restartCount;
      const at = Date.now();
      // 1. A new password in the Secret (32 random letters and digits, as the chart makes them).
      const password = randomBytes(24)
        .toString('base64url')
        .replace(/[^A-Za-z0-9]/g, '')
        .slice(0, 32);
      kubectl([
        '-n',
        namespace,
        'patch',
        'secret',
        'cpu-kafka-sink',
        '-p',
        JSON.stringify({ data: { password: Buffer.from(password).toString('base64') } }),
      ]);
      // 2. The broker sees the mounted file change (the kubelet's sync, about a minute) and sets it.
      await eventually('the broker has set the new password', () => setLines() > before, 240_000, 5000);
      log(`the broker set the rotated password ${seconds(at)} s after the Secret changed`);
      // 3. The sink restarted onto it.
      const count = readBucket(namespace, p.sink).objects.length;
      kubectl(['-n', namespace, 'rollout', 'restart', `deployment/${p.sink.metadata.name}`]);
      kubectl(['-n', namespace, 'rollout', 'status', `deployment/${p.sink.metadata.name}`, '--timeout=300s'], { timeoutMs: 320_000 });
      await eventually('a new object after the rotation', () => readBucket(namespace, p.sink).objects.length > count, 120_000, 5000);
      assert.equal(
        kubectlJson(['-n', namespace, 'get', 'pod', broker]).status.containerStatuses[0].restartCount,
        restartsBefore,
        'the broker was not restarted',
      );
      log(`rotated in ${seconds(at)} s: the sink logged in with the new password and wrote again, the broker kept running`);
    },
  );

  await t.test('helm upgrade with a changed setting rolls the sink onto it, the topic Job runs again, readings go on', async () => {
    const sinkPods = () =>
      (kubectlJson(['-n', namespace, 'get', 'pods', '-l', 'app.kubernetes.io/component=sink']).items as Obj[]).map((x) => x.metadata.name);
    const before = sinkPods();
    const passwords = () =>
      (kubectlJson(['-n', namespace, 'get', 'secrets', '-l', 'app.kubernetes.io/component=kafka-auth']).items as Obj[]).map(
        (x) => `${x.metadata.name}=${x.data?.password}`,
      );
    const kept = passwords();
    assert.equal(kept.length, 3, 'the chart made three Secrets');
    const at = Date.now();
    helm(['upgrade', release, chart, '-n', namespace, '--wait', '--timeout', '10m', ...set({ ...values, 'sink.fileMaxAgeSeconds': '5' })]);
    kubectl(['-n', namespace, 'rollout', 'status', `deployment/${p.sink.metadata.name}`, '--timeout=300s'], { timeoutMs: 320_000 });
    const after = await eventually(
      'the old sink pod gone',
      () => {
        const now = sinkPods();
        return now.length === 1 && !before.includes(now[0]) && now;
      },
      120_000,
    );
    const started = kubectl(['-n', namespace, 'logs', `pod/${after[0]}`])
      .out.split('\n')
      .find((l) => l.includes('"msg":"started"'))!;
    assert.equal(JSON.parse(started).max_age_seconds, 5, 'the new sink runs with the new setting');
    // The topic Job is named after the values (scripts/chart.ts jobsNamedByValues): the changed
    // value made a new one, which ran and completed, and the old one went with the upgrade.
    const jobName = (v: Record<string, string>) =>
      parseYaml(helm(['template', release, chart, '-n', namespace, ...set(v)])).find((o) => o.kind === 'Job')!.metadata.name;
    const [oldJob, newJob] = [jobName(values), jobName({ ...values, 'sink.fileMaxAgeSeconds': '5' })];
    assert.notEqual(newJob, oldJob);
    kubectl(['-n', namespace, 'wait', '--for=condition=Complete', `job/${newJob}`, '--timeout=300s'], { timeoutMs: 320_000 });
    assert.equal(kubectl(['-n', namespace, 'get', 'job', oldJob], { allowFail: true }).code, 1, 'the old Job is gone');
    const count = readBucket(namespace, p.sink).objects.length;
    await eventually('a new object after the upgrade', () => readBucket(namespace, p.sink).objects.length > count, 60_000, 5000);
    assert.deepEqual(passwords(), kept, 'the upgrade kept the passwords the broker knows');
    log(`upgraded in ${seconds(at)} s: sink pod ${before.join(',')} -> ${after.join(',')}, files after 5 s, topic Job made again`);
  });

  await t.test(
    'helm upgrade with kafkaConnect.enabled: Kafka Connect takes over from cpu-sink, logged in as connect; helm test passes; every reading in S3 exactly once',
    async () => {
      const upgraded = { ...values, 'sink.fileMaxAgeSeconds': '5' };
      const withConnect = parseYaml(
        helm(['template', release, chart, '-n', namespace, ...set(upgraded), '--set', 'kafkaConnect.enabled=true']),
      );
      const connectorJob = withConnect.find((o) => o.kind === 'Job' && o.metadata.name.startsWith('cpu-connect-connector-'))!;
      const worker = withConnect.find((o) => o.kind === 'Deployment' && o.metadata.name === 'cpu-connect')!;
      assert.ok(connectorJob && worker, 'the chart has the worker and the connector Job');
      // The worker's way to the S3 server in this namespace, as cpu-sink's above (chart/README.md).
      kubectl(['apply', '-f', '-'], {
        input: stringify({
          ...sinkToServer,
          metadata: { name: 'cpu-connect-to-s3', namespace },
          spec: { ...sinkToServer.spec, podSelector: { matchLabels: worker.spec.selector.matchLabels } },
        }),
      });
      const from = {
        podSelector: { matchLabels: { 'app.kubernetes.io/name': 'cpu-connect', 'app.kubernetes.io/part-of': 'cpu-pipeline' } },
      };
      kubectl([
        '-n',
        namespace,
        'patch',
        'networkpolicy',
        's3',
        '--type=json',
        '-p',
        JSON.stringify([{ op: 'add', path: '/spec/ingress/0/from/-', value: from }]),
      ]);
      const bucket = () => readBucketOnServer(namespace, p.sinkEnv.S3_BUCKET, p.sinkEnv.S3_PREFIX);
      const before = bucket().length;
      const at = Date.now();
      helm([
        'upgrade',
        release,
        chart,
        '-n',
        namespace,
        '--wait',
        '--timeout',
        '10m',
        ...set(upgraded),
        '--set',
        'kafkaConnect.enabled=true',
      ]);
      kubectl(['-n', namespace, 'wait', '--for=condition=Complete', `job/${connectorJob.metadata.name}`, '--timeout=400s'], {
        timeoutMs: 420_000,
      });
      log(
        `connector Job: ${kubectl(['-n', namespace, 'logs', `job/${connectorJob.metadata.name}`])
          .out.trim()
          .split('\n')
          .join(' | ')}`,
      );
      assert.equal(kubectl(['-n', namespace, 'get', 'deployment', p.sink.metadata.name], { allowFail: true }).code, 1, 'no cpu-sink');
      const broker = `${p.broker.metadata.name}-0`;
      assert.match(
        kubectl(['-n', namespace, 'logs', broker, '-c', 'kafka']).out,
        /kafka-auth: the passwords of the users \(admin sampler sink connect\) and their ACLs are set/,
        "the broker set the connect user from the chart's new Secret",
      );
      await eventually('a new object from Kafka Connect', () => bucket().length > before, 180_000, 5000);
      log(`Kafka Connect instead of cpu-sink, writing ${seconds(at)} s after helm upgrade began`);

      const tested = helm(['test', release, '-n', namespace, '--timeout', '5m']);
      assert.match(tested, /Phase:\s+Succeeded/);
      // The worker started from the topic's first reading, on what cpu-sink had written: the same
      // keys, so nothing twice. The sampler stopped, every reading of the topic is in S3 once.
      await stopSampler(namespace, p.sampler);
      const inTopic = readTopic(namespace, p.broker, p.samplerEnv.KAFKA_TOPIC);
      const check = await eventually(
        'every reading of the topic in S3',
        () => {
          const c = exactlyOnce(inTopic, bucket());
          return c.missing === 0 && c;
        },
        180_000,
        5000,
      );
      log(`after the switch to Kafka Connect: ${JSON.stringify(check)}`);
      const { missing, duplicated, unexpected, overlaps } = check;
      assert.deepEqual({ missing, duplicated, unexpected, overlaps }, { missing: 0, duplicated: 0, unexpected: 0, overlaps: 0 });
    },
  );

  await t.test("helm uninstall leaves nothing of the release but the broker's volume claim", async () => {
    helm(['uninstall', release, '-n', namespace, '--wait', '--timeout', '5m']);
    installed = false;
    const left = () =>
      kubectl(
        [
          '-n',
          namespace,
          'get',
          'all,configmaps,secrets,serviceaccounts,persistentvolumeclaims,jobs,networkpolicies',
          '-l',
          `app.kubernetes.io/instance=${release}`,
          '-o',
          'name',
        ],
        {
          allowFail: true,
        },
      )
        .out.trim()
        .split('\n')
        .filter(Boolean);
    // The claim of the StatefulSet's volume stays (Kubernetes keeps it; the README says so): it alone.
    const claim = `persistentvolumeclaim/${p.broker.spec.volumeClaimTemplates[0].metadata.name}-${p.broker.metadata.name}-0`;
    const remaining = await eventually(
      "nothing of the release left but the broker's claim",
      () => {
        const l = left();
        return l.every((x) => x === claim) && l;
      },
      120_000,
      5000,
    );
    assert.deepEqual(remaining, [claim]);
    kubectl(['-n', namespace, 'delete', 'pvc', '--all', '--wait=true', '--timeout=60s']);
  });
});
