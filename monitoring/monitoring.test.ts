import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALERT_RULES_FILE, MONITORING_DIR, renderPrometheusConfig, SCRAPE_JOBS } from '../infra/render/prometheus.js';
import { findBinary } from '../infra/processes/run.js';
import { validateTopology } from '../infra/topology/index.js';
import { alertRules, dashboardQueries, metricNamesIn } from './queries.js';

// The shipped monitoring artefacts, offline: promtool checks and unit-tests the alert rules,
// parses every dashboard query, and validates the rendered Prometheus config; every alert names
// a runbook that names it back. monitoring.live.test.ts holds the same artefacts against the
// metrics the running services expose.

const RUNBOOKS_DIR = path.join(MONITORING_DIR, '..', 'runbooks');
const PROMTOOL_TESTS = path.join(MONITORING_DIR, 'alerts.promtool.yml');

/** promtool from Debian's prometheus package; its absence fails the tests, it never skips them. */
function promtool(): string {
  const bin = findBinary('promtool');
  if (!bin) throw new Error('promtool is not installed: apt-get install -y prometheus (npm test and .ci/run install it when root)');
  return bin;
}

const runPromtool = (...args: string[]) => execa(promtool(), args, { reject: false, stdin: 'ignore', all: true });

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'replyx-monitoring-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('alert rules (promtool)', () => {
  it('promtool is installed', () => {
    expect(promtool()).toMatch(/promtool$/);
  });

  it('promtool check rules accepts monitoring/alerts.yml', async () => {
    const r = await runPromtool('check', 'rules', ALERT_RULES_FILE);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toContain(`SUCCESS: ${alertRules().length} rules found`);
  });

  it('promtool test rules: every unit test passes', async () => {
    const r = await runPromtool('test', 'rules', PROMTOOL_TESTS);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toContain('SUCCESS');
  });

  it('has, for every alert, a test where it fires and one where it stays silent on a healthy series of the metrics it reads', () => {
    type Case = { input_series: { series: string }[]; alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] };
    const cases = (parse(readFileSync(PROMTOOL_TESTS, 'utf8')) as { tests: Case[] }).tests;
    for (const rule of alertRules()) {
      const mine = cases.flatMap((c) => c.alert_rule_test.filter((t) => t.alertname === rule.alert).map((t) => ({ fires: t.exp_alerts.length > 0, series: c.input_series.map((s) => s.series) })));
      expect(mine.filter((c) => c.fires).length, `${rule.alert}: a case where it fires`).toBeGreaterThan(0);
      const silent = mine.filter((c) => !c.fires);
      expect(silent.length, `${rule.alert}: a case where it stays silent`).toBeGreaterThan(0);
      // Silent because the series are healthy, not because there are none.
      for (const c of silent) {
        const fed = new Set(c.series.map((s) => /^[\w:]+/.exec(s)![0]));
        expect(metricNamesIn(rule.expr).filter((m) => !fed.has(m)), `${rule.alert}: silent case feeds every metric the rule reads`).toEqual([]);
      }
    }
  });

  it('gives every alert a severity, a summary and a runbook that exists; selects only the jobs Prometheus scrapes', () => {
    const jobs = new Set<string>(Object.values(SCRAPE_JOBS));
    for (const rule of alertRules()) {
      expect(['critical', 'warning'], rule.alert).toContain(rule.labels.severity);
      expect(rule.alert).toMatch(/^Replyx[A-Z]\w+$/);
      expect(rule.annotations.summary.length, rule.alert).toBeGreaterThan(10);
      expect(rule.annotations.runbook_url, rule.alert).toMatch(/^runbooks\/[a-z0-9-]+\.md$/);
      expect(existsSync(path.join(MONITORING_DIR, '..', rule.annotations.runbook_url)), rule.annotations.runbook_url).toBe(true);
      for (const m of rule.expr.matchAll(/job=~?"([^"]+)"/g)) for (const job of m[1]!.split('|')) expect(jobs, rule.alert).toContain(job);
    }
  });
});

/** The alert names a runbook's "## Alerts" section lists. */
function runbookAlerts(markdown: string): string[] | undefined {
  const section = /^## Alerts\n([\s\S]*?)(?=^## |$(?![\s\S]))/m.exec(markdown)?.[1];
  if (section === undefined) return undefined;
  return [...section.matchAll(/^- `(Replyx\w+)`/gm)].map((m) => m[1]!);
}

describe('alerts and runbooks name each other', () => {
  const runbooks = readdirSync(RUNBOOKS_DIR).filter((f) => f.endsWith('.md') && f !== 'README.md');
  const rules = alertRules();

  it('every runbook has an Alerts section naming exactly the alerts that link to it', () => {
    for (const file of runbooks) {
      const listed = runbookAlerts(readFileSync(path.join(RUNBOOKS_DIR, file), 'utf8'));
      expect(listed, `${file}: ## Alerts`).toBeDefined();
      const linking = rules.filter((r) => r.annotations.runbook_url === `runbooks/${file}`).map((r) => r.alert);
      expect([...listed!].sort(), file).toEqual(linking.sort());
    }
  });

  it('every alert is listed by its runbook (and only there)', () => {
    for (const rule of rules) {
      const holders = runbooks.filter((f) => runbookAlerts(readFileSync(path.join(RUNBOOKS_DIR, f), 'utf8'))?.includes(rule.alert));
      expect(holders.map((f) => `runbooks/${f}`), rule.alert).toEqual([rule.annotations.runbook_url]);
    }
  });
});

describe('dashboard', () => {
  const queries = dashboardQueries();

  it('has the panels the runbooks lean on, each with a query', () => {
    expect(queries.length).toBeGreaterThan(15);
    const all = queries.map((q) => q.expr).join('\n');
    for (const metric of [
      'replyx_gateway_connections',
      'replyx_gateway_events_delivered_total',
      'replyx_gateway_publish_to_send_seconds_bucket',
      'replyx_gateway_closes_total',
      'replyx_gateway_resumes_total',
      'replyx_gateway_resyncs_total',
      'replyx_backend_http_requests_total',
      'replyx_backend_http_request_duration_seconds_bucket',
      'replyx_gateway_dependency_up',
    ]) {
      expect(all, metric).toContain(metric);
    }
  });

  // What this proves: every query is valid PromQL to Prometheus' own parser (syntax, function
  // names and arity, vector matching). promtool has no offline "parse this expression" command,
  // so each query becomes a recording rule in a generated rules file that `promtool check rules`
  // parses. It says nothing about data; the live test checks the metric names exist.
  it('every query parses as PromQL (promtool check rules on a rules file made of the queries)', async () => {
    const file = path.join(tmp, 'dashboard-queries.yml');
    const rules = queries.map((q, i) => ({ record: `replyx_dashboard:query_${i}`, expr: q.expr }));
    await writeFile(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
    const r = await runPromtool('check', 'rules', file);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toContain(`SUCCESS: ${queries.length} rules found`);
    // The check does fail on a broken query.
    await writeFile(file, stringify({ groups: [{ name: 'dashboard', rules: [{ record: 'replyx_dashboard:broken', expr: 'sum by (type (rate(x[5m]))' }] }] }));
    expect((await runPromtool('check', 'rules', file)).exitCode).not.toBe(0);
  });
});

describe('rendered Prometheus config', () => {
  it.each([
    ['local', { gateway: ['127.0.0.1:8001'], backend: ['127.0.0.1:8000'], prometheus: '127.0.0.1:9190' }],
    ['docker', { gateway: ['replyx-ws-gateway:8001', 'replyx-ws-gateway-2:8001'], backend: ['replyx-backend:8000'], prometheus: 'localhost:9090' }],
  ] as const)('%s: promtool check config accepts it, rule files included', async (target, targets) => {
    const topology = validateTopology({ target, monitoring: { enabled: true, scrapeIntervalS: 1, evaluationIntervalS: 1 }, gateway: { replicas: target === 'docker' ? 2 : 1 } }).topology;
    const file = path.join(tmp, `prometheus-${target}.yml`);
    await writeFile(file, renderPrometheusConfig(topology, { targets, ruleFiles: [ALERT_RULES_FILE] }));
    const r = await runPromtool('check', 'config', file);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toContain(`SUCCESS: ${alertRules().length} rules found`);
    const config = parse(readFileSync(file, 'utf8')) as { global: Record<string, string>; scrape_configs: { job_name: string; scrape_timeout: string; static_configs: { targets: string[] }[] }[] };
    expect(config.global).toMatchObject({ scrape_interval: '1s', evaluation_interval: '1s' });
    expect(config.scrape_configs.map((j) => j.job_name)).toEqual([SCRAPE_JOBS.gateway, SCRAPE_JOBS.backend, SCRAPE_JOBS.prometheus]);
    // Replicas are targets of one job: Prometheus' `instance` label tells them apart.
    expect(config.scrape_configs[0]!.static_configs[0]!.targets).toEqual([...targets.gateway]);
    expect(config.scrape_configs[0]!.scrape_timeout).toBe('1s');
  });
});

describe('metricNamesIn', () => {
  it('finds the series an expression selects and nothing else', () => {
    expect(metricNamesIn('up{job="replyx-gateway"} == 0')).toEqual(['up']);
    expect(metricNamesIn('histogram_quantile(0.99, sum by (le, route) (rate(x_seconds_bucket{route!="/metrics"}[5m])))')).toEqual(['x_seconds_bucket']);
    expect(metricNamesIn('a_total / on (job, instance) group_left sum without (type) (b) > 0.5 and c offset 5m unless bool d')).toEqual(['a_total', 'b', 'c', 'd']);
    expect(metricNamesIn('time() - t_seconds > (w_seconds + 60) # the drain')).toEqual(['t_seconds', 'w_seconds']);
    expect(metricNamesIn('rate(x[$__rate_interval]) * 1e3')).toEqual(['x']);
  });
});
