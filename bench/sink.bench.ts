/**
 * Sink benchmarks: prints numbers, asserts nothing.   npm run bench:sink
 *
 * The per-record work of sink.ts (UTF-8, JSON.parse, duplicate keys, the JSON Schema, the time
 * partition, appending to a file) and the per-file work (gzip), on realistic readings, with the
 * compression ratio and memory. The whole sink against Kafka and S3 is in `npm run bench`.
 */
import { checkRecord, encodeFile, FileData } from '../sink.ts';
import { backlogReading } from '../test/helpers.ts';

const reading = (i: number) => Buffer.from(backlogReading(i));

const n = 50_000;
const values = Array.from({ length: n }, (_, i) => reading(i));
const bytes = values.reduce((s, v) => s + v.length, 0);

let t0 = process.hrtime.bigint();
let ok = 0;
let file = new FileData('h', 0);
for (let i = 0; i < n; i++) {
  const c = checkRecord(values[i], 65_536);
  if (c.ok) {
    if (file.records === 10_000) file = new FileData(c.hour, 0);
    file.append(i, c.line);
    ok++;
  }
}
let t1 = process.hrtime.bigint();
if (ok !== n) throw new Error(`only ${ok} of ${n} readings were valid`);
const perRecordUs = Number(t1 - t0) / n / 1000;
console.log(
  `checkRecord + FileData.append: ${perRecordUs.toFixed(2)} µs per record, ${Math.round(1e6 / perRecordUs)} records/s on one core (${Math.round(bytes / n)} bytes per record)`,
);

for (const size of [60, 1440, 10_000]) {
  const f = new FileData('h', 0);
  values.slice(0, size).forEach((line, i) => f.append(i, line));
  const rounds = Math.max(3, Math.round(200_000 / size));
  t0 = process.hrtime.bigint();
  let body: Buffer = Buffer.alloc(0);
  for (let i = 0; i < rounds; i++) body = await encodeFile(f, true);
  t1 = process.hrtime.bigint();
  const ms = Number(t1 - t0) / rounds / 1e6;
  console.log(
    `encodeFile gzip, ${size} records (${(f.bytes / 1024).toFixed(0)} KiB): ${ms.toFixed(2)} ms, ${(f.bytes / 2 ** 20 / (ms / 1000)).toFixed(0)} MiB/s, ratio ${(f.bytes / body.length).toFixed(1)}:1`,
  );
}
console.log(`rss: ${(process.memoryUsage().rss / 2 ** 20).toFixed(1)} MiB with ${n} readings (${(bytes / 2 ** 20).toFixed(1)} MiB) held`);
