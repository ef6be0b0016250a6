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
import { parseAllDocuments } from 'yaml';
import { kubernetesVersion, tool } from '../../scripts/k8s-tools.ts';
import { chartTemplateArgs, root } from '../helpers.ts';

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

  test(`${name}: the broker advertises SASL to clients and reads the three users' passwords from their Secrets, as files`, () => {
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
      volume.sources.map((x: any) => [x.secret.name, x.secret.items.map((i: any) => `${i.key}->${i.path}`).join()]),
      [
        ['cpu-kafka-admin', 'password->admin'],
        ['cpu-kafka-sampler', 'password->sampler'],
        ['cpu-kafka-sink', 'password->sink'],
      ],
    );
    assert.equal(pod.securityContext.fsGroup, pod.securityContext.runAsGroup);
    // No password in the broker's variables; each reaches kafka-configs through a file, never its arguments.
    assert.deepEqual(
      kafka.env.filter((e: any) => /PASSWORD/.test(e.name)),
      [],
    );
    const script: string = kafka.args[0];
    assert.match(script, /for u in admin sampler sink; do/);
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
    const script: string = kafka.args[0];
    const expand = (word: string) => word.replace(/^"?\$\{?(\w+)\}?"?$/, (_, v: string) => vars[v] ?? `<unset ${v}>`);
    const calls = (fn: string) =>
      script
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.startsWith(`${fn} `))
        .map((l) => l.split(/\s+/).slice(1).map(expand));
    // Each ACL as principal, operation, resource type, resource name.
    const acls = calls('acl').flatMap((args) => {
      const value = (flag: string) => args.filter((_, i) => args[i - 1] === flag);
      const principal = `User:${args[0]}`;
      const resources = ['--topic', '--group', '--cluster', '--transactional-id'].flatMap((f) => value(f).map((n) => `${f.slice(2)}:${n}`));
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
      ].sort(),
    );
    assert.equal(sink.KAFKA_GROUP_ID, 'cpu-sink');
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

test("the chart makes the three users' Secrets with random passwords, or leaves them to you (kafkaAuth.createSecrets=false)", () => {
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
  // Other names and keys: the references and the Secrets follow.
  const renamed = chart(['secrets.cpuKafkaSink.name=my-sink', 'secrets.cpuKafkaSink.keys.password=pw']);
  assert.deepEqual(Object.keys(find(renamed, 'Secret', 'my-sink').data), ['pw']);
  const ref = env(find(renamed, 'Deployment', 'cpu-sink').spec.template.spec.containers[0], 'KAFKA_CONFIG_SASL_PASSWORD').valueFrom
    .secretKeyRef;
  assert.deepEqual([ref.name, ref.key], ['my-sink', 'pw']);
});
