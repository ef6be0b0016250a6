/**
 * `npm run report` as a process, on what the real sink wrote to a real S3-compatible server, and
 * its page in a real browser: Debian's Chromium (/usr/bin/chromium), driven by playwright-core,
 * looked at through a screenshot's pixels and the page's DOM.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort } from '../../scripts/kafka.ts';
import { countColour, decodePng } from '../png.ts';
import { busyPod, npmStart, readObjects, root, s3ForTest, sinkScenario, waitFor } from '../helpers.ts';

const credentials = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test-secret' };

/** `npm run report -- args` with a clean environment; resolves with its exit code and output. */
async function report(args: string[], env: Record<string, string> = {}) {
  const proc = spawn('npm', ['run', '--silent', 'report', '--', ...args], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  proc.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [code] = await once(proc, 'close');
  return { code: code as number, stdout, stderr };
}

const fixture = (name: string) => JSON.parse(readFileSync(join(root, 'test', 'fixtures', name), 'utf8'));
const t0 = Date.UTC(2026, 10, 27, 5, 0);
const iso = (ms: number) => new Date(ms).toISOString();
const unnamedUid = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';

/** Node `node`'s reading of minute m (the window ending t0 + m minutes; node-a's first is 25 s, it started late). */
function nodeMessage(node: string, m: number, busy: number): string {
  const end = t0 + m * 60_000;
  const start = node === 'node-a' && m === 1 ? end - 25_000 : end - 60_000;
  const r = fixture('reading-v1.json');
  Object.assign(r, { node, window_start: iso(start), window_end: iso(end), window_seconds: (end - start) / 1000 });
  Object.assign(r.host, {
    busy_percent: busy,
    user_percent: busy * 0.7,
    system_percent: busy * 0.3,
    idle_percent: 100 - busy,
    iowait_percent: 0,
  });
  return JSON.stringify(r);
}

function podMessage(node: string, m: number, uid: string, name: [string, string] | null, cores: number): string {
  const end = t0 + m * 60_000;
  const [namespace, pod] = name ?? [null, null];
  const r = fixture('pod-reading-v1.json');
  Object.assign(r, { node, pod_uid: uid, pod, namespace, window_start: iso(end - 60_000), window_end: iso(end), cores_used: cores });
  return JSON.stringify({ ...r, request_percent: (cores / r.request_cores) * 100 });
}

/**
 * 90 minutes (05:00 to 06:30 UTC, two hour folders) of three nodes and four pods, one of them never
 * named; node-b (and its pod) sent nothing for 05:40 to 05:42, and node-c's reading of 05:20 was
 * sent twice, the second time after the rest (so the sink files it in another object).
 */
function messages(): Array<{ key: string; value: string }> {
  const out: Array<{ key: string; value: string }> = [];
  const busy: Record<string, (m: number) => number> = {
    'node-a': (m) => 15 + 5 * Math.sin(m / 7),
    'node-b': (m) => 50 + 8 * Math.sin(m / 5),
    'node-c': (m) => 82 + 6 * Math.cos(m / 6),
  };
  const pods: Array<[string, string, [string, string] | null, (m: number) => number]> = [
    ['node-a', unnamedUid, null, (m) => 1.5 + 0.3 * Math.sin(m / 4)],
    ['node-a', '11111111-2222-4333-8444-555555555555', ['web', 'api-7f9c4'], (m) => 0.4 + 0.1 * Math.cos(m / 3)],
    ['node-b', '66666666-7777-4888-9999-aaaaaaaaaaaa', ['kube-system', 'coredns-5d78c'], () => 0.05],
    ['node-c', 'bbbbbbbb-cccc-4ddd-8eee-ffffffffffff', ['batch', 'report-job'], (m) => (m % 30) / 20],
  ];
  for (let m = 1; m <= 90; m++) {
    for (const node of Object.keys(busy)) {
      if (node === 'node-b' && m >= 40 && m <= 42) continue;
      out.push({ key: node, value: nodeMessage(node, m, Number(busy[node](m).toFixed(2))) });
      for (const [on, uid, name, cores] of pods)
        if (on === node) out.push({ key: node, value: podMessage(node, m, uid, name, Number(cores(m).toFixed(4))) });
    }
  }
  out.push({ key: 'node-c', value: nodeMessage('node-c', 20, Number(busy['node-c'](20).toFixed(2))) });
  return out;
}

/** Debian's Chromium, headless, with a fresh profile; closed and removed after the test. */
async function browser(t: TestContext) {
  if (!existsSync('/usr/bin/chromium')) throw new Error("Debian's Chromium is needed at /usr/bin/chromium: apt-get install chromium");
  const profile = mkdtempSync(join(tmpdir(), 'report-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1100, height: 900 },
    deviceScaleFactor: 1,
  });
  t.after(async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  });
  return context;
}

test('the report names the gap and the duplicate, and its page draws one line per node with the gap left open', async (t) => {
  const scenario = await sinkScenario(t);
  const producer = await scenario.producer();
  const sent = messages();
  for (const { key, value } of sent) await producer.send(scenario.topic, [value], key);
  scenario.sink({ S3_PREFIX: 'cpu' });
  const objects = await scenario.objectsWith(sent.length, 60_000);
  const duplicate = sent.at(-1)!.value;
  const holding = objects.filter((o) => o.lines.includes(duplicate)).map((o) => o.key);
  assert.equal(holding.length, 2, `node-c's 05:20 reading is in two objects: ${holding}`);
  t.diagnostic(`${sent.length} readings in ${objects.length} objects`);

  const out = join(mkdtempSync(join(tmpdir(), 'report-')), 'report.html');
  t.after(() => rmSync(join(out, '..'), { recursive: true, force: true }));
  const run = await report(
    ['--bucket', scenario.s3.bucket, '--endpoint', scenario.s3.endpoint, '--path-style', '--prefix', 'cpu', '--out', out],
    {
      ...credentials,
      S3_REGION: 'us-east-1',
    },
  );
  assert.equal(run.code, 0, run.stderr);
  t.diagnostic(run.stdout);
  assert.match(run.stdout, /^node-b\s+87\s+2026-11-27 05:00\s+2026-11-27 06:30\s+1 min\s+3 \(3 min\)\s+0\s/m);
  assert.match(run.stdout, /^node-c\s+90\s.*\s1 min\s+0\s+1\s/m);
  assert.match(run.stdout, /node-b: no reading from 2026-11-27 05:39 to 2026-11-27 05:42 UTC \(3 windows, 3 min\)/);
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(
    run.stdout,
    new RegExp(
      `node node-c, window ending 2026-11-27 05:20 UTC: 2 copies, in ${escape(holding[0])} line \\d+ and ${escape(holding[1])} line 1\n`,
    ),
  );
  assert.match(run.stdout, new RegExp(`^${unnamedUid}\\s+node-a\\s+90\\s+1\\.\\d{3}`, 'm'), 'the unnamed pod, by UID, on top');

  // A time range reads only its hour folders (settings from the environment this time): 06:00 to
  // 06:15 only the objects of hour=06, without the gap and the duplicate; up to 05:10 only hour=05's.
  const ranged = (args: string[]) =>
    report([...args, '--out', join(out, '..', 'ranged.html')], {
      ...credentials,
      S3_BUCKET: scenario.s3.bucket,
      S3_ENDPOINT: scenario.s3.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      S3_PREFIX: 'cpu',
      S3_REGION: 'us-east-1',
    });
  const inHour = (h: string) => objects.filter((o) => o.key.startsWith(`cpu/dt=2026-11-27/hour=${h}/`)).length;
  const late = await ranged(['--from', '2026-11-27T06:00Z', '--to', '2026-11-27T06:15Z', '--top-pods', '2']);
  assert.equal(late.code, 0, late.stderr);
  assert.match(late.stdout, new RegExp(`^3 nodes, 4 pods; 45 node readings and 60 pod readings in ${inHour('06')} objects?$`, 'm'));
  assert.match(late.stdout, /^node-b\s+15\s+2026-11-27 06:00\s+2026-11-27 06:15\s+1 min\s+0\s+0\s/m);
  assert.match(late.stdout, /Missing windows \(0\):\n {2}none\nWritten more than once \(0 readings, 0 extra copies\):\n {2}none\n/);
  assert.match(late.stdout, /Top 2 of 4 pods by average cores used:\n(.*\n){2}(\S+ +node-\S+ +15 .*\n){2}A pod shown/);
  const early = await ranged(['--to', '2026-11-27T05:10Z']);
  assert.equal(early.code, 0, early.stderr);
  assert.match(early.stdout, new RegExp(`^3 nodes, 4 pods; 30 node readings and 40 pod readings in ${inHour('05')} objects$`, 'm'));

  const context = await browser(t);
  const page = await context.newPage();
  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(pathToFileURL(out).href);
  assert.deepEqual(requests, [pathToFileURL(out).href], 'the page fetches nothing');

  const lines = (chart: string) =>
    page.$$eval(`#${chart} path.series`, (paths) =>
      paths.map((p) => ({
        name: p.getAttribute('data-name')!,
        colour: p.getAttribute('stroke')!,
        pieces: (p.getAttribute('d')!.match(/M/g) ?? []).length,
      })),
    );
  const nodes = await lines('busy');
  assert.deepEqual(
    nodes.map((l) => [l.name, l.pieces]),
    [
      ['node-a', 1],
      ['node-b', 2],
      ['node-c', 1],
    ],
    'one line per node; the gap splits node-b',
  );
  assert.equal(new Set(nodes.map((l) => l.colour)).size, 3, 'each node its own colour');
  assert.deepEqual(
    (await lines('pods')).map((l) => l.name),
    [unnamedUid, 'batch/report-job', 'web/api-7f9c4', 'kube-system/coredns-5d78c'],
  );
  const legend = await page.$$eval('#busy + ul.legend li', (items) => items.map((li) => li.textContent));
  assert.deepEqual(legend, ['node-a', 'node-b', 'node-c']);

  const screenshot = decodePng(await page.screenshot({ fullPage: true }));
  const all = { x: 0, y: 0, width: screenshot.width, height: screenshot.height };
  const white = countColour(screenshot, '#ffffff', all, 0);
  t.diagnostic(`screenshot ${screenshot.width}x${screenshot.height}, ${white} white pixels`);
  assert.ok(white < screenshot.width * screenshot.height * 0.98, 'the screenshot is not blank');

  // The plot area in page pixels, and the place of a time in it (from the svg's data-from/data-to).
  const plot = await page.$eval('#busy', (svg) => {
    const r = svg.querySelector('rect.plot')!.getBoundingClientRect();
    const page = svg.ownerDocument.documentElement.getBoundingClientRect();
    return {
      x: r.x - page.x + 1,
      y: r.y - page.y + 1,
      width: r.width - 2,
      height: r.height - 2,
      from: Number(svg.dataset.from),
      to: Number(svg.dataset.to),
    };
  });
  const xOf = (ms: number) => plot.x - 1 + ((ms - plot.from) / (plot.to - plot.from)) * (plot.width + 2);
  for (const { name, colour } of nodes) {
    const n = countColour(screenshot, colour, plot);
    t.diagnostic(`${name} ${colour}: ${n} pixels in the plot`);
    assert.ok(n >= 50, `${name}'s line (${colour}) is drawn: ${n} pixels`);
  }
  // Between node-b's readings of 05:39 and 05:43 there is no node-b, while node-a and node-c go on.
  const gap = { ...plot, x: xOf(t0 + 39 * 60_000) + 3, width: xOf(t0 + 43 * 60_000) - xOf(t0 + 39 * 60_000) - 6 };
  const inGap = Object.fromEntries(nodes.map((l) => [l.name, countColour(screenshot, l.colour, gap)]));
  t.diagnostic(`pixels between 05:39 and 05:43: ${JSON.stringify(inGap)}`);
  assert.equal(inGap['node-b'], 0, "node-b's gap is drawn as a gap");
  assert.ok(inGap['node-a'] > 0 && inGap['node-c'] > 0, 'the other lines cross it');
});

test('the report exits 2 naming the bucket when none is set', async () => {
  const run = await report([], credentials);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /report: config error: S3_BUCKET="": expected the bucket to read: set --bucket or S3_BUCKET/);
});

test('the report exits 1 naming the endpoint when nothing answers there', async () => {
  const endpoint = `http://127.0.0.1:${await freePort()}`;
  const run = await report(['--bucket', 'cpu', '--endpoint', endpoint, '--path-style'], { ...credentials, S3_REGION: 'us-east-1' });
  assert.equal(run.code, 1);
  assert.match(run.stderr, new RegExp(`report: cannot reach the S3 endpoint ${endpoint} \\(--endpoint or S3_ENDPOINT\\): ECONNREFUSED`));
});

test('the report says plainly when the prefix holds nothing, or the bucket is not there', async (t) => {
  const s3 = await s3ForTest(t);
  const env = { ...credentials, S3_ENDPOINT: s3.endpoint, S3_FORCE_PATH_STYLE: 'true', S3_REGION: 'us-east-1' };
  const empty = await report(['--bucket', s3.bucket, '--prefix', 'nothing-here'], env);
  assert.equal(empty.code, 1);
  assert.equal(
    empty.stderr,
    `report: no reading files under s3://${s3.bucket}/nothing-here/ at ${s3.endpoint}: check --prefix or S3_PREFIX and --bucket or S3_BUCKET\n`,
  );
  const missing = await report(['--bucket', 'no-such-bucket'], env);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, `report: bucket no-such-bucket does not exist at ${s3.endpoint} (--bucket or S3_BUCKET)\n`);
});

test("the report on npm start's output: the node and the pods, in the table and on the page", async (t) => {
  // A pod on this machine as the kubelet would lay it out (its cgroup, a quarter core, busy): npm
  // start's sampler reads the machine's cgroups, so its readings hold this node and that pod (by
  // UID: there is no Kubernetes API to name it).
  const pod = busyPod(t);
  const { ports, output, ctrlC } = await npmStart(t, [], [], { NODE_NAME: 'report-node' });
  const endpoint = `http://127.0.0.1:${ports.S3_PORT}`;
  await waitFor('npm start running', () => output().includes('[dev] pipeline running'), 120_000);
  await waitFor(
    "the pod's readings in S3",
    async () => (await readObjects(endpoint, 'cpu-pipeline-local')).some((o) => o.lines.some((l) => l.includes(pod.uid))),
    120_000,
  );
  const out = join(mkdtempSync(join(tmpdir(), 'report-')), 'report.html');
  t.after(() => rmSync(join(out, '..'), { recursive: true, force: true }));
  const run = await report(['--bucket', 'cpu-pipeline-local', '--endpoint', endpoint, '--path-style', '--out', out], credentials);
  await ctrlC();
  assert.equal(run.code, 0, `${run.stderr}\n${output()}`);
  t.diagnostic(run.stdout);
  assert.match(run.stdout, /^report-node\s+\d+\s/m, 'the node in the table');
  assert.match(run.stdout, new RegExp(pod.uid), 'the pod in the table, by UID');

  const page = await (await browser(t)).newPage();
  await page.goto(pathToFileURL(out).href);
  const names = (chart: string) => page.$$eval(`#${chart} path.series`, (paths) => paths.map((p) => p.getAttribute('data-name')));
  assert.deepEqual(await names('busy'), ['report-node'], "the node's line");
  assert.ok(
    (await names('pods')).some((n) => n?.includes(pod.uid)),
    "the pod's line, by UID",
  );
  // Drawn, not only in the DOM: the node's colour is on the screenshot.
  const colour = await page.$eval('#busy path.series', (p) => p.getAttribute('stroke')!);
  const box = await page.$eval('#busy', (svg) => {
    const r = svg.getBoundingClientRect();
    return { x: r.x, y: r.y, width: r.width, height: r.height }; // the page is not scrolled: page coordinates
  });
  const png = decodePng(await page.screenshot({ fullPage: true }));
  assert.ok(countColour(png, colour, box) > 50, `the node's line (${colour}) is on the screenshot, in its chart`);
});
