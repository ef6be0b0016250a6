/**
 * The kafka-auth component as the eks overlay and the chart render it, offline: SASL/SCRAM on the
 * broker's client listener and nothing reachable from other pods without it, the programs' SASL
 * settings with the password from a Secret only, and exactly the least-privilege ACLs of the
 * README from the topic Job. (k8s.test.ts validates the same renderings with kubeconform and
 * kube-score; no-secrets.test.ts scans them for written-out credentials.)
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

const renderings: Array<[string, () => any[]]> = [
  ['overlay eks', () => objects(run('kubectl', ['kustomize', join(root, 'k8s/overlays/eks')]))],
  ['the chart', () => objects(run(tool('helm'), [...chartTemplateArgs(), '--kube-version', kubernetesVersion]))],
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
    assert.match(props.get('listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config') ?? '', /ScramLoginModule required;$/);
    assert.equal(props.get('authorizer.class.name'), 'org.apache.kafka.metadata.authorizer.StandardAuthorizer');
    assert.equal(props.get('allow.everyone.if.no.acl.found'), 'false');
    assert.deepEqual(props.get('super.users')?.split(';').sort(), ['User:ANONYMOUS', 'User:admin']);
  });

  test(`${name}: the broker advertises SASL to clients and sets the admin's password from the Secret cpu-kafka-admin`, () => {
    const objs = render();
    const kafka = find(objs, 'StatefulSet', 'cpu-kafka').spec.template.spec.containers[0];
    const names = kafka.env.map((e: any) => e.name);
    assert.ok(
      names.indexOf('POD_NAMESPACE') < names.indexOf('KAFKA_ADVERTISED_LISTENERS'),
      'POD_NAMESPACE first: $(VAR) expands earlier variables only',
    );
    const advertised = env(kafka, 'KAFKA_ADVERTISED_LISTENERS').value.split(',');
    assert.match(advertised[0], /^SASL_PLAINTEXT:\/\/cpu-kafka\.\$\(POD_NAMESPACE\)\.svc:9092$/);
    for (const l of advertised.slice(1)) assert.match(l, /^\w+:\/\/127\.0\.0\.1:\d+$/);
    const ref = env(kafka, 'KAFKA_ADMIN_PASSWORD').valueFrom.secretKeyRef;
    assert.deepEqual([ref.name, ref.key], ['cpu-kafka-admin', 'password']);
    // The password reaches kafka-configs through a file, never its arguments.
    const script: string = kafka.args[0];
    assert.match(
      script,
      /kafka-configs\.sh --bootstrap-server 127\.0\.0\.1:9094 --alter\s*\\?\s*--entity-type users --entity-name admin --add-config-file "\$f"/,
    );
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

  test(`${name}: the topic Job makes the users sampler and sink and exactly the ACLs the README lists`, () => {
    const objs = render();
    const job = find(objs, 'Job', 'cpu-kafka-topics').spec.template.spec.containers[0];
    const vars = { ...find(objs, 'ConfigMap', job.envFrom[0].configMapRef.name).data };
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
    for (const [variable, secret] of [
      ['KAFKA_ADMIN_PASSWORD', 'cpu-kafka-admin'],
      ['KAFKA_SAMPLER_PASSWORD', 'cpu-kafka-sampler'],
      ['KAFKA_SINK_PASSWORD', 'cpu-kafka-sink'],
    ])
      assert.deepEqual(env(job, variable)?.valueFrom, { secretKeyRef: { name: secret, key: 'password' } });
    const script: string = job.args[0];
    const expand = (word: string) => word.replace(/^"?\$\{?(\w+)\}?"?$/, (_, v: string) => vars[v] ?? `<unset ${v}>`);
    const calls = (fn: string) =>
      script
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.startsWith(`${fn} `))
        .map((l) => l.split(/\s+/).slice(1).map(expand));
    assert.deepEqual(
      calls('user').map(([name, password]) => [name, password]),
      [
        ['sampler', '<unset KAFKA_SAMPLER_PASSWORD>'],
        ['sink', '<unset KAFKA_SINK_PASSWORD>'],
      ],
      'the users, each with the password variable from its Secret',
    );
    // Each ACL as principal, operation, resource type, resource name.
    const acls = calls('acl').flatMap((args) => {
      const value = (flag: string) => args.filter((_, i) => args[i - 1] === flag);
      const [principal] = value('--allow-principal');
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

test('the local overlay has no kafka-auth yet: its end-to-end test would first have to create the Secrets', () => {
  const objs = objects(run('kubectl', ['kustomize', join(root, 'k8s/overlays/local')]));
  assert.equal(find(objs, 'ConfigMap', 'cpu-kafka-config').data['auth.properties'], undefined);
  // The base still binds the controller to 127.0.0.1 there.
  const controller = listeners(brokerSettings(objs)).find((l) => l.name === 'CONTROLLER');
  assert.equal(controller?.host, '127.0.0.1');
});
