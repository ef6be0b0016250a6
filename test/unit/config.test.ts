import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { test } from 'node:test';
import { loadConfig } from '../../sampler.ts';
import { configErrorOf, type Env } from './config-error.ts';
import {
  checkBrokers,
  checkPassthrough,
  checkTopic,
  envReader,
  kafkaConfigProblem,
  kafkaPassthrough,
  kafkaPropertyScopes,
  propertiesFor,
  splitTopicConf,
} from '../../lib/runtime.ts';

const configError = (env: Env) => configErrorOf(loadConfig, env);

// ---------------------------------------------------------------- loadConfig

test('loadConfig with an empty environment uses the documented defaults', () => {
  assert.deepEqual(loadConfig({}), {
    brokers: 'localhost:9092',
    topic: 'cpu-levels',
    clientId: 'cpu-sampler',
    passthrough: {},
    passthroughSource: {},
    intervalMs: 60_000,
    queueMax: 10_080,
    maxWaitMs: 604_800_000,
    httpPort: 8080,
    shutdownMs: 20_000,
    node: hostname(),
    pod: hostname(),
    namespace: '',
    procRoot: '/proc',
    cgroupRoot: '/sys/fs/cgroup',
    hostCgroupRoot: '',
    podQueueMax: 10_000,
    logLevel: 'info',
  });
});

test('loadConfig takes node, pod and namespace from the Downward API variables', () => {
  const c = loadConfig({ NODE_NAME: 'ip-10-0-1-23.ec2.internal', POD_NAME: 'cpu-sampler-x2k4q', POD_NAMESPACE: 'monitoring' });
  assert.deepEqual([c.node, c.pod, c.namespace], ['ip-10-0-1-23.ec2.internal', 'cpu-sampler-x2k4q', 'monitoring']);
});

test('loadConfig refuses a HOST_CGROUP_ROOT that is not a folder, naming it', () => {
  assert.throws(() => loadConfig({ HOST_CGROUP_ROOT: '/no/such/cgroup' }), /HOST_CGROUP_ROOT.*\/no\/such\/cgroup/);
  assert.equal(loadConfig({ HOST_CGROUP_ROOT: '/sys/fs/cgroup' }).hostCgroupRoot, '/sys/fs/cgroup');
});

test('loadConfig converts fractional interval seconds to milliseconds', () => {
  assert.equal(loadConfig({ SAMPLE_INTERVAL_SECONDS: '0.25' }).intervalMs, 250);
});

test('loadConfig treats an empty numeric variable as unset', () => {
  assert.equal(loadConfig({ HTTP_PORT: '' }).httpPort, 8080);
});

test('loadConfig passes KAFKA_CONFIG_ variables through as librdkafka properties', () => {
  const c = loadConfig({ KAFKA_CONFIG_SECURITY_PROTOCOL: 'SASL_SSL' });
  assert.deepEqual(c.passthrough, { 'security.protocol': 'SASL_SSL' });
  assert.deepEqual(c.passthroughSource, { 'security.protocol': 'KAFKA_CONFIG_SECURITY_PROTOCOL' });
});

const bad: [name: string, value: string, expected: string][] = [
  ['SAMPLE_INTERVAL_SECONDS', 'abc', 'a number of seconds from 0.1 to 86400'],
  ['SAMPLE_INTERVAL_SECONDS', '-5', 'a number of seconds from 0.1 to 86400'],
  ['SAMPLE_INTERVAL_SECONDS', '0', 'a number of seconds from 0.1 to 86400'],
  ['KAFKA_BROKERS', '', 'a comma-separated list of host:port, e.g. kafka:9092'],
  ['KAFKA_BROKERS', 'kafka', 'a comma-separated list of host:port, e.g. kafka:9092'],
  ['KAFKA_BROKERS', 'kafka:99999', 'a comma-separated list of host:port, e.g. kafka:9092'],
  ['KAFKA_TOPIC', 'bad topic!', 'a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -'],
  ['KAFKA_TOPIC', 'a'.repeat(250), 'a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -'],
  ['KAFKA_TOPIC', '..', 'a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -'],
  ['READINGS_QUEUE_MAX', '0', 'an integer from 1 to 10000000'],
  ['READINGS_QUEUE_MAX', '1.5', 'an integer from 1 to 10000000'],
  ['READINGS_MAX_WAIT_SECONDS', '0', 'an integer of seconds from 1 to 2147483'],
  ['READINGS_MAX_WAIT_SECONDS', '9999999999', 'an integer of seconds from 1 to 2147483'],
  ['HTTP_PORT', '70000', 'an integer from 0 to 65535'],
  ['SHUTDOWN_TIMEOUT_SECONDS', 'x', 'a number of seconds from 1 to 3600'],
  ['LOG_LEVEL', 'loud', 'one of debug, info, warn, error'],
];

for (const [name, value, expected] of bad) {
  const shown = value.length > 40 ? `a ${value.length}-character value` : JSON.stringify(value);
  test(`loadConfig rejects ${name}=${shown}, naming the variable, the value and what is expected`, () => {
    assert.equal(configError({ [name]: value }).message, `${name}=${JSON.stringify(value)}: expected ${expected}`);
  });
}

test('loadConfig rejects KAFKA_CONFIG_BOOTSTRAP_SERVERS and points to KAFKA_BROKERS', () => {
  assert.equal(
    configError({ KAFKA_CONFIG_BOOTSTRAP_SERVERS: 'x' }).message,
    'KAFKA_CONFIG_BOOTSTRAP_SERVERS="x": sets bootstrap.servers, which KAFKA_BROKERS owns; set that instead',
  );
});

test('loadConfig reports every bad setting in one error, one per line', () => {
  const lines = configError({ SAMPLE_INTERVAL_SECONDS: 'abc', KAFKA_TOPIC: '..', HTTP_PORT: '70000', LOG_LEVEL: 'loud' }).message.split(
    '\n',
  );
  assert.deepEqual(lines.map((l) => l.split('=')[0]).sort(), ['HTTP_PORT', 'KAFKA_TOPIC', 'LOG_LEVEL', 'SAMPLE_INTERVAL_SECONDS']);
});

// ---------------------------------------------------------------- envReader and checks

test('envReader.done throws nothing when every setting was good', () => {
  const e = envReader({ N: ' 42 ' });
  assert.equal(e.number('N', 1, { min: 1, integer: true }), 42);
  assert.doesNotThrow(() => e.done());
});

test('envReader.string checks the trimmed value but quotes the raw one', () => {
  const e = envReader({ S: ' no ' });
  assert.equal(
    e.string('S', 'yes', (v) => (v === 'no' ? 'anything but no' : undefined)),
    'no',
  );
  assert.throws(() => e.done(), { name: 'ConfigError', message: 'S=" no ": expected anything but no' });
});

test('checkTopic accepts a 249-character name of legal characters', () => {
  assert.equal(checkTopic(`cpu-levels_v1.${'a'.repeat(235)}`), undefined);
});

test('checkTopic rejects "." and the empty name', () => {
  assert.notEqual(checkTopic('.'), undefined);
  assert.notEqual(checkTopic(''), undefined);
});

test('checkBrokers accepts a list of host names and bracketed IPv6 addresses with ports', () => {
  assert.equal(checkBrokers('kafka-0.kafka.svc:9092, 10.0.0.7:9093,[::1]:65535'), undefined);
});

test('checkBrokers rejects port 0 and an empty entry in the list', () => {
  assert.notEqual(checkBrokers('kafka:0'), undefined);
  assert.notEqual(checkBrokers('kafka:9092,'), undefined);
});

test('checkPassthrough objects to each property that a named variable owns', () => {
  const problems = checkPassthrough(
    {
      'metadata.broker.list': 'KAFKA_CONFIG_METADATA_BROKER_LIST',
      'client.id': 'KAFKA_CONFIG_CLIENT_ID',
      'linger.ms': 'KAFKA_CONFIG_LINGER_MS',
    },
    { KAFKA_CONFIG_METADATA_BROKER_LIST: 'k:9092', KAFKA_CONFIG_CLIENT_ID: 'me', KAFKA_CONFIG_LINGER_MS: '5' },
  );
  assert.deepEqual(problems, [
    'KAFKA_CONFIG_METADATA_BROKER_LIST="k:9092": sets metadata.broker.list, which KAFKA_BROKERS owns; set that instead',
    'KAFKA_CONFIG_CLIENT_ID="me": sets client.id, which KAFKA_CLIENT_ID owns; set that instead',
  ]);
});

// ---------------------------------------------------------------- kafkaPassthrough

test('kafkaPassthrough turns single underscores into dots', () => {
  const { props, source } = kafkaPassthrough({
    KAFKA_CONFIG_SASL_MECHANISMS: 'SCRAM-SHA-512',
    KAFKA_CONFIG_SSL_CA_LOCATION: '/etc/kafka/ca.pem',
  });
  assert.deepEqual(props, { 'sasl.mechanisms': 'SCRAM-SHA-512', 'ssl.ca.location': '/etc/kafka/ca.pem' });
  assert.deepEqual(source, { 'sasl.mechanisms': 'KAFKA_CONFIG_SASL_MECHANISMS', 'ssl.ca.location': 'KAFKA_CONFIG_SSL_CA_LOCATION' });
});

test('kafkaPassthrough turns a double underscore into an underscore', () => {
  assert.deepEqual(kafkaPassthrough({ KAFKA_CONFIG_SOME__PROP_NAME: 'v' }).props, { 'some_prop.name': 'v' });
});

test('kafkaPassthrough turns a triple underscore into a dash', () => {
  assert.deepEqual(kafkaPassthrough({ KAFKA_CONFIG_SOME___PROP_NAME: 'v' }).props, { 'some-prop.name': 'v' });
});

test('kafkaPassthrough ignores other variables and a bare KAFKA_CONFIG_', () => {
  assert.deepEqual(kafkaPassthrough({ KAFKA_CONFIG_: 'x', KAFKA_BROKERS: 'kafka:9092', PATH: '/usr/bin' }), { props: {}, source: {} });
});

// ---------------------------------------------------------------- kafkaConfigProblem

test('kafkaConfigProblem names the variable behind an unknown property', () => {
  const problem = kafkaConfigProblem(new Error('No such configuration property: "foo.bar"'), { 'foo.bar': 'KAFKA_CONFIG_FOO_BAR' });
  assert.equal(problem, 'KAFKA_CONFIG_FOO_BAR: No such configuration property: "foo.bar"');
});

test('kafkaConfigProblem lists every passthrough variable when the message names no property', () => {
  const source = { 'sasl.mechanisms': 'KAFKA_CONFIG_SASL_MECHANISMS', 'security.protocol': 'KAFKA_CONFIG_SECURITY_PROTOCOL' };
  const problem = kafkaConfigProblem(new Error('sasl.username must be set'), source);
  assert.equal(problem, 'KAFKA_CONFIG_SASL_MECHANISMS, KAFKA_CONFIG_SECURITY_PROTOCOL: sasl.username must be set');
});

test('kafkaConfigProblem does not treat a broker that does not answer as a configuration problem', () => {
  assert.equal(kafkaConfigProblem(new Error('broker transport failure'), { 'foo.bar': 'KAFKA_CONFIG_FOO_BAR' }), undefined);
});

// ---------------------------------------------------------------- properties of each kind of client

test('propertiesFor gives a producer no consumer-only property, and a consumer no producer-only one', () => {
  const props = { 'session.timeout.ms': '6000', 'linger.ms': '5', 'security.protocol': 'SASL_SSL' };
  assert.deepEqual(propertiesFor('producer', props), { 'linger.ms': '5', 'security.protocol': 'SASL_SSL' });
  assert.deepEqual(propertiesFor('consumer', props), { 'session.timeout.ms': '6000', 'security.protocol': 'SASL_SSL' });
  assert.deepEqual(propertiesFor('admin', props), { 'security.protocol': 'SASL_SSL' });
});

test('the consumer-only, producer-only and topic-only lists are those of the bundled librdkafka CONFIGURATION.md', () => {
  const doc = readFileSync(
    new URL('../../node_modules/@confluentinc/kafka-javascript/deps/librdkafka/CONFIGURATION.md', import.meta.url),
    'utf8',
  );
  const global = new Map<string, string>();
  const topic = new Map<string, string>();
  let table = global;
  for (const l of doc.split('\n')) {
    if (l.startsWith('## Topic configuration')) table = topic;
    const m = /^([a-z][a-z0-9._]*) +\| +([CP*]) +\|/.exec(l);
    if (m) table.set(m[1], m[2]);
  }
  const settable = (p: string) => !/_cb$|^opaque$|^msg_order_cmp$/.test(p); // callbacks: not from env
  const all = new Map([...topic, ...global]);
  const scoped = (c: string) => new Set([...all].filter(([p, s]) => s === c && settable(p)).map(([p]) => p));
  assert.deepEqual(kafkaPropertyScopes.consumerOnly, scoped('C'));
  assert.deepEqual(kafkaPropertyScopes.producerOnly, scoped('P'));
  const topicOnly = new Set([...topic.keys()].filter((p) => !global.has(p) && settable(p)));
  assert.deepEqual(kafkaPropertyScopes.topicOnly, topicOnly);
});

test('splitTopicConf puts topic-only properties in the topic config and the rest in the global one', () => {
  assert.deepEqual(splitTopicConf({ 'auto.offset.reset': 'earliest', 'group.id': 'g' }), {
    global: { 'group.id': 'g' },
    topic: { 'auto.offset.reset': 'earliest' },
  });
});
