import { describe, expect, it } from 'vitest';
import { renderNginxConfig } from '../render/nginx.js';
import { validateTopology, type TopologyInput } from '../topology/index.js';
import { brokerKind, evaluateLiveRules, findLogLeaks, LIVE_RULES, redactLogLine, settingsDrift, type LiveState } from './live-rules.js';
import type { RuleResult } from './result.js';

const topo = (input: TopologyInput = {}) => validateTopology({ target: 'local', ...input }, 'test').topology;
const ok = <T>(value: T) => ({ ok: true as const, value });
const bad = (error: string) => ({ ok: false as const, error });
const rendered = renderNginxConfig(topo(), 'local', { prefixDir: '/tmp/replyx-live' });
const SECRET = 'a-very-secret-jwt-signing-key-of-32-chars';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwidHlwZSI6ImFkbWluIn0.c2lnbmF0dXJlc2lnbmF0dXJl';

const healthy: LiveState = {
  runningConfig: ok({ text: rendered, source: 'nginx -T -c /tmp/nginx.conf (pid 1)' }),
  renderedConfig: rendered,
  processes: ok(['postgres', 'redis', 'backend', 'gateway', 'nginx'].map((service, i) => ({ service, pid: 100 + i, running: true, listening: true }))),
  settings: ok([
    { service: 'backend', drift: [] },
    { service: 'gateway', drift: [] },
  ]),
  wsFirstFrame: ok({ type: 'connected', server: 'ws-gateway', instance: 'gw-1', heartbeat_ms: 25000 }),
  gatewayStatus: ok({ instance: 'gw-1', workers: 1, broker: { kind: 'redis', connected: true } }),
  backendHealth: ok({ status: 200, body: { status: 'ok', workers: 4 } }),
  redis: ok(true),
  postgres: ok(true),
  debugThroughNginx: ok({ status: 404, body: '<html>404 Not Found</html>' }),
  logs: ok([{ file: '/s/nginx/logs/access.log', lines: ['{"uri":"/ws/dialogs/123","status":101}'] }]),
  knownSecrets: [{ name: 'jwtSecret', value: SECRET }],
};

const ctx = { stack: 'ops' };

function only(live: Partial<LiveState>, id: string, topology = topo(), options: { runningNginx?: readonly RuleResult[] } = {}) {
  const results = evaluateLiveRules(topology, { ...healthy, ...live }, { ...ctx, ...options });
  const r = results.find((x) => x.id === id)!;
  expect(r.status, r.detail).toBe('fail');
  expect(r.fix).toMatch(/--stack ops/);
  expect(r.against).toBe('running');
  expect(results.filter((x) => x.id !== id && x.status !== 'pass').map((x) => `${x.id}: ${x.detail}`)).toEqual([]);
  return r;
}

describe('evaluateLiveRules', () => {
  it('passes on a healthy gateway-routed stack', () => {
    const results = evaluateLiveRules(topo(), healthy);
    expect(results.map((r) => r.id)).toEqual(LIVE_RULES.map((r) => r.id));
    expect(results.filter((r) => r.status !== 'pass')).toEqual([]);
  });

  it('running-config-drift: a directive diff, also when the checksum header was kept', () => {
    const edited = rendered.replace(/^worker_shutdown_timeout .*;$/m, '');
    const r = only({ runningConfig: ok({ text: edited, source: 'nginx -T' }) }, 'running-config-drift');
    expect(r.detail).toMatch(/differs from the rendered config by 1 directive\(s\) \(- rendered only, \+ running only\): - worker_shutdown_timeout \d+s/);
    expect(r.fix).toBe('npm run stack -- apply --stack ops');
    expect(only({ runningConfig: ok({ text: rendered, source: 'nginx -T', notLoaded: 'changed after nginx loaded it' }) }, 'running-config-drift').detail).toMatch(/without|changed after/);
    expect(only({ runningConfig: bad('nginx is not running') }, 'running-config-drift').detail).toMatch(/nginx is not running/);
  });

  it('services-running: a stopped service is restarted on its own; a foreign listener is named', () => {
    const procs = (change: object) => ok(healthy.processes!.ok ? healthy.processes!.value.map((p) => (p.service === 'redis' ? { ...p, ...change } : p)) : []);
    const r = only({ processes: procs({ running: false, listening: false, pid: undefined }) }, 'services-running');
    expect(r.detail).toBe('redis is not running');
    expect(r.fix).toBe('npm run stack -- restart redis --stack ops');
    const f = only({ processes: procs({ listening: false, foreignListener: 'python3 (pid 9)' }) }, 'services-running');
    expect(f.detail).toMatch(/redis \(pid 101\) does not listen on its port: python3 \(pid 9\) does/);
    expect(f.fix).toBe('npm run stack -- apply --stack ops');
  });

  it('services-running and ws-handshake: a stopped gateway replica is restarted on its own', () => {
    const replicas = topo({ gateway: { replicas: 2 } } as TopologyInput);
    const procsOf = (running2: boolean) =>
      ok(['postgres', 'redis', 'backend', 'gateway-1', 'gateway-2', 'nginx'].map((service, i) => ({ service, pid: 100 + i, running: service === 'gateway-2' ? running2 : true, listening: service === 'gateway-2' ? running2 : true })));
    const r = only({ processes: procsOf(false) }, 'services-running', replicas);
    expect(r.detail).toBe('gateway-2 is not running');
    expect(r.fix).toBe('npm run stack -- restart gateway-2 --stack ops');
    const results = evaluateLiveRules(replicas, { ...healthy, processes: procsOf(false), wsFirstFrame: bad('handshake answered HTTP 502') }, ctx);
    const h = results.find((x) => x.id === 'ws-handshake')!;
    expect(h.detail).toMatch(/gateway-2 is not running/);
    expect(h.fix).toBe('npm run stack -- restart gateway-2 --stack ops');
  });

  it('service-settings: names drifted keys, never a secret value; the heartbeat the gateway announces', () => {
    const drift = settingsDrift({ JWT_SECRET: SECRET, BACKEND_WORKERS: '4', LOG_LEVEL: 'info' }, { JWT_SECRET: 'other-secret-value-xxxxxxxxxxxxxx', BACKEND_WORKERS: '2', LOG_LEVEL: 'info' }, new Set(['JWT_SECRET']));
    const r = only({ settings: ok([{ service: 'backend', drift }]) }, 'service-settings');
    expect(r.detail).toBe('backend runs with JWT_SECRET (secret, differs), BACKEND_WORKERS=2, stack file 4');
    expect(JSON.stringify(r)).not.toContain(SECRET);
    expect(only({ wsFirstFrame: ok({ type: 'connected', server: 'ws-gateway', heartbeat_ms: 10000 }) }, 'service-settings').detail).toMatch(/heartbeat is 10000 ms, stack file 25000 ms/);
  });

  it('ws-handshake: answered by the wrong server, and diagnoses why a handshake failed', () => {
    expect(only({ wsFirstFrame: ok({ type: 'connected', server: 'backend' }) }, 'ws-handshake').detail).toMatch(/answered by backend/);
    const upgrade: RuleResult = { id: 'ws-upgrade-headers', kind: 'static', against: 'running', status: 'fail', detail: 'running nginx -T: proxy_set_header Upgrade $http_upgrade missing', fix: 'x' };
    const r = only({ wsFirstFrame: bad('handshake answered HTTP 404') }, 'ws-handshake', topo(), { runningNginx: [upgrade] });
    expect(r.detail).toMatch(/HTTP 404: the running nginx does not forward the WebSocket upgrade \(proxy_set_header Upgrade \$http_upgrade missing\)/);
    expect(only({ wsFirstFrame: bad('handshake answered HTTP 502') }, 'ws-handshake').fix).toBe('npm run stack -- restart gateway --stack ops');
    expect(only({ wsFirstFrame: bad('closed with 4001 unauthorized') }, 'ws-handshake').detail).toMatch(/another JWT secret/);
    const backendRoute = topo({ wsRoute: 'backend', backend: { workers: 1 } });
    const right = evaluateLiveRules(backendRoute, { ...healthy, runningConfig: undefined, backendHealth: ok({ status: 200, body: { workers: 1 } }), wsFirstFrame: ok({ type: 'connected', server: 'backend' }) });
    expect(right.filter((r) => r.status === 'fail')).toEqual([]);
  });

  it('gateway-workers: several workers with an in-memory broker; skipped when /ws/ is on the backend', () => {
    only({ gatewayStatus: ok({ workers: 2, broker: 'memory' }) }, 'gateway-workers');
    expect(evaluateLiveRules(topo(), { ...healthy, gatewayStatus: ok({ workers: 2, broker: 'redis' }) }).find((r) => r.id === 'gateway-workers')!.status).toBe('pass');
    only({ gatewayStatus: bad('connect ECONNREFUSED') }, 'gateway-workers');
    const t = topo({ wsRoute: 'backend', backend: { workers: 1 } });
    const r = evaluateLiveRules(t, { ...healthy, backendHealth: ok({ status: 200, body: { workers: 1 } }), wsFirstFrame: ok({ type: 'connected', server: 'backend' }), gatewayStatus: bad('ECONNREFUSED') });
    expect(r.find((x) => x.id === 'gateway-workers')!.status).toBe('skip');
  });

  it('backend-workers: another count than the stack file; a 503 for Redis is not "start the backend"', () => {
    expect(only({ backendHealth: ok({ status: 200, body: { workers: 1 } }) }, 'backend-workers').detail).toMatch(/runs 1 workers, stack file says 4/);
    const degraded = evaluateLiveRules(topo(), { ...healthy, redis: bad('ECONNREFUSED'), backendHealth: ok({ status: 503, body: { status: 'degraded', workers: 4, redis: 'down' } }) });
    expect(degraded.find((r) => r.id === 'backend-workers')).toMatchObject({ status: 'pass', detail: '4 workers (backend reports redis down)' });
    expect(degraded.find((r) => r.id === 'redis')!.fix).toMatch(/^npm run stack -- restart redis/);
  });

  it('backend /health and the /ws/ handshake failing while a store is down name the store, not the backend', () => {
    const pgDown = evaluateLiveRules(topo(), { ...healthy, postgres: bad('ECONNREFUSED'), backendHealth: bad('timeout after 3000 ms'), wsFirstFrame: bad('closed 1011 internal error') });
    const backend = pgDown.find((r) => r.id === 'backend-workers')!;
    expect(backend).toMatchObject({ status: 'fail', detail: expect.stringContaining('cause: Postgres is down') });
    expect(backend.fix).toMatch(/^npm run stack -- restart postgres/);
    const ws = pgDown.find((r) => r.id === 'ws-handshake')!;
    expect(ws.detail).toContain('cause: Postgres is down');
    expect(ws.fix).toMatch(/^npm run stack -- restart postgres/);
    const redisDown = evaluateLiveRules(topo(), { ...healthy, redis: bad('ECONNREFUSED'), wsFirstFrame: bad('no frame within 3000 ms') });
    expect(redisDown.find((r) => r.id === 'ws-handshake')!.fix).toMatch(/^npm run stack -- restart redis/);
  });

  it('ws-handshake: the backend refusing /ws/ with 4102 names the hand route and re-applies the rendered config', () => {
    const refused = evaluateLiveRules(topo(), { ...healthy, wsFirstFrame: bad('closed with 4102 /ws/ is routed to the backend but the stack plan routes it to the gateway: run npm run check') });
    const ws = refused.find((r) => r.id === 'ws-handshake')!;
    expect(ws.status).toBe('fail');
    expect(ws.detail).toMatch(/^\/ws\/ reached the backend, which refused it with 4102: the running nginx sends \/ws\/ to the backend without the X-Replyx-Ws-Route mark .*wsRoute=gateway/);
    expect(ws.fix).toMatch(/apply/);
  });

  it('ws-handshake: a gateway that accepts but answers nothing (hung) is restarted, not re-applied', () => {
    const hung = evaluateLiveRules(topo(), { ...healthy, wsFirstFrame: bad('no frame within 3000 ms'), gatewayStatus: bad('GET http://127.0.0.1:8001/api/debug/websocket/status: The operation was aborted due to timeout') });
    const ws = hung.find((r) => r.id === 'ws-handshake')!;
    expect(ws.detail).toMatch(/hung/);
    expect(ws.fix).toMatch(/^npm run stack -- restart gateway/);
  });

  it('redis and postgres: not answering', () => {
    only({ redis: bad('ECONNREFUSED') }, 'redis');
    only({ postgres: bad('ECONNREFUSED') }, 'postgres');
  });

  it('debug-not-public: 200, or an upstream JSON error, through nginx', () => {
    only({ debugThroughNginx: ok({ status: 200, body: '{"workers":1}' }) }, 'debug-not-public');
    only({ debugThroughNginx: ok({ status: 403, body: '{"error":"forbidden"}' }) }, 'debug-not-public');
  });

  it('no-secrets-in-logs: tokens in any log, named by file and line, never quoted', () => {
    const lines = ['ok line', `2026/01/01 [error] upstream timed out, request: "POST /api/site/dialogs/1/messages?site_token=abcdefgh12345678 HTTP/1.1"`];
    const r = only({ logs: ok([{ file: '/s/nginx/logs/error.log', lines }]) }, 'no-secrets-in-logs');
    expect(r.detail).toBe('credentials in logs: /s/nginx/logs/error.log: 1 line (first line 2, a site_token= value)');
    expect(r.detail).not.toContain('abcdefgh');
    expect(r.fix).toBe('npm run stack -- redact-logs --stack ops (then rotate the leaked credentials)');
    const s = only({ logs: ok([{ file: 'gw.log', lines: [`{"msg":"boot","k":"${SECRET}"}`, `{"auth":"Bearer ${JWT}"}`] }]) }, 'no-secrets-in-logs');
    expect(s.detail).toBe("credentials in logs: gw.log: 2 lines (first line 1, the stack's jwtSecret, a JWT)");
    expect(s.detail).not.toContain(SECRET);
  });

  it('findLogLeaks ignores redaction markers and short values; redactLogLine removes what it finds', () => {
    const logs = [{ file: 'f', lines: ['GET /ws/dialogs/1?token=[redacted]', 'GET /x?key=abc', `GET /ws/site/dialogs/1?site_token=${JWT}&since=4`, `k=${SECRET}`] }];
    expect(findLogLeaks(logs, [{ name: 'jwtSecret', value: SECRET }]).map((l) => l.line)).toEqual([3, 4]);
    const cleaned = logs[0]!.lines.map((l) => redactLogLine(l, [{ name: 'jwtSecret', value: SECRET }]));
    expect(cleaned).toEqual(['GET /ws/dialogs/1?token=[redacted]', 'GET /x?key=abc', 'GET /ws/site/dialogs/1?site_token=[redacted]&since=4', 'k=[redacted]']);
    expect(findLogLeaks([{ file: 'f', lines: cleaned }], [{ name: 'jwtSecret', value: SECRET }])).toEqual([]);
  });

  it('reports skipped rules when nothing was probed', () => {
    expect(evaluateLiveRules(topo(), {}).every((r) => r.status === 'skip')).toBe(true);
  });

  it('reads the broker kind from a string or an object', () => {
    expect(brokerKind({ broker: 'redis' })).toBe('redis');
    expect(brokerKind({ broker: { type: 'memory' } })).toBe('memory');
    expect(brokerKind({})).toBeUndefined();
  });
});
