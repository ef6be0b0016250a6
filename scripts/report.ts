/**
 * `npm run report`: what the sink wrote, checked for completeness and drawn as CPU over time.
 *
 * Why: "every reading once" is a claim about the bucket, and a person should be able to see that it
 * holds, or where it does not, without setting up Athena: a missing minute or a reading written
 * twice is named here, and the CPU of every node and of the busiest pods is one picture.
 *
 * What: reads every reading under a bucket and prefix of any S3-compatible endpoint, then
 *   - checks completeness: per node, the windows between its first and its last reading that have
 *     no reading (at the interval the node's readings show), and readings written more than once
 *     (a node's reading, or one pod's, for the same window in two places: two objects, or twice in one);
 *   - prints a summary table: per node the readings, first and last, missing windows, duplicates,
 *     average and highest busy; then the top pods by average cores used;
 *   - writes one self-contained HTML page: host busy per node and cores used by the top pods over
 *     time as inline SVG, a gap wherever a window is missing, and the lists of gaps and duplicates.
 *     Nothing in it is fetched (no script, stylesheet or font; its Content-Security-Policy says so).
 *
 * How: lists the objects (with --from/--to, only from the first hour folder to the last: the sink
 * files each reading under the hour of its window_start, and keys sort by time), reads them 8 at a
 * time, un-gzips, parses each line. A node's reading has no `kind`, a pod's has kind "pod"; other
 * lines are counted as unreadable. A window is known by its end (windows end on multiples of the
 * interval; the first after a start is shorter); a node's interval is its windows' most common
 * length. Averages and lines use one copy of each reading. Every reading is held in memory: for a
 * large cluster, narrow the time range.
 *
 * Settings: a flag, or else its environment variable (the sink's names), default in brackets:
 *   --bucket, S3_BUCKET                  the bucket (required)
 *   --prefix, S3_PREFIX [cpu-levels]     the sink's S3_PREFIX
 *   --endpoint, S3_ENDPOINT [AWS]        any S3-compatible endpoint, e.g. http://127.0.0.1:9000
 *   --region, S3_REGION [$AWS_REGION or eu-west-1]
 *   --path-style, S3_FORCE_PATH_STYLE [false]   path-style addressing (most non-AWS servers)
 *   --from, REPORT_FROM; --to, REPORT_TO        readings whose window starts in [from, to): ISO 8601
 *                                        with a zone (2026-11-27T05:00Z) or a date (UTC midnight)
 *   --top-pods, REPORT_TOP_PODS [10]     pods drawn and listed, the highest average cores used first
 *   --out, REPORT_OUT [cpu-report.html]  the HTML page; relative to the directory npm was run in
 *   Credentials: the AWS SDK's default chain, as sink.ts (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
 *   AWS_PROFILE, IRSA web identity, instance profile); nothing here reads keys itself.
 *
 * Run: `npm run report -- --bucket my-bucket`; against `npm start`'s stack: `AWS_ACCESS_KEY_ID=local
 * AWS_SECRET_ACCESS_KEY=local-secret npm run report -- --bucket cpu-pipeline-local --endpoint
 * http://127.0.0.1:9000 --path-style`. Exit 0: report written; 1: S3 could not be read, or there is
 * no reading to report (the message says which, naming the setting); 2: a bad setting, named.
 */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { ConfigError, configOrExit, envReader } from '../lib/runtime.ts';
import { checkUrl, s3Client } from '../sink.ts';

// ---------------------------------------------------------------- configuration

export interface ReportConfig {
  bucket: string;
  prefix: string;
  endpoint: string | undefined;
  region: string;
  forcePathStyle: boolean;
  from: number | undefined;
  to: number | undefined;
  topPods: number;
  out: string;
  help: boolean;
}

type Env = Record<string, string | undefined>;

/** Each setting's flag and the environment variable it falls back to. */
const settings = {
  bucket: 'S3_BUCKET',
  prefix: 'S3_PREFIX',
  endpoint: 'S3_ENDPOINT',
  region: 'S3_REGION',
  'path-style': 'S3_FORCE_PATH_STYLE',
  from: 'REPORT_FROM',
  to: 'REPORT_TO',
  'top-pods': 'REPORT_TOP_PODS',
  out: 'REPORT_OUT',
} as const;
type Flag = keyof typeof settings;

/** How a person names a setting in a message: both ways to give it. */
export const settingName = (flag: Flag) => `--${flag} or ${settings[flag]}`;

/**
 * Every setting from the flags, or else the environment, checked in one place. Throws one
 * ConfigError naming each bad one by what was used (the flag if given, the variable otherwise).
 */
export function loadConfig(argv: string[], env: Env = process.env): ReportConfig {
  let flags: Partial<Record<Flag | 'help', string | boolean>>;
  try {
    const string = { type: 'string' } as const;
    flags = parseArgs({
      args: argv,
      options: {
        bucket: string,
        prefix: string,
        endpoint: string,
        region: string,
        'path-style': { type: 'boolean' },
        from: string,
        to: string,
        'top-pods': string,
        out: string,
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (npm run report -- --help lists the flags)`);
  }
  // A flag wins over its variable; envReader then reads it under the flag's name, so a bad value is reported as given.
  const source: Env = { ...env };
  const name = (flag: Flag): string => {
    const value = flags[flag];
    if (value === undefined) return settings[flag];
    source[`--${flag}`] = String(value);
    return `--${flag}`;
  };
  const e = envReader(source);
  const regionVar = flags.region === undefined && env.S3_REGION === undefined && env.AWS_REGION?.trim() ? 'AWS_REGION' : name('region');
  const time = (flag: 'from' | 'to') => {
    const text = e.string(name(flag), '', (v) =>
      v === '' || parseTime(v) !== undefined ? undefined : 'an ISO 8601 time with a zone (2026-11-27T05:00Z) or a date',
    );
    return text === '' ? undefined : parseTime(text);
  };
  const config: ReportConfig = {
    bucket: e.string(name('bucket'), '', (v) =>
      v === ''
        ? `the bucket to read: set ${settingName('bucket')}`
        : /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(v)
          ? undefined
          : 'an S3 bucket name (3-63 of a-z 0-9 . -)',
    ),
    prefix: e.string(name('prefix'), 'cpu-levels', (v) =>
      /^[^/].*[^/]$|^[^/]$|^$/.test(v) ? undefined : 'a key prefix without leading or trailing /',
    ),
    endpoint: e.string(name('endpoint'), '', checkUrl) || undefined,
    region: e.string(regionVar, 'eu-west-1', (v) => (/^[a-z]{2}(-[a-z]+)+-\d+$/.test(v) ? undefined : 'an AWS region such as eu-west-1')),
    forcePathStyle: /^(true|1|yes)$/i.test(
      e.string(name('path-style'), 'false', (v) => (/^(true|false|1|0|yes|no)$/i.test(v) ? undefined : 'true or false')),
    ),
    from: time('from'),
    to: time('to'),
    topPods: e.number(name('top-pods'), 10, { min: 0, max: 100, integer: true }),
    out: resolve(
      env.INIT_CWD ?? process.cwd(),
      e.string(name('out'), 'cpu-report.html', (v) => (v ? undefined : 'a file name')),
    ),
    help: flags.help === true,
  };
  if (config.from !== undefined && config.to !== undefined && config.from >= config.to) {
    e.problems.push(`${name('to')}=${JSON.stringify(new Date(config.to).toISOString())}: expected a time after ${name('from')}`);
  }
  if (!config.help) e.done();
  return config;
}

/** An ISO 8601 time with a zone, or a date (UTC midnight), as epoch ms; a time without a zone is refused (whose local time?). */
export function parseTime(text: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}$|^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

// ---------------------------------------------------------------- readings

/** Where a reading was found: the object and the line (from 1). */
export interface Place {
  key: string;
  line: number;
}

export type Reading =
  | { kind: 'node'; node: string; start: number; end: number; busy: number; place: Place }
  | {
      kind: 'pod';
      node: string;
      uid: string;
      pod: string | null;
      namespace: string | null;
      start: number;
      end: number;
      cores: number;
      place: Place;
    };

/** One line of a file as a reading, or why it is not one. */
export function parseLine(text: string, place: Place): Reading | string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof r !== 'object' || r === null) return 'not a JSON object';
  const start = typeof r.window_start === 'string' ? Date.parse(r.window_start) : NaN;
  const end = typeof r.window_end === 'string' ? Date.parse(r.window_end) : NaN;
  if (!(end > start) || typeof r.node !== 'string') return 'no node, window_start and window_end';
  const node = r.node;
  const named = (v: unknown) => (typeof v === 'string' && v !== '' ? v : null);
  if (r.kind === 'pod') {
    if (typeof r.pod_uid !== 'string' || typeof r.cores_used !== 'number') return 'a pod reading without pod_uid and cores_used';
    const { pod_uid: uid, cores_used: cores } = r;
    return { kind: 'pod', node, uid, pod: named(r.pod), namespace: named(r.namespace), start, end, cores, place };
  }
  if (r.kind !== undefined) return `kind ${JSON.stringify(r.kind)} is not known`;
  const busy = (r.host as { busy_percent?: unknown } | null)?.busy_percent;
  if (typeof busy !== 'number') return 'a node reading without host.busy_percent';
  return { kind: 'node', node, start, end, busy, place };
}

// ---------------------------------------------------------------- completeness

export interface Point {
  t: number;
  v: number;
}

/** Missing windows in a row: from the start of the first to the end of the last. */
export interface Gap {
  from: number;
  to: number;
  windows: number;
}

export interface NodeSummary {
  node: string;
  /** Distinct windows with a reading. */
  readings: number;
  first: number;
  last: number;
  intervalMs: number;
  missing: number;
  gaps: Gap[];
  /** Copies beyond the first of this node's readings. */
  duplicates: number;
  busyAvg: number;
  busyMax: number;
  /** busy_percent at each window's end, in time order, one per window. */
  points: Point[];
}

export interface PodSummary {
  uid: string;
  /** namespace/name, or the UID when the pod was never named. */
  label: string;
  named: boolean;
  node: string;
  readings: number;
  intervalMs: number;
  coresAvg: number;
  coresMax: number;
  points: Point[];
}

/** One reading found in more than one place. */
export interface Duplicate {
  kind: 'node' | 'pod';
  /** The node, or the pod's label. */
  who: string;
  /** The window's end. */
  window: number;
  places: Place[];
}

export interface Analysis {
  nodes: NodeSummary[];
  /** Highest average cores used first. */
  pods: PodSummary[];
  duplicates: Duplicate[];
  nodeReadings: number;
  podReadings: number;
  from: number;
  to: number;
}

const byPlace = (a: Reading, b: Reading) => (a.place.key < b.place.key ? -1 : a.place.key > b.place.key ? 1 : a.place.line - b.place.line);

/** The most common window length (to the second); on a tie the longer one (a first window is shorter). */
export function windowInterval(readings: Array<{ start: number; end: number }>): number {
  const counts = new Map<number, number>();
  for (const r of readings) {
    const len = Math.round((r.end - r.start) / 1000) * 1000 || r.end - r.start;
    counts.set(len, (counts.get(len) ?? 0) + 1);
  }
  let best = 0;
  let most = 0;
  for (const [len, n] of counts) if (n > most || (n === most && len > best)) [best, most] = [len, n];
  return best;
}

/** Windows of `intervalMs` between the first and the last end that have no end in `ends` (sorted), grouped into runs. */
export function gapsBetween(ends: number[], intervalMs: number): Gap[] {
  const have = new Set(ends);
  const gaps: Gap[] = [];
  const last = ends.at(-1)!;
  for (let e = ends[0] + intervalMs; e < last; e += intervalMs) {
    if (have.has(e)) continue;
    const run = gaps.at(-1);
    if (run && run.to === e - intervalMs) {
      run.to = e;
      run.windows++;
    } else gaps.push({ from: e - intervalMs, to: e, windows: 1 });
  }
  return gaps;
}

/** Average and highest of a non-empty list (in a loop: a long list spread into Math.max overflows the stack). */
function stats(values: number[]): { avg: number; max: number } {
  let sum = 0;
  let max = -Infinity;
  for (const v of values) [sum, max] = [sum + v, Math.max(max, v)];
  return { avg: sum / values.length, max };
}

const podLabel = (uid: string, named: Reading | undefined) =>
  named?.kind === 'pod' && named.pod !== null ? `${named.namespace ?? '?'}/${named.pod}` : uid;

/**
 * Completeness and CPU of a set of readings, in any order: one copy of each reading counts (the one
 * in the first place by key and line), the others are listed as duplicates.
 */
export function analyse(readings: Reading[]): Analysis {
  const copies = new Map<string, Reading[]>();
  for (const r of readings) {
    const id = r.kind === 'node' ? `node\0${r.node}\0${r.end}` : `pod\0${r.uid}\0${r.end}`;
    const list = copies.get(id);
    if (list) list.push(r);
    else copies.set(id, [r]);
  }
  const nodes = new Map<string, Array<Extract<Reading, { kind: 'node' }>>>();
  const pods = new Map<string, Array<Extract<Reading, { kind: 'pod' }>>>();
  const repeated: Reading[][] = [];
  for (const list of copies.values()) {
    list.sort(byPlace);
    const r = list[0];
    if (list.length > 1) repeated.push(list);
    if (r.kind === 'node') nodes.get(r.node)?.push(r) ?? nodes.set(r.node, [r]);
    else pods.get(r.uid)?.push(r) ?? pods.set(r.uid, [r]);
  }
  const extra = new Map<string, number>();
  for (const list of repeated) if (list[0].kind === 'node') extra.set(list[0].node, (extra.get(list[0].node) ?? 0) + list.length - 1);

  const nodeSummaries = [...nodes].map(([node, list]): NodeSummary => {
    list.sort((a, b) => a.end - b.end);
    const intervalMs = windowInterval(list);
    const gaps = gapsBetween(
      list.map((r) => r.end),
      intervalMs,
    );
    const busy = stats(list.map((r) => r.busy));
    return {
      node,
      readings: list.length,
      first: list[0].start,
      last: list.at(-1)!.end,
      intervalMs,
      missing: gaps.reduce((n, g) => n + g.windows, 0),
      gaps,
      duplicates: extra.get(node) ?? 0,
      busyAvg: busy.avg,
      busyMax: busy.max,
      points: list.map((r) => ({ t: r.end, v: r.busy })),
    };
  });
  const podSummaries = [...pods].map(([uid, list]): PodSummary => {
    list.sort((a, b) => a.end - b.end);
    const cores = stats(list.map((r) => r.cores));
    const named = list.findLast((r) => r.pod !== null);
    return {
      uid,
      label: podLabel(uid, named),
      named: named !== undefined,
      node: list.at(-1)!.node,
      readings: list.length,
      intervalMs: windowInterval(list),
      coresAvg: cores.avg,
      coresMax: cores.max,
      points: list.map((r) => ({ t: r.end, v: r.cores })),
    };
  });
  const labels = new Map(podSummaries.map((p) => [p.uid, p.label]));
  const duplicates = repeated
    .map((list): Duplicate => {
      const r = list[0];
      return { kind: r.kind, who: r.kind === 'node' ? r.node : labels.get(r.uid)!, window: r.end, places: list.map((c) => c.place) };
    })
    .sort((a, b) => a.window - b.window || a.who.localeCompare(b.who));
  let from = Infinity;
  let to = -Infinity;
  for (const [r] of copies.values()) [from, to] = [Math.min(from, r.start), Math.max(to, r.end)];
  return {
    nodes: nodeSummaries.sort((a, b) => a.node.localeCompare(b.node)),
    pods: podSummaries.sort((a, b) => b.coresAvg - a.coresAvg || a.label.localeCompare(b.label)),
    duplicates,
    nodeReadings: readings.filter((r) => r.kind === 'node').length,
    podReadings: readings.filter((r) => r.kind === 'pod').length,
    from,
    to,
  };
}

// ---------------------------------------------------------------- reading the bucket

/** The hour folder the sink files a reading of this time under (sink.ts timePartition). */
export function hourFolder(prefix: string, ms: number): string {
  const iso = new Date(ms).toISOString();
  return [prefix, `dt=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}/`].filter(Boolean).join('/');
}

/**
 * The files under the prefix, in key order. With a range only the hour folders it covers: listing
 * starts after the first hour's folder name and stops past the last (keys sort by time).
 */
export async function listFiles(s3: S3Client, c: Pick<ReportConfig, 'bucket' | 'prefix' | 'from' | 'to'>): Promise<string[]> {
  const keys: string[] = [];
  const first = c.from === undefined ? undefined : hourFolder(c.prefix, c.from).slice(0, -1);
  const last = c.to === undefined ? undefined : hourFolder(c.prefix, c.to - 1);
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({
        Bucket: c.bucket,
        Prefix: c.prefix ? `${c.prefix}/` : undefined,
        StartAfter: token ? undefined : first,
        ContinuationToken: token,
      }),
    );
    for (const { Key: key } of page.Contents ?? []) {
      if (last !== undefined && key!.slice(0, last.length) > last) return keys;
      if (/\.jsonl(\.gz)?$/.test(key!)) keys.push(key!);
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

const gunzipAsync = promisify(gunzip);

/** Every reading in the files whose window starts in the range; lines that are not readings are counted. */
export async function readFiles(
  s3: S3Client,
  c: Pick<ReportConfig, 'bucket' | 'from' | 'to'>,
  keys: string[],
): Promise<{ readings: Reading[]; unreadable: Array<Place & { why: string }> }> {
  const readings: Reading[] = [];
  const unreadable: Array<Place & { why: string }> = [];
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++];
      const res = await s3.send(new GetObjectCommand({ Bucket: c.bucket, Key: key }));
      let body = Buffer.from(await res.Body!.transformToByteArray());
      if (body[0] === 0x1f && body[1] === 0x8b) body = await gunzipAsync(body);
      body
        .toString('utf8')
        .split('\n')
        .forEach((text, i) => {
          if (text.trim() === '') return;
          const r = parseLine(text, { key, line: i + 1 });
          if (typeof r === 'string') unreadable.push({ key, line: i + 1, why: r });
          else if ((c.from === undefined || r.start >= c.from) && (c.to === undefined || r.start < c.to)) readings.push(r);
        });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { readings, unreadable };
}

/** What went wrong reading S3, in words that name the setting to look at. */
export function s3Problem(err: unknown, c: Pick<ReportConfig, 'bucket' | 'endpoint' | 'region'>): string {
  const e = err as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const where = c.endpoint ?? `AWS S3 (${c.region})`;
  const status = e.$metadata?.httpStatusCode;
  const detail = `${e.name ?? 'Error'}: ${e.message ?? String(err)}`;
  if (e.name === 'NoSuchBucket') return `bucket ${c.bucket} does not exist at ${where} (${settingName('bucket')})`;
  if (e.name === 'CredentialsProviderError')
    return `no AWS credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role): ${e.message}`;
  if (e.name === 'PermanentRedirect' || status === 301)
    return `bucket ${c.bucket} is in another region than ${c.region} (${settingName('region')}): ${detail}`;
  if (status === 403 || /AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch/.test(e.name ?? ''))
    return `${where} refused access to bucket ${c.bucket}: check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, the role) and ${settingName('region')}: ${detail}`;
  const network = /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH)$/;
  if (network.test(e.code ?? '') || network.test(e.name ?? '') || /TimeoutError|RequestTimeout/.test(e.name ?? ''))
    return `cannot reach the S3 endpoint ${where} (${settingName('endpoint')}): ${e.code ?? detail}`;
  return `reading s3://${c.bucket} at ${where} failed: ${detail}`;
}

// ---------------------------------------------------------------- chart geometry

/** A linear map from a domain to a range; an empty domain maps to the middle of the range. */
export function linear([d0, d1]: [number, number], [r0, r1]: [number, number]): (v: number) => number {
  if (d1 === d0) return () => (r0 + r1) / 2;
  const k = (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

/** A round step near `rough`: 1, 2, 2.5 or 5 times a power of ten. */
export function niceStep(rough: number): number {
  const exp = 10 ** Math.floor(Math.log10(rough));
  const f = rough / exp;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * exp;
}

/** Value axis ticks from 0 to a round top at or above `max`, about four steps. */
export function valueTicks(max: number): number[] {
  const step = niceStep(max > 0 ? max / 4 : 0.25);
  const steps = Math.max(1, Math.ceil(max / step - 1e-9));
  return Array.from({ length: steps + 1 }, (_, i) => Number((i * step).toPrecision(12)));
}

const second = 1000;
const minute = 60 * second;
const hour = 60 * minute;
const day = 24 * hour;
const timeSteps = [1, 5, 10, 15, 30]
  .map((s) => s * second)
  .concat(
    [1, 2, 5, 10, 15, 30].map((m) => m * minute),
    [1, 2, 3, 6, 12].map((h) => h * hour),
    [1, 2, 7].map((d) => d * day),
  );

/** Time axis ticks: the smallest round step (in UTC) that gives at most `most` ticks in [t0, t1]. */
export function timeTicks(t0: number, t1: number, most = 8): { step: number; ticks: number[] } {
  const step = timeSteps.find((s) => Math.floor(t1 / s) - Math.ceil(t0 / s) + 1 <= most) ?? Math.ceil((t1 - t0) / most / day) * day;
  const ticks: number[] = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
  return { step, ticks };
}

const r1 = (v: number) => Math.round(v * 10) / 10;

/**
 * An SVG path through the points (time order): consecutive windows are joined; where windows are
 * missing (the next point is more than 1.5 intervals on) the line stops and starts again, so a gap
 * shows as a gap. A point with no neighbour is drawn as a dot (a zero-length line with round caps).
 */
export function seriesPath(points: Point[], intervalMs: number, x: (t: number) => number, y: (v: number) => number): string {
  const joined = (a: Point | undefined, b: Point | undefined) => a !== undefined && b !== undefined && b.t - a.t <= intervalMs * 1.5;
  return points
    .map((p, i) => {
      const xy = `${r1(x(p.t))},${r1(y(p.v))}`;
      if (joined(points[i - 1], p)) return `L${xy}`;
      return joined(p, points[i + 1]) ? `M${xy}` : `M${xy}h0`;
    })
    .join('');
}

const palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#bcbd22', '#17becf', '#393b79'];

/** The colour of line i: ten well-separated ones, then hues a golden angle apart. */
export function colour(i: number): string {
  if (i < palette.length) return palette[i];
  const h = ((i - palette.length) * 137.508) % 360;
  const f = (n: number) => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (0.45 - 0.35 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return `#${[f(0), f(8), f(4)].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

// ---------------------------------------------------------------- HTML

/** Text made safe for HTML and SVG, in element content and in quoted attributes alike. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** 2026-11-27 05:13 (with :ss when the seconds are not 0), UTC. */
export function formatTime(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.slice(0, 10) + ' ' + iso.slice(11, iso.slice(17, 19) === '00' ? 16 : 19);
}

/** 90 s, 3 min, 2 h 5 min. */
export function formatDuration(ms: number): string {
  if (ms < minute) return `${r1(ms / second)} s`;
  if (ms < hour) return `${r1(ms / minute)} min`;
  return `${Math.floor(ms / hour)} h${ms % hour ? ` ${Math.round((ms % hour) / minute)} min` : ''}`;
}

export interface Series {
  name: string;
  colour: string;
  intervalMs: number;
  points: Point[];
}

export interface Chart {
  id: string;
  title: string;
  /** The value axis' title, with its unit. */
  unit: string;
  series: Series[];
  /** The time axis, shared by the charts of one report. */
  from: number;
  to: number;
  /** Top of the value axis; from the data when not given. */
  max?: number;
}

const size = { width: 960, height: 320, left: 64, right: 16, top: 16, bottom: 48 };

/**
 * One chart as inline SVG: the plot area (rect.plot), value and time axes with ticks and titles, and
 * one path.series per series (its name in data-name and in a tooltip). data-from and data-to hold
 * the time axis' ends (epoch ms) so that a reader can find a time's place.
 */
export function lineChart(c: Chart): string {
  const { width, height, left, right, top, bottom } = size;
  const [t0, t1] = c.from === c.to ? [c.from - minute, c.to + minute] : [c.from, c.to];
  const yTicks = valueTicks(c.max ?? c.series.reduce((m, s) => Math.max(m, stats(s.points.map((p) => p.v)).max), 0));
  const x = linear([t0, t1], [left, width - right]);
  const y = linear([0, yTicks.at(-1)!], [height - bottom, top]);
  const { step, ticks } = timeTicks(t0, t1);
  const out: string[] = [
    `<svg id="${c.id}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(c.title)}" data-from="${t0}" data-to="${t1}">`,
    `<rect class="plot" x="${left}" y="${top}" width="${width - left - right}" height="${height - top - bottom}" fill="#fff" stroke="#bbb"/>`,
  ];
  for (const v of yTicks) {
    out.push(`<line x1="${left}" x2="${width - right}" y1="${r1(y(v))}" y2="${r1(y(v))}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${left - 6}" y="${r1(y(v)) + 4}" text-anchor="end">${v}</text>`);
  }
  let lastDay = '';
  for (const t of ticks) {
    const iso = new Date(t).toISOString();
    const [date, label] = [iso.slice(0, 10), iso.slice(11, step < minute ? 19 : 16)];
    out.push(`<line x1="${r1(x(t))}" x2="${r1(x(t))}" y1="${height - bottom}" y2="${height - bottom + 5}" stroke="#555"/>`);
    out.push(
      `<text x="${r1(x(t))}" y="${height - bottom + 18}" text-anchor="middle">${label}` +
        (date !== lastDay ? `<tspan x="${r1(x(t))}" dy="14">${date}</tspan>` : '') +
        `</text>`,
    );
    lastDay = date;
  }
  out.push(`<text x="${width - right}" y="${height - 4}" text-anchor="end">time (UTC)</text>`);
  out.push(
    `<text transform="translate(14 ${top + (height - top - bottom) / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(c.unit)}</text>`,
  );
  for (const s of c.series) {
    out.push(
      `<path class="series" data-name="${escapeHtml(s.name)}" d="${seriesPath(s.points, s.intervalMs, x, y)}" fill="none" stroke="${s.colour}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"><title>${escapeHtml(s.name)}</title></path>`,
    );
  }
  out.push('</svg>');
  const legend = c.series.map((s) => `<li><span class="swatch" style="background:${s.colour}"></span>${escapeHtml(s.name)}</li>`).join('');
  return `<figure><figcaption>${escapeHtml(c.title)}</figcaption>${out.join('\n')}<ul class="legend">${legend}</ul></figure>`;
}

// ---------------------------------------------------------------- tables (terminal and HTML)

interface Table {
  head: string[];
  /** 'l' or 'r' per column. */
  align: string;
  rows: string[][];
}

const percent = (v: number) => `${v.toFixed(1)} %`;

export function nodeTable(a: Analysis): Table {
  return {
    head: ['node', 'readings', 'first', 'last', 'interval', 'missing', 'duplicates', 'busy avg', 'busy max'],
    align: 'lrllrrrrr',
    rows: a.nodes.map((n) => [
      n.node,
      String(n.readings),
      formatTime(n.first),
      formatTime(n.last),
      formatDuration(n.intervalMs),
      n.missing ? `${n.missing} (${formatDuration(n.missing * n.intervalMs)})` : '0',
      String(n.duplicates),
      percent(n.busyAvg),
      percent(n.busyMax),
    ]),
  };
}

export function podTable(a: Analysis, top: number): Table {
  return {
    head: ['pod', 'node', 'readings', 'cores avg', 'cores max'],
    align: 'llrrr',
    rows: a.pods.slice(0, top).map((p) => [p.label, p.node, String(p.readings), p.coresAvg.toFixed(3), p.coresMax.toFixed(3)]),
  };
}

/** 1 window, 3 windows. */
export const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** Each gap as one line: node, from, to, how many windows. */
export const gapLines = (a: Analysis) =>
  a.nodes.flatMap((n) =>
    n.gaps.map(
      (g) =>
        `${n.node}: no reading from ${formatTime(g.from)} to ${formatTime(g.to)} UTC (${count(g.windows, 'window')}, ${formatDuration(g.to - g.from)})`,
    ),
  );

/** Each duplicate as one line: what, which window, where each copy is. */
export const duplicateLines = (a: Analysis) =>
  a.duplicates.map(
    (d) =>
      `${d.kind} ${d.who}, window ending ${formatTime(d.window)} UTC: ${d.places.length} copies, in ${d.places.map((p) => `${p.key} line ${p.line}`).join(' and ')}`,
  );

export function textTable(t: Table): string {
  const widths = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (t.align[i] === 'r' ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(t.head), line(widths.map((w) => '-'.repeat(w))), ...t.rows.map(line)].join('\n') + '\n';
}

function htmlTable(t: Table): string {
  const cell = (tag: string, c: string, i: number) => `<${tag}${t.align[i] === 'r' ? ' class="num"' : ''}>${escapeHtml(c)}</${tag}>`;
  return (
    `<table><thead><tr>${t.head.map((h, i) => cell('th', h, i)).join('')}</tr></thead><tbody>` +
    t.rows.map((r) => `<tr>${r.map((c, i) => cell('td', c, i)).join('')}</tr>`).join('\n') +
    '</tbody></table>'
  );
}

export interface Source {
  /** s3://bucket/prefix/ and where. */
  location: string;
  objects: number;
  unreadable: Array<Place & { why: string }>;
}

const totals = (a: Analysis, s: Source) =>
  `${count(a.nodes.length, 'node')}, ${count(a.pods.length, 'pod')}; ${count(a.nodeReadings, 'node reading')} and ${count(a.podReadings, 'pod reading')} in ${count(s.objects, 'object')}` +
  (s.unreadable.length ? `; ${count(s.unreadable.length, 'line that is not a reading', 'lines that are not readings')}` : '');

const listOr = (lines: string[], none: string) => (lines.length ? lines : [none]);

/** Said under the pods' table when one of them is shown by its UID. */
const unnamedNote = (a: Analysis, top: number) =>
  a.pods.slice(0, top).some((p) => !p.named)
    ? 'A pod shown by its UID had no name in any of its readings (the sampler could not learn it).\n'
    : '';

/** The terminal summary. */
export function summaryText(a: Analysis, s: Source, top: number): string {
  const out = [
    `CPU report: ${s.location}, ${formatTime(a.from)} to ${formatTime(a.to)} UTC`,
    totals(a, s),
    '',
    textTable(nodeTable(a)),
    `Missing windows (${a.nodes.reduce((n, x) => n + x.missing, 0)}):`,
    ...listOr(gapLines(a), 'none').map((l) => `  ${l}`),
    `Written more than once (${count(a.duplicates.length, 'reading')}, ${count(
      a.duplicates.reduce((n, d) => n + d.places.length - 1, 0),
      'extra copy',
      'extra copies',
    )}):`,
    ...listOr(duplicateLines(a), 'none').map((l) => `  ${l}`),
    ...s.unreadable.slice(0, 10).map((u) => `  not a reading: ${u.key} line ${u.line}: ${u.why}`),
    '',
  ];
  if (top > 0 && a.pods.length)
    out.push(
      `Top ${Math.min(top, a.pods.length)} of ${a.pods.length} pods by average cores used:`,
      textTable(podTable(a, top)) + unnamedNote(a, top),
    );
  return out.join('\n');
}

const style = `
body { font: 14px/1.45 system-ui, 'DejaVu Sans', sans-serif; color: #222; margin: 24px; max-width: 1000px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.source { color: #555; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 8px 0 24px; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg text { font: 12px system-ui, 'DejaVu Sans', sans-serif; fill: #333; }
.legend { list-style: none; padding: 0; margin: 6px 0 0 64px; display: flex; flex-wrap: wrap; gap: 4px 18px; }
.swatch { display: inline-block; width: 18px; height: 4px; margin-right: 6px; vertical-align: middle; border-radius: 2px; }
ul.list { margin: 4px 0; padding-left: 20px; } .none { color: #555; }`;

/** The whole page: summary tables, the two charts, the lists of gaps and duplicates. Nothing in it is fetched. */
export function renderHtml(a: Analysis, s: Source, top: number): string {
  const nodes = a.nodes.map((n, i) => ({ name: n.node, colour: colour(i), intervalMs: n.intervalMs, points: n.points }));
  const pods = a.pods.slice(0, top).map((p, i) => ({ name: p.label, colour: colour(i), intervalMs: p.intervalMs, points: p.points }));
  const list = (lines: string[]) =>
    lines.length ? `<ul class="list">${lines.map((l) => `<li>${escapeHtml(l)}</li>`).join('')}</ul>` : '<p class="none">None.</p>';
  const range = `${formatTime(a.from)} to ${formatTime(a.to)} UTC`;
  const note = unnamedNote(a, top);
  const podSection =
    a.pods.length === 0
      ? '<p class="none">No pod readings.</p>'
      : pods.length === 0
        ? `<p class="none">Not drawn (${settingName('top-pods')} is 0).</p>`
        : htmlTable(podTable(a, top)) +
          (note ? `<p class="none">${escapeHtml(note.trim())}</p>` : '') +
          lineChart({
            id: 'pods',
            title: `Cores used by the top ${pods.length} of ${a.pods.length} pods (per window)`,
            unit: 'cores',
            series: pods,
            from: a.from,
            to: a.to,
          });
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CPU report: ${escapeHtml(s.location)}</title>
<style>${style}</style>
</head>
<body>
<h1>CPU over time</h1>
<p class="source">${escapeHtml(s.location)}, ${range}. ${escapeHtml(totals(a, s))}.</p>
<h2>Nodes</h2>
${htmlTable(nodeTable(a))}
${lineChart({ id: 'busy', title: 'Host busy per node (% of all cores, per window)', unit: 'busy, %', series: nodes, from: a.from, to: a.to, max: 100 })}
<h2>Missing windows</h2>
${list(gapLines(a))}
<h2>Written more than once</h2>
${list(duplicateLines(a))}
<h2>Top pods by average cores used</h2>
${podSection}
</body>
</html>
`;
}

// ---------------------------------------------------------------- main

function fail(message: string): never {
  process.stderr.write(`report: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  const config = configOrExit('report', () => loadConfig(process.argv.slice(2)));
  if (config.help) {
    process.stdout.write('Usage: npm run report -- --bucket NAME [--prefix P] [--endpoint URL] [--region R] [--path-style]\n');
    process.stdout.write('       [--from TIME] [--to TIME] [--top-pods N] [--out FILE]   (scripts/report.ts says more)\n');
    return;
  }
  const s3 = s3Client({ ...config, requestTimeoutMs: 30_000 });
  const location = `s3://${config.bucket}/${config.prefix ? `${config.prefix}/` : ''} at ${config.endpoint ?? `AWS S3 (${config.region})`}`;
  const range =
    config.from === undefined && config.to === undefined
      ? ''
      : ` with a window starting ${[
          config.from === undefined ? '' : `at or after ${formatTime(config.from)}`,
          config.to === undefined ? '' : `before ${formatTime(config.to)}`,
        ]
          .filter(Boolean)
          .join(' and ')} UTC`;
  let keys: string[];
  let found: Awaited<ReturnType<typeof readFiles>>;
  try {
    keys = await listFiles(s3, config);
    if (keys.length === 0)
      fail(
        `no reading files under ${location}${range ? ` in the hours asked for` : ''}: check ${settingName('prefix')} and ${settingName('bucket')}`,
      );
    process.stderr.write(`report: reading ${keys.length} files from ${location}\n`);
    found = await readFiles(s3, config, keys);
  } catch (err) {
    fail(s3Problem(err, config));
  }
  if (found.readings.length === 0) fail(`no readings${range} in the ${keys.length} files under ${location}`);
  const analysis = analyse(found.readings);
  const source: Source = { location, objects: keys.length, unreadable: found.unreadable };
  await writeFile(config.out, renderHtml(analysis, source, config.topPods)).catch((err: Error) =>
    fail(`cannot write the page to ${config.out} (${settingName('out')}): ${err.message}`),
  );
  process.stdout.write(summaryText(analysis, source, config.topPods));
  process.stdout.write(`\nThe page: ${pathToFileURL(config.out).href}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
