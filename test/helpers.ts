/**
 * Test helpers: run the real programs as processes, read topics with an independent client
 * (kcat), wait for conditions. Each helper that starts something registers its own cleanup.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The shared broker started by test/global-setup.ts; fails (never skips) without it. */
export function sharedKafka(): string {
  const bootstrap = process.env.TEST_KAFKA_BOOTSTRAP;
  if (!bootstrap) throw new Error('TEST_KAFKA_BOOTSTRAP is not set: run the suite with `npm test` (it starts Kafka)');
  return bootstrap;
}

export const uniqueName = (prefix: string) => `${prefix}-${randomUUID()}`;

export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface LogLine { msg: string; level: string; [field: string]: unknown }

export interface Program {
  proc: ChildProcess;
  logs: LogLine[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(what: string, match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  count(msg: string): number;
}

/** Spawns `node --import tsx <file>` with env added to a clean environment; killed after the test. */
export function runProgram(t: TestContext, file: string, env: Record<string, string>): Program {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, file)], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let err = '';
  let partial = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) if (line.trim()) logs.push(JSON.parse(line) as LogLine);
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => { err += chunk; });
  const exited = once(proc, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  return {
    proc,
    logs,
    stderr: () => err,
    exited,
    waitForLog: (what, match, timeoutMs = 30_000) => waitFor(what, () => {
      if (proc.exitCode !== null) throw new Error(`${file} exited (${proc.exitCode}) while waiting for ${what}; stderr: ${err}`);
      return logs.find(match);
    }, timeoutMs),
    count: (msg) => logs.filter((l) => l.msg === msg).length,
  };
}

export interface TopicMessage { key: string | null; value: string; partition: number; offset: number; headers: Record<string, string> }

/** Everything in a topic right now, read by kcat (an independent client), in partition/offset order. */
export async function readTopic(bootstrap: string, topic: string): Promise<TopicMessage[]> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)('kcat', ['-b', bootstrap, '-C', '-t', topic, '-e', '-J', '-q', '-o', 'beginning'],
      { maxBuffer: 256 * 1024 * 1024, timeout: 30_000 }));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error('kcat is required by the tests (Debian: apt-get install kcat)');
    if (/Unknown topic|UNKNOWN_TOPIC/i.test(e.stderr ?? '')) return [];
    throw err;
  }
  return stdout.split('\n').filter(Boolean).map((line) => {
    const m = JSON.parse(line) as { key: string | null; payload: string; partition: number; offset: number; headers?: string[] };
    const headers: Record<string, string> = {};
    for (let i = 0; m.headers && i < m.headers.length; i += 2) headers[m.headers[i]] = m.headers[i + 1];
    return { key: m.key, value: m.payload, partition: m.partition, offset: m.offset, headers };
  }).sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

/** GET a path of a program's HTTP server. */
export async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

// ajv-formats is CommonJS: under nodenext the default import is module.exports, whose .default is the plugin.
const addFormats = addFormatsModule.default;
const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats(ajv);
/** The published JSON Schema of a reading, compiled. */
export const validateReading = ajv.compile(JSON.parse(readFileSync(join(root, 'schema', 'cpu-reading.v1.schema.json'), 'utf8')));
