/**
 * Once for the whole test run (node --test --test-global-setup): builds the bundles the image runs
 * (dist/, `npm run build`), so that tests can run exactly what a container runs, and starts one
 * real Kafka broker whose address every test file gets through TEST_KAFKA_BOOTSTRAP. Tests that
 * must stop or restart a broker start their own with startKafka() instead of disturbing this one.
 */
import { spawnSync } from 'node:child_process';
import { startKafka, type KafkaBroker } from '../scripts/kafka.ts';
import { root } from './helpers.ts';

let kafka: KafkaBroker | undefined;

export async function globalSetup(): Promise<void> {
  const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`npm run build failed: ${build.stderr || build.stdout}`);
  kafka = await startKafka();
  process.env.TEST_KAFKA_BOOTSTRAP = kafka.bootstrap;
  process.stdout.write(`# shared Kafka broker at ${kafka.bootstrap} (data: ${kafka.dataDir})\n`);
}

export async function globalTeardown(): Promise<void> {
  await kafka?.destroy();
}
