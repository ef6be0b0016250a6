/**
 * The kafka-auth component as the eks overlay and the chart render it, offline: SASL/SCRAM on the
 * broker's client listener and nothing reachable from other pods without it, the programs' SASL
 * settings with the password from a Secret only, and exactly the least-privilege ACLs of the
 * README from the topic Job. Without it (the local overlay, the chart with kafkaAuth.enabled=false)
 * nothing of it is left, and the broker's own listeners are on 127.0.0.1 all the same. The chart's
 * generated Secrets. (k8s.test.ts validates the same renderings with kubeconform and kube-score;
 * no-secrets.test.ts scans them for written-out credentials.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { parseAllDocuments, parseDocument } from 'yaml';
import { kubernetesVersion, tool } from '../../scripts/k8s-tools.ts';
import { brokerAcls, chartTemplateArgs, overlayWithConnect, root } from '../helpers.ts';

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const objects = (yaml: string): any[] =>
  parseAllDocuments(yaml)
    .map((d) => d.toJS())
    .filter(Boolean);

const chart = (values: string[] = []) => objects(run(tool('helm'), [...chartTemplateArgs(values), '--kube-version', kubernetesVersion]));

const renderings: Array<[string, () => any[]]> = [
  ['overlay eks', () => objects(run('kubectl', ['kustomize', join(root, 'k8s/overlays/eks')]))],
  ['the chart', () => chart()],
];

const find = (objs: any[], kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && (x.metadata.name === name || x.metadata.name.startsWith(`${name}-`)));
  assert.ok(o, `${kind}/${name} is rendered`);
  return o;
};

/** A Java properties file's settings; a later key wins, as when the start script concatenates files. */
export function properties(...files: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of files.join('\n').split('\n')) {
    const m = /^\s*([^#!\s=][^=]*?)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) out.set(m[1], m[2]);
  }
  return out;
}

/** Each listener of a broker's settings: name, host, port and security protocol. */
export function listeners(props: Map<string, string>) {
  const map = new Map((props.get('listener.security.protocol.map') ?? '').split(',').map((p) => p.split(':') as [string, string]));
  return (props.get('listeners') ?? '').split(',').map((l) => {
    const m = /^(\w+):\/\/([^:]*):(\d+)$/.exec(l);
    assert.ok(m, `a listener: ${l}`);
    return { name: m[1], host: m[2], port: Number(m[3]), protocol: map.get(m[1]) ?? m[1] };
  });
}

/** The broker's settings as its start script assembles them: server.properties, then auth.properties. */
function brokerSettings(objs: any[]) {
  const config = find(objs, 'ConfigMap', 'cpu-kafka-config').data;
  const script: string = find(objs, 'StatefulSet', 'cpu-kafka').spec.template.spec.containers[0].args[0];
  const order = ['server.properties', 'auth.properties'].map((f) => script.indexOf(`/etc/kafka-config/${f}`));
  assert.ok(order[0] >= 0 && order[0] < order[1], 'the start script reads auth.properties after server.properties');
  return properties(config['server.properties'], config['auth.properties'] ?? '');
}

const env = (container: any, name: string) => container.env?.find((e: any) => e.name === name);

for (const [name, render] of renderings) {
  test(`${name}: every broker listener other pods can reach takes SASL/SCRAM only; the broker's own are on 127.0.0.1`, () => {
    const props = brokerSettings(render());
    const all = listeners(props);
    for (const l of all.filter((l) => l.host !== '127.0.0.1'))
      assert.equal(l.protocol, 'SASL_PLAINTEXT', `listener ${l.name} on ${l.host || 'every address'}:${l.port} takes SASL only`);
    const own = (n: string | undefined) => all.find((l) => l.name === n);
    for (const n of [...(props.get('controller.listener.names') ?? '').split(','), props.get('inter.broker.listener.name')])
      assert.equal(own(n)?.host, '127.0.0.1', `${n} is bound to 127.0.0.1`);
    assert.equal(props.get('sasl.enabled.mechanisms'), 'SCRAM-SHA-512');
    assert.match(props.get('listener.name.client.scram-sha-512.sasl.jaas.config') ?? '', /ScramLoginModule required;$/);
    assert.equal(props.get('authorizer.class.name'), 'org.apache.kafka.metadata.authorizer.StandardAuthorizer');
    assert.equal(props.get('allow.everyone.if.no.acl.found'), 'false');
    assert.deepEqual(props.get('super.users')?.split(';').sort(), ['User:ANONYMOUS', 'User:admin']);
  });

  test(`${name}: the broker advertises SASL to clients and reads the users' passwords from their Secrets, as files`, () => {
    const objs = render();
    const pod = find(objs, 'StatefulSet', 'cpu-kafka').spec.template.spec;
    const kafka = pod.containers[0];
    const advertised = env(kafka, 'KAFKA_ADVERTISED_LISTENERS').value.split(',');
    assert.match(advertised[0], /^CLIENT:\/\/cpu-kafka\.\$\(POD_NAMESPACE\)\.svc:9092$/);
    assert.equal(listeners(brokerSettings(objs)).find((l) => l.name === 'CLIENT')?.protocol, 'SASL_PLAINTEXT');
    for (const l of advertised.slice(1)) assert.match(l, /^\w+:\/\/127\.0\.0\.1:\d+$/);
    const mount = kafka.volumeMounts.find((m: any) => m.mountPath === '/etc/kafka-users');
    assert.equal(mount?.readOnly, true);
    const volume = pod.volumes.find((v: any) => v.name === mount.name).projected;
    assert.equal(volume.defaultMode, 0o440, 'readable by the broker (fsGroup) and no one else');
    assert.deepEqual(
      volume.sources.map((x: any) => [
        x.secret.name,
        x.secret.items.map((i: any) => `${i.key}->${i.path}`).join(),
        x.secret.optional ?? false,
      ]),
      [
        ['cpu-kafka-admin', 'password->admin', false],
        ['cpu-kafka-sampler', 'password->sampler', false],
        ['cpu-kafka-sink', 'password->sink', false],
        // Kafka Connect's user, where the connect component runs (and its Secret is).
        ['cpu-kafka-connect', 'password->connect', true],
      ],
    );
    assert.equal(pod.securityContext.fsGroup, pod.securityContext.runAsGroup);
    // No password in the broker's variables; each reaches kafka-configs through a file, never its arguments.
    assert.deepEqual(
      kafka.env.filter((e: any) => /PASSWORD/.test(e.name)),
      [],
    );
    const script: string = kafka.args[0];
    assert.match(
      script,
      /names="admin sampler sink"\n\s*\[ -f \/etc\/kafka-users\/connect \] && names="\$names connect"\n\s*for u in \$names; do/,
    );
    assert.match(script, /kafka-configs\.sh --alter --entity-type users --entity-name "\$u" --add-config-file \/tmp\/kafka\/scram/);
    assert.match(script, /"\/opt\/kafka\/bin\/\$1" --bootstrap-server 127\.0\.0\.1:9094 /, 'on the INTERNAL listener');
    assert.doesNotMatch(script, /--add-config[ =]/);
  });

  test(`${name}: the sampler and the sink log in with SCRAM-SHA-512, the password from their Secret only`, () => {
    const objs = render();
    for (const [kind, workload, user] of [
      ['DaemonSet', 'cpu-sampler', 'sampler'],
      ['Deployment', 'cpu-sink', 'sink'],
    ]) {
      const c = find(objs, kind, workload).spec.template.spec.containers[0];
      const config = find(objs, 'ConfigMap', c.envFrom[0].configMapRef.name).data;
      assert.equal(config.KAFKA_CONFIG_SECURITY_PROTOCOL, 'SASL_PLAINTEXT');
      assert.equal(config.KAFKA_CONFIG_SASL_MECHANISMS, 'SCRAM-SHA-512');
      assert.equal(config.KAFKA_CONFIG_SASL_PASSWORD, undefined, `no password in ${workload}'s ConfigMap`);
      assert.equal(env(c, 'KAFKA_CONFIG_SASL_USERNAME').value, user);
      const password = env(c, 'KAFKA_CONFIG_SASL_PASSWORD');
      assert.equal(password.value, undefined);
      assert.deepEqual(password.valueFrom, { secretKeyRef: { name: `cpu-kafka-${user}`, key: 'password' } });
    }
  });

  test(`${name}: the broker sets exactly the ACLs the README lists, on the topics and group the apps use; the topic Job logs in as admin`, () => {
    const objs = render();
    const job = find(objs, 'Job', 'cpu-kafka-topics').spec.template.spec.containers[0];
    assert.deepEqual(env(job, 'KAFKA_ADMIN_PASSWORD')?.valueFrom, { secretKeyRef: { name: 'cpu-kafka-admin', key: 'password' } });
    assert.deepEqual(
      job.env.filter((e: any) => /PASSWORD/.test(e.name)).map((e: any) => e.name),
      ['KAFKA_ADMIN_PASSWORD'],
    );
    const kafka = find(objs, 'StatefulSet', 'cpu-kafka').spec.template.spec.containers[0];
    const [from] = kafka.envFrom;
    assert.equal(from.prefix, 'ACL_');
    const vars = Object.fromEntries(
      Object.entries(find(objs, 'ConfigMap', from.configMapRef.name).data as Record<string, string>).map(([k, v]) => [`ACL_${k}`, v]),
    );
    const sink = find(
      objs,
      'ConfigMap',
      find(objs, 'Deployment', 'cpu-sink').spec.template.spec.containers[0].envFrom[0].configMapRef.name,
    ).data;
    const sampler = find(
      objs,
      'ConfigMap',
      find(objs, 'DaemonSet', 'cpu-sampler').spec.template.spec.containers[0].envFrom[0].configMapRef.name,
    ).data;
    // What the connect component's worker and connector Job use: the user connect's ACLs are on these.
    const component = join(root, 'k8s/components/connect');
    const worker = properties(readFileSync(join(component, 'worker.properties'), 'utf8'));
    const connectorJob = parseDocument(readFileSync(join(component, 'connect-connector-job.yaml'), 'utf8')).toJS();
    const connect = {
      groupId: worker.get('group.id'),
      topicPrefix: vars.ACL_CONNECT_TOPIC_PREFIX,
      sinkGroupId: `connect-${env(connectorJob.spec.template.spec.containers[0], 'CONNECTOR').value}`,
    };
    assert.equal(vars.ACL_CONNECT_GROUP_ID, connect.groupId);
    assert.equal(vars.ACL_CONNECT_SINK_GROUP_ID, connect.sinkGroupId);
    for (const t of ['config', 'offset', 'status'])
      assert.ok(worker.get(`${t}.storage.topic`)?.startsWith(connect.topicPrefix), `${t}.storage.topic starts with the ACL's prefix`);
    // Each ACL as principal, operation, resource type, resource name (a prefix: `name*`).
    const acls = brokerAcls(kafka.args[0], vars).flatMap((args) => {
      const value = (flag: string) => args.filter((_, i) => args[i - 1] === flag);
      const principal = `User:${args[0]}`;
      const prefixed = value('--resource-pattern-type')[0] === 'prefixed' ? '*' : '';
      const resources = ['--topic', '--group', '--cluster', '--transactional-id'].flatMap((f) =>
        value(f).map((n) => `${f.slice(2)}:${n}${prefixed}`),
      );
      assert.equal(resources.length, 1, `one resource per ACL line: ${args.join(' ')}`);
      return value('--operation').map((op) => `${principal} ${op} ${resources[0]}`);
    });
    assert.deepEqual(
      acls.sort(),
      [
        `User:sampler Describe topic:${sampler.KAFKA_TOPIC}`,
        `User:sampler Write topic:${sampler.KAFKA_TOPIC}`,
        `User:sink Describe topic:${sink.KAFKA_DLQ_TOPIC}`,
        `User:sink Describe topic:${sink.KAFKA_TOPIC}`,
        `User:sink Read group:${sink.KAFKA_GROUP_ID}`,
        `User:sink Read topic:${sink.KAFKA_TOPIC}`,
        `User:sink Write topic:${sink.KAFKA_DLQ_TOPIC}`,
        // Kafka Connect (the connect component), where the Secret cpu-kafka-connect is.
        `User:connect Read group:${connect.groupId}`,
        ...['Create', 'Describe', 'Read', 'Write'].map((op) => `User:connect ${op} topic:${connect.topicPrefix}*`),
        `User:connect Read group:${connect.sinkGroupId}`,
        `User:connect Describe topic:${sink.KAFKA_TOPIC}`,
        `User:connect Read topic:${sink.KAFKA_TOPIC}`,
        `User:connect Describe topic:${sink.KAFKA_DLQ_TOPIC}`,
        `User:connect Write topic:${sink.KAFKA_DLQ_TOPIC}`,
      ].sort(),
    );
    assert.equal(sink.KAFKA_GROUP_ID, 'cpu-sink');
  });
}

const withConnect: Array<[string, () => any[]]> = [
  [
    'the eks overlay with the connect component',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-auth-connect-'));
      try {
        return objects(run('kubectl', ['kustomize', overlayWithConnect(dir, 'eks')]));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  ],
  ['the chart with kafkaConnect.enabled', () => chart(['kafkaConnect.enabled=true'])],
];

for (const [name, render] of withConnect) {
  test(`${name}: the Connect worker logs in as connect, with cpu-sink's protocol and the password from its Secret only`, () => {
    const objs = render();
    const c = find(objs, 'Deployment', 'cpu-connect').spec.template.spec.containers[0];
    const sink = find(objs, 'ConfigMap', 'cpu-sink');
    assert.deepEqual(env(c, 'KAFKA_SECURITY_PROTOCOL').valueFrom.configMapKeyRef, {
      name: sink.metadata.name,
      key: 'KAFKA_CONFIG_SECURITY_PROTOCOL',
      optional: true,
    });
    assert.equal(sink.data.KAFKA_CONFIG_SECURITY_PROTOCOL, 'SASL_PLAINTEXT');
    assert.deepEqual(env(c, 'KAFKA_SASL_MECHANISM').valueFrom.configMapKeyRef.key, 'KAFKA_CONFIG_SASL_MECHANISMS');
    assert.deepEqual(env(c, 'KAFKA_PASSWORD').valueFrom, { secretKeyRef: { name: 'cpu-kafka-connect', key: 'password', optional: true } });
    assert.deepEqual(
      c.env.filter((e: any) => e.value !== undefined && /PASSWORD|SASL/.test(e.name)),
      [],
      'no password written out',
    );
    assert.match(c.args[0], /username=\\"connect\\"/);
    const broker = find(objs, 'StatefulSet', 'cpu-kafka').spec.template.spec;
    const users = broker.volumes.find((v: any) => v.name === 'kafka-users').projected.sources.map((x: any) => x.secret.name);
    assert.ok(users.includes('cpu-kafka-connect'), 'the broker reads its password');
  });
}

const withoutAuth: Array<[string, () => any[]]> = [
  ['the local overlay', () => objects(run('kubectl', ['kustomize', join(root, 'k8s/overlays/local')]))],
  ['the chart with kafkaAuth.enabled=false', () => chart(['kafkaAuth.enabled=false'])],
];

for (const [name, render] of withoutAuth) {
  test(`${name}: no SASL and no Kafka users, and still the broker's own listeners on 127.0.0.1 only`, () => {
    const objs = render();
    assert.equal(find(objs, 'ConfigMap', 'cpu-kafka-config').data['auth.properties'], undefined);
    const all = listeners(brokerSettings(objs));
    assert.deepEqual(
      all.map((l) => `${l.name} ${l.host || '*'}:${l.port} ${l.protocol}`),
      ['CLIENT *:9092 PLAINTEXT', 'INTERNAL 127.0.0.1:9094 PLAINTEXT', 'CONTROLLER 127.0.0.1:9093 PLAINTEXT'],
    );
    // No SASL setting, no password variable, no reference to a Kafka user's Secret, in any pod or ConfigMap.
    const containers = objs.flatMap((o) => o.spec?.template?.spec?.containers ?? []);
    const settings = [
      ...containers.flatMap((c: any) => (c.env ?? []).map((e: any) => e.name)),
      ...objs.filter((o) => o.kind === 'ConfigMap').flatMap((o) => Object.keys(o.data ?? {})),
    ];
    assert.deepEqual(
      settings.filter((n) => /SASL|KAFKA_\w*PASSWORD|SINK_GROUP_ID/.test(n)),
      [],
    );
    const refs = containers.flatMap((c: any) => (c.env ?? []).map((e: any) => e.valueFrom?.secretKeyRef?.name).filter(Boolean));
    assert.deepEqual(
      refs.filter((r: string) => r.startsWith('cpu-kafka-')),
      [],
    );
    assert.deepEqual(
      objs.filter((o) => o.kind === 'Secret' && o.metadata.name.startsWith('cpu-kafka-')),
      [],
    );
    const broker = find(objs, 'StatefulSet', 'cpu-kafka').spec.template.spec;
    assert.deepEqual(
      broker.volumes.filter((v: any) => v.projected),
      [],
      'no users mounted into the broker',
    );
    assert.equal(broker.containers[0].envFrom, undefined, 'no ACL settings for the broker');
  });
}

test("the chart makes the users' Secrets with random passwords, or leaves them to you (kafkaAuth.createSecrets=false)", () => {
  const secrets = (objs: any[]) => objs.filter((o) => o.kind === 'Secret' && o.metadata.name.startsWith('cpu-kafka-'));
  const [a, b] = [secrets(chart()), secrets(chart())];
  assert.deepEqual(
    a.map((s) => s.metadata.name),
    ['cpu-kafka-admin', 'cpu-kafka-sampler', 'cpu-kafka-sink'],
  );
  const passwords = a.map((s) => Buffer.from(s.data.password, 'base64').toString());
  for (const p of passwords) assert.match(p, /^[A-Za-z0-9]{32}$/);
  assert.equal(new Set(passwords).size, 3, 'one password per user');
  // Made at rendering, not written in the chart: another rendering has others (an install keeps
  // them on upgrade by reading them back; test/e2e/helm.e2e.ts checks that on the cluster).
  b.forEach((s, i) => assert.notEqual(s.data.password, a[i].data.password));
  assert.deepEqual(secrets(chart(['kafkaAuth.createSecrets=false'])), []);
  // With Kafka Connect, its user's too.
  assert.deepEqual(
    secrets(chart(['kafkaConnect.enabled=true'])).map((s) => s.metadata.name),
    ['cpu-kafka-admin', 'cpu-kafka-sampler', 'cpu-kafka-sink', 'cpu-kafka-connect'],
  );
  // Other names and keys: the references and the Secrets follow.
  const renamed = chart(['secrets.cpuKafkaSink.name=my-sink', 'secrets.cpuKafkaSink.keys.password=pw']);
  assert.deepEqual(Object.keys(find(renamed, 'Secret', 'my-sink').data), ['pw']);
  const ref = env(find(renamed, 'Deployment', 'cpu-sink').spec.template.spec.containers[0], 'KAFKA_CONFIG_SASL_PASSWORD').valueFrom
    .secretKeyRef;
  assert.deepEqual([ref.name, ref.key], ['my-sink', 'pw']);
});
