import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { CpuInfo } from 'node:os';
import { join, normalize } from 'node:path';
import { test } from 'node:test';
import {
  containerCpu,
  hostCpu,
  hostTimesFromOs,
  locateCgroup,
  parseCgroupV1,
  parseCgroupV2,
  parseProcStat,
  type CgroupLocation,
  type CgroupSample,
  type HostTimes,
} from '../../sampler.ts';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
const stat = (name: string) => parseProcStat(fixture(`proc-stat-${name}.txt`));

const v2 = (stat: 'a' | 'b', max: 'limited' | 'unlimited') =>
  parseCgroupV2(fixture(`cgroup-v2/cpu.stat-${stat}`), fixture(`cgroup-v2/cpu.max-${max}`));
const v1 = (usage: 'a' | 'b', quota: 'limited' | 'unlimited') =>
  parseCgroupV1(
    fixture(`cgroup-v1/cpuacct.usage-${usage}`),
    fixture(`cgroup-v1/cpu.cfs_quota_us-${quota}`),
    fixture('cgroup-v1/cpu.cfs_period_us'),
  );
const sample = (usageUsec: number, limitCores: number | undefined, version: 1 | 2 = 2): CgroupSample => ({
  version,
  usageUsec,
  limitCores,
});

// ---------------------------------------------------------------- /proc/stat

test('parseProcStat reads the aggregate cpu line field by field', () => {
  assert.deepEqual(stat('a'), {
    user: 100000,
    nice: 2000,
    system: 30000,
    idle: 800000,
    iowait: 5000,
    irq: 1000,
    softirq: 2000,
    steal: 0,
    cores: 2,
  });
});

test('parseProcStat counts one core per cpuN line', () => {
  const fourCores = fixture('proc-stat-a.txt').replace(
    /^cpu1 .*$/m,
    (l) => `${l}\n${l.replace('cpu1', 'cpu2')}\n${l.replace('cpu1', 'cpu3')}`,
  );
  assert.equal(parseProcStat(fourCores).cores, 4);
});

test('parseProcStat does not add guest time to user a second time', () => {
  const withoutGuest = fixture('proc-stat-b.txt').replace(/^(cpu {2}(?:\d+ ){8})\d+/m, (_, head: string) => `${head}0`);
  assert.deepEqual(stat('b'), parseProcStat(withoutGuest));
  assert.equal(stat('b').user, 100500);
});

test('parseProcStat rejects text without an aggregate cpu line', () => {
  assert.throws(() => parseProcStat('cpu0 1 2 3 4\nctxt 5\n'), /no aggregate "cpu" line/);
});

test('hostCpu splits a window into exact user, system, iowait, steal and idle percentages', () => {
  assert.deepEqual(hostCpu(stat('a'), stat('b')), {
    cores: 2,
    busy_percent: 45,
    user_percent: 30,
    system_percent: 15,
    iowait_percent: 5,
    steal_percent: 0,
    idle_percent: 50,
  });
});

test('hostCpu reports time stolen by the hypervisor as steal and as busy', () => {
  assert.deepEqual(hostCpu(stat('b'), stat('c')), {
    cores: 2,
    busy_percent: 40,
    user_percent: 20,
    system_percent: 10,
    iowait_percent: 0,
    steal_percent: 10,
    idle_percent: 60,
  });
});

test('hostCpu busy, iowait and idle add up to 100 even when the shares do not divide evenly', () => {
  const a: HostTimes = { user: 0, nice: 0, system: 0, idle: 0, iowait: 0, irq: 0, softirq: 0, steal: 0, cores: 3 };
  const b: HostTimes = { ...a, user: 7, system: 5, idle: 11, iowait: 3, steal: 1 };
  const h = hostCpu(a, b)!;
  assert.ok(Math.abs(h.busy_percent + h.iowait_percent + h.idle_percent - 100) < 0.01, JSON.stringify(h));
  assert.ok(Math.abs(h.user_percent + h.system_percent + h.steal_percent - h.busy_percent) < 0.01, JSON.stringify(h));
});

test('hostCpu returns undefined when the counters went backwards (reboot)', () => {
  assert.equal(hostCpu(stat('a'), stat('reset')), undefined);
});

test('hostCpu returns undefined for identical snapshots (a zero-length window)', () => {
  assert.equal(hostCpu(stat('a'), stat('a')), undefined);
});

test('hostTimesFromOs sums os.cpus() times over all cores, with no iowait or steal', () => {
  const core = (user: number, nice: number, sys: number, idle: number, irq: number): CpuInfo => ({
    model: 'Apple M2',
    speed: 2400,
    times: { user, nice, sys, idle, irq },
  });
  assert.deepEqual(hostTimesFromOs([core(1000, 10, 400, 8000, 5), core(3000, 20, 600, 6000, 15)]), {
    user: 4000,
    nice: 30,
    system: 1000,
    idle: 14000,
    iowait: 0,
    irq: 20,
    softirq: 0,
    steal: 0,
    cores: 2,
  });
});

// ---------------------------------------------------------------- cgroup counters

test('parseCgroupV2 reads usage_usec and the limit from cpu.max', () => {
  assert.deepEqual(v2('a', 'limited'), { version: 2, usageUsec: 123456789, limitCores: 0.5 });
});

test('parseCgroupV2 has no limit when cpu.max says max', () => {
  assert.equal(v2('a', 'unlimited').limitCores, undefined);
});

test('parseCgroupV2 has no limit when cpu.max is absent', () => {
  assert.equal(parseCgroupV2(fixture('cgroup-v2/cpu.stat-a'), undefined).limitCores, undefined);
});

test('parseCgroupV2 throws when cpu.stat has no usage_usec', () => {
  const withoutUsage = fixture('cgroup-v2/cpu.stat-a').replace(/^usage_usec .*\n/m, '');
  assert.throws(() => parseCgroupV2(withoutUsage, undefined), /no usage_usec/);
});

test('parseCgroupV1 converts cpuacct.usage from nanoseconds and the quota to cores', () => {
  assert.deepEqual(v1('a', 'limited'), { version: 1, usageUsec: 987654321, limitCores: 1.5 });
});

test('parseCgroupV1 has no limit when cpu.cfs_quota_us is -1', () => {
  assert.equal(v1('a', 'unlimited').limitCores, undefined);
});

test('parseCgroupV1 has no limit when the quota files cannot be read', () => {
  assert.equal(parseCgroupV1(fixture('cgroup-v1/cpuacct.usage-a'), undefined, undefined).limitCores, undefined);
});

// ---------------------------------------------------------------- container CPU

test('containerCpu is relative to the cgroup v2 limit when there is one', () => {
  assert.deepEqual(containerCpu(v2('a', 'limited'), v2('b', 'limited'), 60, 2), {
    cgroup_version: 2,
    cpu_percent: 50,
    cores_used: 0.25,
    limit_cores: 0.5,
    relative_to: 'limit',
  });
});

test('containerCpu is relative to the host cores when the cgroup has no limit', () => {
  assert.deepEqual(containerCpu(v2('a', 'unlimited'), v2('b', 'unlimited'), 60, 2), {
    cgroup_version: 2,
    cpu_percent: 12.5,
    cores_used: 0.25,
    limit_cores: null,
    relative_to: 'host_cores',
  });
});

test('containerCpu is relative to the cgroup v1 quota when there is one', () => {
  assert.deepEqual(containerCpu(v1('a', 'limited'), v1('b', 'limited'), 60, 2), {
    cgroup_version: 1,
    cpu_percent: 50,
    cores_used: 0.75,
    limit_cores: 1.5,
    relative_to: 'limit',
  });
});

test('containerCpu is relative to the host cores under cgroup v1 without a quota', () => {
  assert.deepEqual(containerCpu(v1('a', 'unlimited'), v1('b', 'unlimited'), 60, 2), {
    cgroup_version: 1,
    cpu_percent: 37.5,
    cores_used: 0.75,
    limit_cores: null,
    relative_to: 'host_cores',
  });
});

test('containerCpu takes the limit from the later snapshot', () => {
  const c = containerCpu(sample(0, 0.5), sample(30_000_000, 1), 60, 4)!;
  assert.equal(c.limit_cores, 1);
  assert.equal(c.cpu_percent, 50);
});

test('containerCpu returns undefined when the usage counter went backwards', () => {
  assert.equal(containerCpu(v2('b', 'limited'), v2('a', 'limited'), 60, 2), undefined);
});

test('containerCpu returns undefined when no time elapsed', () => {
  assert.equal(containerCpu(v2('a', 'limited'), v2('b', 'limited'), 0, 2), undefined);
});

test('containerCpu returns undefined when the cgroup version changed between snapshots', () => {
  assert.equal(containerCpu(sample(0, undefined, 1), sample(1_000_000, undefined, 2), 60, 2), undefined);
});

test('containerCpu clamps cpu_percent to 100 above the limit but reports the cores actually used', () => {
  const c = containerCpu(sample(0, 0.5), sample(36_000_000, 0.5), 60, 2)!;
  assert.equal(c.cpu_percent, 100);
  assert.equal(c.cores_used, 0.6);
});

test('containerCpu reports an idle container as 0 percent, not a negative number', () => {
  const c = containerCpu(sample(5_000_000, 0.5), sample(5_000_000, 0.5), 60, 2)!;
  assert.equal(c.cpu_percent, 0);
  assert.equal(c.cores_used, 0);
});

// ---------------------------------------------------------------- locating the cgroup

const root = '/sys/fs/cgroup';
const hostPath = fixture('self-cgroup-v2-host').trim().slice(3);
const podPath = '/kubepods/burstable/pod1234/abc';

const noTrailingSlash = (p: string) => p.replace(/(.)\/+$/, '$1');

/** A filesystem holding exactly these files (and the directories above them). */
function fakeFs(...files: string[]): (p: string) => boolean {
  const known = new Set<string>();
  for (const f of files) {
    for (let p = normalize(f); p !== '/'; p = join(p, '..')) known.add(p);
  }
  return (p) => known.has(noTrailingSlash(normalize(p)));
}

function v2Dir(loc: CgroupLocation): string {
  assert.equal(loc.version, 2, JSON.stringify(loc));
  return noTrailingSlash(loc.dir);
}

test('locateCgroup uses the mount root for cgroup v2 inside a cgroup namespace', () => {
  const exists = fakeFs(`${root}/cgroup.controllers`, `${root}/cpu.stat`, `${root}/cpu.max`);
  assert.equal(v2Dir(locateCgroup(fixture('self-cgroup-v2-namespaced'), root, exists)), root);
});

test('locateCgroup uses the listed cgroup v2 path when it exists below the mount', () => {
  const exists = fakeFs(`${root}/cgroup.controllers`, `${root}/cpu.stat`, `${root}${hostPath}/cpu.stat`);
  assert.equal(v2Dir(locateCgroup(fixture('self-cgroup-v2-host'), root, exists)), `${root}${hostPath}`);
});

test('locateCgroup falls back to the cgroup v2 mount root when the listed path is not there', () => {
  const exists = fakeFs(`${root}/cgroup.controllers`, `${root}/cpu.stat`);
  assert.equal(v2Dir(locateCgroup(fixture('self-cgroup-v2-host'), root, exists)), root);
});

test('locateCgroup explains a cgroup v2 mount without cpu.stat', () => {
  const loc = locateCgroup(fixture('self-cgroup-v2-host'), root, fakeFs(`${root}/cgroup.controllers`));
  assert.equal(loc.version, 0);
  assert.match(
    loc.version === 0 ? loc.reason : '',
    /cgroup v2 is mounted at \/sys\/fs\/cgroup but .*cri-containerd-abc\.scope\/cpu\.stat is missing/,
  );
});

test('locateCgroup finds cgroup v1 counters on a joint cpu,cpuacct mount of a hybrid host', () => {
  const dir = `${root}/cpu,cpuacct${podPath}`;
  const exists = fakeFs(
    `${root}/unified/cgroup.controllers`,
    `${dir}/cpuacct.usage`,
    `${dir}/cpu.cfs_quota_us`,
    `${dir}/cpu.cfs_period_us`,
  );
  assert.deepEqual(locateCgroup(fixture('self-cgroup-v1-hybrid'), root, exists), {
    version: 1,
    usageFile: `${dir}/cpuacct.usage`,
    quotaDir: dir,
  });
});

test('locateCgroup falls back to the cgroup v1 mount root when the listed path is not there', () => {
  const mount = `${root}/cpu,cpuacct`;
  const exists = fakeFs(`${mount}/cpuacct.usage`, `${mount}/cpu.cfs_quota_us`);
  assert.deepEqual(locateCgroup(fixture('self-cgroup-v1-hybrid'), root, exists), {
    version: 1,
    usageFile: `${mount}/cpuacct.usage`,
    quotaDir: mount,
  });
});

test('locateCgroup finds cgroup v1 counters on separate cpu and cpuacct mounts', () => {
  const exists = fakeFs(
    `${root}/cpuacct/cpuacct.usage`,
    `${root}/cpu/cpu.cfs_quota_us`,
    `${root}/cpu/cpu.cfs_period_us`,
    `${root}/memory/memory.limit_in_bytes`,
  );
  const loc = locateCgroup(fixture('self-cgroup-v1-separate'), root, exists);
  assert.equal(loc.version, 1, JSON.stringify(loc));
  assert.equal(loc.usageFile, `${root}/cpuacct/cpuacct.usage`);
  assert.equal(loc.quotaDir && noTrailingSlash(loc.quotaDir), `${root}/cpu`);
});

test('locateCgroup has no quota directory under cgroup v1 when the cpu controller is missing', () => {
  const exists = fakeFs(`${root}/cpuacct/cpuacct.usage`);
  const loc = locateCgroup('2:cpuacct:/\n', root, exists);
  assert.equal(loc.version, 1, JSON.stringify(loc));
  assert.equal(loc.quotaDir, undefined);
});

test('locateCgroup says cgroups are not mounted when there are none at all', () => {
  const loc = locateCgroup('', root, fakeFs());
  assert.equal(loc.version, 0);
  assert.match(loc.version === 0 ? loc.reason : '', /no cgroup CPU accounting on this system \(not Linux, or cgroups not mounted\)/);
});

test('locateCgroup says which counters it looked for when cgroups are mounted without CPU accounting', () => {
  const loc = locateCgroup('4:memory:/\n', root, fakeFs(`${root}/memory/memory.limit_in_bytes`));
  assert.equal(loc.version, 0);
  assert.match(loc.version === 0 ? loc.reason : '', /under \/sys\/fs\/cgroup \(neither v2 cpu\.stat nor v1 cpuacct\.usage\)/);
});
