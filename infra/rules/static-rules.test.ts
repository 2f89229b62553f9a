import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { validateTopology, type Topology, type TopologyInput } from '../topology/index.js';
import { renderNginxConfig } from '../render/nginx.js';
import { evaluateStaticRules, STATIC_RULES, type StaticInput } from './static-rules.js';

const good = readFileSync(new URL('./fixtures/good-nginx.conf', import.meta.url), 'utf8');
const CHECKSUM = '0123456789abcdef';

function topo(input: TopologyInput = {}): Topology {
  return validateTopology({ target: 'local', ...input }, 'test').topology;
}

/** A topology that skips validation, for states validation itself would refuse. */
function rawTopo(patch: (t: Record<string, Record<string, unknown>>) => void): Topology {
  const t = structuredClone(topo()) as unknown as Record<string, Record<string, unknown>>;
  patch(t);
  return t as unknown as Topology;
}

function run(input: Partial<StaticInput> = {}) {
  return evaluateStaticRules({ topology: topo(), nginxConfig: good, configChecksum: CHECKSUM, expectedChecksum: CHECKSUM, ...input });
}

function statusOf(results: ReturnType<typeof run>, id: string) {
  const r = results.find((x) => x.id === id);
  if (!r) throw new Error(`no result for ${id}`);
  return r;
}

/** Asserts exactly `id` failed (or warned) and every other rule passed. */
function expectOnly(results: ReturnType<typeof run>, id: string, status: 'fail' | 'warn' = 'fail') {
  const r = statusOf(results, id);
  expect(r.status, `${id}: ${r.detail}`).toBe(status);
  expect(r.fix).not.toBe('');
  const others = results.filter((x) => x.id !== id && x.status !== 'pass');
  expect(others.map((o) => `${o.id}: ${o.detail}`)).toEqual([]);
}

describe('evaluateStaticRules', () => {
  it('passes every rule on a good topology and config', () => {
    const results = run();
    expect(results.map((r) => r.id).sort()).toEqual(STATIC_RULES.map((r) => r.id).sort());
    expect(results.filter((r) => r.status !== 'pass').map((r) => `${r.id}: ${r.detail}`)).toEqual([]);
  });

  it('single-gateway-or-broker: several gateways with the memory broker', () => {
    // The second replica's port is in the upstream, so only the broker rule fails.
    const conf = good.replace('server 127.0.0.1:8001;', 'server 127.0.0.1:8001;\n        server 127.0.0.1:8002;');
    expectOnly(run({ nginxConfig: conf, topology: rawTopo((t) => ((t.gateway!.replicas = 2), (t.gateway!.broker = 'memory'))) }), 'single-gateway-or-broker');
    expect(statusOf(run({ topology: topo({ gateway: { replicas: 3, broker: 'redis' } }) }), 'single-gateway-or-broker').status).toBe('pass');
  });

  it('desync-risk: /ws/ on a 4-worker backend fails as desync risk; 1 worker passes', () => {
    const backendConf = good.replace('proxy_pass http://replyx_gateway;', 'proxy_pass http://replyx_backend;');
    const results = run({ topology: topo({ wsRoute: 'backend', backend: { workers: 4 } }), nginxConfig: backendConf });
    expectOnly(results, 'desync-risk');
    expect(statusOf(results, 'desync-risk').detail).toMatch(/desync risk/);
    expect(statusOf(run({ topology: topo({ wsRoute: 'backend', backend: { workers: 1 } }), nginxConfig: backendConf }), 'desync-risk').status).toBe('pass');
  });

  it('heartbeat-vs-timeouts: heartbeat not below proxy read timeout or ALB idle timeout', () => {
    expectOnly(run({ topology: rawTopo((t) => (t.nginx!.proxyReadTimeoutS = 20)) }), 'heartbeat-vs-timeouts');
    const aws = rawTopo((t) => {
      (t as Record<string, unknown>).target = 'aws';
      t.aws!.albIdleTimeoutS = 20;
    });
    expect(statusOf(evaluateStaticRules({ topology: aws }), 'heartbeat-vs-timeouts').status).toBe('fail');
  });

  it('config-checksum: header missing or from another topology', () => {
    expectOnly(run({ configChecksum: 'ffffffffffffffff' }), 'config-checksum');
    expect(statusOf(run({ configChecksum: undefined }), 'config-checksum').detail).toMatch(/no checksum header/);
  });

  it('ws-route: /ws/ proxied to the backend while wsRoute=gateway', () => {
    expectOnly(run({ nginxConfig: good.replace('proxy_pass http://replyx_gateway;', 'proxy_pass http://replyx_backend;') }), 'ws-route');
  });

  it('ws-route: local gateway replicas must all be in the upstream, and nothing else', () => {
    const t = topo({ gateway: { replicas: 2, port: 9301 } });
    const conf = renderNginxConfig(t, 'local');
    expect(statusOf(run({ topology: t, nginxConfig: conf }), 'ws-route').status).toBe('pass');
    const missing = statusOf(run({ topology: t, nginxConfig: conf.replace(/^\s*server 127\.0\.0\.1:9302;\n/m, '') }), 'ws-route');
    expect(missing.status).toBe('fail');
    expect(missing.detail).toMatch(/without 9302/);
    expect(statusOf(run({ topology: t, nginxConfig: conf.replace('127.0.0.1:9302', '127.0.0.1:9303') }), 'ws-route').status).toBe('fail');
  });

  it('ws-route: one /ws/ sub-path shadowed by a regex location to the backend', () => {
    const conf = good.replace('location = /health', 'location ~ ^/ws/site/ { proxy_pass http://replyx_backend; proxy_buffering off; }\n        location = /health');
    const r = statusOf(run({ nginxConfig: conf }), 'ws-route');
    expect(r.status).toBe('fail');
    expect(r.detail).toMatch(/\/ws\/site\/dialogs\/123 -> replyx_backend/);
  });

  it('api-route: /api/ to the gateway', () => {
    expectOnly(run({ nginxConfig: good.replace('proxy_pass http://replyx_backend;', 'proxy_pass http://replyx_gateway;') }), 'api-route');
  });

  it.each([
    ['proxy_http_version 1.1;', '', /proxy_http_version is unset/],
    ['proxy_set_header Upgrade $http_upgrade;', '', /Upgrade \$http_upgrade missing/],
    ['proxy_set_header Connection $connection_upgrade;', '', /Connection missing/],
    ['map $http_upgrade $connection_upgrade', 'map $http_host $connection_upgrade', /keyed on \$http_host/],
    ['proxy_set_header Connection $connection_upgrade;', 'proxy_set_header Connection $conn;', /no map defines it/],
  ])('ws-upgrade-headers: %s -> %s', (from, to, detail) => {
    const results = run({ nginxConfig: good.replace(from, to) });
    expectOnly(results, 'ws-upgrade-headers');
    expect(statusOf(results, 'ws-upgrade-headers').detail).toMatch(detail);
  });

  it('ws-upgrade-headers: a literal "upgrade" Connection header only warns', () => {
    expectOnly(run({ nginxConfig: good.replace('Connection $connection_upgrade', 'Connection "upgrade"') }), 'ws-upgrade-headers', 'warn');
  });

  it('ws-buffering-off: buffering left on', () => {
    expectOnly(run({ nginxConfig: good.replace('proxy_buffering off;', '') }), 'ws-buffering-off');
  });

  it('ws-read-timeout: below the heartbeat fails, below twice the heartbeat warns', () => {
    expectOnly(run({ nginxConfig: good.replace('proxy_read_timeout 120s;', 'proxy_read_timeout 20s;') }), 'ws-read-timeout');
    expectOnly(run({ nginxConfig: good.replace('proxy_read_timeout 120s;', 'proxy_read_timeout 40s;') }), 'ws-read-timeout', 'warn');
    // Unset means nginx's 60 s default, which only passes because it is above 2 x 25 s.
    expect(statusOf(run({ nginxConfig: good.replace('proxy_read_timeout 120s;', '') }), 'ws-read-timeout').detail).toMatch(/^60s/);
  });

  it('debug-blocked: the /api/debug/ location removed (falls into /api/)', () => {
    expectOnly(run({ nginxConfig: good.replace('location /api/debug/ { return 404; }', '') }), 'debug-blocked');
  });

  it('debug-blocked: a regex location proxying debug beats the prefix block', () => {
    const conf = good.replace('location = /health', 'location ~ /debug/ { proxy_pass http://replyx_gateway; }\n        location = /health');
    expect(statusOf(run({ nginxConfig: conf }), 'debug-blocked').status).toBe('fail');
  });

  it('internal-blocked: a catch-all location proxies /internal/', () => {
    const conf = good.replace('location /internal/ { return 404; }', 'location / { proxy_pass http://replyx_gateway; }');
    expectOnly(run({ nginxConfig: conf }), 'internal-blocked');
  });

  it('metrics-blocked: a catch-all location proxies /metrics to the backend', () => {
    const conf = good.replace('location = /metrics { return 404; }', 'location / { proxy_pass http://replyx_backend; }');
    const results = run({ nginxConfig: conf });
    expect(statusOf(results, 'metrics-blocked')).toMatchObject({ status: 'fail', detail: '/metrics reach an upstream through nginx' });
    // Without the catch-all, nothing proxies /metrics: no location matches, nginx answers 404 itself.
    expect(statusOf(run({ nginxConfig: good.replace('location = /metrics { return 404; }', '') }), 'metrics-blocked').status).toBe('pass');
  });

  it('ws-log-no-query: $request in the /ws/ format, combined default, or no access_log', () => {
    expectOnly(run({ nginxConfig: good.replace('"$request_method $uri"', '"$request"') }), 'ws-log-no-query');
    // No access_log at any level: nginx writes its "combined" format, which has $request.
    const noLogs = run({ nginxConfig: good.replace('access_log logs/access.log replyx_ws;', '').replace('access_log logs/access.log replyx_api;', '') });
    expectOnly(noLogs, 'ws-log-no-query');
    expect(statusOf(noLogs, 'ws-log-no-query').detail).toMatch(/default "combined" format logs \$request, \$http_referer/);
    expectOnly(run({ nginxConfig: good.replace('access_log logs/access.log replyx_ws;', 'access_log logs/access.log;') }), 'ws-log-no-query');
    expectOnly(run({ nginxConfig: good.replace('$uri"', '$uri?$args"') }), 'ws-log-no-query');
    expect(statusOf(run({ nginxConfig: good.replace('access_log logs/access.log replyx_ws;', 'access_log off;') }), 'ws-log-no-query').status).toBe('pass');
    // Without its own access_log, /ws/ inherits the http-level one, which logs no query either.
    expect(statusOf(run({ nginxConfig: good.replace('access_log logs/access.log replyx_ws;', '') }), 'ws-log-no-query').status).toBe('pass');
  });

  it('ws-log-no-query: every format in use is checked, not only the /ws/ one', () => {
    // /api/...?site_token= requests are logged by the http-level format.
    const api = run({ nginxConfig: good.replace('"$request_method $uri $server_protocol"', '"$request"') });
    expectOnly(api, 'ws-log-no-query');
    expect(statusOf(api, 'ws-log-no-query').detail).toMatch(/format "replyx_api" logs \$request \(server 127\.0\.0\.1:8080, server 127\.0\.0\.1:8080 location \/api\/debug\/, .* and \d+ more\)/);
    // The embedding page's URL can carry its own tokens.
    expectOnly(run({ nginxConfig: good.replace('$status\';\n    access_log', '$status "$http_referer"\';\n    access_log') }), 'ws-log-no-query');
    expectOnly(run({ nginxConfig: good.replace('location = /health { return 200 "ok\\n"; }', 'location = /health { access_log logs/h.log nosuch; return 200; }') }), 'ws-log-no-query');
    expect(statusOf(run(), 'ws-log-no-query').detail).toBe('formats replyx_api, replyx_ws log no query string');
  });

  it('worker-shutdown-timeout: missing fails, different from the topology warns', () => {
    expectOnly(run({ nginxConfig: good.replace('worker_shutdown_timeout 30s;', '') }), 'worker-shutdown-timeout');
    expectOnly(run({ nginxConfig: good.replace('worker_shutdown_timeout 30s;', 'worker_shutdown_timeout 10s;') }), 'worker-shutdown-timeout', 'warn');
  });

  it('an unparsable config fails every config rule instead of throwing', () => {
    const results = run({ nginxConfig: 'http {' });
    expect(statusOf(results, 'ws-route').status).toBe('fail');
    expect(statusOf(results, 'ws-route').detail).toMatch(/does not parse/);
  });

  it('targets without nginx skip the config rules', () => {
    const results = evaluateStaticRules({ topology: topo({ target: 'aws' }) });
    expect(statusOf(results, 'ws-route').status).toBe('skip');
    expect(statusOf(results, 'desync-risk').status).toBe('pass');
  });
});
