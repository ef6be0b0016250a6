/**
 * A real S3-compatible server on loopback, for tests and for running the pipeline on one machine.
 *
 * Why this one: the sink's exactly-once design needs conditional writes (PutObject with
 * If-None-Match: * answering 412 when the key exists). moto's server (PyPI, pinned below)
 * implements them and installs in about a minute from PyPI; s3rver (npm) ignores them.
 *
 * The server sits behind a small TCP relay owned by this script, so that fault tests can take S3
 * away and bring it back with its objects intact: stop('refuse') closes the port (connection
 * refused, like a dead server), stop('hang') accepts connections and never answers (like a
 * black-holed network: requests time out); start() restores it.
 *
 *   npm run s3 -- --fetch                 # only install the server into .cache/moto (CI does this)
 *   import { startS3 } from './scripts/s3.ts'
 *   const s3 = await startS3()            // { endpoint: 'http://127.0.0.1:PORT', stop, start, destroy }
 *
 * Any access key and secret are accepted. Python 3 with venv is the only prerequisite.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort } from './kafka.ts';

export const motoVersion = '5.2.5';
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const venv = join(root, '.cache', 'moto');
const server = join(venv, 'bin', 'moto_server');
const fetched = join(venv, `.complete-${motoVersion}`);

/** Installs moto's server into .cache/moto once; returns the server's path. */
export function fetchS3Server(): string {
  if (existsSync(fetched)) return server;
  const run = (cmd: string, args: string[], what: string) => {
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.error || r.status !== 0)
      throw new Error(
        `${what} failed (${r.error?.message ?? `exit ${r.status}`}); needs Python 3 with venv (Debian: apt-get install python3-venv)`,
      );
  };
  run('python3', ['-m', 'venv', venv], 'creating a Python venv in .cache/moto');
  run(
    join(venv, 'bin', 'pip'),
    ['install', '--quiet', '--disable-pip-version-check', `moto[server]==${motoVersion}`],
    `installing moto[server]==${motoVersion} from PyPI`,
  );
  writeFileSync(fetched, `${new Date().toISOString()}\n`);
  return server;
}

export interface S3Server {
  /** http://127.0.0.1:PORT, stable across stop()/start(). */
  readonly endpoint: string;
  readonly port: number;
  /** The server itself, past the relay: what S3 holds can be read there while stop() keeps clients out. */
  readonly backendEndpoint: string;
  /** Takes S3 away: 'refuse' closes the port, 'hang' accepts and never answers. Objects are kept. */
  stop(mode?: 'refuse' | 'hang'): Promise<void>;
  /** Brings S3 back on the same port with the same objects. */
  start(): Promise<void>;
  /** Stops everything and forgets the objects. */
  destroy(): Promise<void>;
}

export async function startS3(opts: { port?: number; detached?: boolean } = {}): Promise<S3Server> {
  const bin = fetchS3Server();
  const backendPort = await freePort();
  const port = opts.port ?? (await freePort());
  const backend: ChildProcess = spawn(bin, ['-H', '127.0.0.1', '-p', String(backendPort)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MOTO_ALLOW_NONEXISTENT_REGION: 'true' },
    detached: opts.detached ?? false, // see KafkaOptions.detached
  });
  let stderr = '';
  backend.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  const backendExit = once(backend, 'exit');

  // The relay: every client connection is piped to the backend, unless S3 is "down".
  let mode: 'up' | 'refuse' | 'hang' = 'up';
  const sockets = new Set<Socket>();
  const relay: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (mode === 'hang') return; // accepted, never answered
    const upstream = connect(backendPort, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  const listen = async () => {
    relay.listen(port, '127.0.0.1');
    await once(relay, 'listening');
  };
  const dropConnections = () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  await listen();

  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (backend.exitCode !== null) throw new Error(`moto_server exited (${backend.exitCode}): ${stderr}`);
    try {
      if ((await fetch(`${endpoint}/`)).ok) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) {
      backend.kill('SIGKILL');
      relay.close();
      throw new Error(`moto_server did not answer within 60 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    endpoint,
    port,
    backendEndpoint: `http://127.0.0.1:${backendPort}`,
    async stop(how = 'refuse') {
      dropConnections();
      if (how === 'refuse' && relay.listening) {
        relay.close();
        await once(relay, 'close');
      }
      mode = how;
      if (how === 'hang' && !relay.listening) await listen();
    },
    async start() {
      dropConnections();
      mode = 'up';
      if (!relay.listening) await listen();
    },
    async destroy() {
      dropConnections();
      if (relay.listening) relay.close();
      if (backend.exitCode === null) {
        backend.kill('SIGTERM');
        await backendExit;
      }
    },
  };
}

/** `npm run s3 -- --ls [endpoint] [bucket]`: every object with its size, then the newest one's readings. */
async function list(endpoint: string, bucket: string): Promise<void> {
  const { S3Client, ListObjectsV2Command, GetObjectCommand } = await import('@aws-sdk/client-s3');
  const { gunzipSync } = await import('node:zlib');
  const s3 = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local-secret' },
  });
  const objects: Array<{ Key?: string; Size?: number; LastModified?: Date }> = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    objects.push(...(page.Contents ?? []));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  for (const o of objects) console.log(`${String(o.Size).padStart(8)}  s3://${bucket}/${o.Key}`);
  const newest = objects.sort((a, b) => (a.LastModified?.getTime() ?? 0) - (b.LastModified?.getTime() ?? 0)).at(-1);
  if (!newest?.Key) return console.log(`no objects in s3://${bucket} yet`);
  const body = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: newest.Key }))).Body!.transformToByteArray());
  console.log(`\nnewest, s3://${bucket}/${newest.Key}:`);
  process.stdout.write((newest.Key.endsWith('.gz') ? gunzipSync(body) : body).toString('utf8'));
}

// `npm run s3`: a server for people on localhost:9000 (S3_PORT), or `-- --fetch` to install only.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--fetch')) {
    console.log(`moto ${motoVersion} server at ${fetchS3Server()}`);
  } else if (process.argv.includes('--ls')) {
    const [endpoint = 'http://127.0.0.1:9000', bucket = 'cpu-pipeline-local'] = process.argv.slice(process.argv.indexOf('--ls') + 1);
    await list(endpoint, bucket);
  } else {
    const s3 = await startS3({ port: Number(process.env.S3_PORT ?? 9000) });
    console.log(
      `S3-compatible server (moto ${motoVersion}) at ${s3.endpoint}; any access key works; Ctrl-C stops it (objects are kept in memory only).`,
    );
    const stop = async () => {
      await s3.destroy();
      process.exit(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
}
