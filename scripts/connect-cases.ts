/**
 * What sink.ts says of a set of records, times and files, for the Kafka Connect sink (connect/) to
 * be held to: for each record, checkRecord's verdict (reason, detail, hour, the line it writes);
 * for each window_start, timePartition's hour; for each file, objectKey's key.
 *
 * Why: the connector must write what sink.ts writes, record for record and key for key. Its unit
 * tests (mvn -f connect/pom.xml test) read these cases from connect/src/test/resources/
 * sink-ts-cases.json; test/unit/connect-cases.test.ts fails when that file is not what sink.ts
 * says now, so a change to sink.ts cannot leave the connector behind unnoticed.
 *
 *   node --import tsx scripts/connect-cases.ts     # writes the file anew from sink.ts
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { checkRecord, loadConfig, objectKey, timePartition } from '../sink.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const casesFile = join(root, 'connect', 'src', 'test', 'resources', 'sink-ts-cases.json');

const fixture = (name: string) => JSON.parse(readFileSync(join(root, 'test', 'fixtures', name), 'utf8')) as Record<string, unknown>;
/** A valid v1 reading of a node, and one of a pod (test/fixtures/, as the sink's unit tests use them). */
const valid = fixture('reading-v1.json');
const pod = fixture('pod-reading-v1.json');
const text = JSON.stringify(valid);
const podText = JSON.stringify(pod);
const json = (v: unknown) => JSON.stringify(v);
const withField = (path: string[], value: unknown) => {
  const copy = structuredClone(valid) as Record<string, unknown>;
  let o = copy;
  for (const p of path.slice(0, -1)) o = o[p] as Record<string, unknown>;
  o[path.at(-1)!] = value;
  return copy;
};
/** A reading's text (the node's unless given) with one member's value replaced by raw JSON text (numbers as written). */
const rawField = (name: string, raw: string, t = text) => t.replace(new RegExp(`"${name}":[^,}]+`), `"${name}":${raw}`);
/** Pretty-printed over lines, so that sink.ts writes it back compact through JSON.stringify. */
const pretty = (t: string) => t.replace(/([{,])"/g, '$1\n  "');

/**
 * window_start at the edges of what sink.ts files: ajv-formats' date-time, the schemas' `Z$`, and
 * the hour read from the text (timePartition); each form in a node's reading and in a pod's.
 */
const windowStarts = [
  ['a space separator', '2026-11-27 05:59:00Z'],
  ['a lowercase t', '2026-11-27t05:59:00Z'],
  ['a tab separator', '2026-11-27\t05:59:00Z'],
  ['a no-break space separator', '2026-11-27\u00a005:59:00Z'],
  ['two separators', '2026-11-27TT05:59:00Z'],
  ['nine fraction digits', '2026-11-27T05:59:00.123456789Z'],
  ['a leap second', '2016-12-31T23:59:60Z'],
  ['a leap second with a fraction', '2016-12-31T23:59:60.5Z'],
  ['a leap second at noon', '2016-12-31T12:59:60Z'],
  ['year 1', '0001-01-01T00:00:00Z'],
  ['year 0', '0000-01-01T00:00:00Z'],
  ['29 February of a leap year', '2024-02-29T00:00:00Z'],
  ['29 February of another year', '2023-02-29T00:00:00Z'],
  ['29 February 1900', '1900-02-29T00:00:00Z'],
  ['29 February 2000', '2000-02-29T00:00:00Z'],
  ['31 April', '2026-04-31T00:00:00Z'],
  ['month 13', '2026-13-01T00:00:00Z'],
  ['hour 24', '2026-11-27T24:00:00Z'],
  ['minute 60', '2026-11-27T05:60:00Z'],
  ['a lowercase z', '2026-11-27T05:59:00z'],
  ['no time zone', '2026-11-27T05:59:00'],
  ['no seconds', '2026-11-27T05:59Z'],
  ['a newline after it', '2026-11-27T05:59:00Z\n'],
  ['a NEL after it', '2026-11-27T05:59:00Z\u0085'],
  ['a date only', '2026-11-27'],
  ['a five-digit year', '12026-11-27T05:59:00Z'],
  ['Arabic-Indic digits', '\u0662026-11-27T05:59:00Z'],
] as const;

/** Records as named byte strings (a string is its UTF-8 bytes; null is a record without a value). */
const records: Array<[name: string, value: string | Buffer | null, maxBytes?: number]> = [
  ['a valid reading', text],
  [
    'a valid reading without container figures, with the reason',
    json({ ...valid, container: null, container_unavailable_reason: 'no cgroup' }),
  ],
  ['a valid reading with no CPU limit', json(withField(['container', 'limit_cores'], null))],
  ['a record without a value', null],
  ['a zero-length value', ''],
  ['a record of exactly maxBytes', text, Buffer.byteLength(text)],
  ['a record one byte over maxBytes', text, Buffer.byteLength(text) - 1],
  ['oversize garbage', 'hello, world', 4],
  ['plain text', 'hello'],
  ['a truncated object', text.slice(0, 40)],
  ['JSON after a byte-order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])],
  ['bytes that are not UTF-8', Buffer.from([0xff, 0xfe])],
  ['an overlong UTF-8 encoding', Buffer.from([0x22, 0xc0, 0xaf, 0x22])],
  ['a UTF-8-encoded surrogate', Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22])],
  ['a reading with one byte that is not UTF-8', Buffer.from(text.replace('monitoring', 'monitor\u00ffng'), 'latin1')],
  ['JSON null', 'null'],
  ['a JSON number', '1'],
  ['a JSON string', '"schema_version"'],
  ['a JSON array', '[{"schema_version":1}]'],
  ['JSON true', 'true'],
  ['an array holding a key given twice', '[{"a":1,"a":2}]'],
  ['a key given twice', text.replace('{"schema_version":1,', '{"schema_version":2,"schema_version":1,')],
  ['window_start given twice', text.replace('"window_start":', '"window_start":"2020-01-01T00:00:00Z","window_start":')],
  ['a key given twice in a nested object', text.replace('"busy_percent":45', '"busy_percent":99,"busy_percent":45')],
  ['a colon and an escaped quote inside strings', json(withField(['pod'], 'a\\":b:c'))],
  ['trailing text after the object', text + ' x'],
  ['two objects', text + text],
  ['a comment', '/* c */' + text],
  ['a trailing comma', text.replace(/}$/, ',}')],
  ['single quotes', "{'schema_version':1}"],
  ['NaN', rawField('window_seconds', 'NaN')],
  ['a leading zero', rawField('window_seconds', '060')],
  ['a bare control character in a string', text.replace('monitoring', 'moni\u0001toring')],
  ['a no-break space around the object', '\u00a0' + text],
  ['JSON whitespace around the object', ' \t' + text + ' \r\n'],
  ['schema_version 2', json({ ...valid, schema_version: 2 })],
  ['no schema_version', json({ ...valid, schema_version: undefined })],
  ['schema_version "1"', json({ ...valid, schema_version: '1' })],
  ['schema_version null', json({ ...valid, schema_version: null })],
  ['schema_version 1.5', json({ ...valid, schema_version: 1.5 })],
  ['schema_version an object', json({ ...valid, schema_version: { v: [1, 'x', 2.5e-7] } })],
  ['schema_version 1.0', rawField('schema_version', '1.0')],
  ['schema_version 10e-1', rawField('schema_version', '10e-1')],
  ['schema_version 2.0', rawField('schema_version', '2.0')],
  ['no window_end', json({ ...valid, window_end: undefined })],
  ['busy_percent above 100', json(withField(['host', 'busy_percent'], 100.5))],
  ['a window_start with an offset', json({ ...valid, window_start: '2026-11-27T07:59:00.000+02:00' })],
  ['a property the schema does not define', json({ ...valid, hostname: 'extra' })],
  ['a property named __proto__', text.replace('{', '{"__proto__":{},')],
  ['cores 2.0', rawField('cores', '2.0')],
  ['cores 1e0', rawField('cores', '1e0')],
  ['cores 0.5', rawField('cores', '0.5')],
  ['cores 0', rawField('cores', '0')],
  ['busy_percent -0', rawField('busy_percent', '-0')],
  ['busy_percent 1e2', rawField('busy_percent', '1e2')],
  ['busy_percent 100.0000000000000001', rawField('busy_percent', '100.0000000000000001')],
  ['cgroup_version 2.0', rawField('cgroup_version', '2.0')],
  ['cgroup_version 3', rawField('cgroup_version', '3')],
  ['window_seconds 0', rawField('window_seconds', '0')],
  ['window_seconds 1e400', rawField('window_seconds', '1e400')],
  ['window_seconds with 400 digits', rawField('window_seconds', '1'.repeat(400))],
  ['window_seconds a string', json({ ...valid, window_seconds: '60' })],
  ['an empty node', json({ ...valid, node: '' })],
  ['a node of one astral character', json({ ...valid, node: '\u{1F600}' })],
  ['an empty namespace', json({ ...valid, namespace: '' })],
  ['container null without a reason', json({ ...valid, container: null })],
  ['container with limit_cores 0', json(withField(['container', 'limit_cores'], 0))],
  ['relative_to something else', json(withField(['container', 'relative_to'], 'cpu'))],
  ['host missing a field', json(withField(['host', 'idle_percent'], undefined))],
  ['host an array', json({ ...valid, host: [] })],
  ['deeply nested arrays', '['.repeat(2000) + ']'.repeat(2000)],
  ['deeply nested arrays inside a reading', text.replace('"namespace":"monitoring"', `"namespace":${'['.repeat(600)}${']'.repeat(600)}`)],
  ...windowStarts.map(([what, start]) => [`window_start with ${what}`, json({ ...valid, window_start: start })] as [string, string]),
  ['a reading pretty-printed over lines', JSON.stringify(valid, null, 2) + '\n'],
  ['a reading with CRLF line ends', JSON.stringify(valid, null, 2).replace(/\n/g, '\r\n')],
  ['a reading with one CR', text.replace(',"pod"', ',\r"pod"')],
  ['a reading with a trailing newline', text + '\n'],
  [
    'numbers JavaScript writes its own way, over lines',
    pretty(
      text
        .replace('"window_seconds":60', '"window_seconds":1e21')
        .replace('"busy_percent":45', '"busy_percent":45.10')
        .replace('"user_percent":30', '"user_percent":3.0e1')
        .replace('"system_percent":15', '"system_percent":0.0000001')
        .replace('"iowait_percent":5', '"iowait_percent":0.000001')
        .replace('"steal_percent":0', '"steal_percent":-0.0')
        .replace('"cores_used":0.25', '"cores_used":123456789012345678901234567890')
        .replace('"limit_cores":0.5', '"limit_cores":1.7976931348623157e308')
        .replace('"cores":2', '"cores":2.00'),
    ),
  ],
  [
    'window_seconds 1e20 and 5e-324, over lines',
    pretty(text.replace('"window_seconds":60', '"window_seconds":1e20').replace('"cores_used":0.25', '"cores_used":5e-324')),
  ],
  ['window_seconds 0.1 + 0.2, over lines', pretty(rawField('window_seconds', String(0.1 + 0.2)))],
  ['window_seconds 2^-1074 * 3, over lines', pretty(rawField('window_seconds', '1.5e-323'))],
  ['window_seconds 123e-20, over lines', pretty(rawField('window_seconds', '123e-20'))],
  ['window_seconds 9007199254740993, over lines', pretty(rawField('window_seconds', '9007199254740993'))],
  [
    'strings JavaScript escapes its own way, over lines',
    pretty(
      json({
        ...valid,
        pod: 'tab\there "quote" back\\slash \u0001 \u001f \u007f \u2028 \u00e9 \u{1F600} /',
        namespace: '\ud800 lone',
        node: 'x\udc00y',
      }),
    ),
  ],
  ['escapes written as escapes, over lines', pretty(text.replace('"monitoring"', '"\\u006d\\u00e9\\ud83d\\ude00\\/\\b\\f"'))],

  // A pod's reading (kind "pod", schema/cpu-pod-reading.v1.schema.json) beside the node's: the
  // schema is picked by kind, everything before it (JSON, keys, schema_version) is the same.
  ['a valid pod reading', podText],
  ['a valid pod reading of a pod that could not be named', json({ ...pod, pod: null, namespace: null })],
  ['a valid pod reading with a limit and throttling', json({ ...pod, limit_cores: 0.5, limit_percent: 2.46, throttled_seconds: 1.5 })],
  [
    'a valid pod reading without a request, limit or throttling figure',
    json({ ...pod, request_cores: null, request_percent: null, limit_cores: null, limit_percent: null, throttled_seconds: null }),
  ],
  ['a valid pod reading of a Guaranteed pod on cgroup v1', json({ ...pod, qos_class: 'Guaranteed', cgroup_version: 1 })],
  [
    'a valid pod reading of an idle BestEffort pod',
    json({ ...pod, qos_class: 'BestEffort', cores_used: 0, request_cores: null, request_percent: null }),
  ],
  ['a valid pod reading above its request', json({ ...pod, cores_used: 0.25, request_percent: 250 })],
  ['a valid pod reading with a name and no namespace', json({ ...pod, namespace: null })],
  ['a valid pod reading with its kind last', podText.replace('"kind":"pod",', '').replace(/}$/, ',"kind":"pod"}')],
  ['a pod reading whose kind is written with an escape', podText.replace('"kind":"pod"', '"kind":"p\\u006fd"')],
  ['a pod reading with schema_version 1.0', rawField('schema_version', '1.0', podText)],
  ['a pod reading with cgroup_version 2.0', rawField('cgroup_version', '2.0', podText)],
  ['a pod reading with cores_used -0', rawField('cores_used', '-0', podText)],
  ['a pod reading pretty-printed over lines', JSON.stringify(pod, null, 2) + '\n'],
  [
    'a pod reading with numbers JavaScript writes its own way, over lines',
    pretty(
      podText
        .replace('"cores_used":0.0123', '"cores_used":0.0000001')
        .replace('"request_cores":0.1', '"request_cores":1.0e-1')
        .replace('"request_percent":12.3', '"request_percent":12.30'),
    ),
  ],
  ['a pod reading without pod_uid', json({ ...pod, pod_uid: undefined })],
  ['a pod reading with a pod_uid that is no UID', json({ ...pod, pod_uid: 'not-a-uid' })],
  ['a pod reading with an upper-case pod_uid', json({ ...pod, pod_uid: String(pod.pod_uid).toUpperCase() })],
  ['a pod reading with a newline after pod_uid', json({ ...pod, pod_uid: `${String(pod.pod_uid)}\n` })],
  ['a pod reading with a pod_uid in braces', json({ ...pod, pod_uid: `{${String(pod.pod_uid)}}` })],
  ['a pod reading with pod_uid null', json({ ...pod, pod_uid: null })],
  // A static pod's UID is a hash of 32 hex digits (its mirror pod names it in an annotation).
  ['a static pod reading, its pod_uid a hash', json({ ...pod, pod_uid: 'd41d8cd98f00b204e9800998ecf8427e' })],
  ['a pod reading with a pod_uid of 31 hex digits', json({ ...pod, pod_uid: 'd41d8cd98f00b204e9800998ecf8427' })],
  ['a pod reading with a hash pod_uid in upper case', json({ ...pod, pod_uid: 'D41D8CD98F00B204E9800998ECF8427E' })],
  ['a pod reading with qos_class Gold', json({ ...pod, qos_class: 'Gold' })],
  ['a pod reading with qos_class in lower case', json({ ...pod, qos_class: 'burstable' })],
  ['a pod reading without qos_class', json({ ...pod, qos_class: undefined })],
  ['a pod reading with cores_used -1', json({ ...pod, cores_used: -1 })],
  ['a pod reading with cores_used null', json({ ...pod, cores_used: null })],
  ['a pod reading with cores_used a string', json({ ...pod, cores_used: '0.0123' })],
  ['a pod reading with cores_used 1e400', rawField('cores_used', '1e400', podText)],
  ['a pod reading with request_cores 0', json({ ...pod, request_cores: 0 })],
  ['a pod reading with request_cores -0.0', rawField('request_cores', '-0.0', podText)],
  ['a pod reading with request_cores 1e-400', rawField('request_cores', '1e-400', podText)],
  ['a pod reading with limit_cores 0', json({ ...pod, limit_cores: 0 })],
  ['a pod reading with request_percent -1', json({ ...pod, request_percent: -1 })],
  ['a pod reading with limit_percent -0.5', json({ ...pod, limit_percent: -0.5 })],
  ['a pod reading with throttled_seconds -1', json({ ...pod, throttled_seconds: -1 })],
  ['a pod reading without throttled_seconds', json({ ...pod, throttled_seconds: undefined })],
  ['a pod reading with cgroup_version 3', json({ ...pod, cgroup_version: 3 })],
  ['a pod reading with window_seconds 0', json({ ...pod, window_seconds: 0 })],
  ['a pod reading with an empty pod name', json({ ...pod, pod: '' })],
  ['a pod reading with an empty namespace', json({ ...pod, namespace: '' })],
  ['a pod reading of a pod named by one astral character', json({ ...pod, pod: '\u{1F600}' })],
  ['a pod reading without node', json({ ...pod, node: undefined })],
  ['a pod reading with an empty node', json({ ...pod, node: '' })],
  ['a pod reading with a property its schema does not define', json({ ...pod, container_id: 'abc' })],
  ['a pod reading with a window_end with an offset', json({ ...pod, window_end: '2026-11-27T08:00:00.000+02:00' })],
  ['a pod reading with a window_start with an offset', json({ ...pod, window_start: '2026-11-27T07:59:00.000+02:00' })],
  ...windowStarts.map(
    ([what, start]) => [`a pod reading, window_start with ${what}`, json({ ...pod, window_start: start })] as [string, string],
  ),
  ['a pod reading with schema_version 2', json({ ...pod, schema_version: 2 })],
  ['a pod reading with schema_version "1"', json({ ...pod, schema_version: '1' })],
  ['a pod reading without schema_version', json({ ...pod, schema_version: undefined })],
  ['a pod reading with kind given twice', podText.replace('"kind":"pod"', '"kind":"node","kind":"pod"')],
  ['a pod reading with kind "container"', json({ ...pod, kind: 'container' })],
  ['a pod reading with kind "Pod"', json({ ...pod, kind: 'Pod' })],
  ['a pod reading with kind null', json({ ...pod, kind: null })],
  ['a pod reading with kind ["pod"]', json({ ...pod, kind: ['pod'] })],
  ['a pod reading without kind', json({ ...pod, kind: undefined })],
  ['a node reading with kind "pod"', json({ kind: 'pod', ...valid })],
  ['a node reading carrying pod fields', json({ ...valid, pod_uid: pod.pod_uid, qos_class: pod.qos_class })],
];

const timeCases = [
  '2026-11-27T05:59:59.999Z',
  '2026-11-28T00:00:00.000Z',
  '2026-12-31T23:00:00Z',
  '2026-11-27T01:30:00+02:00',
  '2026-11-27T22:30:00-02:00',
  '2026-11-27T05:59:00+00:00',
  '2026-11-27T05:59:00-00:30',
  '2016-12-31T23:59:60Z',
  '2016-12-31T23:59:60+01:00',
  '0001-01-01T00:00:00Z',
  '0000-01-01T00:30:00+01:00',
  '9999-12-31T23:30:00-01:00',
  '0099-03-01T00:00:00+00:01',
  '2024-03-01T00:30:00+01:00',
  '2023-03-01T00:30:00+01:00',
  '2026-11-27T24:00:00+00:00',
  '2026-13-01T00:00:00+00:00',
  '2026-11-00T00:00:00+00:00',
  '2026-11-27 05:59:00z',
  '2026-11-27t05:59:00.5Z',
  'yesterday',
  '2026-11-27T05:59:00',
  '2026-11-27T05:59Z',
  '2026-11-27T05:59:00+0200',
  '2026-11-27\t05:59:00Z',
];

const keyCases: Array<[prefix: string, hour: string, topic: string, partition: number, startOffset: number, gzip: boolean]> = [
  ['cpu-levels', 'dt=2026-11-27/hour=05', 'cpu-levels', 3, 42, true],
  ['p', 'dt=2026-11-27/hour=05', 't', 0, 0, true],
  ['cpu-levels', 'dt=2026-11-27/hour=05', 'cpu-levels', 3, 42, false],
  ['', 'dt=2026-11-27/hour=05', 'cpu-levels', 0, 7, true],
  ['raw/cpu', 'dt=2026-11-27/hour=05', 'cpu-levels', 0, 7, false],
  ['p', 'dt=2026-11-27/hour=05', 't', 1, 12_345_678_901, true],
  ['p', 'dt=2026-11-27/hour=05', 't', 1, 9_999_999_999, true],
  ['cpu-levels', 'dt=2026-11-27/hour=05', 'readings.v1_x-y', 127, 1_000, true],
];

/**
 * Doubles as JavaScript writes them (Number::toString, which JSON.stringify uses): the edges of
 * its plain and exponent forms, subnormals, and a fixed spread of bit patterns.
 */
function numberCases(): string[] {
  const edges = [0, -0, 1, -1, 0.1, 0.2, 0.1 + 0.2, 1e21, 1e21 - 131072, 1e-6, 1e-7, 123e-20, 5e-324, 1.5e-323, 2.2250738585072014e-308];
  const more = [Number.MAX_VALUE, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, 100, 45.1, 1 / 3, 2 / 3, 1e300 * 10, 4.35, 0.000001234, 1.7e-7];
  const bits = new DataView(new ArrayBuffer(8));
  let x = 0x9e3779b97f4a7c15n;
  const spread: number[] = [];
  while (spread.length < 400) {
    x = (x * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
    bits.setBigUint64(0, x);
    const n = bits.getFloat64(0);
    if (Number.isFinite(n)) spread.push(n);
  }
  return [...edges, ...more, ...spread].map((n) => String(n));
}

/** sink.ts's defaults, by the connector setting that mirrors each variable (seconds as seconds). */
function defaults() {
  const c = loadConfig({});
  return [
    ['S3_BUCKET', 's3.bucket', c.bucket],
    ['S3_PREFIX', 's3.prefix', c.prefix],
    ['S3_REGION', 's3.region', c.region],
    ['S3_ENDPOINT', 's3.endpoint', c.endpoint ?? ''],
    ['S3_FORCE_PATH_STYLE', 's3.force.path.style', c.forcePathStyle],
    ['S3_REQUEST_TIMEOUT_SECONDS', 's3.request.timeout.seconds', c.requestTimeoutMs / 1000],
    ['FILE_GZIP', 'file.gzip', c.gzip],
    ['FILE_MAX_RECORDS', 'file.max.records', c.maxRecords],
    ['FILE_MAX_BYTES', 'file.max.bytes', c.maxBytes],
    ['FILE_MAX_AGE_SECONDS', 'file.max.age.seconds', c.maxAgeMs / 1000],
    ['BUFFER_MAX_BYTES', 'buffer.max.bytes', c.bufferMaxBytes],
    ['RECORD_MAX_BYTES', 'record.max.bytes', c.recordMaxBytes],
  ].map(([env, setting, value]) => ({ env, setting, value }));
}

const b64 = (b: Buffer) => b.toString('base64');

/** Every case with what sink.ts says of it. */
export function connectCases() {
  return {
    about: 'Written by scripts/connect-cases.ts from sink.ts; checked by test/unit/connect-cases.test.ts. Do not edit.',
    defaults: defaults(),
    records: records.map(([name, value, maxBytes = 65_536]) => {
      const bytes = value === null ? null : Buffer.isBuffer(value) ? value : Buffer.from(value);
      const c = checkRecord(bytes, maxBytes);
      return {
        name,
        value: bytes === null ? null : b64(bytes),
        maxBytes,
        ...(c.ok
          ? { ok: true, hour: c.hour, windowStart: c.windowStart, line: b64(c.line) }
          : { ok: false, reason: c.reason, detail: c.detail }),
      };
    }),
    numbers: numberCases(),
    timePartitions: timeCases.map((windowStart) => ({ windowStart, hour: timePartition(windowStart) ?? null })),
    objectKeys: keyCases.map(([prefix, hour, topic, partition, startOffset, gzip]) => ({
      prefix,
      hour,
      topic,
      partition,
      startOffset,
      gzip,
      key: objectKey(prefix, hour, topic, partition, startOffset, gzip),
    })),
  };
}

export const casesText = () => JSON.stringify(connectCases(), null, 2) + '\n';

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeFileSync(casesFile, casesText());
  console.log(`wrote ${casesFile}`);
}
