/**
 * Starts one real Kafka broker for the whole test run (node --test --test-global-setup) and
 * hands its address to every test file through TEST_KAFKA_BOOTSTRAP. Tests that must stop or
 * restart a broker start their own with startKafka() instead of disturbing this one.
 */
import { startKafka, type KafkaBroker } from '../scripts/kafka.ts';

let kafka: KafkaBroker | undefined;

export async function globalSetup(): Promise<void> {
  kafka = await startKafka();
  process.env.TEST_KAFKA_BOOTSTRAP = kafka.bootstrap;
  process.stdout.write(`# shared Kafka broker at ${kafka.bootstrap} (data: ${kafka.dataDir})\n`);
}

export async function globalTeardown(): Promise<void> {
  await kafka?.destroy();
}
