/**
 * Sampler benchmarks: prints numbers, asserts nothing.
 *
 *   npm run bench            (as root for the cgroup part)
 *
 * 1. Cost of one snapshot (/proc/stat + own cgroup) and of building + encoding a reading.
 * 2. Accuracy inside a real CPU-limited cgroup: a child process moves itself into a new cgroup
 *    limited to LIMIT cores (v2 cpu.max, or v1 cpu.cfs_quota_us on hybrid hosts), burns CPU in
 *    BUSY worker threads, and reports what the sampler's own code measures for its container.
 *    Expected: about min(BUSY, LIMIT) / LIMIT * 100 percent of the limit.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { buildReading, encodeReading, snapshotter } from '../sampler.ts';

const LIMIT = 0.5;
const SECONDS = 3;

function burn(workers: number): Worker[] {
  return Array.from({ length: workers }, () => new Worker('for (;;) {}', { eval: true }));
}

async function child(): Promise<void> {
  const busy = Number(process.argv[3]);
  await once(process.stdin, 'data'); // the parent has moved us into the cgroup
  const snap = snapshotter('/proc', '/sys/fs/cgroup');
  const a = snap.take();
  const threads = burn(busy);
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const b = snap.take();
  await Promise.all(threads.map((t) => t.terminate()));
  const { reading } = buildReading(a, b, { startMs: 0, endMs: SECONDS * 1000 }, { node: 'n', pod: 'p', namespace: '' }, 'none');
  process.stdout.write(JSON.stringify(reading?.container ?? null) + '\n');
}

function makeCgroup(name: string): { enter: (pid: number) => void; remove: () => void; kind: string } | string {
  if (process.getuid?.() !== 0) return 'needs root to create a cgroup';
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    const dir = join('/sys/fs/cgroup', name);
    try {
      writeFileSync('/sys/fs/cgroup/cgroup.subtree_control', '+cpu');
      mkdirSync(dir);
      writeFileSync(join(dir, 'cpu.max'), `${LIMIT * 100_000} 100000`);
    } catch (err) {
      return `cgroup v2: ${(err as Error).message}`;
    }
    return { kind: 'v2', enter: (pid) => writeFileSync(join(dir, 'cgroup.procs'), String(pid)), remove: () => rmdirSync(dir) };
  }
  const cpu = join('/sys/fs/cgroup/cpu', name);
  const acct = join('/sys/fs/cgroup/cpuacct', name);
  try {
    mkdirSync(cpu);
    if (cpu !== acct && !existsSync(acct)) mkdirSync(acct);
    writeFileSync(join(cpu, 'cpu.cfs_period_us'), '100000');
    writeFileSync(join(cpu, 'cpu.cfs_quota_us'), String(LIMIT * 100_000));
  } catch (err) {
    return `cgroup v1: ${(err as Error).message}`;
  }
  return {
    kind: 'v1',
    enter: (pid) => {
      writeFileSync(join(cpu, 'cgroup.procs'), String(pid));
      writeFileSync(join(acct, 'cgroup.procs'), String(pid));
    },
    remove: () => {
      rmdirSync(cpu);
      if (existsSync(acct)) rmdirSync(acct);
    },
  };
}

async function main(): Promise<void> {
  const snap = snapshotter('/proc', '/sys/fs/cgroup');
  const n = 20_000;
  let prev = snap.take();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) prev = snap.take();
  const t1 = process.hrtime.bigint();
  // Two snapshots far enough apart for the counters to move, turned into a message n times.
  await new Promise((r) => setTimeout(r, 200));
  const next = snap.take();
  const t1b = process.hrtime.bigint();
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const { reading } = buildReading(
      prev,
      next,
      { startMs: i * 1000, endMs: i * 1000 + 1000 },
      { node: 'node-1', pod: 'pod-1', namespace: 'ns' },
      'none',
    );
    if (!reading) throw new Error('counters did not move in 200 ms');
    bytes += encodeReading(reading).value.length;
  }
  const t2 = process.hrtime.bigint();
  console.log(`snapshot (${snap.hostSource} + cgroup ${snap.where.version || 'none'}): ${(Number(t1 - t0) / n / 1000).toFixed(1)} µs`);
  console.log(`reading + JSON encode: ${(Number(t2 - t1b) / n / 1000).toFixed(1)} µs, ${Math.round(bytes / n)} bytes per message`);
  console.log(`rss after ${n} snapshots and ${n} messages: ${(process.memoryUsage().rss / 2 ** 20).toFixed(1)} MiB`);

  for (const busy of [0, 1, 2]) {
    const cg = makeCgroup(`cpu-pipeline-bench-${process.pid}-${busy}`);
    if (typeof cg === 'string') {
      console.log(`container accuracy: not measured (${cg})`);
      return;
    }
    const proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', String(busy)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    cg.enter(proc.pid!);
    proc.stdin.end('go\n');
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
    });
    await new Promise((r) => proc.on('exit', r));
    cg.remove();
    const c = JSON.parse(out.trim().split('\n').at(-1) ?? 'null');
    const expected = (Math.min(busy, LIMIT) / LIMIT) * 100;
    console.log(
      `container accuracy, cgroup ${cg.kind}, limit ${LIMIT} cores, ${busy} busy thread(s) for ${SECONDS} s: ` +
        `measured ${c?.cpu_percent}% of ${c?.relative_to} (${c?.cores_used} cores, limit ${c?.limit_cores}); expected about ${expected}% (plus the child's own start-up)`,
    );
  }
}

if (process.argv[2] === '--child') await child();
else await main();
