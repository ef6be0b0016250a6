import assert from 'node:assert/strict';
import { test } from 'node:test';
import { consumerConf, loadConfig, memoryBound } from '../../sink.ts';
import { configErrorOf, type Env } from './config-error.ts';

const configError = (env: Env) => configErrorOf(loadConfig, env);

// ---------------------------------------------------------------- good settings

test('loadConfig with an empty environment uses the documented defaults', () => {
  assert.deepEqual(loadConfig({}), {
    brokers: 'localhost:9092',
    topic: 'cpu-levels',
    clientId: 'cpu-sink',
    groupId: 'cpu-sink',
    dlqTopic: 'cpu-levels-dlq',
    passthrough: {},
    passthroughSource: {},
    bucket: 'elementor-data-candidates-bucket',
    prefix: 'cpu-levels',
    region: 'eu-west-1',
    endpoint: undefined,
    forcePathStyle: false,
    requestTimeoutMs: 30_000,
    gzip: true,
    maxRecords: 10_000,
    maxBytes: 8_388_608,
    maxAgeMs: 300_000,
    bufferMaxBytes: 33_554_432,
    uploadsMax: 4,
    recordMaxBytes: 65_536,
    rejoinTimeoutMs: 120_000,
    httpPort: 8080,
    shutdownMs: 20_000,
    logLevel: 'info',
  });
});

test("consumerConf bounds librdkafka's fetch queue, starts a new group at the beginning, and lets KAFKA_CONFIG_ override", () => {
  const conf = consumerConf(loadConfig({ KAFKA_CONFIG_QUEUED_MAX_MESSAGES_KBYTES: '4096' }));
  assert.equal(conf['queued.max.messages.kbytes'], '4096');
  assert.equal(conf['fetch.max.bytes'], 8 * 2 ** 20);
  assert.equal(conf['auto.offset.reset'], 'earliest');
  assert.equal(conf['enable.auto.commit'], false);
});

test('consumerConf gives the consumer no producer-only property', () => {
  const conf = consumerConf(loadConfig({ KAFKA_CONFIG_LINGER_MS: '5', KAFKA_CONFIG_SESSION_TIMEOUT_MS: '6000' }));
  assert.equal(conf['linger.ms'], undefined);
  assert.equal(conf['session.timeout.ms'], '6000');
});

test('memoryBound at the defaults is the runtime, twice the fetch queue, the buffer and its gzipped copy', () => {
  const mib = 2 ** 20;
  assert.equal(memoryBound(loadConfig({})), Math.ceil(160 * mib + 2 * (8 + 8) * mib + 32 * mib * 1.2));
});

test('memoryBound follows BUFFER_MAX_BYTES and the fetch queue settings', () => {
  const base = memoryBound(loadConfig({}));
  assert.ok(Math.abs(memoryBound(loadConfig({ BUFFER_MAX_BYTES: String(64 * 2 ** 20) })) - base - 32 * 2 ** 20 * 1.2) <= 1);
  assert.equal(memoryBound(loadConfig({ FILE_GZIP: 'false' })), base - Math.ceil(32 * 2 ** 20 * 0.2));
  assert.equal(memoryBound(loadConfig({ KAFKA_CONFIG_QUEUED_MAX_MESSAGES_KBYTES: '16384' })) - base, 2 * 8 * 2 ** 20);
});

test('loadConfig uses AWS_REGION when S3_REGION is unset', () => {
  assert.equal(loadConfig({ AWS_REGION: 'us-east-2' }).region, 'us-east-2');
});

test('loadConfig prefers S3_REGION over AWS_REGION', () => {
  assert.equal(loadConfig({ AWS_REGION: 'us-east-2', S3_REGION: 'ap-southeast-1' }).region, 'ap-southeast-1');
});

test('loadConfig falls back to eu-west-1 when AWS_REGION is blank', () => {
  assert.equal(loadConfig({ AWS_REGION: '  ' }).region, 'eu-west-1');
});

test('loadConfig names the dead-letter topic after KAFKA_TOPIC when KAFKA_DLQ_TOPIC is unset', () => {
  assert.equal(loadConfig({ KAFKA_TOPIC: 'readings' }).dlqTopic, 'readings-dlq');
});

test('loadConfig takes the dead-letter topic from KAFKA_DLQ_TOPIC', () => {
  assert.equal(loadConfig({ KAFKA_TOPIC: 'readings', KAFKA_DLQ_TOPIC: 'poison' }).dlqTopic, 'poison');
});

test('loadConfig turns gzip off with FILE_GZIP=false', () => {
  assert.equal(loadConfig({ FILE_GZIP: 'false' }).gzip, false);
});

test('loadConfig turns path-style addressing on with S3_FORCE_PATH_STYLE=true', () => {
  assert.equal(loadConfig({ S3_FORCE_PATH_STYLE: 'true' }).forcePathStyle, true);
});

test('loadConfig reads yes, no, 1 and 0 as booleans, in any case', () => {
  const flags = (gzip: string, pathStyle: string) => {
    const c = loadConfig({ FILE_GZIP: gzip, S3_FORCE_PATH_STYLE: pathStyle });
    return [c.gzip, c.forcePathStyle];
  };
  assert.deepEqual(
    [flags('NO', 'Yes'), flags('0', '1'), flags('False', 'TRUE')],
    [
      [false, true],
      [false, true],
      [false, true],
    ],
  );
});

test('loadConfig takes an S3-compatible endpoint from S3_ENDPOINT', () => {
  assert.equal(loadConfig({ S3_ENDPOINT: 'http://minio:9000' }).endpoint, 'http://minio:9000');
});

test('loadConfig treats an empty S3_ENDPOINT as AWS itself', () => {
  assert.equal(loadConfig({ S3_ENDPOINT: '' }).endpoint, undefined);
});

test('loadConfig accepts an empty S3_PREFIX, for keys at the root of the bucket', () => {
  assert.equal(loadConfig({ S3_PREFIX: '' }).prefix, '');
});

test('loadConfig accepts a one-character S3_PREFIX and one of several segments', () => {
  assert.deepEqual([loadConfig({ S3_PREFIX: 'x' }).prefix, loadConfig({ S3_PREFIX: 'raw/cpu' }).prefix], ['x', 'raw/cpu']);
});

test('loadConfig converts the seconds settings to milliseconds', () => {
  const c = loadConfig({ FILE_MAX_AGE_SECONDS: '60', S3_REQUEST_TIMEOUT_SECONDS: '5', SHUTDOWN_TIMEOUT_SECONDS: '45' });
  assert.deepEqual([c.maxAgeMs, c.requestTimeoutMs, c.shutdownMs], [60_000, 5_000, 45_000]);
});

test('loadConfig passes KAFKA_CONFIG_ variables through as librdkafka properties', () => {
  const c = loadConfig({ KAFKA_CONFIG_SECURITY_PROTOCOL: 'SASL_SSL' });
  assert.deepEqual(
    [c.passthrough, c.passthroughSource],
    [{ 'security.protocol': 'SASL_SSL' }, { 'security.protocol': 'KAFKA_CONFIG_SECURITY_PROTOCOL' }],
  );
});

// ---------------------------------------------------------------- bad settings

const bucketName = 'an S3 bucket name (3-63 of a-z 0-9 . -)';
const keyPrefix = 'a key prefix without leading or trailing /';
const topicName = 'a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -';

const bad: [name: string, value: string, expected: string, others?: Env][] = [
  ['S3_BUCKET', 'Bad_Bucket', bucketName],
  ['S3_BUCKET', 'ab', bucketName],
  ['S3_BUCKET', 'a'.repeat(64), bucketName],
  ['S3_BUCKET', '-bucket', bucketName],
  ['S3_PREFIX', '/lead', keyPrefix],
  ['S3_PREFIX', 'trail/', keyPrefix],
  ['S3_PREFIX', '/', keyPrefix],
  ['S3_REGION', 'Ireland', 'an AWS region such as eu-west-1'],
  ['S3_ENDPOINT', 'minio:9000', 'an http(s):// URL such as http://127.0.0.1:9000'],
  ['S3_ENDPOINT', 'ftp://minio:9000', 'an http(s):// URL such as http://127.0.0.1:9000'],
  ['S3_ENDPOINT', 'http://minio :9000', 'an http(s):// URL such as http://127.0.0.1:9000'],
  ['AWS_REGION', 'Ireland', 'an AWS region such as eu-west-1'],
  ['FILE_GZIP', 'maybe', 'true or false'],
  ['S3_FORCE_PATH_STYLE', 'sure', 'true or false'],
  ['FILE_MAX_RECORDS', '0', 'an integer from 1 to 10000000'],
  ['FILE_MAX_RECORDS', '2.5', 'an integer from 1 to 10000000'],
  ['FILE_MAX_BYTES', '10', 'an integer from 1024 to 4294967296'],
  ['FILE_MAX_AGE_SECONDS', '0', 'a number of seconds from 1 to 86400'],
  ['BUFFER_MAX_BYTES', 'x', 'an integer from 1024 to 17179869184'],
  ['UPLOADS_MAX', '0', 'an integer from 1 to 64'],
  ['RECORD_MAX_BYTES', '1', 'an integer from 64 to 104857600'],
  ['S3_REQUEST_TIMEOUT_SECONDS', '0', 'a number of seconds from 1 to 600'],
  ['KAFKA_GROUP_ID', '', 'a non-empty consumer group id'],
  ['KAFKA_CLIENT_ID', ' ', 'a non-empty client id'],
  ['KAFKA_DLQ_TOPIC', 'cpu-levels', 'a topic other than KAFKA_TOPIC'],
  ['KAFKA_DLQ_TOPIC', 'dlq!', topicName],
  ['KAFKA_TOPIC', 'bad topic', topicName],
  ['KAFKA_BROKERS', 'kafka', 'a comma-separated list of host:port, e.g. kafka:9092'],
  ['HTTP_PORT', '-1', 'an integer from 0 to 65535'],
  ['SHUTDOWN_TIMEOUT_SECONDS', '0', 'a number of seconds from 1 to 3600'],
  ['LOG_LEVEL', 'verbose', 'one of debug, info, warn, error'],
];

for (const [name, value, expected, others = {}] of bad) {
  const shown = value.length > 40 ? `a ${value.length}-character value` : JSON.stringify(value);
  test(`loadConfig rejects ${name}=${shown}, naming the variable, the value and what is expected`, () => {
    assert.equal(configError({ ...others, [name]: value }).message, `${name}=${JSON.stringify(value)}: expected ${expected}`);
  });
}

test('loadConfig rejects a KAFKA_DLQ_TOPIC equal to a custom KAFKA_TOPIC', () => {
  assert.equal(
    configError({ KAFKA_TOPIC: 'readings', KAFKA_DLQ_TOPIC: 'readings' }).message,
    'KAFKA_DLQ_TOPIC="readings": expected a topic other than KAFKA_TOPIC',
  );
});

test('loadConfig rejects KAFKA_CONFIG_BOOTSTRAP_SERVERS and points to KAFKA_BROKERS', () => {
  assert.equal(
    configError({ KAFKA_CONFIG_BOOTSTRAP_SERVERS: 'x:9092' }).message,
    'KAFKA_CONFIG_BOOTSTRAP_SERVERS="x:9092": sets bootstrap.servers, which KAFKA_BROKERS owns; set that instead',
  );
});

test('loadConfig reports every bad setting in one error, one per line', () => {
  const lines = configError({
    S3_BUCKET: 'Bad_Bucket',
    S3_PREFIX: '/lead',
    FILE_GZIP: 'maybe',
    FILE_MAX_RECORDS: '0',
    KAFKA_GROUP_ID: '',
    LOG_LEVEL: 'verbose',
  }).message.split('\n');
  assert.deepEqual(lines.map((l) => l.split('=')[0]).sort(), [
    'FILE_GZIP',
    'FILE_MAX_RECORDS',
    'KAFKA_GROUP_ID',
    'LOG_LEVEL',
    'S3_BUCKET',
    'S3_PREFIX',
  ]);
});

test('loadConfig rejects a BUFFER_MAX_BYTES smaller than FILE_MAX_BYTES, which could never hold a full file', () => {
  assert.match(
    configError({ BUFFER_MAX_BYTES: '2048', FILE_MAX_BYTES: '4096' }).message,
    /^BUFFER_MAX_BYTES="2048": expected at least FILE_MAX_BYTES \(4096\)/,
  );
});
