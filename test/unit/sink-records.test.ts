import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { buildReading, encodeReading, parseCgroupV2, parseProcStat } from '../../sampler.ts';
import {
  checkRecord,
  encodeFile,
  FileData,
  membersInText,
  objectKey,
  PartitionFiles,
  rotationDue,
  timePartition,
  type Limits,
} from '../../sink.ts';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');

/** A valid v1 message, as the sampler would produce it for a minute ending at 06:00 UTC. */
const valid = JSON.parse(fixture('reading-v1.json'));

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const maxBytes = 65_536;

// ---------------------------------------------------------------- checkRecord

test('checkRecord accepts a valid v1 reading and returns its window_start, node and window length', () => {
  assert.deepEqual(checkRecord(json(valid), maxBytes), {
    ok: true,
    windowStart: '2026-11-27T05:59:00.000Z',
    hour: 'dt=2026-11-27/hour=05',
    line: json(valid),
    node: valid.node,
    windowSeconds: valid.window_seconds,
  });
});

test('checkRecord accepts a reading exactly as the sampler encodes it', () => {
  const startMs = Date.UTC(2025, 0, 1, 12, 0, 0);
  const snap = (monoNs: bigint, name: 'a' | 'b') => ({
    monoNs,
    host: parseProcStat(fixture(`proc-stat-${name}.txt`)),
    cgroup: parseCgroupV2(fixture(`cgroup-v2/cpu.stat-${name}`), fixture('cgroup-v2/cpu.max-limited')),
  });
  const { reading } = buildReading(
    snap(0n, 'a'),
    snap(60_000_000_000n, 'b'),
    { startMs, endMs: startMs + 60_000 },
    { node: 'node-1', pod: 'cpu-sampler-x2k4q', namespace: 'monitoring' },
    'no cgroup',
  );
  assert.ok(reading);
  const value = Buffer.from(encodeReading(reading).value);
  assert.deepEqual(checkRecord(value, maxBytes), {
    ok: true,
    windowStart: '2025-01-01T12:00:00.000Z',
    hour: 'dt=2025-01-01/hour=12',
    line: value,
    node: 'node-1',
    windowSeconds: 60,
  });
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
    ok: false,
    reason: 'oversize',
    detail: `${value.length} bytes > ${value.length - 1}`,
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

test('checkRecord files a leap-second window_start, which the schema accepts, under its own hour', () => {
  const result = checkRecord(json({ ...valid, window_start: '2016-12-31T23:59:60Z' }), maxBytes);
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal(result.hour, 'dt=2016-12-31/hour=23');
});

test('checkRecord places every window_start the schema accepts (separators, fractions, leap seconds, early years)', () => {
  for (const [start, hour] of [
    ['2026-11-27 05:59:00Z', 'dt=2026-11-27/hour=05'],
    ['2026-11-27t05:59:00Z', 'dt=2026-11-27/hour=05'],
    ['2026-11-27T05:59:00.123456789Z', 'dt=2026-11-27/hour=05'],
    ['2016-12-31T23:59:60.5Z', 'dt=2016-12-31/hour=23'],
    ['0001-01-01T00:00:00Z', 'dt=0001-01-01/hour=00'],
  ]) {
    const result = checkRecord(json({ ...valid, window_start: start }), maxBytes);
    assert.ok(result.ok, `${start}: ${JSON.stringify(result)}`);
    assert.equal(result.hour, hour, start);
  }
});

for (const [what, text, kind] of [
  ['JSON null', 'null', 'null'],
  ['a JSON number', '1', 'a number'],
  ['a JSON string', '"schema_version"', 'a string'],
  ['a JSON array', '[{"schema_version":1}]', 'an array'],
] as const) {
  test(`checkRecord calls ${what} not-object and says what it is`, () => {
    assert.deepEqual(checkRecord(Buffer.from(text), maxBytes), {
      ok: false,
      reason: 'not-object',
      detail: `the record is ${kind}, not a JSON object`,
    });
  });
}

test('checkRecord rejects a key given twice, even when the last value is valid', () => {
  const text = JSON.stringify(valid).replace('{"schema_version":1,', '{"schema_version":2,"schema_version":1,');
  assert.deepEqual(checkRecord(Buffer.from(text), maxBytes), {
    ok: false,
    reason: 'duplicate-key',
    detail: 'a key is given twice in one object',
  });
});

test('checkRecord rejects a window_start given twice, instead of filing it under the second', () => {
  const text = JSON.stringify(valid).replace('"window_start":', '"window_start":"2020-01-01T00:00:00Z","window_start":');
  const result = checkRecord(Buffer.from(text), maxBytes);
  assert.equal(result.ok === false && result.reason, 'duplicate-key');
});

test('checkRecord rejects a key given twice inside a nested object', () => {
  const text = JSON.stringify(valid).replace('"busy_percent":45', '"busy_percent":99,"busy_percent":45');
  assert.equal((checkRecord(Buffer.from(text), maxBytes) as { reason?: string }).reason, 'duplicate-key');
});

test('membersInText counts the members of every object, and no colon inside a string', () => {
  assert.equal(membersInText('{"a":1,"b":{"c":"x:y","d":[{"e":"\\":"}]}}'), 5);
  assert.equal(membersInText('{"a\":b":1}'), 1);
  assert.equal(membersInText('[1, 2, "3:4"]'), 0);
});

test('checkRecord calls schema_version 2 a schema-version problem and names the version', () => {
  assert.deepEqual(checkRecord(json({ ...valid, schema_version: 2 }), maxBytes), {
    ok: false,
    reason: 'schema-version',
    detail: 'schema_version 2 is not 1',
  });
});

test('checkRecord calls an object without schema_version a schema-version problem', () => {
  const { schema_version: _, ...message } = valid;
  assert.deepEqual(checkRecord(json(message), maxBytes), {
    ok: false,
    reason: 'schema-version',
    detail: 'schema_version undefined is not 1',
  });
});

test('checkRecord calls schema_version "1" as a string a schema-version problem', () => {
  assert.deepEqual(checkRecord(json({ ...valid, schema_version: '1' }), maxBytes), {
    ok: false,
    reason: 'schema-version',
    detail: 'schema_version "1" is not 1',
  });
});

test('checkRecord calls a v1 message without window_end a schema problem and names the missing field', () => {
  const { window_end: _, ...message } = valid;
  assert.deepEqual(checkRecord(json(message), maxBytes), {
    ok: false,
    reason: 'schema',
    detail: "/ must have required property 'window_end'",
  });
});

test('checkRecord calls a percentage above 100 a schema problem and names its path', () => {
  const message = { ...valid, host: { ...valid.host, busy_percent: 100.5 } };
  assert.deepEqual(checkRecord(json(message), maxBytes), {
    ok: false,
    reason: 'schema',
    detail: '/host/busy_percent must be <= 100',
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
  assert.equal(
    objectKey('cpu-levels', 'dt=2026-11-27/hour=05', 'cpu-levels', 3, 42, false),
    'cpu-levels/dt=2026-11-27/hour=05/cpu-levels+3+0000000042.jsonl',
  );
});

test('objectKey with an empty prefix starts at the time partition, without a leading slash', () => {
  assert.equal(objectKey('', 'dt=2026-11-27/hour=05', 'cpu-levels', 0, 7, true), 'dt=2026-11-27/hour=05/cpu-levels+0+0000000007.jsonl.gz');
});

test('objectKey keeps a prefix of several path segments as it is', () => {
  assert.equal(
    objectKey('raw/cpu', 'dt=2026-11-27/hour=05', 'cpu-levels', 0, 7, false),
    'raw/cpu/dt=2026-11-27/hour=05/cpu-levels+0+0000000007.jsonl',
  );
});

test('objectKey writes an offset of more than 10 digits in full', () => {
  assert.equal(objectKey('p', 'dt=2026-11-27/hour=05', 't', 1, 12_345_678_901, true), 'p/dt=2026-11-27/hour=05/t+1+12345678901.jsonl.gz');
});

test('objectKey gives the same key for the same inputs, so a replay lands on the same object', () => {
  const key = () => objectKey('cpu-levels', timePartition('2026-11-27T05:59:00.000Z')!, 'cpu-levels', 5, 1_000, true);
  assert.equal(key(), key());
  assert.equal(key(), 'cpu-levels/dt=2026-11-27/hour=05/cpu-levels+5+0000001000.jsonl.gz');
});

// ---------------------------------------------------------------- FileData

const line = (offset: number) => Buffer.from(`{"n":${offset}}`);
const fileOf = (...offsets: number[]) => {
  const f = new FileData('dt=2026-11-27/hour=05', 1_000);
  for (const o of offsets) f.append(o, line(o));
  return f;
};
const text = (f: FileData) => Buffer.concat(f.body()).toString();

test('FileData holds each line followed by a newline, exactly as appended', () => {
  const f = fileOf(3, 4, 7);
  assert.equal(text(f), '{"n":3}\n{"n":4}\n{"n":7}\n');
  assert.deepEqual([f.records, f.first, f.last, f.bytes], [3, 3, 7, 24]);
});

test('FileData keeps bytes that are not UTF-8 exactly as they were produced', () => {
  const f = new FileData('h', 0);
  f.append(0, Buffer.from([0xff, 0x00, 0x7b]));
  assert.deepEqual(Buffer.concat(f.body()), Buffer.from([0xff, 0x00, 0x7b, 0x0a]));
});

test('FileData grows past many chunks and a line larger than a chunk without losing a byte', () => {
  const f = new FileData('h', 0);
  const lines = Array.from({ length: 3000 }, (_, i) => Buffer.from('x'.repeat(i % 7 === 0 ? 40_000 : 300 + i)));
  lines.forEach((l, i) => f.append(i, l));
  assert.deepEqual(Buffer.concat(f.body()), Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])));
  assert.equal(
    f.bytes,
    lines.reduce((n, l) => n + l.length + 1, 0),
  );
});

test('FileData.after keeps the records above an offset, in order, as a new file', () => {
  const rest = fileOf(3, 4, 7, 9).after(4)!;
  assert.equal(text(rest), '{"n":7}\n{"n":9}\n');
  assert.deepEqual([rest.first, rest.records, rest.bytes], [7, 2, 16]);
});

test('FileData.after is the same file when the offset is below its first record, and nothing past its last', () => {
  const f = fileOf(3, 4);
  assert.equal(f.after(2), f);
  assert.equal(f.after(4), undefined);
  assert.equal(f.after(10), undefined);
});

// ---------------------------------------------------------------- rotationDue

const limits: Limits = { maxRecords: 3, maxBytes: 1_000, maxAgeMs: 60_000 };
const openedAt = 1_800_000_000_000;

function file(count: number, bytesEach: number): FileData {
  const f = new FileData('dt=2026-11-27/hour=05', openedAt);
  for (let i = 0; i < count; i++) f.append(i, Buffer.alloc(bytesEach - 1, 0x61));
  return f;
}

test('rotationDue is undefined while the file is below every limit', () => {
  assert.equal(rotationDue(file(2, 499), openedAt + 59_999, limits), undefined);
});

test('rotationDue says records when the file holds maxRecords records', () => {
  assert.equal(rotationDue(file(3, 10), openedAt, limits), 'records');
});

test('rotationDue says bytes when the file holds maxBytes bytes', () => {
  assert.equal(rotationDue(file(2, 500), openedAt, limits), 'bytes');
});

test('rotationDue says age when maxAgeMs has passed since the file was opened', () => {
  assert.equal(rotationDue(file(1, 10), openedAt + 60_000, limits), 'age');
});

test('rotationDue says records when records, bytes and age are all due', () => {
  assert.equal(rotationDue(file(3, 500), openedAt + 60_000, limits), 'records');
});

// ---------------------------------------------------------------- encodeFile

test('encodeFile without gzip is the body, byte for byte', async () => {
  assert.equal((await encodeFile(fileOf(1, 2), false)).toString(), '{"n":1}\n{"n":2}\n');
});

test('encodeFile with gzip writes a gzip stream that gunzips to exactly the body', async () => {
  const f = fileOf(...Array.from({ length: 500 }, (_, i) => i));
  const body = await encodeFile(f, true);
  assert.deepEqual(body.subarray(0, 2), Buffer.from([0x1f, 0x8b]));
  assert.equal(gunzipSync(body).toString(), text(f));
});

// ---------------------------------------------------------------- PartitionFiles: the exactly-once core

const at = 1_800_000_000_000;
const hour5 = 'dt=2026-11-27/hour=05';
const hour6 = 'dt=2026-11-27/hour=06';
const core = (l: Partial<Limits> = {}) => new PartitionFiles(0, { maxRecords: 3, maxBytes: 1_000_000, maxAgeMs: 60_000, ...l });
const add = (p: PartitionFiles, offset: number, hour = hour5, now = at) => p.add(offset, hour, line(offset), now);

test('PartitionFiles closes a file when it holds maxRecords records, and opens the next at the following offset', () => {
  const p = core();
  assert.deepEqual([add(p, 0), add(p, 1)].flat(), []);
  const [full] = add(p, 2);
  assert.equal(text(full), '{"n":0}\n{"n":1}\n{"n":2}\n');
  add(p, 3);
  assert.deepEqual([p.closed.length, p.open?.first], [1, 3]);
});

test('PartitionFiles knows when the oldest record it still holds arrived, until the last file is in S3', () => {
  const p = core();
  assert.equal(p.oldestOpenedAt(), undefined);
  for (const offset of [0, 1, 2]) add(p, offset, hour5, at + offset);
  add(p, 3, hour5, at + 10);
  assert.equal(p.oldestOpenedAt(), at, 'the closed file, not yet written, is the oldest');
  p.written(p.closed[0]);
  assert.equal(p.oldestOpenedAt(), at + 10, 'then the open file');
  p.close();
  p.written(p.closed[0]);
  assert.equal(p.oldestOpenedAt(), undefined);
});

test('PartitionFiles closes the open file first when a record of another hour arrives', () => {
  const p = core({ maxRecords: 10 });
  add(p, 0);
  add(p, 1);
  const closed = add(p, 2, hour6);
  assert.deepEqual(
    closed.map((f) => [f.hour, f.first, f.last]),
    [[hour5, 0, 1]],
  );
  assert.deepEqual([p.open?.hour, p.open?.first], [hour6, 2]);
});

test('PartitionFiles closes a quiet file by age alone', () => {
  const p = core({ maxRecords: 10 });
  add(p, 0, hour5, at);
  assert.equal(p.closeIfOld(at + 59_999), undefined);
  assert.equal(p.closeIfOld(at + 60_000)?.first, 0);
});

test('PartitionFiles lets the group commit only up to the first record not yet in S3', () => {
  const p = core({ maxRecords: 2 });
  assert.equal(p.safePoint(), 0);
  for (const o of [0, 1, 2, 3, 4]) add(p, o);
  assert.equal(p.safePoint(), 0, 'two closed files and an open one: nothing is safe');
  p.written(p.closed[0]);
  assert.equal(p.safePoint(), 2);
  p.written(p.closed[0]);
  assert.equal(p.safePoint(), 4, 'offset 4 is still in the open file');
  p.written(p.close()!);
  assert.equal(p.safePoint(), 5);
  assert.equal(p.heldBytes, 0);
});

test('PartitionFiles holds the commit at a dead letter until it is confirmed, even when later files are in S3', () => {
  const p = core({ maxRecords: 2 });
  add(p, 0);
  p.deadLetter(1, 50);
  add(p, 2);
  p.written(p.closed[0]);
  assert.equal(p.safePoint(), 1);
  p.deadLettered(1, 50);
  assert.equal(p.safePoint(), 3);
  assert.equal(p.heldBytes, 0);
});

test('PartitionFiles writes files oldest first, refusing any other', () => {
  const p = core({ maxRecords: 1 });
  add(p, 0);
  add(p, 1);
  assert.throws(() => p.written(p.closed[1]), /not the oldest/);
});

test('PartitionFiles drops what an existing object holds, in every file, and skips it when it comes again', () => {
  // An earlier life wrote offsets 0-4 in one object; this life closes files of 2 records.
  const p = core({ maxRecords: 2 });
  for (const o of [0, 1, 2, 3, 4, 5]) add(p, o);
  assert.deepEqual(
    p.closed.map((f) => [f.first, f.last]),
    [
      [0, 1],
      [2, 3],
      [4, 5],
    ],
  );
  assert.equal(p.presentThrough(4), 5);
  assert.deepEqual(
    p.closed.map((f) => [f.first, f.last]),
    [[5, 5]],
  );
  assert.equal(text(p.closed[0]), '{"n":5}\n');
  assert.equal(p.heldBytes, 8);
  assert.equal(p.safePoint(), 5);
  assert.equal(p.inS3(3), true, 'a record up to the existing end is not held again');
  assert.equal(p.inS3(6), false);
});

test('PartitionFiles keeps the rest of a file an existing object only partly holds, as a file that starts after it', () => {
  const p = core({ maxRecords: 5 });
  for (const o of [10, 11, 12, 13, 14]) add(p, o);
  p.presentThrough(12);
  assert.deepEqual(
    p.closed.map((f) => [f.first, f.last, f.records]),
    [[13, 14, 2]],
  );
  assert.equal(p.safePoint(), 13);
});

test('PartitionFiles counts the records and bytes it holds', () => {
  const p = core({ maxRecords: 2 });
  for (const o of [0, 1, 2]) add(p, o);
  p.deadLetter(3, 100);
  assert.equal(p.records(), 4);
  assert.equal(p.heldBytes, 3 * 8 + 100);
});

test('timePartition has no place for text that is not an RFC 3339 time', () => {
  assert.equal(timePartition('yesterday'), undefined);
  assert.equal(timePartition('2026-11-27T05:59:00'), undefined);
});

// ---------------------------------------------------------------- pod readings (schema/cpu-pod-reading.v1.schema.json)

const pod = JSON.parse(fixture('pod-reading-v1.json'));

test("checkRecord accepts a pod's reading beside the node's, filed by its window_start under its node", () => {
  const result = checkRecord(json(pod), maxBytes);
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal(result.hour, 'dt=2026-11-27/hour=05');
  assert.equal(result.node, pod.node);
  // A pod that could not be named is reported by UID, with null name and namespace.
  assert.ok(checkRecord(json({ ...pod, pod: null, namespace: null }), maxBytes).ok);
  // Throttling, a limit and its share, as the sampler reports them where the cgroup has them.
  assert.ok(checkRecord(json({ ...pod, limit_cores: 0.5, limit_percent: 2.46, throttled_seconds: 1.5 }), maxBytes).ok);
});

test('checkRecord sends a pod reading that breaks its schema to the dead letters, by what is wrong', () => {
  const reason = (v: unknown) => {
    const r = checkRecord(json(v), maxBytes);
    return r.ok ? 'ok' : `${r.reason}: ${r.detail}`;
  };
  const { pod_uid: _uid, ...noUid } = pod;
  assert.match(reason(noUid), /^schema: \/ must have required property 'pod_uid'/);
  assert.match(reason({ ...pod, pod_uid: 'not-a-uid' }), /^schema: \/pod_uid must match pattern/);
  assert.match(reason({ ...pod, qos_class: 'Gold' }), /^schema: \/qos_class must be equal to one of the allowed values/);
  assert.match(reason({ ...pod, cores_used: -1 }), /^schema: \/cores_used must be >= 0/);
  assert.match(reason({ ...pod, kind: 'container' }), /^schema: /, 'another kind is a node reading with a field too many');
  assert.match(reason({ ...pod, schema_version: 2 }), /^schema-version: /);
  // A node reading with a pod's fields is neither.
  assert.match(reason({ ...valid, pod_uid: pod.pod_uid }), /^schema: \/ must NOT have additional properties/);
});
