/**
 * The sink catches up a large backlog inside its own Kubernetes memory limit: the Deployment's
 * command (node, its V8 flags, the bundle) in a real memory cgroup at the Deployment's limit, a
 * backlog of 1,000,000 readings in 3 partitions, and every reading in S3 exactly once, with no OOM
 * kill and no restart. Prints the peak memory next to the bound the settings promise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { loadConfig, memoryBound } from '../../sink.ts';
import {
  backlogReading,
  httpGet,
  memoryCgroup,
  produceBacklog,
  runCommand,
  deployedContainer,
  sinkScenario,
  testS3Client,
  waitFor,
} from '../helpers.ts';

const N = 1_000_000;

test("the sink catches up 1,000,000 readings inside the Deployment's memory limit, every one exactly once, without an OOM kill", async (t) => {
  const { args, limitBytes } = deployedContainer('sink');
  const { bootstrap, s3, topic, env } = await sinkScenario(t, { partitions: 3 });

  await produceBacklog(bootstrap, topic, N);

  const cgroup = memoryCgroup(t, limitBytes);
  const settings = {
    ...env,
    HTTP_PORT: '0',
    FILE_MAX_AGE_SECONDS: '2',
    S3_FORCE_PATH_STYLE: 'true',
    S3_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test-secret',
  };
  const started = Date.now();
  const p = runCommand(t, cgroup.wrap([process.execPath, ...args.slice(1)]), settings, 'sink (memory-limited)');
  const port = (await p.waitForLog('started', (l) => l.msg === 'started')).http_port as number;
  let peakRss = 0;
  await waitFor(
    `all ${N} readings written`,
    async () => {
      if (p.proc.exitCode !== null || p.proc.signalCode !== null)
        throw new Error(`the sink died (${p.proc.exitCode ?? p.proc.signalCode}); OOM kills: ${cgroup.oomKills()}`);
      peakRss = Math.max(peakRss, Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p.proc.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024);
      const body = await httpGet(port, '/metrics').then(
        (r) => r.body,
        () => '',
      ); // a killed sink answers no more: seen on the next turn
      return Number(/^sink_records_written_total (\d+)/m.exec(body)?.[1]) >= N;
    },
    600_000,
  );
  const seconds = (Date.now() - started) / 1000;
  const cgroupPeak = cgroup.peakBytes();
  p.proc.kill('SIGTERM');
  assert.equal((await p.exited).code, 0, 'the sink stops cleanly');

  // Read back every object, one at a time, and count each reading by its index.
  const seen = new Uint8Array(N);
  const s3c = testS3Client(s3.endpoint);
  let objects = 0;
  let token: string | undefined;
  const ranges = new Map<string, Array<[number, number]>>();
  do {
    const page = await s3c.send(new ListObjectsV2Command({ Bucket: s3.bucket, ContinuationToken: token }));
    for (const { Key } of page.Contents ?? []) {
      const res = await s3c.send(new GetObjectCommand({ Bucket: s3.bucket, Key }));
      const meta = res.Metadata ?? {};
      ranges.set(meta.partition, [...(ranges.get(meta.partition) ?? []), [Number(meta['start-offset']), Number(meta['end-offset'])]]);
      for (const line of gunzipSync(Buffer.from(await res.Body!.transformToByteArray()))
        .toString()
        .split('\n')) {
        if (!line) continue;
        const i = Number(/"pod":"r(\d+)"/.exec(line)?.[1]);
        assert.equal(line, backlogReading(i), 'a stored line is the reading as produced');
        seen[i]++;
      }
      objects++;
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  let missing = 0;
  let duplicated = 0;
  for (const n of seen) {
    if (n === 0) missing++;
    if (n > 1) duplicated += n - 1;
  }
  const overlaps = [...ranges.values()].flatMap((r) => r.sort((a, b) => a[0] - b[0]).filter((x, k) => k > 0 && x[0] <= r[k - 1][1]));
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const line =
    `memory-limited catch-up (cgroup ${cgroup.kind}, limit ${mib(limitBytes)}): ${N} readings in ${objects} objects in ${seconds.toFixed(1)} s; ` +
    `missing ${missing}, duplicated ${duplicated}, overlapping objects ${overlaps.length}; peak RSS ${mib(peakRss)}, cgroup peak ${mib(cgroupPeak)}, ` +
    `bound ${mib(memoryBound(loadConfig(settings)))}; OOM kills ${cgroup.oomKills()}`;
  t.diagnostic(line);
  process.stdout.write(`# ${line}\n`);
  assert.deepEqual(
    { missing, duplicated, overlaps: overlaps.length, oomKills: cgroup.oomKills(), restarts: p.count('started') - 1 },
    { missing: 0, duplicated: 0, overlaps: 0, oomKills: 0, restarts: 0 },
  );
});
