import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DEFAULT_TOKEN_POLICY, signAdminToken } from '../examples/backend/src/demo.js';
import { tokenProtocols } from '../gateway/src/auth/credentials.js';
import { signWidgetToken } from '../gateway/src/auth/tokens.js';
import { findBinary } from '../infra/processes/run.js';
import { SCRAPE_JOBS } from '../infra/render/prometheus.js';
import { startLocalStack, type LocalStackHandle } from '../infra/targets/local/local-stack.js';
import { waitUntil } from '../infra/targets/local/ports.js';
import { stopService } from '../infra/targets/local/supervisor.js';
import { alertRules, dashboardQueries, metricNamesIn, parseExposition, sampleNames, type ExposedFamily } from './queries.js';

// Monitoring against a running local stack with Prometheus (scrape and evaluation every second):
// the metrics the backend and gateway really expose follow Prometheus' naming conventions with
// bounded labels; every metric the dashboard and the alert rules name is among them; Prometheus
// scrapes both with the rules loaded; and stopping the gateway turns ReplyxGatewayDown pending
// (its `for: 1m` makes it fire a minute later, which this test does not wait for).

let stack: LocalStackHandle;
let gateway: Map<string, ExposedFamily>;
let backend: Map<string, ExposedFamily>;
let tmp: string;

const scrape = async (port: number) => parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
const prometheus = async <T>(apiPath: string): Promise<T> => {
  const res = await fetch(`${stack.urls.prometheus!.replace('localhost', '127.0.0.1')}${apiPath}`);
  const body = (await res.json()) as { status: string; data: T };
  expect(body.status).toBe('success');
  return body.data;
};

/** Traffic that makes every labelled family show samples: connections of each kind, a message, refusals, a 404. */
async function traffic(h: LocalStackHandle): Promise<void> {
  const ws = `ws://127.0.0.1:${h.ports.nginx}`;
  const token = await signAdminToken(h.secrets.jwtSecret, 1, 600);
  const [site] = h.tokens.siteTokens;
  const widget = h.tokens.widget;
  // As if the page's domain had been removed after its session was issued: refused with 4003.
  const stale = await signWidgetToken(h.secrets.widgetTokenSecret, { dialogId: widget.dialogId, assistantId: widget.assistantId, origin: 'https://evil.example.org' }, DEFAULT_TOKEN_POLICY);
  const open = (url: string, protocols: string[] = []) =>
    new Promise<WebSocket>((resolve) => {
      const s = new WebSocket(url, protocols);
      s.once('message', () => resolve(s));
      s.once('close', () => resolve(s));
      s.once('error', () => resolve(s));
    });
  const clients = await Promise.all([
    open(`${ws}/ws/dialogs/${site!.dialogId}?token=${token}&since=0-0`),
    open(`${ws}/ws/widget/dialogs/${widget.dialogId}`, tokenProtocols(widget.token)),
    open(`${ws}/ws/site/dialogs/${site!.dialogId}?site_token=${site!.token}`),
    open(`${ws}/ws/widget/dialogs/${widget.dialogId}`, tokenProtocols(stale.token)),
    open(`${ws}/ws/dialogs/${site!.dialogId}?token=not-a-token`),
  ]);
  const res = await fetch(`http://127.0.0.1:${h.ports.nginx}/api/site/dialogs/${site!.dialogId}/messages?site_token=${site!.token}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'monitoring' }),
  });
  expect(res.status).toBe(201);
  await (await fetch(`http://127.0.0.1:${h.ports.nginx}/api/nothing`)).arrayBuffer();
  await new Promise((r) => setTimeout(r, 300));
  for (const c of clients) c.close();
  await new Promise((r) => setTimeout(r, 300));
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'replyx-monitoring-live-'));
  stack = await startLocalStack({ topology: { monitoring: { enabled: true, scrapeIntervalS: 1, evaluationIntervalS: 1 }, backend: { workers: 2 } } });
  await traffic(stack);
  [gateway, backend] = await Promise.all([scrape(stack.ports.gateway), scrape(stack.ports.backend)]);
}, 240_000);

afterAll(async () => {
  await stack?.stop();
  await rm(tmp, { recursive: true, force: true });
}, 120_000);

// Labels are closed sets: connection types, outcomes, close codes, route templates, methods,
// statuses, dependencies, and the histogram/quantile labels. An id never becomes a label.
const ALLOWED_LABELS = new Set(['type', 'code', 'outcome', 'cause', 'result', 'dependency', 'method', 'route', 'status', 'le', 'quantile', 'space', 'kind', 'version', 'major', 'minor', 'patch', 'via']);
/** Node's default process metrics (prom-client's collectDefaultMetrics, under our prefix): their names are prom-client's. */
const isProcessFamily = (name: string) => /^replyx_(gateway|backend)_(process|nodejs)_/.test(name);
/** Series one family may hold before its labels look unbounded (histogram buckets counted per label set). */
const MAX_SERIES_PER_FAMILY = 60;

describe.each([
  ['gateway', 'replyx_gateway_', () => gateway],
  ['backend', 'replyx_backend_', () => backend],
] as const)('%s /metrics', (_service, prefix, families) => {
  it('names every family with the service prefix, counters with _total, units in base units', () => {
    for (const f of families().values()) {
      expect(f.name, f.name).toMatch(new RegExp(`^${prefix}[a-z0-9_]+$`));
      if (f.type === 'counter') expect(f.name).toMatch(/_total$/);
      // prom-client names one of Node's default gauges nodejs_active_resources_total; ours follow the convention.
      else if (!isProcessFamily(f.name)) expect(f.name, f.name).not.toMatch(/_total$/);
      expect(f.name, f.name).not.toMatch(/_(ms|milliseconds|kb|mb|percent)(_|$)/);
    }
  });

  it('keeps labels to closed sets: known names, no id-like values, few series per family', () => {
    for (const f of families().values()) {
      const labelSets = new Set(f.samples.map((s) => JSON.stringify(Object.entries(s.labels).filter(([k]) => k !== 'le' && k !== 'quantile'))));
      expect(labelSets.size, f.name).toBeLessThanOrEqual(MAX_SERIES_PER_FAMILY);
      for (const s of f.samples) {
        for (const [label, value] of Object.entries(s.labels)) {
          expect(ALLOWED_LABELS, `${f.name}{${label}}`).toContain(label);
          // Numbers are close codes, HTTP statuses, bucket bounds and versions, never ids.
          if (/^\d+$/.test(value)) expect(['code', 'status', 'le', 'major', 'minor', 'patch'], `${f.name}{${label}="${value}"}`).toContain(label);
          expect(value, `${f.name}{${label}}`).not.toMatch(/\/\d+(\/|$)/);
        }
      }
    }
  });

  it('passes promtool check metrics (the Prometheus linter) for its own families', async () => {
    const text = await (await fetch(`http://127.0.0.1:${_service === 'gateway' ? stack.ports.gateway : stack.ports.backend}/metrics`)).text();
    const file = path.join(tmp, `${_service}.prom`);
    await writeFile(file, text);
    const promtool = findBinary('promtool');
    if (!promtool) throw new Error('promtool is not installed: apt-get install -y prometheus');
    const r = await execa('bash', ['-c', '"$0" check metrics < "$1"', promtool, file], { reject: false, all: true });
    // Node's default process metrics (prefixed) come from prom-client; our own families must be clean.
    const ours = (r.all ?? '').split('\n').filter((l) => l.startsWith(prefix) && !isProcessFamily(l.split(' ')[0]!));
    expect(ours).toEqual([]);
  });
});

describe('the metrics the artefacts name exist', () => {
  it('exposes the families the runbooks and alerts rely on, with samples after traffic', () => {
    const names = new Set([...sampleNames(gateway), ...sampleNames(backend)]);
    for (const n of [
      'replyx_gateway_handshakes_total',
      'replyx_gateway_events_delivered_total',
      'replyx_gateway_event_recipients_total',
      'replyx_gateway_events_replayed_total',
      'replyx_gateway_resumes_total',
      'replyx_gateway_closes_total',
      'replyx_gateway_domain_forbidden_total',
      'replyx_gateway_dependency_up',
      'replyx_gateway_redis_roundtrip_seconds',
      'replyx_gateway_process_resident_memory_bytes',
      'replyx_backend_http_requests_total',
      'replyx_backend_http_request_duration_seconds_bucket',
      'replyx_backend_events_published_total',
      'replyx_backend_publish_failures_total',
      'replyx_backend_outbox_lag_seconds',
      'replyx_backend_workers',
      'replyx_backend_ws_connections',
    ]) {
      expect(names, n).toContain(n);
    }
    // Two workers, one scrape: the primary sums them and counts them.
    expect(backend.get('replyx_backend_workers')!.samples[0]!.value).toBe('2');
    expect(gateway.get('replyx_gateway_handshakes_total')!.samples.map((s) => s.labels.outcome)).toEqual(expect.arrayContaining(['accepted', 'domain_forbidden', 'unauthorized']));
  });

  // Resumes and resyncs, reconnects and publish failures have no sample until they happen; their
  // families are declared (# TYPE), which is what a query needs to be right.
  const declared = () => new Set([...gateway.values(), ...backend.values()].flatMap((f) => (f.type === 'histogram' ? [`${f.name}_bucket`, `${f.name}_sum`, `${f.name}_count`] : [f.name])));
  const synthetic = new Set(['up']);

  it('every metric in every dashboard query is one the services expose (or Prometheus\' own up)', () => {
    const exposed = declared();
    for (const q of dashboardQueries()) {
      for (const name of metricNamesIn(q.expr)) expect(exposed.has(name) || synthetic.has(name), `${q.panel} (${q.refId}): ${name}`).toBe(true);
    }
  });

  it('every metric in every alert rule is one the services expose (or Prometheus\' own up)', () => {
    const exposed = declared();
    for (const rule of alertRules()) {
      for (const name of metricNamesIn(rule.expr)) expect(exposed.has(name) || synthetic.has(name), `${rule.alert}: ${name}`).toBe(true);
    }
  });

  it('docs/observability.md lists exactly the families the services expose (process metrics aside)', () => {
    const doc = readFileSync(path.join(import.meta.dirname, '..', 'docs', 'observability.md'), 'utf8');
    const documented = [...doc.matchAll(/^\| `(replyx_(?:gateway|backend)_[a-z0-9_]+)(?:\{[a-z,]+\})?` \|/gm)].map((m) => m[1]!).sort();
    const exposed = [...gateway.keys(), ...backend.keys()].filter((n) => !isProcessFamily(n)).sort();
    expect(documented).toEqual(exposed);
  });

  it('nginx answers 404 for /metrics (Prometheus scrapes the services directly)', async () => {
    expect((await fetch(`http://127.0.0.1:${stack.ports.nginx}/metrics`)).status).toBe(404);
  });
});

describe('Prometheus in the local stack', () => {
  it('scrapes the backend and the gateway, with every alert rule loaded', async () => {
    expect(await waitUntil(async () => {
      const data = await prometheus<{ activeTargets: { labels: { job: string }; health: string }[] }>('/api/v1/targets');
      const up = new Set(data.activeTargets.filter((t) => t.health === 'up').map((t) => t.labels.job));
      return up.has(SCRAPE_JOBS.gateway) && up.has(SCRAPE_JOBS.backend);
    }, 20_000, 250)).toBe(true);
    const rules = await prometheus<{ groups: { rules: { name: string; type: string }[] }[] }>('/api/v1/rules');
    const loaded = rules.groups.flatMap((g) => g.rules.filter((r) => r.type === 'alerting').map((r) => r.name));
    expect(loaded.sort()).toEqual(alertRules().map((r) => r.alert).sort());
    // Queries of the dashboard answer from real data too.
    const result = await prometheus<{ result: unknown[] }>(`/api/v1/query?query=${encodeURIComponent('sum by (type) (replyx_gateway_connections)')}`);
    expect(result.result.length).toBe(3);
  }, 60_000);

  it('stopping the gateway makes ReplyxGatewayDown pending, and the runbook it names finds it', async () => {
    await stopService(stack.plan.services.find((s) => s.name === 'gateway')!);
    type Alert = { labels: { alertname: string; job: string }; annotations: { runbook_url: string }; state: string };
    let down: Alert | undefined;
    const seen = await waitUntil(async () => {
      const data = await prometheus<{ alerts: Alert[] }>('/api/v1/alerts');
      down = data.alerts.find((a) => a.labels.alertname === 'ReplyxGatewayDown' && (a.state === 'pending' || a.state === 'firing'));
      return down !== undefined;
    }, 30_000, 250);
    expect(seen).toBe(true);
    expect(down!.labels.job).toBe(SCRAPE_JOBS.gateway);
    // Alert -> runbook -> command: the runbook's first Diagnosis command shows the alert.
    const runbook = readFileSync(path.join(import.meta.dirname, '..', down!.annotations.runbook_url), 'utf8');
    const command = /```bash local\n(curl[^\n]*api\/v1\/alerts[^\n]*)\n/.exec(runbook)?.[1];
    expect(command).toBeDefined();
    const r = await execa('bash', ['-c', command!], { env: { ...process.env, REPLYX_PROMETHEUS_PORT: String(stack.ports.prometheus) }, reject: false });
    expect(r.stdout).toContain('"alertname":"ReplyxGatewayDown"');
    expect(r.stdout).toMatch(/"state":"(pending|firing)"/);
  }, 60_000);
});
