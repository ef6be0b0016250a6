/**
 * DuckDB's shell, to run the SQL of sql/ on readings copied from the bucket, exactly as Athena runs
 * it on the bucket itself (sql/README.md), and for the tests that check those queries.
 *
 * Why this one: PyPI's duckdb-cli is DuckDB's own shell in a wheel, with the JSON reader built in,
 * so nothing is downloaded when it runs. It is pinned below and installed once into a Python venv
 * in .cache/duckdb/<version>/: a new version is a new folder, and every run after the first is
 * instant. Python 3 with venv is the only prerequisite.
 *
 *   npm run duckdb -- --fetch                        # only install (CI does this)
 *   npm run duckdb -- DIR                            # a shell with the table and views over DIR
 *   npm run duckdb -- DIR sql/queries/busiest-pods.sql   # run query files, print their results
 *   import { duckdb } from './scripts/duckdb.ts'
 *   duckdb(dir, ['-json', '-f', 'sql/queries/busiest-pods.sql'])   // its stdout; throws on error
 *
 * DIR is a copy of the bucket's prefix folder, the one that holds dt=YYYY-MM-DD/ folders (for
 * production: `aws s3 sync s3://elementor-data-candidates-bucket/cpu-levels/ DIR`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const duckdbVersion = '1.5.6';
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const venv = join(root, '.cache', 'duckdb', duckdbVersion);
const fetched = join(venv, '.complete');

/**
 * The shell's own binary inside the venv, run directly: the venv's bin/duckdb is a Python script
 * whose first line names the venv by the path it was made at, which breaks if .cache is a link
 * shared by several checkouts and the one that made it goes away.
 */
function shellIn(dir: string): string {
  const python = readdirSync(join(dir, 'lib')).find((d) => d.startsWith('python'));
  return join(dir, 'lib', python ?? 'python3', 'site-packages', 'duckdb_cli', 'duckdb');
}

/**
 * What DuckDB reads before a query, in this order: the prelude that gives it Athena's function
 * names, the table over the files, then the views (pod_days is built on pod_readings).
 */
export const setupFiles = [
  'sql/duckdb/prelude.sql',
  'sql/duckdb/cpu_readings.sql',
  'sql/views/node_readings.sql',
  'sql/views/pod_readings.sql',
  'sql/views/pod_days.sql',
];

/** Installs DuckDB's shell into .cache/duckdb/<version>/ once; returns its path. */
export function fetchDuckDB(): string {
  if (existsSync(fetched)) return shellIn(venv);
  // A folder without the marker is an install that was cut short: start it again.
  rmSync(venv, { recursive: true, force: true });
  const steps: Array<[string, string[], string]> = [
    ['python3', ['-m', 'venv', venv], `creating a Python venv in ${venv}`],
    [
      join(venv, 'bin', 'pip'),
      ['install', '--quiet', '--disable-pip-version-check', `duckdb-cli==${duckdbVersion}`],
      `installing duckdb-cli==${duckdbVersion} from PyPI`,
    ],
  ];
  for (const [cmd, args, what] of steps) {
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.error || r.status !== 0)
      throw new Error(`${what} failed (${r.error?.message ?? `exit ${r.status}`}); needs Python 3 with venv (Debian: python3-venv)`);
  }
  const shell = shellIn(venv);
  if (!existsSync(shell)) throw new Error(`duckdb-cli==${duckdbVersion} installed, but its shell is not at ${shell}`);
  writeFileSync(fetched, `${new Date().toISOString()}\n`);
  return shell;
}

const sqlString = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** The shell's arguments that set up the table and views over `dataDir` (no ~/.duckdbrc, stop at the first error). */
export function setupArgs(dataDir: string): string[] {
  return [
    '-no-init',
    '-bail',
    '-cmd',
    `SET VARIABLE cpu_levels = ${sqlString(resolve(dataDir))}`,
    ...setupFiles.flatMap((f) => ['-cmd', `.read ${join(root, f)}`]),
  ];
}

/** Runs DuckDB's shell on an in-memory database set up over `dataDir`, then `args`; returns its stdout. */
export function duckdb(dataDir: string, args: string[]): string {
  const r = spawnSync(fetchDuckDB(), [...setupArgs(dataDir), ...args], { cwd: root, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.error || r.status !== 0)
    throw new Error(`duckdb ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr}`);
  return r.stdout;
}

// `npm run duckdb -- --fetch | DIR [QUERY.sql ...]`
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [first, ...queries] = process.argv.slice(2);
  if (first === '--fetch') {
    console.log(`DuckDB ${duckdbVersion} shell at ${fetchDuckDB()}`);
  } else if (!first || first.startsWith('-')) {
    console.error('usage: npm run duckdb -- --fetch | DIR [QUERY.sql ...]   (DIR: a copy of the bucket prefix, holding dt=... folders)');
    process.exit(2);
  } else {
    // Paths are the caller's: npm runs scripts in the package's folder and says where it was called in INIT_CWD.
    const here = (path: string) => resolve(process.env.INIT_CWD ?? process.cwd(), path);
    // Query files are read after the setup, then the shell exits; without any, it stays for you.
    const run = queries.flatMap((q) => ['-cmd', `.read ${here(q)}`]);
    const r = spawnSync(fetchDuckDB(), [...setupArgs(here(first)), ...run, ...(queries.length ? ['-no-stdin'] : [])], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
}
