/**
 * No secret value in what the project ships: every object the overlays and the chart render is
 * scanned for credentials written out (a Secret with data, a password-like variable or key with a
 * literal value, a private key, an AWS access key id). Secrets are referenced, made by users or by
 * the cluster, never committed. The one exception is written down: the local overlay's S3 server
 * (moto) accepts any key, and its placeholder says so. The chart's kafka-auth Secrets have values,
 * made when it is rendered: a value that differs between two renderings is made, not committed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { kubernetesVersion, tool } from '../../scripts/k8s-tools.ts';
import { chartTemplateArgs, root } from '../helpers.ts';

/** Values that look like credentials but are not, each with its reason. */
const allowed = new Map([
  ['local', 'the local S3 server (moto) takes any access key id'],
  ['local-only-not-a-secret', "the local S3 server's placeholder secret key: moto checks none"],
]);

const secretName = /pass(word)?|secret|token|credential|private[_-]?key|api[_-]?key|sasl_jaas|jaas/i;
const secretValue = [
  /-----BEGIN [A-Z ]*PRIVATE KEY-----/, // a private key
  /\b(AKIA|ASIA)[0-9A-Z]{16}\b/, // an AWS access key id
  /password\s*=\s*"[^"$]+"/i, // a JAAS line with a password in it
];

interface Finding {
  where: string;
  what: string;
}

/** Every place in one rendered object where a credential is written out. */
export function findSecrets(obj: { kind?: string; metadata?: { name?: string } }): Finding[] {
  const at = `${obj.kind}/${obj.metadata?.name}`;
  const found: Finding[] = [];
  const literal = (v: unknown) => typeof v === 'string' && v !== '' && !allowed.has(v) && !/^\{\{.*\}\}$/.test(v);
  if (obj.kind === 'Secret') {
    for (const field of ['data', 'stringData'] as const) {
      for (const [k, v] of Object.entries((obj as Record<string, Record<string, string> | undefined>)[field] ?? {})) {
        const plain = field === 'data' ? Buffer.from(String(v), 'base64').toString() : String(v);
        if (literal(plain)) found.push({ where: `${at} ${field}.${k}`, what: 'a Secret with a value' });
      }
    }
  }
  const walk = (v: unknown, path: string) => {
    if (Array.isArray(v)) return v.forEach((x, i) => walk(x, `${path}[${i}]`));
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      // env: [{ name: AWS_SECRET_ACCESS_KEY, value: ... }] (valueFrom is fine)
      if (typeof o.name === 'string' && 'value' in o && secretName.test(o.name) && literal(o.value))
        found.push({ where: `${at} ${path} (${o.name})`, what: 'a credential in a variable' });
      for (const [k, x] of Object.entries(o)) {
        if (typeof x === 'string' && secretName.test(k) && literal(x) && obj.kind !== 'Secret' && !k.endsWith('Ref'))
          found.push({ where: `${at} ${path}.${k}`, what: 'a credential-named key with a value' });
        walk(x, `${path}.${k}`);
      }
    } else if (typeof v === 'string') {
      for (const re of secretValue) if (re.test(v)) found.push({ where: `${at} ${path}`, what: `text matching ${re}` });
      // KEY=VALUE lines (env files, properties) inside ConfigMaps and the like
      for (const line of v.split('\n')) {
        const m = /^\s*([A-Za-z0-9_.-]+)\s*[=:]\s*(\S+)\s*$/.exec(line);
        if (m && secretName.test(m[1]) && literal(m[2]) && !/^\$/.test(m[2]))
          found.push({ where: `${at} ${path}: ${m[1]}`, what: 'a credential in a file' });
      }
    }
  };
  walk(obj, '');
  return found;
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const objects = (yaml: string) =>
  parseAllDocuments(yaml)
    .map((d) => d.toJS())
    .filter(Boolean);

const helm = (values: string[]) => run(tool('helm'), [...chartTemplateArgs(values), '--kube-version', kubernetesVersion]);

const renderings: Array<[string, () => string]> = [
  ['k8s/overlays/local', () => run('kubectl', ['kustomize', join(root, 'k8s/overlays/local')])],
  ['k8s/overlays/eks', () => run('kubectl', ['kustomize', join(root, 'k8s/overlays/eks')])],
  ['the chart, defaults', () => helm([])],
  ['the chart, every option on', () => helm(['monitoring.enabled=true', 'monitoringOperator.enabled=true'])],
  ['the chart, every option off', () => helm(['kafkaAuth.enabled=false', 'networkPolicies.enabled=false'])],
];

/** The findings of two renderings that are the same in both: a value made at rendering differs. */
export function committed(render: () => unknown[]): Finding[] {
  const [a, b] = [render(), render()];
  const fresh = new Set<string>();
  a.forEach((o: any, i) => {
    if (o?.kind !== 'Secret') return;
    for (const [k, v] of Object.entries(o.data ?? {}))
      if (b[i] && (b[i] as any).data?.[k] !== v) fresh.add(`Secret/${o.metadata.name} data.${k}`);
  });
  return a.flatMap((o) => findSecrets(o as never)).filter((f) => !fresh.has(f.where));
}

for (const [name, render] of renderings) {
  test(`no secret value in ${name}`, () => {
    const found = committed(() => objects(render()));
    assert.deepEqual(found, [], found.map((f) => `${f.where}: ${f.what}`).join('\n'));
  });
}

// Beyond the renderings: every file in git, as text. This file alone writes such values, as the
// examples the scan must find.
test('no private key, AWS access key id or JAAS password in any committed file', () => {
  const files = run('git', ['ls-files', '-z']).split('\0').filter(Boolean);
  assert.ok(files.length > 50, `git lists the checkout's files (${files.length})`);
  const self = 'test/integration/no-secrets.test.ts';
  assert.ok(files.includes(self));
  const found: string[] = [];
  for (const file of files.filter((f) => f !== self)) {
    const path = join(root, file);
    if (!existsSync(path)) continue; // deleted in the working tree, not yet committed
    const text = readFileSync(path);
    if (text.includes(0)) continue; // binary
    for (const re of secretValue) if (re.test(text.toString('utf8'))) found.push(`${file}: text matching ${re}`);
  }
  assert.deepEqual(found, []);
});

test('the scan finds what it must: a Secret with data, a password variable, a JAAS password, a key id', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const cases = [
    { kind: 'Secret', metadata: { name: 's' }, data: { password: b64('hunter2') } },
    { kind: 'Deployment', metadata: { name: 'd' }, spec: { env: [{ name: 'KAFKA_CONFIG_SASL_PASSWORD', value: 'hunter2' }] } },
    {
      kind: 'ConfigMap',
      metadata: { name: 'c' },
      data: {
        'server.properties': 'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="a" password="b";',
      },
    },
    { kind: 'ConfigMap', metadata: { name: 'k' }, data: { 'x.env': 'AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP' } },
  ];
  for (const c of cases) assert.ok(findSecrets(c).length > 0, `${c.kind}/${c.metadata.name} not found`);
  // ...and leaves alone what is not one: references, placeholders written down above, empty values.
  const fine = [
    {
      kind: 'Deployment',
      metadata: { name: 'd' },
      spec: { env: [{ name: 'AWS_SECRET_ACCESS_KEY', valueFrom: { secretKeyRef: { name: 'aws-secret' } } }] },
    },
    { kind: 'Secret', metadata: { name: 'local' }, stringData: { AWS_SECRET_ACCESS_KEY: 'local-only-not-a-secret' } },
    { kind: 'ConfigMap', metadata: { name: 'c' }, data: { 'x.env': 'PASSWORD_FILE=$HOME/x' } },
  ];
  for (const c of fine) assert.deepEqual(findSecrets(c), [], `${c.kind}/${c.metadata.name}`);
  // A Secret whose value is the same in every rendering is committed; one made anew each time is not.
  const secret = (password: string) => ({ kind: 'Secret', metadata: { name: 'k' }, data: { password: b64(password) } });
  assert.equal(committed(() => [secret('hunter2')]).length, 1);
  let n = 0;
  assert.deepEqual(
    committed(() => [secret(`made-${n++}`)]),
    [],
  );
});
