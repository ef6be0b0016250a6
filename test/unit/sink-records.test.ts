import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { buildReading, encodeReading, parseCgroupV2, parseProcStat } from '../../sampler.ts';
import {
  checkRecord, dropThrough, encodeFile, objectKey, rotationDue, timePartition,
  type FileRecord, type Limits, type OpenFile,
} from '../../sink.ts';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');

/** A valid v1 message, as the sampler would produce it for a minute ending at 06:00 UTC. */
const valid = {
  schema_version: 1,
  window_start: '2026-11-27T05:59:00.000Z',
  window_end: '2026-11-27T06:00:00.000Z',
  window_seconds: 60,
  node: 'ip-10-0-1-23.eu-west-1.compute.internal',
  pod: 'cpu-sampler-7d9f8-x2k4q',
  namespace: 'monitoring',
  host: { cores: 2, busy_percent: 45, user_percent: 30, system_percent: 15, iowait_percent: 5, steal_percent: 0, idle_percent: 50 },
  container: { cgroup_version: 2, cpu_percent: 50, cores_used: 0.25, limit_cores: 0.5, relative_to: 'limit' },
};

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const maxBytes = 65_536;

const record = (offset: number, line = `{"n":${offset}}`): FileRecord => ({ offset, line: Buffer.from(line) });
const records = (...offsets: number[]) => offsets.map((o) => record(o));

// ---------------------------------------------------------------- checkRecord

test('checkRecord accepts a valid v1 reading and returns its window_start', () => {
  assert.deepEqual(checkRecord(json(valid), maxBytes), { ok: true, windowStart: '2026-11-27T05:59:00.000Z', line: json(valid) });
});

test('checkRecord accepts a reading exactly as the sampler encodes it', () => {
  const startMs = Date.UTC(2025, 0, 1, 12, 0, 0);
  const snap = (monoNs: bigint, name: 'a' | 'b') => ({
    monoNs,
    host: parseProcStat(fixture(`proc-stat-${name}.txt`)),
    cgroup: parseCgroupV2(fixture(`cgroup-v2/cpu.stat-${name}`), fixture('cgroup-v2/cpu.max-limited')),
  });
  const { reading } = buildReading(snap(0n, 'a'), snap(60_000_000_000n, 'b'), { startMs, endMs: startMs + 60_000 },
    { node: 'node-1', pod: 'cpu-sampler-x2k4q', namespace: 'monitoring' }, 'no cgroup');
  assert.ok(reading);
  const value = Buffer.from(encodeReading(reading).value);
  assert.deepEqual(checkRecord(value, maxBytes), { ok: true, windowStart: '2025-01-01T12:00:00.000Z', line: value });
});

test('checkRecord accepts a reading without container figures when it gives the reason', () => {
  const message = { ...valid, container: null, container_unavailable_reason: 'no cgroup CPU accounting' };
  assert.equal(checkRecord(json(message), maxBytes).ok, true);
});

test('checkRecord calls a null value empty', () => {
  assert.deepEqual(checkRecord(null, maxBytes), { ok: false, reason: 'empty', detail: 'no value' });
});

test('checkRecord calls a zero-length value empty', () => {
  assert.deepEqual(checkRecord(Buffer.alloc(0), maxBytes), { ok: false, reason: 'empty', detail: 'no value' });
});

test('checkRecord accepts a record of exactly maxBytes', () => {
  const value = json(valid);
  assert.equal(checkRecord(value, value.length).ok, true);
});

test('checkRecord calls a record one byte over maxBytes oversize and gives both sizes', () => {
  const value = json(valid);
  assert.deepEqual(checkRecord(value, value.length - 1), {
    ok: false, reason: 'oversize', detail: `${value.length} bytes > ${value.length - 1}`,
  });
});

test('checkRecord judges the size before the content, so oversize garbage is oversize', () => {
  const result = checkRecord(Buffer.from('hello, world'), 4);
  assert.equal(result.ok === false && result.reason, 'oversize');
});

for (const [what, value] of [
  ['plain text', Buffer.from('hello')],
  ['a truncated JSON object', json(valid).subarray(0, 40)],
  ['JSON with a byte-order mark in front', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), json(valid)])],
] as const) {
  test(`checkRecord calls ${what} not-json, with the parser's message`, () => {
    const result = checkRecord(value, maxBytes);
    assert.ok(!result.ok);
    assert.equal(result.reason, 'not-json');
    assert.match(result.detail, /JSON/);
  });
}

test('checkRecord calls bytes that are not UTF-8 not-json, even inside an otherwise valid reading', () => {
  const bad = Buffer.from(JSON.stringify({ ...valid, node: 'node-\u0001' }).replace('\\u0001', '\u0001'));
  bad[bad.indexOf(0x01)] = 0xff;
  assert.deepEqual(checkRecord(bad, maxBytes), { ok: false, reason: 'not-json', detail: 'not valid UTF-8' });
  assert.deepEqual(checkRecord(Buffer.from([0xff, 0xfe]), maxBytes), { ok: false, reason: 'not-json', detail: 'not valid UTF-8' });
});

test('checkRecord writes a pretty-printed reading as one compact line', () => {
  const pretty = Buffer.from(JSON.stringify(valid, null, 2) + '\n');
  const result = checkRecord(pretty, maxBytes);
  assert.ok(result.ok);
  assert.deepEqual(result.line, json(valid));
});

test('checkRecord dead-letters a leap-second window_start that a Date cannot hold, instead of failing later', () => {
  const result = checkRecord(json({ ...valid, window_start: '2026-11-27T23:59:60Z' }), maxBytes);
  assert.ok(!result.ok);
  assert.equal(result.reason, 'schema');
  assert.match(result.detail, /window_start/);
});

for (const [what, text] of [
  ['JSON null', 'null'],
  ['a JSON number', '1'],
  ['a JSON string', '"schema_version"'],
  ['a JSON array', '[{"schema_version":1}]'],
] as const) {
  test(`checkRecord calls ${what} a schema-version problem, since it is not an object`, () => {
    assert.deepEqual(checkRecord(Buffer.from(text), maxBytes), {
      ok: false, reason: 'schema-version', detail: 'schema_version undefined is not 1',
    });
  });
}

test('checkRecord calls schema_version 2 a schema-version problem and names the version', () => {
  assert.deepEqual(checkRecord(json({ ...valid, schema_version: 2 }), maxBytes), {
    ok: false, reason: 'schema-version', detail: 'schema_version 2 is not 1',
  });
});

test('checkRecord calls an object without schema_version a schema-version problem', () => {
  const { schema_version: _, ...message } = valid;
  assert.deepEqual(checkRecord(json(message), maxBytes), {
    ok: false, reason: 'schema-version', detail: 'schema_version undefined is not 1',
  });
});

test('checkRecord calls schema_version "1" as a string a schema-version problem', () => {
  assert.deepEqual(checkRecord(json({ ...valid, schema_version: '1' }), maxBytes), {
    ok: false, reason: 'schema-version', detail: 'schema_version "1" is not 1',
  });
});

test('checkRecord calls a v1 message without window_end a schema problem and names the missing field', () => {
  const { window_end: _, ...message } = valid;
  assert.deepEqual(checkRecord(json(message), maxBytes), {
    ok: false, reason: 'schema', detail: "/ must have required property 'window_end'",
  });
});

test('checkRecord calls a percentage above 100 a schema problem and names its path', () => {
  const message = { ...valid, host: { ...valid.host, busy_percent: 100.5 } };
  assert.deepEqual(checkRecord(json(message), maxBytes), {
    ok: false, reason: 'schema', detail: '/host/busy_percent must be <= 100',
  });
});

test('checkRecord calls a window_start that is not UTC a schema problem and names its path', () => {
  const result = checkRecord(json({ ...valid, window_start: '2026-11-27T07:59:00.000+02:00' }), maxBytes);
  assert.ok(!result.ok);
  assert.equal(result.reason, 'schema');
  assert.match(result.detail, /^\/window_start /);
});

test('checkRecord calls a property the schema does not define a schema problem', () => {
  const result = checkRecord(json({ ...valid, hostname: 'extra' }), maxBytes);
  assert.ok(!result.ok);
  assert.equal(result.reason, 'schema');
  assert.match(result.detail, /additional properties/);
});

// ---------------------------------------------------------------- timePartition

test('timePartition puts the last millisecond of an hour in that hour', () => {
  assert.equal(timePartition('2026-11-27T05:59:59.999Z'), 'dt=2026-11-27/hour=05');
});

test('timePartition puts midnight in hour 00 of the new day', () => {
  assert.equal(timePartition('2026-11-28T00:00:00.000Z'), 'dt=2026-11-28/hour=00');
});

test('timePartition puts the last hour of a year on its last day', () => {
  assert.equal(timePartition('2026-12-31T23:00:00Z'), 'dt=2026-12-31/hour=23');
});

test('timePartition converts a time with an offset to UTC, across a day boundary', () => {
  assert.equal(timePartition('2026-11-27T01:30:00+02:00'), 'dt=2026-11-26/hour=23');
});

// ---------------------------------------------------------------- objectKey

test('objectKey joins prefix, time partition and topic+partition+offset, padded to 10 digits', () => {
  assert.equal(
    objectKey('cpu-levels', 'dt=2026-11-27/hour=05', 'cpu-levels', 3, 42, true),
    'cpu-levels/dt=2026-11-27/hour=05/cpu-levels+3+0000000042.jsonl.gz',
  );
});

test('objectKey pads offset 0 to ten zeros', () => {
  assert.equal(objectKey('p', 'dt=2026-11-27/hour=05', 't', 0, 0, true), 'p/dt=2026-11-27/hour=05/t+0+0000000000.jsonl.gz');
});

test('objectKey ends in .jsonl without gzip', () => {
  assert.equal(objectKey('cpu-levels', 'dt=2026-11-27/hour=05', 'cpu-levels', 3, 42, false), 'cpu-levels/dt=2026-11-27/hour=05/cpu-levels+3+0000000042.jsonl');
});

test('objectKey with an empty prefix starts at the time partition, without a leading slash', () => {
  assert.equal(objectKey('', 'dt=2026-11-27/hour=05', 'cpu-levels', 0, 7, true), 'dt=2026-11-27/hour=05/cpu-levels+0+0000000007.jsonl.gz');
});

test('objectKey keeps a prefix of several path segments as it is', () => {
  assert.equal(objectKey('raw/cpu', 'dt=2026-11-27/hour=05', 'cpu-levels', 0, 7, false), 'raw/cpu/dt=2026-11-27/hour=05/cpu-levels+0+0000000007.jsonl');
});

test('objectKey writes an offset of more than 10 digits in full', () => {
  assert.equal(objectKey('p', 'dt=2026-11-27/hour=05', 't', 1, 12_345_678_901, true), 'p/dt=2026-11-27/hour=05/t+1+12345678901.jsonl.gz');
});

test('objectKey gives the same key for the same inputs, so a replay lands on the same object', () => {
  const key = () => objectKey('cpu-levels', timePartition('2026-11-27T05:59:00.000Z'), 'cpu-levels', 5, 1_000, true);
  assert.equal(key(), key());
  assert.equal(key(), 'cpu-levels/dt=2026-11-27/hour=05/cpu-levels+5+0000001000.jsonl.gz');
});

// ---------------------------------------------------------------- rotationDue

const limits: Limits = { maxRecords: 3, maxBytes: 1_000, maxAgeMs: 60_000 };
const openedAt = 1_800_000_000_000;

function file(count: number, bytes: number): OpenFile {
  return { partitionPath: 'dt=2026-11-27/hour=05', records: records(...Array.from({ length: count }, (_, i) => i)), bytes, openedAt };
}

test('rotationDue is undefined while the file is below every limit', () => {
  assert.equal(rotationDue(file(2, 999), openedAt + 59_999, limits), undefined);
});

test('rotationDue says records when the file holds maxRecords records', () => {
  assert.equal(rotationDue(file(3, 10), openedAt, limits), 'records');
});

test('rotationDue says bytes when the file holds maxBytes bytes', () => {
  assert.equal(rotationDue(file(1, 1_000), openedAt, limits), 'bytes');
});

test('rotationDue says age when maxAgeMs has passed since the file was opened', () => {
  assert.equal(rotationDue(file(1, 10), openedAt + 60_000, limits), 'age');
});

test('rotationDue says records when records, bytes and age are all due', () => {
  assert.equal(rotationDue(file(3, 1_000), openedAt + 60_000, limits), 'records');
});

test('rotationDue says bytes when bytes and age are both due', () => {
  assert.equal(rotationDue(file(1, 1_000), openedAt + 60_000, limits), 'bytes');
});

// ---------------------------------------------------------------- encodeFile

const lines = [record(1, '{"a":1}'), record(2, '{"node":"nœud-é"}'), record(3, '{"c":3}')];
const plain = Buffer.from('{"a":1}\n{"node":"nœud-é"}\n{"c":3}\n');

test('encodeFile without gzip writes each record on its own line, with a newline after the last', () => {
  assert.deepEqual(encodeFile(lines, false), plain);
});

test('encodeFile keeps bytes that are not UTF-8 exactly as they were produced', () => {
  const raw = Buffer.from([0x7b, 0xff, 0x00, 0x7d]);
  assert.deepEqual(encodeFile([{ offset: 0, line: raw }], false), Buffer.concat([raw, Buffer.from('\n')]));
});

test('encodeFile with gzip writes a gzip stream', () => {
  assert.deepEqual([...encodeFile(lines, true).subarray(0, 2)], [0x1f, 0x8b]);
});

test('encodeFile with gzip gunzips to exactly the plain body', () => {
  assert.deepEqual(gunzipSync(encodeFile(lines, true)), plain);
});

test('encodeFile of no records without gzip is an empty body', () => {
  assert.equal(encodeFile([], false).length, 0);
});

test('encodeFile of no records with gzip gunzips to an empty body', () => {
  assert.equal(gunzipSync(encodeFile([], true)).length, 0);
});

// ---------------------------------------------------------------- dropThrough

test('dropThrough keeps only the records above the offset', () => {
  assert.deepEqual(dropThrough(records(5, 6, 7, 8), 6).map((r) => r.offset), [7, 8]);
});

test('dropThrough keeps the order of the records it keeps', () => {
  assert.deepEqual(dropThrough(records(9, 4, 12, 7, 10), 5).map((r) => r.offset), [9, 12, 7, 10]);
});

test('dropThrough keeps everything when the offset is below the first record', () => {
  assert.deepEqual(dropThrough(records(5, 6), 4).map((r) => r.offset), [5, 6]);
});

test('dropThrough keeps nothing when the offset is the last record', () => {
  assert.deepEqual(dropThrough(records(5, 6), 6), []);
});

test('dropThrough does not change the list it is given', () => {
  const input = records(5, 6, 7, 8);
  dropThrough(input, 6);
  assert.deepEqual(input, records(5, 6, 7, 8));
});
