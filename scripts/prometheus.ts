/**
 * A real Prometheus (and promtool) on loopback, for the monitoring tests and `npm start -- --monitoring`.
 *
 * Why Debian's: it is what these machines (and any Debian or Ubuntu box) can install, static Go
 * binaries that need no service: `apt-get download prometheus` and `dpkg -x` into
 * .cache/prometheus/<Debian version>/, nothing installed system-wide and no daemon started.
 * A `prometheus` and `promtool` already on PATH (the package installed) are used instead.
 * Debian's build serves its classic web UI from the libjs-* packages; unpacked like this the API
 * (/api/v1/...) is complete, the UI pages are not (install the package for them).
 *
 *   npm run prometheus -- --fetch        # only download (CI does this first)
 *   import { startPrometheus, promtool, localScrapeConfig } from './scripts/prometheus.ts'
 *   const prom = await startPrometheus({ scrapeConfigs, ruleFiles })
 *   await prom.query('up')               // the API's result vector
 *   await prom.alerts()                  // alerts pending or firing
 *   await prom.destroy()
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { freePort } from './kafka.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cacheDir = join(root, '.cache', 'prometheus');

function onPath(cmd: string): boolean {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

/** The Debian version apt would download, from its package lists (no network). */
function debianVersion(): string {
  const r = spawnSync('apt-cache', ['show', '--no-all-versions', 'prometheus'], { encoding: 'utf8' });
  const v = /^Version: (.+)$/m.exec(r.stdout ?? '')?.[1];
  if (!v) throw new Error("Debian's prometheus package is not known to apt: run `apt-get update` first (Debian or Ubuntu needed)");
  return v;
}

let found: { prometheus: string; promtool: string } | undefined;

/** prometheus and promtool: on PATH, or unpacked from Debian's package into the cache once. */
export function fetchPrometheus(): { prometheus: string; promtool: string } {
  // Once per process: each promtool() call would otherwise start two probes of PATH.
  found ??= locatePrometheus();
  return found;
}

function locatePrometheus(): { prometheus: string; promtool: string } {
  if (onPath('prometheus') && onPath('promtool')) return { prometheus: 'prometheus', promtool: 'promtool' };
  const cached = existsSync(cacheDir) ? readdirSync(cacheDir).filter((d) => existsSync(join(cacheDir, d, '.complete'))) : [];
  const version = cached.length > 0 ? cached.sort().at(-1)! : debianVersion().replace(/[^\w.+-]/g, '_');
  const dir = join(cacheDir, version);
  const bin = (name: string) => join(dir, 'usr', 'bin', name);
  if (!existsSync(join(dir, '.complete'))) {
    const work = mkdtempSync(join(tmpdir(), 'cpu-pipeline-prometheus-'));
    try {
      const dl = spawnSync('apt-get', ['download', 'prometheus'], { cwd: work, encoding: 'utf8' });
      const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
      if (dl.status !== 0 || !deb) throw new Error(`apt-get download prometheus failed: ${dl.stderr}`);
      const unpacked = join(work, 'root');
      const x = spawnSync('dpkg', ['-x', join(work, deb), unpacked], { encoding: 'utf8' });
      if (x.status !== 0) throw new Error(`dpkg -x ${deb} failed: ${x.stderr}`);
      writeFileSync(join(unpacked, '.complete'), `${deb}\n`);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dirname(dir), { recursive: true });
      renameSync(unpacked, dir);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  return { prometheus: bin('prometheus'), promtool: bin('promtool') };
}

/** Runs promtool; returns its exit code and output (stdout and stderr together). */
export function promtool(args: string[], input?: string): { status: number; output: string } {
  const r = spawnSync(fetchPrometheus().promtool, args, { input, encoding: 'utf8' });
  return { status: r.status ?? -1, output: `${r.stdout}${r.stderr}` };
}

export interface ScrapeTarget {
  /** host:port */
  address: string;
  labels?: Record<string, string>;
}

/**
 * The scrape jobs of the pipeline on one machine, named as in Kubernetes (the alert rules select
 * on them): cpu-sampler (with the node label the rules join on), cpu-sink, cpu-kafka.
 */
export function localScrapeConfigs(jobs: { sampler?: ScrapeTarget[]; sink?: ScrapeTarget[]; kafka?: ScrapeTarget[] }) {
  return Object.entries(jobs)
    .filter(([, targets]) => targets && targets.length > 0)
    .map(([job, targets]) => ({
      job_name: `cpu-${job}`,
      static_configs: targets!.map((t) => ({ targets: [t.address], labels: t.labels ?? {} })),
    }));
}

export interface PrometheusOptions {
  scrapeConfigs: object[];
  ruleFiles?: string[];
  /** Scrape and rule evaluation interval; default 15s. */
  interval?: string;
  /** Port on 127.0.0.1; default a free one. */
  port?: number;
  /** Own process group (npm start); default false (dies with the tests). */
  detached?: boolean;
}

export interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}

export interface PrometheusServer {
  readonly url: string;
  readonly configFile: string;
  /** An instant query; throws on a query error (a parse error included). */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  alerts(): Promise<Alert[]>;
  targets(): Promise<Array<{ labels: Record<string, string>; health: string; lastError: string }>>;
  destroy(): Promise<void>;
}

export async function startPrometheus(opts: PrometheusOptions): Promise<PrometheusServer> {
  const { prometheus } = fetchPrometheus();
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-prometheus-'));
  const port = opts.port ?? (await freePort());
  const interval = opts.interval ?? '15s';
  const configFile = join(dir, 'prometheus.yml');
  writeFileSync(
    configFile,
    stringify({
      global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
      rule_files: opts.ruleFiles ?? [],
      scrape_configs: opts.scrapeConfigs,
    }),
  );
  const child: ChildProcess = spawn(
    prometheus,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1d',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: opts.detached ?? false },
  );
  let log = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (log = (log + d).slice(-8000)));
  const exited = once(child, 'exit');
  const url = `http://127.0.0.1:${port}`;
  const api = async (path: string) => {
    const res = await fetch(`${url}${path}`);
    const body = (await res.json()) as { status: string; data: unknown; error?: string };
    if (body.status !== 'success') throw new Error(`Prometheus ${path}: ${body.error ?? res.status}`);
    return body.data as never;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Prometheus exited at start: ${log}`);
    const ok = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`Prometheus did not get ready within 30 s: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    configFile,
    query: async (expr) => ((await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as { result: never }).result,
    alerts: async () => ((await api('/api/v1/alerts')) as { alerts: Alert[] }).alerts,
    targets: async () => ((await api('/api/v1/targets?state=active')) as { activeTargets: never }).activeTargets,
    async destroy() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// `npm run prometheus -- --fetch`
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv.includes('--fetch')) {
  const { prometheus, promtool: tool } = fetchPrometheus();
  console.log(`Prometheus: ${prometheus}; promtool: ${tool}`);
}
