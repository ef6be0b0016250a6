/**
 * scripts/report.ts's pure parts: parsing lines, completeness (gaps, duplicates, readings out of
 * order and across hours), chart geometry, HTML escaping, settings and S3 error messages.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  analyse,
  escapeHtml,
  gapLines,
  hourFolder,
  lineChart,
  linear,
  loadConfig,
  parseLine,
  renderHtml,
  s3Problem,
  seriesPath,
  summaryText,
  timeTicks,
  valueTicks,
  windowInterval,
  type Reading,
} from '../../scripts/report.ts';
import { configErrorOf } from './config-error.ts';

const fixture = (name: string) => JSON.parse(readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8'));
const nodeFixture = fixture('reading-v1.json');
const podFixture = fixture('pod-reading-v1.json');

const t0 = Date.UTC(2026, 10, 27, 5, 0);
const min = 60_000;

/** Node `node`'s reading of the window ending at t0 + `minute` minutes, found in object `key`. */
function nodeReading(node: string, minute: number, busy = 10, key = 'k', line = 1, lengthMs = min): Reading {
  const end = t0 + minute * min;
  return { kind: 'node', node, start: end - lengthMs, end, busy, place: { key, line } };
}

function podReading(uid: string, minute: number, cores: number, name: [string, string] | null, key = 'k', line = 1): Reading {
  const end = t0 + minute * min;
  const [namespace, pod] = name ?? [null, null];
  return { kind: 'pod', node: 'node-a', uid, pod, namespace, start: end - min, end, cores, place: { key, line } };
}

/** What analyse lists for a reading of the window ending at minute `minute` found at each [key, line]. */
const duplicate = (kind: 'node' | 'pod', who: string, minute: number, ...places: Array<[string, number]>) => ({
  kind,
  who,
  window: t0 + minute * min,
  places: places.map(([key, line]) => ({ key, line })),
});

/** Minutes 1..n of a node, but those in `skip`. */
const minutes = (n: number, skip: number[] = []) => Array.from({ length: n }, (_, i) => i + 1).filter((m) => !skip.includes(m));

// ---------------------------------------------------------------- lines

test('parseLine reads the node and pod fixtures as the sampler writes them', () => {
  const place = { key: 'p/dt=2026-11-27/hour=05/t+0+0000000000.jsonl.gz', line: 3 };
  const end = Date.parse('2026-11-27T06:00:00.000Z');
  assert.deepEqual(parseLine(JSON.stringify(nodeFixture), place), {
    kind: 'node',
    node: nodeFixture.node,
    start: end - min,
    end,
    busy: 45,
    place,
  });
  assert.deepEqual(parseLine(JSON.stringify(podFixture), place), {
    kind: 'pod',
    node: podFixture.node,
    uid: podFixture.pod_uid,
    pod: 'coredns-5d78c9869d-8x2kq',
    namespace: 'kube-system',
    start: end - min,
    end,
    cores: 0.0123,
    place,
  });
  const unnamed = parseLine(JSON.stringify({ ...podFixture, pod: null, namespace: null }), place);
  assert.equal(typeof unnamed === 'object' && unnamed.kind === 'pod' && unnamed.pod, null);
});

test('parseLine says why a line is not a reading', () => {
  const place = { key: 'k', line: 1 };
  assert.equal(parseLine('{"node":', place), 'not JSON');
  assert.equal(parseLine('42', place), 'not a JSON object');
  assert.equal(parseLine(JSON.stringify({ ...nodeFixture, window_end: 'soon' }), place), 'no node, window_start and window_end');
  assert.equal(parseLine(JSON.stringify({ ...nodeFixture, kind: 'disk' }), place), 'kind "disk" is not known');
  assert.equal(parseLine(JSON.stringify({ ...nodeFixture, host: null }), place), 'a node reading without host.busy_percent');
  assert.equal(parseLine(JSON.stringify({ ...podFixture, cores_used: '1' }), place), 'a pod reading without pod_uid and cores_used');
});

// ---------------------------------------------------------------- completeness

test('the interval is the most common window length, not the short first window after a start', () => {
  const first = nodeReading('a', 1, 10, 'k', 1, 25_000);
  assert.equal(windowInterval([first, ...minutes(5, [1]).map((m) => nodeReading('a', m))]), min);
  assert.equal(windowInterval([first, nodeReading('a', 2)]), min, 'a tie goes to the longer window');
  assert.equal(windowInterval([nodeReading('a', 1, 10, 'k', 1, 5000)]), 5000);
});

test('no gap is seen in readings that come in any order, from files of other hours, with a short first window', () => {
  // 05:00:35 to 06:20: the first window is 25 s, the hour changes at 06:00; files of the next hour
  // are read first and a late reading of 05:59 is in a file written after them.
  const readings = [
    nodeReading('a', 1, 10, 'p/dt=2026-11-27/hour=05/t+0+0000000000.jsonl.gz', 1, 25_000),
    ...minutes(80, [1, 60]).map((m) => nodeReading('a', m, 10, `p/dt=2026-11-27/hour=0${m > 60 ? 6 : 5}/t+0+${m}.jsonl.gz`)),
    nodeReading('a', 60, 10, 'p/dt=2026-11-27/hour=05/t+0+0000000999.jsonl.gz'),
  ].reverse();
  const [a] = analyse(readings).nodes;
  assert.equal(a.intervalMs, min);
  assert.deepEqual(a.gaps, []);
  assert.equal(a.missing, 0);
  assert.equal(a.readings, 80);
  assert.equal(a.first, t0 + 35_000);
  assert.equal(a.last, t0 + 80 * min);
  assert.deepEqual(
    a.points.map((p) => p.t),
    minutes(80).map((m) => t0 + m * min),
    'points in time order',
  );
});

test('missing windows are found per node and grouped into runs, at each node its own interval', () => {
  const readings = [
    ...minutes(90, [40, 41, 42, 75]).map((m) => nodeReading('b', m)),
    ...minutes(90).map((m) => nodeReading('a', m)),
    // A node on a 5 s interval (npm start's) that missed two windows in a row.
    ...[5, 10, 15, 30, 35].map((s) => ({ ...nodeReading('c', 0), start: t0 + (s - 5) * 1000, end: t0 + s * 1000 })),
  ];
  const [a, b, c] = analyse(readings).nodes;
  assert.deepEqual([a.node, a.missing, a.gaps], ['a', 0, []]);
  assert.deepEqual(
    [b.node, b.missing, b.gaps],
    [
      'b',
      4,
      [
        { from: t0 + 39 * min, to: t0 + 42 * min, windows: 3 },
        { from: t0 + 74 * min, to: t0 + 75 * min, windows: 1 },
      ],
    ],
  );
  assert.deepEqual([c.node, c.intervalMs, c.gaps], ['c', 5000, [{ from: t0 + 15_000, to: t0 + 25_000, windows: 2 }]]);
  assert.deepEqual(gapLines(analyse(readings)), [
    'b: no reading from 2026-11-27 05:39 to 2026-11-27 05:42 UTC (3 windows, 3 min)',
    'b: no reading from 2026-11-27 06:14 to 2026-11-27 06:15 UTC (1 window, 1 min)',
    'c: no reading from 2026-11-27 05:00:15 to 2026-11-27 05:00:25 UTC (2 windows, 10 s)',
  ]);
});

test('a reading written twice is counted once in the figures and listed with both places', () => {
  const late = 'p/dt=2026-11-27/hour=05/t+0+0000000200.jsonl.gz';
  const readings = [
    ...minutes(10).map((m) => nodeReading('a', m, 10, 'p/dt=2026-11-27/hour=05/t+0+0000000000.jsonl.gz', m)),
    nodeReading('a', 4, 10, late, 1),
    nodeReading('a', 4, 10, late, 2), // and twice in one file
    ...minutes(10, [7]).map((m) => nodeReading('b', m, 50)),
    nodeReading('b', 3, 50, late, 3),
  ];
  const result = analyse(readings);
  const [a, b] = result.nodes;
  assert.deepEqual([a.readings, a.duplicates, a.missing, a.busyAvg, a.points.length], [10, 2, 0, 10, 10]);
  assert.deepEqual([b.readings, b.duplicates, b.missing], [9, 1, 1], 'a second copy of one window does not fill the gap of another');
  assert.deepEqual(result.duplicates, [
    duplicate('node', 'b', 3, ['k', 1], [late, 3]),
    duplicate('node', 'a', 4, ['p/dt=2026-11-27/hour=05/t+0+0000000000.jsonl.gz', 4], [late, 1], [late, 2]),
  ]);
  assert.equal(result.nodeReadings, 22, 'every copy is counted as read');
});

test("a pod's reading written twice is a duplicate; the same window of two pods is not", () => {
  const readings = [
    ...minutes(5).map((m) => podReading('uid-1', m, 0.5, ['web', 'api-1'])),
    ...minutes(5).map((m) => podReading('uid-2', m, 0.5, ['web', 'api-2'])),
    podReading('uid-1', 2, 0.5, ['web', 'api-1'], 'other'),
  ];
  const result = analyse(readings);
  assert.deepEqual(result.duplicates, [duplicate('pod', 'web/api-1', 2, ['k', 1], ['other', 1])]);
  assert.deepEqual(
    result.pods.map((p) => [p.label, p.readings]),
    [
      ['web/api-1', 5],
      ['web/api-2', 5],
    ],
  );
});

test('pods rank by average cores used; a pod never named is shown by its UID, one named once by its name', () => {
  const uid = '6f0b2a51-3c8d-4e7f-9a1b-2c3d4e5f6a7b';
  const readings = [
    ...minutes(4).map((m) => podReading('small', m, 0.1, ['kube-system', 'coredns'])),
    ...minutes(4).map((m) => podReading(uid, m, m, null)),
    ...minutes(4).map((m) => podReading('later-named', m, 0.5, m === 3 ? ['web', 'api'] : null)),
  ];
  const pods = analyse(readings).pods;
  assert.deepEqual(
    pods.map((p) => [p.label, p.coresAvg, p.coresMax]),
    [
      [uid, 2.5, 4],
      ['web/api', 0.5, 0.5],
      ['kube-system/coredns', 0.1, 0.1],
    ],
  );
  const source = { location: 's3://b/p/ at x', objects: 1, unreadable: [] };
  assert.match(
    summaryText(analyse(readings), source, 3),
    /^6f0b2a51-\S+ +node-a .*\n(.*\n){2}A pod shown by its UID had no name in any of its readings/m,
  );
  const named = readings.filter((r) => r.kind === 'pod' && r.uid !== uid);
  assert.doesNotMatch(summaryText(analyse(named), source, 3), /A pod shown by its UID/, 'only when one is');
});

// ---------------------------------------------------------------- chart geometry

test('scales map the domain onto the range, an empty domain onto its middle', () => {
  const y = linear([0, 100], [272, 16]);
  assert.deepEqual([y(0), y(50), y(100)], [272, 144, 16]);
  assert.equal(linear([5, 5], [0, 10])(5), 5);
});

test('value ticks run from 0 to a round top at or above the highest value', () => {
  assert.deepEqual(valueTicks(100), [0, 25, 50, 75, 100]);
  assert.deepEqual(valueTicks(0.37), [0, 0.1, 0.2, 0.3, 0.4]);
  assert.deepEqual(valueTicks(3.2), [0, 1, 2, 3, 4]);
  assert.deepEqual(valueTicks(0), [0, 0.25]);
});

test('time ticks fall on round UTC times, at most eight of them', () => {
  assert.deepEqual(timeTicks(t0 + 35_000, t0 + 90 * min), { step: 15 * min, ticks: [15, 30, 45, 60, 75, 90].map((m) => t0 + m * min) });
  assert.deepEqual(timeTicks(t0, t0 + 30_000).step, 5000);
  const day = timeTicks(t0, t0 + 24 * 60 * min);
  assert.equal(day.step, 3 * 60 * min);
  assert.ok(day.ticks.length <= 8 && day.ticks.every((t) => t % (3 * 60 * min) === 0));
});

test('a line breaks where windows are missing, and a reading alone between two gaps is a dot', () => {
  const x = linear([0, 10], [0, 100]);
  const y = linear([0, 100], [100, 0]);
  const p = (t: number, v = 50) => ({ t, v });
  assert.equal(seriesPath([p(1, 0), p(2, 100), p(3)], 1, x, y), 'M10,100L20,0L30,50');
  assert.equal(seriesPath([p(1), p(2), p(4), p(5)], 1, x, y), 'M10,50L20,50M40,50L50,50', 'one missing window: two pieces');
  assert.equal(seriesPath([p(1), p(2), p(4), p(6), p(7)], 1, x, y), 'M10,50L20,50M40,50h0M60,50L70,50');
  assert.equal(seriesPath([p(1), p(2.4)], 1, x, y), 'M10,50L24,50', 'a late window (up to 1.5 intervals) still joins');
});

test('a chart has its plot area, one path per series with its name and colour, and the gap in it', () => {
  const svg = lineChart({
    id: 'busy',
    title: 'Host busy',
    unit: 'busy, %',
    from: t0,
    to: t0 + 10 * min,
    max: 100,
    series: [
      { name: 'node-a', colour: '#1f77b4', intervalMs: min, points: minutes(10).map((m) => ({ t: t0 + m * min, v: 20 })) },
      { name: 'node-b', colour: '#ff7f0e', intervalMs: min, points: minutes(10, [5]).map((m) => ({ t: t0 + m * min, v: 80 })) },
    ],
  });
  const paths = [...svg.matchAll(/<path class="series" data-name="([^"]+)" d="([^"]+)"[^>]* stroke="(#[0-9a-f]{6})"/g)];
  assert.deepEqual(
    paths.map((m) => [m[1], m[3], m[2].split('M').length - 1]),
    [
      ['node-a', '#1f77b4', 1],
      ['node-b', '#ff7f0e', 2],
    ],
  );
  assert.match(svg, /<rect class="plot" x="64" y="16" width="880" height="256"/);
  assert.match(svg, new RegExp(`data-from="${t0}" data-to="${t0 + 10 * min}"`));
  assert.match(svg, />100<\/text>/);
  assert.match(svg, />05:00<tspan x="[\d.]+" dy="14">2026-11-27<\/tspan><\/text>/, 'time labels, the date under the first');
  assert.match(svg, />time \(UTC\)</);
  assert.match(svg, />busy, %</);
  assert.match(svg, /<li><span class="swatch" style="background:#ff7f0e"><\/span>node-b<\/li>/);
});

test('time labels have seconds when the ticks are less than a minute apart, each of them', () => {
  const points = Array.from({ length: 12 }, (_, i) => ({ t: t0 + 35_000 + i * 5000, v: 1 }));
  const svg = lineChart({
    id: 'busy',
    title: 't',
    unit: 'u',
    from: t0 + 30_000,
    to: t0 + 90_000,
    series: [{ name: 'n', colour: '#1f77b4', intervalMs: 5000, points }],
  });
  const labels = [...svg.matchAll(/text-anchor="middle">([\d:]+)</g)].map((m) => m[1]);
  assert.deepEqual(labels, ['05:00:30', '05:00:40', '05:00:50', '05:01:00', '05:01:10', '05:01:20', '05:01:30']);
});

// ---------------------------------------------------------------- HTML

test('escapeHtml makes names safe in text and in attributes', () => {
  assert.equal(escapeHtml(`<img src=x onerror="alert('1')">&`), '&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;');
});

test('the page shows names from the data only escaped, and fetches nothing', () => {
  const evil = '<script>alert(1)</script>';
  const readings = [...minutes(3).map((m) => nodeReading(evil, m)), ...minutes(3).map((m) => podReading('uid-1', m, 1, ['a&b', `x"y'z`]))];
  const html = renderHtml(analyse(readings), { location: 's3://b/<p>/ at http://127.0.0.1:9000', objects: 1, unreadable: [] }, 10);
  assert.doesNotMatch(html, /<script/i);
  assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
  assert.ok(html.includes('data-name="&lt;script&gt;alert(1)&lt;/script&gt;"'));
  assert.ok(html.includes('a&amp;b/x&quot;y&#39;z'));
  assert.ok(html.includes('s3://b/&lt;p&gt;/'));
  assert.doesNotMatch(html, /\b(src|href)=|@import|url\(/i, 'nothing to fetch');
  assert.match(html, /Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"/);
});

test('the summary names each gap and each duplicate with its places', () => {
  const readings = [...minutes(10, [6]).map((m) => nodeReading('node-b', m)), nodeReading('node-b', 2, 10, 'late.jsonl.gz', 7)];
  const text = summaryText(
    analyse(readings),
    { location: 's3://b/p/ at x', objects: 2, unreadable: [{ key: 'k', line: 9, why: 'not JSON' }] },
    10,
  );
  assert.match(text, /^node-b\s+9\s+2026-11-27 05:00\s+2026-11-27 05:10\s+1 min\s+1 \(1 min\)\s+1\s+10\.0 %\s+10\.0 %$/m);
  assert.match(text, /node-b: no reading from 2026-11-27 05:05 to 2026-11-27 05:06 UTC \(1 window, 1 min\)/);
  assert.match(
    text,
    /Written more than once \(1 reading, 1 extra copy\):\n {2}node node-b, window ending 2026-11-27 05:02 UTC: 2 copies, in k line 1 and late.jsonl.gz line 7/,
  );
  assert.match(text, /1 line that is not a reading/);
  assert.match(text, /not a reading: k line 9: not JSON/);
});

// ---------------------------------------------------------------- settings and S3

test('flags win over environment variables, and a bad one is named as given', () => {
  const c = loadConfig(['--bucket', 'from-flag', '--path-style', '--from', '2026-11-27T05:00Z', '--to', '2026-11-28'], {
    S3_BUCKET: 'from-env',
    S3_PREFIX: 'readings',
    S3_FORCE_PATH_STYLE: 'false',
    REPORT_TOP_PODS: '3',
    REPORT_OUT: 'out.html',
    INIT_CWD: '/tmp/here',
  });
  assert.deepEqual(c, {
    bucket: 'from-flag',
    prefix: 'readings',
    endpoint: undefined,
    region: 'eu-west-1',
    forcePathStyle: true,
    from: Date.UTC(2026, 10, 27, 5),
    to: Date.UTC(2026, 10, 28),
    topPods: 3,
    out: '/tmp/here/out.html',
    help: false,
  });
  assert.equal(loadConfig([], { S3_BUCKET: 'bkt', AWS_REGION: 'us-east-2' }).region, 'us-east-2');
});

test('a missing bucket and other bad settings are named, all at once', () => {
  const load = (env: Record<string, string | undefined>) => loadConfig([], env);
  assert.equal(configErrorOf(load, {}).message, 'S3_BUCKET="": expected the bucket to read: set --bucket or S3_BUCKET');
  const both = configErrorOf((env) => loadConfig(['--endpoint', 'localhost:9000', '--from', '2026-11-27T05:00'], env), {
    S3_BUCKET: 'bkt',
    REPORT_TO: '2026-11-27T04:00Z',
  });
  assert.deepEqual(both.message.split('\n'), [
    '--endpoint="localhost:9000": expected an http(s):// URL such as http://127.0.0.1:9000',
    '--from="2026-11-27T05:00": expected an ISO 8601 time with a zone (2026-11-27T05:00Z) or a date',
  ]);
  assert.equal(
    configErrorOf(load, { S3_BUCKET: 'bkt', REPORT_FROM: '2026-11-28', REPORT_TO: '2026-11-27' }).message,
    'REPORT_TO="2026-11-27T00:00:00.000Z": expected a time after REPORT_FROM',
  );
  assert.match(configErrorOf((env) => loadConfig(['--bucket'], env), {}).message, /--bucket/);
});

test('hour folders are where the sink files a reading, with or without a prefix', () => {
  assert.equal(hourFolder('cpu-levels', Date.UTC(2026, 10, 27, 5, 59, 59)), 'cpu-levels/dt=2026-11-27/hour=05/');
  assert.equal(hourFolder('', Date.UTC(2026, 0, 1)), 'dt=2026-01-01/hour=00/');
});

test('S3 errors name the setting to look at', () => {
  const c = { bucket: 'b', endpoint: 'http://127.0.0.1:1', region: 'us-east-1' };
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
  assert.equal(s3Problem(refused, c), 'cannot reach the S3 endpoint http://127.0.0.1:1 (--endpoint or S3_ENDPOINT): ECONNREFUSED');
  const noBucket = Object.assign(new Error('The specified bucket does not exist'), { name: 'NoSuchBucket' });
  assert.equal(s3Problem(noBucket, c), 'bucket b does not exist at http://127.0.0.1:1 (--bucket or S3_BUCKET)');
  const denied = Object.assign(new Error('Access Denied'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
  assert.match(s3Problem(denied, { ...c, endpoint: undefined }), /^AWS S3 \(us-east-1\) refused access to bucket b: check the credentials/);
});
