import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import {
  buildReading,
  encodeReading,
  parseCgroupV1,
  parseCgroupV2,
  parseProcStat,
  type CgroupSample,
  type Reading,
  type Source,
} from '../../sampler.ts';

type Snapshot = Parameters<typeof buildReading>[0];

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
const schema: object = JSON.parse(readFileSync(new URL('../../schema/cpu-reading.v1.schema.json', import.meta.url), 'utf8'));

const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats.default(ajv);
const validate = ajv.compile(schema);

const source: Source = { node: 'ip-10-0-1-23.eu-west-1.compute.internal', pod: 'cpu-sampler-7d9f8-x2k4q', namespace: 'monitoring' };
const startMs = Date.UTC(2025, 0, 1, 12, 0, 0);
const window = { startMs, endMs: startMs + 60_000 };
const noCgroup = 'no cgroup CPU accounting on this system (not Linux, or cgroups not mounted)';

const v2 = (name: 'a' | 'b') => parseCgroupV2(fixture(`cgroup-v2/cpu.stat-${name}`), fixture('cgroup-v2/cpu.max-limited'));
const v1 = (name: 'a' | 'b') =>
  parseCgroupV1(
    fixture(`cgroup-v1/cpuacct.usage-${name}`),
    fixture('cgroup-v1/cpu.cfs_quota_us-unlimited'),
    fixture('cgroup-v1/cpu.cfs_period_us'),
  );

function snapshot(monoNs: bigint, stat: string, cgroup: CgroupSample | undefined): Snapshot {
  return { monoNs, host: parseProcStat(fixture(`proc-stat-${stat}.txt`)), cgroup };
}

const t0 = 5_000_000_000n;
const t60 = t0 + 60_000_000_000n;

function reading(a: Snapshot, b: Snapshot): Reading {
  const { reading, skipped } = buildReading(a, b, window, source, noCgroup);
  assert.ok(reading, `skipped: ${skipped}`);
  return reading;
}

const withV2 = () => reading(snapshot(t0, 'a', v2('a')), snapshot(t60, 'b', v2('b')));
const withV1 = () => reading(snapshot(t0, 'b', v1('a')), snapshot(t60, 'c', v1('b')));
const withoutCgroup = () => reading(snapshot(t0, 'a', undefined), snapshot(t60, 'b', undefined));

function errors(message: unknown): ErrorObject[] {
  assert.equal(validate(message), false, 'the schema accepted a broken message');
  return validate.errors ?? [];
}

// ---------------------------------------------------------------- buildReading

test('buildReading combines host and container figures over the window', () => {
  assert.deepEqual(withV2(), {
    schema_version: 1,
    window_start: '2025-01-01T12:00:00.000Z',
    window_end: '2025-01-01T12:01:00.000Z',
    window_seconds: 60,
    node: source.node,
    pod: source.pod,
    namespace: source.namespace,
    host: { cores: 2, busy_percent: 45, user_percent: 30, system_percent: 15, iowait_percent: 5, steal_percent: 0, idle_percent: 50 },
    container: { cgroup_version: 2, cpu_percent: 50, cores_used: 0.25, limit_cores: 0.5, relative_to: 'limit' },
  });
});

test('buildReading measures window_seconds on the monotonic clock, not the wall clock', () => {
  const r = reading(snapshot(t0, 'a', undefined), snapshot(t0 + 59_875_000_000n, 'b', undefined));
  assert.equal(r.window_seconds, 59.875);
  assert.equal(r.window_end, '2025-01-01T12:01:00.000Z');
});

test('buildReading without a cgroup sample sets container to null and gives the reason', () => {
  const r = withoutCgroup();
  assert.equal(r.container, null);
  assert.equal(r.container_unavailable_reason, noCgroup);
});

test('buildReading skips a window in which no monotonic time passed', () => {
  const result = buildReading(snapshot(t0, 'a', v2('a')), snapshot(t0, 'b', v2('b')), window, source, noCgroup);
  assert.deepEqual(result, { skipped: 'zero-length window' });
});

test('buildReading skips a window shorter than a millisecond, whose length would round to 0', () => {
  const r = buildReading(snapshot(t0, 'a', undefined), snapshot(t0 + 400_000n, 'b', undefined), window, source, noCgroup);
  assert.deepEqual(r, { skipped: 'zero-length window' });
});

test('buildReading skips a window whose wall-clock end is not after its start', () => {
  const result = buildReading(snapshot(t0, 'a', v2('a')), snapshot(t60, 'b', v2('b')), { startMs, endMs: startMs }, source, noCgroup);
  assert.deepEqual(result, { skipped: 'zero-length window' });
});

test('buildReading skips a window in which the host counters went backwards', () => {
  const result = buildReading(snapshot(t0, 'a', v2('a')), snapshot(t60, 'reset', v2('b')), window, source, noCgroup);
  assert.deepEqual(result, { skipped: 'host counters went backwards or did not move' });
});

test('buildReading skips a window in which the container counter went backwards', () => {
  const result = buildReading(snapshot(t0, 'a', v2('b')), snapshot(t60, 'b', v2('a')), window, source, noCgroup);
  assert.deepEqual(result, { skipped: 'container counter went backwards' });
});

// ---------------------------------------------------------------- encodeReading

test('encodeReading keys the message by the node name', () => {
  assert.equal(encodeReading(withV2()).key, source.node);
});

test('encodeReading keys the message by the pod name when there is no node name', () => {
  assert.equal(encodeReading({ ...withV2(), node: '' }).key, source.pod);
});

test('encodeReading puts the reading in the value as JSON', () => {
  const r = withV2();
  assert.deepEqual(JSON.parse(encodeReading(r).value), r);
});

test('encodeReading sets the content-type and schema-version headers', () => {
  assert.deepEqual(encodeReading(withV2()).headers, { 'content-type': 'application/json', 'schema-version': '1' });
});

// ---------------------------------------------------------------- schema

for (const [name, build] of [
  ['a cgroup v2 reading relative to its limit', withV2],
  ['a cgroup v1 reading relative to the host cores', withV1],
  ['a reading without container figures', withoutCgroup],
] as const) {
  test(`the encoded value of ${name} validates against the schema`, () => {
    const message: unknown = JSON.parse(encodeReading(build()).value);
    assert.equal(validate(message), true, ajv.errorsText(validate.errors));
  });
}

test('the schema rejects a message without window_end', () => {
  const { window_end: _, ...message } = withV2();
  assert.ok(errors(message).some((e) => e.keyword === 'required' && e.params.missingProperty === 'window_end'));
});

test('the schema rejects a percentage above 100', () => {
  const r = withV2();
  const message = { ...r, host: { ...r.host, busy_percent: 100.5 } };
  assert.ok(errors(message).some((e) => e.keyword === 'maximum' && e.instancePath === '/host/busy_percent'));
});

test('the schema rejects a null container without container_unavailable_reason', () => {
  const { container_unavailable_reason: _, ...message } = withoutCgroup();
  assert.ok(errors(message).some((e) => e.keyword === 'required' && e.params.missingProperty === 'container_unavailable_reason'));
});

test('the schema rejects a property it does not define', () => {
  const message = { ...withV2(), hostname: 'extra' };
  assert.ok(errors(message).some((e) => e.keyword === 'additionalProperties' && e.params.additionalProperty === 'hostname'));
});

test('the schema rejects a window_end that is not UTC', () => {
  const message = { ...withV2(), window_end: '2025-01-01T13:01:00.000+01:00' };
  assert.ok(errors(message).some((e) => e.keyword === 'pattern' && e.instancePath === '/window_end'));
});
