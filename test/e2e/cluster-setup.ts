/**
 * Global setup of `npm run test:cluster` (node --test --test-global-setup): a real single-node
 * Kubernetes cluster on this machine for test/e2e/cluster.e2e.ts, made by scripts/cluster.sh:
 * `build` (skipped when .cache/k8s/<version>/ has it), `images` (the overlay's images, stand-ins
 * cached), `up` (egress guard first), `load` (images into the cluster's containerd); and `down`
 * afterwards, which also prints the egress guard's counters and checks the host is as before.
 *
 * CLUSTER_REUSE=1 with a cluster already up (`bash scripts/cluster.sh up && bash scripts/cluster.sh
 * load`): the tests use it and it is left running. Needs root, like the cluster.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'cluster.sh');
let started = false;

function cluster(...args: string[]): number {
  // The scripts' progress goes to stderr, out of the test reporter's way.
  const r = spawnSync('bash', [script, ...args], { stdio: ['ignore', 2, 2] });
  if (r.error) throw r.error;
  return r.status ?? 1;
}
function must(...args: string[]): void {
  const code = cluster(...args);
  if (code !== 0) throw new Error(`scripts/cluster.sh ${args.join(' ')} failed (exit ${code})`);
}

export async function globalSetup(): Promise<void> {
  if (process.env.CLUSTER_REUSE === '1' && cluster('status') === 0) {
    process.stdout.write('# using the cluster that is up already (CLUSTER_REUSE=1); it is left running\n');
    return;
  }
  if (process.getuid?.() !== 0) throw new Error('the cluster end-to-end tests need root (they start kubelet, containerd, iptables rules)');
  must('build');
  must('images');
  started = true;
  try {
    must('up');
    must('load');
  } catch (err) {
    started = false;
    cluster('down');
    throw err;
  }
}

export async function globalTeardown(): Promise<void> {
  if (started) must('down');
}
