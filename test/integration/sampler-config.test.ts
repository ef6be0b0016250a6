/**
 * `tsx sampler.ts` with a wrong value for each setting: the real program stops before it
 * connects, exits 2, and its message names the variable, the value and what was expected.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configErrorTests, runProgram } from '../helpers.ts';

const cases: Array<[env: Record<string, string>, expected: RegExp]> = [
  [{ SAMPLE_INTERVAL_SECONDS: 'abc' }, /SAMPLE_INTERVAL_SECONDS="abc": expected a number of seconds/],
  [{ SAMPLE_INTERVAL_SECONDS: '-5' }, /SAMPLE_INTERVAL_SECONDS="-5": expected a number of seconds from 0.1/],
  [{ KAFKA_BROKERS: '' }, /KAFKA_BROKERS="": expected a comma-separated list of host:port/],
  [{ KAFKA_BROKERS: 'kafka' }, /KAFKA_BROKERS="kafka": expected a comma-separated list of host:port/],
  [{ KAFKA_TOPIC: 'bad topic!' }, /KAFKA_TOPIC="bad topic!": expected a Kafka topic name/],
  [{ KAFKA_CLIENT_ID: '' }, /KAFKA_CLIENT_ID="": expected a non-empty client id/],
  [{ READINGS_QUEUE_MAX: '0' }, /READINGS_QUEUE_MAX="0": expected an integer from 1/],
  [{ READINGS_MAX_WAIT_SECONDS: 'forever' }, /READINGS_MAX_WAIT_SECONDS="forever": expected an integer of seconds from 1 to 2147483/],
  [{ HTTP_PORT: '70000' }, /HTTP_PORT="70000": expected an integer from 0 to 65535/],
  [{ SHUTDOWN_TIMEOUT_SECONDS: '0' }, /SHUTDOWN_TIMEOUT_SECONDS="0": expected a number of seconds from 1/],
  [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL="loud": expected one of debug, info, warn, error/],
  [{ KAFKA_CONFIG_BOOTSTRAP_SERVERS: 'x:1' }, /KAFKA_CONFIG_BOOTSTRAP_SERVERS="x:1": sets bootstrap.servers, which KAFKA_BROKERS owns/],
  // librdkafka itself rejects these when the client is created, still before any connection.
  [{ KAFKA_CONFIG_NO_SUCH_PROPERTY: 'x' }, /KAFKA_CONFIG_NO_SUCH_PROPERTY: No such configuration property: "no.such.property"/],
  [
    { KAFKA_CONFIG_SECURITY_PROTOCOL: 'bogus' },
    /KAFKA_CONFIG_SECURITY_PROTOCOL: Invalid value "bogus" for configuration property "security.protocol"/,
  ],
];

configErrorTests('sampler', cases);

test('sampler reports every bad setting at once', async (t) => {
  const p = runProgram(t, 'sampler.ts', { SAMPLE_INTERVAL_SECONDS: 'abc', KAFKA_TOPIC: '..', HTTP_PORT: '-1' });
  const { code } = await p.exited;
  assert.equal(code, 2);
  assert.equal(p.stderr().trim().split('\n').length, 3, p.stderr());
});
