/**
 * Monitoring, for real: promtool on the rules and on the programs' /metrics, and a real Prometheus
 * (Debian's, scripts/prometheus.ts) scraping a real sampler, sink and broker (with the JMX exporter)
 * on loopback, whose alerts are seen firing when a sampler stops or S3 goes away, and resolving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { fetchJmxExporter, freePort, jmxExporterVersion, startKafka } from '../../scripts/kafka.ts';
import { localScrapeConfigs, promtool, startPrometheus, type PrometheusServer } from '../../scripts/prometheus.ts';
import { httpGet, root, runProgram, sinkScenario, uniqueName, waitFor, type Program } from '../helpers.ts';
import type { TestContext } from 'node:test';

const rulesFile = join(root, 'k8s/components/monitoring/alerts.yaml');
const rulesTests = join(root, 'test/promtool/alerts.test.yaml');

interface RuleGroup {
  rules: Array<{ alert?: string; for?: string }>;
}
const alertNames = () =>
  (parse(readFileSync(rulesFile, 'utf8')).groups as RuleGroup[]).flatMap((g) => g.rules.map((r) => r.alert).filter((a) => a !== undefined));

test('the image pins the JMX exporter the local broker runs, with the SHA-256 of that very jar', () => {
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const arg = (name: string) => new RegExp(`^ARG ${name}=(\\S+)$`, 'm').exec(dockerfile)?.[1];
  assert.equal(arg('JMX_EXPORTER_VERSION'), jmxExporterVersion, 'Dockerfile and scripts/kafka/pom.xml agree on the version');
  const jar = readFileSync(fetchJmxExporter());
  assert.equal(arg('JMX_EXPORTER_SHA256'), createHash('sha256').update(jar).digest('hex'), 'the SHA-256 is the jar from Maven Central');
});

test('promtool: the alert rules are valid and their unit tests pass', () => {
  const check = promtool(['check', 'rules', rulesFile]);
  assert.equal(check.status, 0, check.output);
  const unit = promtool(['test', 'rules', rulesTests]);
  assert.equal(unit.status, 0, unit.output);
  assert.match(unit.output, /SUCCESS/);
});

test('every alert has a unit test where it fires and one where it stays quiet', () => {
  const cases = (
    parse(readFileSync(rulesTests, 'utf8')).tests as Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts?: unknown[] }> }>
  ).flatMap((t) => t.alert_rule_test);
  const names = alertNames();
  assert.ok(names.length >= 13, `only ${names.length} alerts`);
  for (const name of names) {
    const mine = cases.filter((c) => c.alertname === name);
    assert.ok(
      mine.some((c) => (c.exp_alerts ?? []).length > 0),
      `${name}: no case where it fires`,
    );
    assert.ok(
      mine.some((c) => (c.exp_alerts ?? []).length === 0),
      `${name}: no case where it stays quiet`,
    );
  }
});

/** The rules as they are, but firing at once: the `for` durations are the promtool tests' business. */
function rulesWithoutFor(t: TestContext): string {
  const rules = parse(readFileSync(rulesFile, 'utf8')) as { groups: RuleGroup[] };
  for (const g of rules.groups) for (const r of g.rules) if (r.for) r.for = '0s';
  const dir = mkdtempSync(join(tmpdir(), 'cpu-pipeline-rules-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'alerts.yaml');
  writeFileSync(file, stringify(rules));
  return file;
}

function sampler(t: TestContext, env: Record<string, string>, port: number, node: string): Program {
  return runProgram(t, 'sampler.ts', { ...env, SAMPLE_INTERVAL_SECONDS: '1', HTTP_PORT: String(port), NODE_NAME: node });
}

async function firing(prom: PrometheusServer, name: string, labels: Record<string, string> = {}) {
  return (await prom.alerts()).some(
    (a) => a.state === 'firing' && a.labels.alertname === name && Object.entries(labels).every(([k, v]) => a.labels[k] === v),
  );
}

test('promtool check metrics: the sampler and the sink expose clean metrics', async (t) => {
  const sc = await sinkScenario(t);
  const [samplerPort, sinkPort] = [await freePort(), await freePort()];
  sampler(t, { KAFKA_BROKERS: sc.bootstrap, KAFKA_TOPIC: sc.topic }, samplerPort, uniqueName('node'));
  sc.sink({ HTTP_PORT: String(sinkPort) });
  // After a reading went through, so that every series (per node, per partition) is there.
  await sc.objectsWith(1);
  for (const [name, port] of [
    ['sampler', samplerPort],
    ['sink', sinkPort],
  ] as const) {
    const { status, body } = await httpGet(port, '/metrics');
    assert.equal(status, 200);
    const check = promtool(['check', 'metrics'], body);
    assert.equal(check.status, 0, `${name}: ${check.output}`);
  }
});

test('a real Prometheus scrapes the sampler, the sink and the broker; "node stopped" and "sink not writing" fire and resolve', async (t) => {
  const kafka = await startKafka({ metricsPort: await freePort() });
  t.after(() => kafka.destroy());
  const sc = await sinkScenario(t, { bootstrap: kafka.bootstrap });
  const [samplerPort, sinkPort] = [await freePort(), await freePort()];
  const node = uniqueName('node');
  const samplerEnv = { KAFKA_BROKERS: kafka.bootstrap, KAFKA_TOPIC: sc.topic };
  let s = sampler(t, samplerEnv, samplerPort, node);
  sc.sink({ HTTP_PORT: String(sinkPort), FILE_MAX_AGE_SECONDS: '1' });

  const prom = await startPrometheus({
    scrapeConfigs: localScrapeConfigs({
      sampler: [{ address: `127.0.0.1:${samplerPort}`, labels: { node } }],
      sink: [{ address: `127.0.0.1:${sinkPort}` }],
      kafka: [{ address: `127.0.0.1:${kafka.metricsPort}` }],
    }),
    ruleFiles: [rulesWithoutFor(t)],
    interval: '1s',
  });
  t.after(() => prom.destroy());
  const config = promtool(['check', 'config', prom.configFile]);
  assert.equal(config.status, 0, config.output);

  const targets = await waitFor(
    'all three targets up',
    async () => {
      const all = await prom.targets();
      return all.length === 3 && all.every((x) => x.health === 'up') && all;
    },
    60_000,
  );
  assert.deepEqual(targets.map((x) => x.labels.job).sort(), ['cpu-kafka', 'cpu-sampler', 'cpu-sink']);

  // The series the alerts and the dashboard are built on, with values that say the pipeline runs.
  const present = async (expr: string) =>
    waitFor(`${expr} in Prometheus`, async () => (await prom.query(expr)).length > 0, 60_000).then(() => true);
  for (const expr of [
    `sampler_readings_produced_total{node="${node}"} > 0`,
    `sampler_interval_seconds{node="${node}"} == 1`,
    `sink_records_written_total > 0`,
    `sink_node_last_reading_timestamp_seconds{node="${node}"}`,
    `sink_node_reading_interval_seconds{node="${node}"} > 0`,
    `sink_file_max_age_seconds == 1`,
    `sink_consumer_lag_records{partition="0"}`,
    `sink_oldest_unwritten_record_age_seconds`,
    `kafka_server_broker_state == 3`,
    `kafka_controller_activecontrollercount == 1`,
    `kafka_server_topic_messagesin_total{topic="${sc.topic}"} > 0`,
    `kafka_log_size_bytes{topic="${sc.topic}"} > 0`,
    `kafka_server_failed_authentication_total`,
    `jvm_memory_used_bytes{area="heap"}`,
  ]) {
    assert.ok(await present(expr));
  }
  assert.ok(!(await firing(prom, 'CpuPipelineNodeReadingsStopped')), 'no node is stopped yet');
  assert.ok(!(await firing(prom, 'CpuPipelineSinkNotWriting')), 'the sink writes');

  // The sampler stops: 3 intervals (3 s) later the node is reported, and its sampler too.
  s.proc.kill('SIGTERM');
  await s.exited;
  await waitFor('CpuPipelineNodeReadingsStopped firing', () => firing(prom, 'CpuPipelineNodeReadingsStopped', { node }), 60_000);
  await waitFor('CpuPipelineSamplerNotDelivering firing', () => firing(prom, 'CpuPipelineSamplerNotDelivering', { node }), 60_000);
  // ...and back: the alert resolves once its readings reach the sink again.
  s = sampler(t, samplerEnv, samplerPort, node);
  await waitFor('CpuPipelineNodeReadingsStopped resolved', async () => !(await firing(prom, 'CpuPipelineNodeReadingsStopped')), 60_000);

  // S3 goes away: readings keep arriving and wait; past twice FILE_MAX_AGE_SECONDS it fires.
  await sc.s3.stop('refuse');
  await waitFor('CpuPipelineSinkNotWriting firing', () => firing(prom, 'CpuPipelineSinkNotWriting'), 60_000);
  await sc.s3.start();
  await waitFor('CpuPipelineSinkNotWriting resolved', async () => !(await firing(prom, 'CpuPipelineSinkNotWriting')), 60_000);
  assert.ok(!(await firing(prom, 'CpuPipelineKafkaDown')), 'the broker was up all along');

  // The Grafana dashboard: every expression parses and returns data from this Prometheus.
  for (const expr of dashboardExpressions()) {
    await waitFor(`dashboard: ${expr}`, async () => (await prom.query(expr)).length > 0, 30_000);
  }
});

/** The PromQL of every panel of the dashboard, Grafana's $__rate_interval made a fixed range. */
function dashboardExpressions(): string[] {
  const dashboard = JSON.parse(readFileSync(join(root, 'k8s/components/monitoring/dashboard.json'), 'utf8')) as {
    panels: Array<{ targets?: Array<{ expr: string }> }>;
  };
  const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((x) => x.expr.replaceAll('$__rate_interval', '30s'));
  assert.ok(exprs.length >= 20, `the dashboard has ${exprs.length} expressions`);
  for (const expr of exprs) assert.doesNotMatch(expr, /\$/, `${expr}: a Grafana variable the test does not know`);
  return exprs;
}
