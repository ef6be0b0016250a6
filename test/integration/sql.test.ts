/**
 * The SQL of sql/ against what the sink really writes. Readings of several nodes and pods, a day
 * and the minutes either side of it, go through Kafka and sink.ts into an S3-compatible server;
 * the objects are copied out under their keys, and DuckDB runs the table, views and query files
 * of sql/ over them, unchanged, as Athena runs them over the bucket. Each query's result must be
 * the figures computed here from the readings produced. The Athena DDL, which DuckDB cannot run,
 * is checked offline: its columns are the two reading schemas' properties, and its partition
 * projection names the folders the sink writes to.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { checkRecord, objectKey, timePartition } from '../../sink.ts';
import { duckdb, setupFiles } from '../../scripts/duckdb.ts';
import { downloadObjects, root, sinkScenario } from '../helpers.ts';

const athenaFile = 'sql/athena/cpu_readings.sql';
const schemas = ['schema/cpu-reading.v1.schema.json', 'schema/cpu-pod-reading.v1.schema.json'];
/** The day the query files name as their example, and the one the readings below are around. */
const day = '2026-11-27';

// ---------------------------------------------------------------- the Athena table, read from its DDL

interface AthenaTable {
  columns: Record<string, string>;
  partitions: Record<string, string>;
  serde: string;
  location: string;
  properties: Record<string, string>;
}

/** Splits at the commas that are not inside <...> or (...). */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if ('<('.includes(text[i])) depth++;
    else if ('>)'.includes(text[i])) depth--;
    else if (text[i] === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  return [...parts, text.slice(start)].map((p) => p.trim()).filter(Boolean);
}

/** `name type` pairs, types without blanks and in lower case (struct<a:int,b:string>). */
const columnList = (text: string) =>
  Object.fromEntries(
    splitTopLevel(text).map((c) => {
      const [, name, type] = /^`?(\w+)`?\s+(.+)$/s.exec(c)!;
      return [name, type.replace(/\s+/g, '').toLowerCase()];
    }),
  );

function athenaTable(): AthenaTable {
  const sql = readFileSync(join(root, athenaFile), 'utf8').replace(/--.*$/gm, '');
  const head = /CREATE EXTERNAL TABLE IF NOT EXISTS cpu_readings \(/.exec(sql);
  assert.ok(head, `${athenaFile} creates the external table cpu_readings`);
  let end = head.index + head[0].length;
  for (let depth = 1; depth > 0; end++) depth += sql[end] === '(' ? 1 : sql[end] === ')' ? -1 : 0;
  const rest = sql.slice(end);
  const need = (re: RegExp, what: string) => re.exec(rest)?.[1] ?? assert.fail(`${athenaFile} has no ${what}`);
  return {
    columns: columnList(sql.slice(head.index + head[0].length, end - 1)),
    partitions: columnList(need(/PARTITIONED BY \(([^)]*)\)/, 'PARTITIONED BY')),
    serde: need(/ROW FORMAT SERDE '([^']+)'/, 'ROW FORMAT SERDE'),
    location: need(/LOCATION '([^']+)'/, 'LOCATION'),
    properties: Object.fromEntries(
      [...need(/TBLPROPERTIES \(([^;]*)\)/, 'TBLPROPERTIES').matchAll(/'([^']+)'\s*=\s*'([^']*)'/g)].map((m) => [m[1], m[2]]),
    ),
  };
}

// ---------------------------------------------------------------- the reading schemas as Hive types

type JsonSchema = {
  type?: string | string[];
  const?: unknown;
  enum?: unknown[];
  $ref?: string;
  oneOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  $defs?: Record<string, JsonSchema>;
};

/** The Hive type a JSON Schema's values fit: string, int, double or struct<...> (null is any type's NULL). */
function hiveType(s: JsonSchema, defs: Record<string, JsonSchema>): string {
  if (s.$ref) return hiveType(defs[s.$ref.replace('#/$defs/', '')], defs);
  if (s.oneOf) {
    const [only, ...more] = s.oneOf.filter((o) => o.type !== 'null');
    assert.equal(more.length, 0, 'one type besides null');
    return hiveType(only, defs);
  }
  const values = 'const' in s ? [s.const] : s.enum;
  if (values) return values.every((v) => typeof v === 'string') ? 'string' : values.every(Number.isInteger) ? 'int' : 'double';
  const [type, ...others] = [s.type].flat().filter((t) => t !== 'null');
  assert.equal(others.length, 0, `one type besides null: ${JSON.stringify(s.type)}`);
  if (type === 'object') {
    return `struct<${Object.entries(s.properties!)
      .map(([k, v]) => `${k}:${hiveType(v, defs)}`)
      .join(',')}>`;
  }
  return (
    ({ string: 'string', integer: 'int', number: 'double' } as Record<string, string>)[type!] ?? assert.fail(`no Hive type for ${type}`)
  );
}

/** Every property of both schemas with its Hive type; a property in both must have one type. */
function schemaColumns(): Record<string, string> {
  const columns: Record<string, string> = {};
  for (const file of schemas) {
    const schema = JSON.parse(readFileSync(join(root, file), 'utf8')) as JsonSchema;
    for (const [name, s] of Object.entries(schema.properties!)) {
      const type = hiveType(s, schema.$defs ?? {});
      assert.ok(!columns[name] || columns[name] === type, `${name} is ${columns[name]} in one schema and ${type} in the other`);
      columns[name] = type;
    }
  }
  return columns;
}

/** The DuckDB type of a Hive type, as DESCRIBE prints it. */
function duckdbType(hive: string): string {
  const struct = /^struct<(.*)>$/.exec(hive);
  if (struct) {
    const fields = splitTopLevel(struct[1]).map((f) => f.replace(/^(\w+):(.*)$/, (_, n: string, t: string) => `${n} ${duckdbType(t)}`));
    return `STRUCT(${fields.join(', ')})`;
  }
  return (
    ({ string: 'VARCHAR', int: 'INTEGER', double: 'DOUBLE' } as Record<string, string>)[hive] ?? assert.fail(`no DuckDB type for ${hive}`)
  );
}

/** The sink's production settings (k8s/base/sink/sink.env), KEY=value lines. */
function sinkEnv(): Record<string, string> {
  const text = readFileSync(join(root, 'k8s/base/sink/sink.env'), 'utf8');
  return Object.fromEntries([...text.matchAll(/^(\w+)=(.*)$/gm)].map((m) => [m[1], m[2]]));
}

/** A UTC time in a Java date pattern made of yyyy, MM, dd, HH and literal '-' and '/'. */
function javaFormat(pattern: string, t: Date): string {
  assert.match(pattern, /^(yyyy|MM|dd|HH|[-/])+$/, `a date pattern this test can apply: ${pattern}`);
  const parts: Record<string, string> = {
    yyyy: String(t.getUTCFullYear()).padStart(4, '0'),
    MM: String(t.getUTCMonth() + 1).padStart(2, '0'),
    dd: String(t.getUTCDate()).padStart(2, '0'),
    HH: String(t.getUTCHours()).padStart(2, '0'),
  };
  return pattern.replace(/yyyy|MM|dd|HH/g, (token) => parts[token]);
}

// ---------------------------------------------------------------- offline: the Athena DDL

test('the Athena table has a column for each property of both reading schemas, typed as the schemas say', () => {
  const table = athenaTable();
  assert.deepEqual(table.columns, schemaColumns());
  assert.deepEqual(table.partitions, { dt: 'string', hour: 'string' });
  assert.equal(table.serde, 'org.apache.hive.hcatalog.data.JsonSerDe');
});

test("the Athena table's partition projection names the folders the sink writes each reading to", () => {
  const { location, properties: p } = athenaTable();
  const env = sinkEnv();
  assert.equal(location, `s3://${env.S3_BUCKET}/${env.S3_PREFIX}/`);
  assert.equal(p['projection.enabled'], 'true');
  assert.equal(p['projection.dt.type'], 'date');
  assert.equal(p['projection.hour.type'], 'integer');
  // The hours Athena projects are exactly the 24 folder names the sink uses for the hours of a day.
  const [from, to] = p['projection.hour.range'].split(',').map(Number);
  const step = Number(p['projection.hour.interval'] ?? 1);
  const projectedHours = Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) =>
    String(from + i * step).padStart(Number(p['projection.hour.digits'] ?? 0), '0'),
  );
  const sinkHours = Array.from({ length: 24 }, (_, h) => timePartition(`${day}T${String(h).padStart(2, '0')}:30:00Z`)!.slice(-2));
  assert.deepEqual(projectedHours, sinkHours);
  // Days: one a day, from a first day no later than the queries' example day, up to today.
  assert.equal(p['projection.dt.interval'] ?? '1', '1');
  assert.equal(p['projection.dt.interval.unit'] ?? 'DAYS', 'DAYS');
  const [first, last] = p['projection.dt.range'].split(',');
  assert.equal(last, 'NOW');
  assert.equal(javaFormat(p['projection.dt.format'], new Date(`${first}T00:00:00Z`)), first, 'the range is in the projection format');
  assert.ok(first <= day, `projection.dt.range starts at ${first}, after ${day}`);
  // For readings at awkward times, the folder Athena computes holds the object the sink writes.
  const times = [`${day}T00:00:00Z`, `${day}T23:59:59.999Z`, '2026-01-01T00:00:00Z', '2026-12-31T23:30:00Z', '2028-02-29T09:15:00Z'];
  for (const windowStart of [...times, '2026-11-28T01:30:00+02:00']) {
    const t = new Date(windowStart);
    const folder = p['storage.location.template']
      .replace('${dt}', javaFormat(p['projection.dt.format'], t))
      .replace('${hour}', String(t.getUTCHours()).padStart(Number(p['projection.hour.digits']), '0'));
    const key = objectKey(env.S3_PREFIX, timePartition(windowStart)!, env.KAFKA_TOPIC, 3, 1234, env.FILE_GZIP === 'true');
    const object = `s3://${env.S3_BUCKET}/${key}`;
    assert.ok(object.startsWith(folder) && !object.slice(folder.length).includes('/'), `${windowStart}: ${object} is not in ${folder}`);
  }
});

// ---------------------------------------------------------------- readings around one day

/** A small deterministic random source (mulberry32), so that a failure can be run again as it was. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Five blocks of five one-minute windows: the day before's last minutes, the day's first hour,
 * its noon hour, its last minutes, and the day after's first minutes. Readings outside the day
 * are much higher than inside it, so a query that reads past the day's partitions is caught.
 */
const blocks = ['2026-11-26T23:55', `${day}T00:00`, `${day}T12:00`, `${day}T23:55`, '2026-11-28T00:00'];
const windows = blocks.map((b) => Array.from({ length: 5 }, (_, i) => Date.parse(`${b}:00Z`) + i * 60_000));
const inside = [1, 2, 3];
const everywhere = [0, 1, 2, 3, 4];

const nodes = [
  { name: 'ip-10-0-1-11.eu-west-1.compute.internal', cores: 4, busy: 35, container: true, blocks: everywhere },
  // Its sampler has no cgroup CPU accounting: container is null.
  { name: 'ip-10-0-2-22.eu-west-1.compute.internal', cores: 8, busy: 60, container: false, blocks: everywhere },
  // Only outside the day: must not appear at all.
  { name: 'ip-10-0-3-33.eu-west-1.compute.internal', cores: 2, busy: 20, container: true, blocks: [0, 4] },
];

interface PodSpec {
  name: string | null;
  namespace: string | null;
  node: number;
  request: number | null;
  limit: number | null;
  cores: number;
  blocks: number[];
  /** The pod is gone from the API from this window of the day on: its last readings are nameless. */
  namelessFrom?: number;
  /** One window of the day when it uses 30 times its usual CPU. */
  spikeAt?: number;
}

// prettier-ignore
const pods: PodSpec[] = [
  { name: 'checkout-7f9c5-x2k4q', namespace: 'shop', node: 0, request: 0.5, limit: 1, cores: 0.3, blocks: everywhere },
  { name: 'cart-5d4b7-9qwer', namespace: 'shop', node: 0, request: 0.25, limit: null, cores: 0.4, blocks: everywhere },
  { name: 'api-6c8d9-klmno', namespace: 'shop', node: 1, request: 1, limit: 2, cores: 0.05, blocks: everywhere },
  // The same name in another namespace: another pod.
  { name: 'api-6c8d9-klmno', namespace: 'blog', node: 1, request: 0.2, limit: null, cores: 0.034, blocks: everywhere },
  { name: 'web-0', namespace: 'blog', node: 0, request: 0.1, limit: null, cores: 0.026, blocks: everywhere },
  { name: 'coredns-5d78c9869d-8x2kq', namespace: 'kube-system', node: 1, request: 0.1, limit: null, cores: 0.012, blocks: everywhere },
  { name: 'crunch-28h4k', namespace: 'batch', node: 0, request: null, limit: null, cores: 1.5, blocks: everywhere },
  // Never named (the sampler had no API access for them): known by uid only.
  { name: null, namespace: null, node: 1, request: 0.5, limit: 1, cores: 0.02, blocks: everywhere },
  { name: null, namespace: null, node: 0, request: null, limit: null, cores: 0.9, blocks: everywhere },
  { name: 'worker-77d9f-pqrst', namespace: 'shop', node: 1, request: 0.4, limit: null, cores: 0.06, blocks: everywhere, namelessFrom: 13 },
  // Quiet but for one minute: its peak is high, its average is not.
  { name: 'importer-1', namespace: 'batch', node: 1, request: 0.2, limit: null, cores: 0.05, blocks: everywhere, spikeAt: 7 },
  { name: 'prometheus-0', namespace: 'monitoring', node: 0, request: 0.5, limit: 1, cores: 0.25, blocks: everywhere },
  { name: 'cpu-sampler-abcde', namespace: 'monitoring', node: 1, request: 0.05, limit: 0.2, cores: 0.004, blocks: everywhere },
  // A StatefulSet's pod deleted and created again: one name, two pods.
  { name: 'postgres-0', namespace: 'db', node: 0, request: 1, limit: 1, cores: 0.7, blocks: [0, 1] },
  { name: 'postgres-0', namespace: 'db', node: 1, request: 1, limit: 1, cores: 0.8, blocks: [2, 3, 4] },
  // Only outside the day, and the busiest of all there.
  { name: 'nightly-report-123', namespace: 'shop', node: 0, request: 2, limit: null, cores: 3, blocks: [0, 4] },
];

const round = (x: number, digits: number) => Number(x.toFixed(digits));

function nodeReading(node: (typeof nodes)[number], start: number, outside: boolean, rand: () => number) {
  const busy = outside ? round(92 + rand() * 6, 2) : round(node.busy + (rand() - 0.5) * 40, 2);
  const [user, system] = [round(busy * 0.6, 2), round(busy * 0.3, 2)];
  const own = node.container ? { cgroup_version: 2, cpu_percent: 1.5, cores_used: 0.0075, limit_cores: 0.5, relative_to: 'limit' } : null;
  return {
    schema_version: 1,
    window_start: new Date(start).toISOString(),
    window_end: new Date(start + 60_000).toISOString(),
    window_seconds: 60,
    node: node.name,
    pod: `cpu-sampler-${node.name.split('.')[0]}`,
    namespace: 'monitoring',
    host: {
      cores: node.cores,
      busy_percent: busy,
      user_percent: user,
      system_percent: system,
      iowait_percent: 1.5,
      steal_percent: round(busy - user - system, 2),
      idle_percent: round(100 - busy - 1.5, 2),
    },
    container: own,
    ...(own ? {} : { container_unavailable_reason: 'no cgroup CPU accounting' }),
  };
}

/** A pod's reading; `scale` times its usual CPU, nameless unless `named`. */
function podReading(spec: PodSpec, uid: string, start: number, scale: number, named: boolean, rand: () => number) {
  const cores = round(spec.cores * scale, 5);
  const qos = spec.request && spec.request === spec.limit ? 'Guaranteed' : spec.request || spec.limit ? 'Burstable' : 'BestEffort';
  return {
    kind: 'pod',
    schema_version: 1,
    window_start: new Date(start).toISOString(),
    window_end: new Date(start + 60_000).toISOString(),
    window_seconds: 60,
    node: nodes[spec.node].name,
    pod_uid: uid,
    pod: named ? spec.name : null,
    namespace: named ? spec.namespace : null,
    qos_class: qos,
    cgroup_version: 2,
    cores_used: cores,
    request_cores: spec.request,
    limit_cores: spec.limit,
    request_percent: spec.request ? round((100 * cores) / spec.request, 3) : null,
    limit_percent: spec.limit ? round((100 * cores) / spec.limit, 3) : null,
    throttled_seconds: spec.limit ? round(rand() * 0.5, 3) : 0,
  };
}

type Reading = ReturnType<typeof nodeReading> | ReturnType<typeof podReading>;

/** Every reading of the scenario, as JSON lines by node (the sampler's message key). */
function scenario(): Map<string, string[]> {
  const rand = random(12);
  const byNode = new Map(nodes.map((n) => [n.name, [] as string[]]));
  windows.forEach((block, b) =>
    block.forEach((start, w) => {
      const outside = !inside.includes(b);
      for (const n of nodes.filter((n) => n.blocks.includes(b)))
        byNode.get(n.name)!.push(JSON.stringify(nodeReading(n, start, outside, rand)));
      const ofTheDay = outside ? -1 : (b - 1) * 5 + w; // the window's place in the day's 15
      pods.forEach((spec, i) => {
        if (!spec.blocks.includes(b)) return;
        const uid = `${(0xa0000000 + i).toString(16)}-0000-4000-8000-${String(i).padStart(12, '0')}`;
        const named = spec.name !== null && !(ofTheDay >= (spec.namelessFrom ?? Infinity));
        const scale = outside ? 3 : ofTheDay === spec.spikeAt ? 30 : 0.6 + rand() * 0.8;
        byNode.get(nodes[spec.node].name)!.push(JSON.stringify(podReading(spec, uid, start, scale, named, rand)));
      });
    }),
  );
  return byNode;
}

// ---------------------------------------------------------------- what each query must give, computed here

type Row = Record<string, string | number | null>;
type PodReading = ReturnType<typeof podReading>;

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** The percentile DuckDB's prelude gives (quantile_cont): linear between the two nearest of the sorted values. */
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = (s.length - 1) * p;
  const lo = Math.floor(h);
  return lo + 1 < s.length ? s[lo] + (h - lo) * (s[lo + 1] - s[lo]) : s[lo];
}
/** SQL's max() of strings: NULLs ignored, NULL when there are only NULLs. */
const maxOf = (xs: Array<string | null>) =>
  xs.filter((x): x is string => x !== null).reduce<string | null>((a, b) => (a === null || b > a ? b : a), null);
const compare = (a: string | null, b: string | null) => (a === b ? 0 : a === null ? 1 : b === null ? -1 : a < b ? -1 : 1);

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const x of xs) groups.set(key(x), [...(groups.get(key(x)) ?? []), x]);
  return groups;
}

/** The view pod_days for the readings given: one row a pod_uid. */
function podDays(readings: Reading[]) {
  const podReadings = readings.filter((r): r is PodReading => 'kind' in r);
  return [...groupBy(podReadings, (r) => r.pod_uid)].map(([uid, rs]) => {
    const cores = rs.map((r) => r.cores_used);
    const requestPercents = rs.map((r) => r.request_percent).filter((x) => x !== null);
    const requests = rs.map((r) => r.request_cores).filter((x) => x !== null);
    return {
      namespace: maxOf(rs.map((r) => r.namespace)),
      pod: maxOf(rs.map((r) => r.pod)) ?? uid,
      pod_uid: uid,
      readings: rs.length,
      avg_cores_used: mean(cores),
      p95_cores_used: percentile(cores, 0.95),
      max_cores_used: Math.max(...cores),
      request_cores: requests.length ? Math.max(...requests) : null,
      avg_request_percent: requestPercents.length ? mean(requestPercents) : null,
    };
  });
}

/** The row with these columns only, in this order: what a SELECT of them from pod_days gives. */
const pick = <T extends Row>(row: T, columns: Array<keyof T & string>): Row => Object.fromEntries(columns.map((c) => [c, row[c]]));

/** For each query file of sql/queries/, its result over the readings given (the day's, when the query is right). */
const expected: Record<string, (readings: Reading[]) => Row[]> = {
  'node-busy-by-day.sql': (readings) =>
    [...groupBy(readings.filter((r) => !('kind' in r)) as Array<ReturnType<typeof nodeReading>>, (r) => r.node)]
      .map(([node, rs]) => ({
        node,
        readings: rs.length,
        cores: Math.max(...rs.map((r) => r.host.cores)),
        avg_busy_percent: mean(rs.map((r) => r.host.busy_percent)),
        p95_busy_percent: percentile(
          rs.map((r) => r.host.busy_percent),
          0.95,
        ),
      }))
      .sort((a, b) => compare(a.node, b.node)),
  'pod-cores-by-day.sql': (readings) =>
    podDays(readings)
      .sort((a, b) => compare(a.namespace, b.namespace) || compare(a.pod, b.pod) || compare(a.pod_uid, b.pod_uid))
      .map((p) => pick(p, ['namespace', 'pod', 'pod_uid', 'readings', 'avg_cores_used', 'p95_cores_used'])),
  'busiest-pods.sql': (readings) =>
    podDays(readings)
      .sort((a, b) => b.avg_cores_used - a.avg_cores_used || compare(a.pod_uid, b.pod_uid))
      .slice(0, 10)
      .map((p) => pick(p, ['namespace', 'pod', 'pod_uid', 'readings', 'avg_cores_used', 'p95_cores_used', 'max_cores_used'])),
  'pods-under-20-percent-of-request.sql': (readings) =>
    podDays(readings)
      .filter((p) => p.request_cores !== null && p.avg_request_percent! < 20)
      .sort((a, b) => a.avg_request_percent! - b.avg_request_percent! || compare(a.pod_uid, b.pod_uid))
      .map((p) => pick(p, ['namespace', 'pod', 'pod_uid', 'request_cores', 'avg_cores_used', 'avg_request_percent'])),
};

/**
 * The rows are the expected ones: same columns in the same order, strings and counts equal,
 * other numbers equal to 1e-9 of their size (the engines add in another order than this file).
 */
function assertRows(actual: Row[], want: Row[]) {
  const close = (a: unknown, b: unknown) =>
    typeof a === 'number' && typeof b === 'number' && Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));
  const matched = actual.map((row, i) =>
    Object.fromEntries(Object.entries(row).map(([k, v]) => [k, close(v, want[i]?.[k]) ? want[i][k] : v])),
  );
  assert.deepEqual(matched, want);
  assert.deepEqual(
    actual.map((r) => Object.keys(r)),
    want.map((r) => Object.keys(r)),
    'column order',
  );
}

// ---------------------------------------------------------------- the files of sql/

function sqlFiles(dir = join(root, 'sql')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sqlFiles(join(dir, e.name)) : e.name.endsWith('.sql') ? [relative(root, join(dir, e.name))] : [],
  );
}

test('every file of sql/ is run or checked here: the Athena DDL offline, the rest in DuckDB', () => {
  const queries = Object.keys(expected).map((f) => `sql/queries/${f}`);
  assert.deepEqual(sqlFiles().sort(), [athenaFile, ...setupFiles, ...queries].sort());
});

/** The readings sink.ts wrote, copied out of S3 under their keys: the folder that holds dt=... */
async function throughTheSink(t: TestContext, byNode: Map<string, string[]>): Promise<string> {
  const s = await sinkScenario(t, { partitions: 2 });
  const producer = await s.producer();
  for (const [node, values] of byNode) await producer.send(s.topic, values, node);
  s.sink();
  await s.objectsWith([...byNode.values()].flat().length, 60_000);
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-sql-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keys = await downloadObjects(s.s3.endpoint, s.s3.bucket, dir);
  for (const key of keys) assert.match(key, /^cpu-levels\/dt=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/[^/]+\.jsonl\.gz$/);
  const folders = new Set(keys.map((k) => k.split('/').slice(1, 3).join('/')));
  t.diagnostic(`${[...byNode.values()].flat().length} readings in ${keys.length} objects, in ${[...folders].sort().join(', ')}`);
  return join(dir, 'cpu-levels');
}

const query = (dir: string, sql: string) => JSON.parse(duckdb(dir, ['-json', '-c', sql]) || '[]') as Row[];

test("each query of sql/ gives, in DuckDB over the sink's own files, the figures computed from the readings", async (t) => {
  const byNode = scenario();
  const lines = [...byNode.values()].flat();
  for (const line of lines) assert.ok(checkRecord(Buffer.from(line), 65_536).ok, `the sink takes ${line}`);
  const readings = lines.map((l) => JSON.parse(l) as Reading);
  const ofTheDay = readings.filter((r) => r.window_start.startsWith(day));
  const dir = await throughTheSink(t, byNode);

  // DuckDB's table is Athena's: the same columns with the same types, and every line of every file.
  const { columns, partitions } = athenaTable();
  const described = query(dir, 'DESCRIBE cpu_readings').map((c) => [c.column_name, c.column_type]);
  assert.deepEqual(
    Object.fromEntries(described),
    Object.fromEntries(Object.entries({ ...columns, ...partitions }).map(([n, type]) => [n, duckdbType(type)])),
  );
  assert.deepEqual(query(dir, 'SELECT count(*) AS readings, count(kind) AS pod_readings FROM cpu_readings'), [
    { readings: readings.length, pod_readings: readings.filter((r) => 'kind' in r).length },
  ]);

  for (const file of Object.keys(expected)) {
    await t.test(file, () => {
      const sql = readFileSync(join(root, 'sql/queries', file), 'utf8');
      assert.match(sql, new RegExp(`WHERE dt = '${day}'`), `the readings here are around ${day}: the query's example day`);
      const want = expected[file](ofTheDay);
      assert.ok(want.length > 0, 'the day has rows for it');
      // The readings outside the day would change the result: reading the day's partitions only is what passes.
      assert.notDeepEqual(expected[file](readings), want);
      assertRows(JSON.parse(duckdb(dir, ['-json', '-f', join(root, 'sql/queries', file)])) as Row[], want);
    });
  }
});

test('the scenario has the cases the queries must handle', () => {
  const readings = [...scenario().values()].flat().map((l) => JSON.parse(l) as Reading);
  const days = podDays(readings.filter((r) => r.window_start.startsWith(day)));
  const under = expected['pods-under-20-percent-of-request.sql'](readings.filter((r) => r.window_start.startsWith(day)));
  assert.ok(days.length > 10, 'more pods than the busiest ten');
  assert.ok(
    under.some((p) => p.namespace === null && p.pod === p.pod_uid),
    'an unnamed pod under 20 %, shown by its uid',
  );
  assert.ok(
    under.some((p) => p.pod === 'worker-77d9f-pqrst'),
    'a pod named in some readings only, under its name',
  );
  assert.ok(
    days.some((p) => p.request_cores === null),
    'a pod without a request',
  );
  assert.ok(
    days.some((p) => p.request_cores !== null && p.avg_request_percent! >= 20),
    'a pod with a request, used above 20 %',
  );
  assert.equal(days.filter((p) => p.pod === 'postgres-0').length, 2, 'one name, two pods');
  const busiest = (by: 'avg_cores_used' | 'max_cores_used') => [...days].sort((a, b) => b[by] - a[by]).map((p) => p.pod_uid);
  assert.notDeepEqual(busiest('avg_cores_used'), busiest('max_cores_used'), 'a pod whose peak is high and average is not');
});
