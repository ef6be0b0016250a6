/**
 * Every pod's CPU from the kubelet's pod cgroups, on fixture trees of each layout the sampler meets:
 * cgroup v2 and v1 (one cpu,cpuacct hierarchy or two), the systemd and cgroupfs drivers, containerd
 * and CRI-O containers inside the pods, a kubelet under its own cgroup root (kind), a static pod.
 * Then the readings of a window, the requests as the scheduler counts them, the names from a
 * PodList.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  cpuCores,
  findPodCgroups,
  podInfos,
  podReadings,
  podRequestCores,
  readPodSample,
  type PodCgroup,
  type PodSample,
} from '../../sampler.ts';

const G = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d'; // Guaranteed
const B = '1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e'; // Burstable
const E = '2c3d4e5f-6a7b-4c8d-ae9f-1a2b3c4d5e6f'; // BestEffort
const S = 'd41d8cd98f00b204e9800998ecf8427e'; // a static pod's UID: a hash
const us = (uid: string) => uid.replaceAll('-', '_'); // the systemd driver's spelling
const container = 'ab'.repeat(32); // a container ID, 64 hex digits

/** A tree of files under a new temp folder, removed after the test. */
function tree(t: TestContext, files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'cpu-pipeline-cgroups-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

// cgroup v2 files of a pod (and of a container in it, which must not count as a pod).
const v2 = (dir: string, usageUsec: number, max = 'max 100000', throttledUsec = 0, inside = `${container}`) => ({
  [`${dir}/cpu.stat`]: `usage_usec ${usageUsec}\nuser_usec 1\nsystem_usec 1\nnr_periods 10\nnr_throttled 2\nthrottled_usec ${throttledUsec}\n`,
  [`${dir}/cpu.max`]: `${max}\n`,
  [`${dir}/${inside}/cpu.stat`]: `usage_usec ${usageUsec}\n`,
});
// cgroup v1 files of a pod: usage in the cpuacct hierarchy, quota and throttling in the cpu one.
const v1 = (acct: string, cpu: string, usageNs: number, quotaUs = -1, throttledNs = 0) => ({
  [`${acct}/cpuacct.usage`]: `${usageNs}\n`,
  [`${cpu}/cpu.cfs_quota_us`]: `${quotaUs}\n`,
  [`${cpu}/cpu.cfs_period_us`]: '100000\n',
  [`${cpu}/cpu.stat`]: `nr_periods 10\nnr_throttled 2\nthrottled_time ${throttledNs}\n`,
  [`${acct}/${container}/cpuacct.usage`]: `${usageNs}\n`,
});

const found = (pods: PodCgroup[]) => pods.map((p) => `${p.uid} ${p.qos} v${p.version}`).sort();
const expected = (...pods: Array<[string, string]>) => pods.map(([uid, qos]) => `${uid} ${qos}`);

const layouts: Array<[string, (t: TestContext) => string, string[], number]> = [
  [
    'cgroup v2, systemd driver, containerd (EKS on Amazon Linux 2023)',
    (t) =>
      tree(t, {
        'cgroup.controllers': 'cpuset cpu io memory pids\n',
        'system.slice/containerd.service/cpu.stat': 'usage_usec 5\n',
        ...v2(`kubepods.slice/kubepods-pod${us(G)}.slice`, 1000, '50000 100000', 7, `cri-containerd-${container}.scope`),
        ...v2(`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${us(B)}.slice`, 2000),
        ...v2(`kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${us(E)}.slice`, 3000),
      }),
    expected([G, 'Guaranteed'], [B, 'Burstable'], [E, 'BestEffort']).map((x) => `${x} v2`),
    3,
  ],
  [
    'cgroup v2, cgroupfs driver, containerd',
    (t) =>
      tree(t, {
        'cgroup.controllers': 'cpu memory\n',
        ...v2(`kubepods/pod${G}`, 1000, '50000 100000', 7),
        ...v2(`kubepods/burstable/pod${B}`, 2000),
        ...v2(`kubepods/besteffort/pod${E}`, 3000),
      }),
    expected([G, 'Guaranteed'], [B, 'Burstable'], [E, 'BestEffort']).map((x) => `${x} v2`),
    3,
  ],
  [
    'cgroup v2, systemd driver, CRI-O (its conmon beside each container)',
    (t) =>
      tree(t, {
        'cgroup.controllers': 'cpu memory\n',
        ...v2(
          `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${us(B)}.slice`,
          2000,
          'max 100000',
          0,
          `crio-${container}.scope`,
        ),
        [`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${us(B)}.slice/crio-conmon-${container}.scope/cpu.stat`]:
          'usage_usec 1\n',
      }),
    expected([B, 'Burstable']).map((x) => `${x} v2`),
    1,
  ],
  [
    'cgroup v2, a kubelet under its own cgroup root (kind: kubelet.slice/kubelet-kubepods.slice)',
    (t) =>
      tree(t, {
        'cgroup.controllers': 'cpu memory\n',
        ...v2(`kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod${us(G)}.slice`, 1000, '50000 100000', 7),
        ...v2(`kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod${us(B)}.slice`, 2000),
      }),
    expected([G, 'Guaranteed'], [B, 'Burstable']).map((x) => `${x} v2`),
    2,
  ],
  [
    'cgroup v1, systemd driver, one cpu,cpuacct hierarchy (EKS on Amazon Linux 2)',
    (t) =>
      tree(t, {
        ...v1(
          `cpu,cpuacct/kubepods.slice/kubepods-pod${us(G)}.slice`,
          `cpu,cpuacct/kubepods.slice/kubepods-pod${us(G)}.slice`,
          1_000_000,
          50_000,
          7000,
        ),
        ...v1(
          `cpu,cpuacct/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${us(B)}.slice`,
          `cpu,cpuacct/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${us(B)}.slice`,
          2_000_000,
        ),
      }),
    expected([G, 'Guaranteed'], [B, 'Burstable']).map((x) => `${x} v1`),
    2,
  ],
  [
    'cgroup v1, cgroupfs driver, cpu and cpuacct mounted apart, a static pod',
    (t) =>
      tree(t, {
        ...v1(`cpuacct/kubepods/pod${G}`, `cpu/kubepods/pod${G}`, 1_000_000, 50_000, 7000),
        ...v1(`cpuacct/kubepods/burstable/pod${B}`, `cpu/kubepods/burstable/pod${B}`, 2_000_000),
        ...v1(`cpuacct/kubepods/besteffort/pod${E}`, `cpu/kubepods/besteffort/pod${E}`, 3_000_000),
        ...v1(`cpuacct/kubepods/burstable/pod${S}`, `cpu/kubepods/burstable/pod${S}`, 4_000_000),
      }),
    expected([G, 'Guaranteed'], [B, 'Burstable'], [E, 'BestEffort'], [S, 'Burstable']).map((x) => `${x} v1`),
    4,
  ],
];

for (const [name, make, pods, count] of layouts) {
  test(`${name}: every pod found by its UID and QoS class, no container taken for a pod`, (t) => {
    const root = make(t);
    const cgroups = findPodCgroups(root);
    assert.equal(cgroups.length, count);
    assert.deepEqual(found(cgroups), [...pods].sort());
    // Counters in microseconds, the limit where there is one, throttling where it is reported.
    const samples = new Map(cgroups.map((c) => [c.uid, readPodSample(c)]));
    const b = samples.get(B);
    assert.equal(b?.usageUsec, 2000, 'usage in µs (v1: cpuacct.usage in ns / 1000)');
    assert.equal(b?.limitCores, undefined, 'no limit');
    const g = samples.get(G);
    if (g) {
      assert.equal(g.usageUsec, 1000);
      assert.equal(g.limitCores, 0.5, 'quota / period');
      assert.equal(g.throttledUsec, 7);
    }
  });
}

test('no kubepods under the root (not a Kubernetes node, or a container without the host mount): no pods', (t) => {
  assert.deepEqual(findPodCgroups(tree(t, { 'cgroup.controllers': 'cpu\n', 'user.slice/cpu.stat': 'usage_usec 1\n' })), []);
  assert.deepEqual(findPodCgroups(tree(t, { 'memory/kubepods/x': '' })), [], 'v1 without cpuacct');
  assert.deepEqual(findPodCgroups('/no/such/root'), []);
});

test('a pod that went between the listing and the read has no sample', (t) => {
  const root = tree(t, { 'cgroup.controllers': 'cpu\n', ...v2(`kubepods/burstable/pod${B}`, 2000) });
  const [c] = findPodCgroups(root);
  rmSync(join(root, 'kubepods'), { recursive: true });
  assert.equal(readPodSample(c), undefined);
});

// ---------------------------------------------------------------- the readings of a window

const window = { start: '2026-11-27T05:59:00.000Z', end: '2026-11-27T06:00:00.000Z', seconds: 60 };
const cg = (uid: string, qos: PodCgroup['qos'] = 'Burstable'): PodCgroup => ({ uid, qos, version: 2, dir: '/x', cpuDir: '/x' });
const sample = (usageUsec: number, limitCores?: number, throttledUsec?: number): PodSample => ({ usageUsec, limitCores, throttledUsec });

test('a pod reading: cores over the window, as percent of its request and of its limit, throttled seconds', () => {
  // 30 CPU-seconds in 60 s: half a core; request a quarter (200 %), limit half a core (100 %).
  const [r] = podReadings(
    new Map([[G, sample(1_000_000, 0.5, 0)]]),
    new Map([[G, sample(31_000_000, 0.5, 2_500_000)]]),
    new Map([[G, cg(G, 'Guaranteed')]]),
    () => ({ name: 'api-7d9f8-x2k4q', namespace: 'shop', requestCores: 0.25 }),
    window,
    'node-a',
  );
  assert.deepEqual(r, {
    kind: 'pod',
    schema_version: 1,
    window_start: window.start,
    window_end: window.end,
    window_seconds: 60,
    node: 'node-a',
    pod_uid: G,
    pod: 'api-7d9f8-x2k4q',
    namespace: 'shop',
    qos_class: 'Guaranteed',
    cgroup_version: 2,
    cores_used: 0.5,
    request_cores: 0.25,
    limit_cores: 0.5,
    request_percent: 200,
    limit_percent: 100,
    throttled_seconds: 2.5,
  });
});

test('a pod the API does not name is read by UID; without request, limit or throttling those are null', () => {
  const [r] = podReadings(
    new Map([[E, sample(0)]]),
    new Map([[E, sample(600_000)]]),
    new Map([[E, cg(E, 'BestEffort')]]),
    () => undefined,
    window,
    'n',
  );
  assert.deepEqual(
    [r.pod, r.namespace, r.cores_used, r.request_cores, r.request_percent, r.limit_cores, r.limit_percent, r.throttled_seconds],
    [null, null, 0.01, null, null, null, null, null],
  );
});

test('a pod new in the window (no baseline) and one whose counter went backwards are left out this once', () => {
  const readings = podReadings(
    new Map([[B, sample(5_000_000)]]),
    new Map([
      [B, sample(1_000)], // a new cgroup under the same UID
      [G, sample(9_000_000)], // started during the window
    ]),
    new Map([
      [B, cg(B)],
      [G, cg(G)],
    ]),
    () => undefined,
    window,
    'n',
  );
  assert.deepEqual(readings, []);
});

// ---------------------------------------------------------------- requests and names from the API

test('cpuCores reads the CPU quantities Kubernetes writes', () => {
  assert.deepEqual(['250m', '0.5', '2', '1500000000n', '100000u', '1k', '.5', 3].map(cpuCores), [0.25, 0.5, 2, 1.5, 0.1, 1000, 0.5, 3]);
  for (const bad of ['', 'lots', '1Gi', '-1', undefined]) assert.equal(cpuCores(bad), undefined, String(bad));
});

test("podRequestCores counts as the scheduler does: containers and sidecars, or the largest init container, plus overhead; the pod's own where set", () => {
  const c = (cpu?: string, restartPolicy?: string) => ({
    resources: cpu ? { requests: { cpu } } : {},
    ...(restartPolicy ? { restartPolicy } : {}),
  });
  assert.equal(podRequestCores({ containers: [c('100m'), c('250m')] }), 0.35);
  assert.equal(podRequestCores({ containers: [c('100m')], initContainers: [c('1')] }), 1, 'an init container asking more');
  assert.equal(podRequestCores({ containers: [c('100m')], initContainers: [c('50m', 'Always')] }), 0.15, 'a sidecar runs beside');
  assert.equal(podRequestCores({ containers: [c('100m')], overhead: { cpu: '10m' } }), 0.11);
  assert.equal(podRequestCores({ containers: [c('100m')], resources: { requests: { cpu: '2' } } }), 2, 'pod-level resources');
  assert.equal(podRequestCores({ containers: [c(), c()] }), undefined, 'BestEffort: no request');
  assert.equal(podRequestCores(undefined), undefined);
});

test("podInfos names each pod by the UID of its cgroup, a static pod's by its mirror's annotation", () => {
  const pods = podInfos({
    items: [
      { metadata: { uid: B, name: 'web-1', namespace: 'shop' }, spec: { containers: [{ resources: { requests: { cpu: '500m' } } }] } },
      {
        metadata: { uid: G, name: 'kube-apiserver-node-a', namespace: 'kube-system', annotations: { 'kubernetes.io/config.mirror': S } },
        spec: { containers: [{ resources: { requests: { cpu: '250m' } } }] },
      },
    ],
  });
  assert.deepEqual(Object.fromEntries(pods), {
    [B]: { name: 'web-1', namespace: 'shop', requestCores: 0.5 },
    [S]: { name: 'kube-apiserver-node-a', namespace: 'kube-system', requestCores: 0.25 },
  });
});
