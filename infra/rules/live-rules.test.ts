import { describe, expect, it } from 'vitest';
import { validateTopology, type TopologyInput } from '../topology/index.js';
import { brokerKind, evaluateLiveRules, LIVE_RULES, type LiveState } from './live-rules.js';

const topo = (input: TopologyInput = {}) => validateTopology({ target: 'local', ...input }, 'test').topology;
const ok = <T>(value: T) => ({ ok: true as const, value });
const bad = (error: string) => ({ ok: false as const, error });

const healthy: LiveState = {
  runningChecksum: ok('abc'),
  renderedChecksum: 'abc',
  wsFirstFrame: ok({ type: 'connected', server: 'ws-gateway', instance: 'gw-1', heartbeat_ms: 25000 }),
  gatewayStatus: ok({ instance: 'gw-1', workers: 1, broker: { kind: 'redis', connected: true } }),
  backendHealth: ok({ status: 'ok', workers: 4 }),
  redis: ok(true),
  postgres: ok(true),
  debugThroughNginx: ok({ status: 404, body: '<html>404 Not Found</html>' }),
  accessLog: ok(['127.0.0.1 [x] "GET /ws/dialogs/123" 101 0.5']),
};

function only(live: Partial<LiveState>, id: string, topology = topo()) {
  const results = evaluateLiveRules(topology, { ...healthy, ...live });
  const r = results.find((x) => x.id === id)!;
  expect(r.status, r.detail).toBe('fail');
  expect(r.fix).not.toBe('');
  expect(results.filter((x) => x.id !== id && x.status !== 'pass').map((x) => `${x.id}: ${x.detail}`)).toEqual([]);
  return r;
}

describe('evaluateLiveRules', () => {
  it('passes on a healthy gateway-routed stack', () => {
    const results = evaluateLiveRules(topo(), healthy);
    expect(results.map((r) => r.id)).toEqual(LIVE_RULES.map((r) => r.id));
    expect(results.filter((r) => r.status !== 'pass')).toEqual([]);
  });

  it('running-config-checksum: nginx runs another config, or one without header', () => {
    expect(only({ runningChecksum: ok('def') }, 'running-config-checksum').detail).toMatch(/running def != rendered abc/);
    expect(only({ runningChecksum: ok(undefined) }, 'running-config-checksum').detail).toMatch(/no checksum header/);
    only({ runningChecksum: bad('ENOENT') }, 'running-config-checksum');
  });

  it('ws-handshake: answered by the backend while wsRoute=gateway, and the reverse', () => {
    expect(only({ wsFirstFrame: ok({ type: 'connected', server: 'backend' }) }, 'ws-handshake').detail).toMatch(/answered by backend/);
    only({ wsFirstFrame: ok({ type: 'error' }) }, 'ws-handshake');
    only({ wsFirstFrame: bad('unexpected response 502') }, 'ws-handshake');
    const backendRoute = topo({ wsRoute: 'backend', backend: { workers: 1 } });
    const results = evaluateLiveRules(backendRoute, { ...healthy, backendHealth: ok({ workers: 1 }), wsFirstFrame: ok({ type: 'connected', server: 'ws-gateway' }) });
    expect(results.find((r) => r.id === 'ws-handshake')!.status).toBe('fail');
    const right = evaluateLiveRules(backendRoute, { ...healthy, backendHealth: ok({ workers: 1 }), wsFirstFrame: ok({ type: 'connected', server: 'backend' }) });
    expect(right.every((r) => r.status === 'pass')).toBe(true);
  });

  it('gateway-workers: several workers with an in-memory broker', () => {
    only({ gatewayStatus: ok({ workers: 2, broker: 'memory' }) }, 'gateway-workers');
    expect(evaluateLiveRules(topo(), { ...healthy, gatewayStatus: ok({ workers: 2, broker: 'redis' }) }).find((r) => r.id === 'gateway-workers')!.status).toBe('pass');
    only({ gatewayStatus: bad('connect ECONNREFUSED') }, 'gateway-workers');
  });

  it('gateway-workers: an absent gateway is skipped when /ws/ is on the backend', () => {
    const t = topo({ wsRoute: 'backend', backend: { workers: 1 } });
    const r = evaluateLiveRules(t, { ...healthy, backendHealth: ok({ workers: 1 }), wsFirstFrame: ok({ type: 'connected', server: 'backend' }), gatewayStatus: bad('ECONNREFUSED') });
    expect(r.find((x) => x.id === 'gateway-workers')!.status).toBe('skip');
  });

  it('backend-workers: backend runs another count than the stack file', () => {
    expect(only({ backendHealth: ok({ workers: 1 }) }, 'backend-workers').detail).toMatch(/reports 1 workers, stack file says 4/);
    only({ backendHealth: bad('HTTP 503') }, 'backend-workers');
  });

  it('redis and postgres: not answering', () => {
    only({ redis: bad('ECONNREFUSED') }, 'redis');
    only({ postgres: bad('ECONNREFUSED') }, 'postgres');
  });

  it('debug-not-public: 200, or an upstream JSON error, through nginx', () => {
    only({ debugThroughNginx: ok({ status: 200, body: '{"workers":1}' }) }, 'debug-not-public');
    only({ debugThroughNginx: ok({ status: 403, body: '{"error":"forbidden"}' }) }, 'debug-not-public');
  });

  it('no-ws-token-in-log: a /ws/ line with its query string', () => {
    const r = only({ accessLog: ok(['x "GET /ws/dialogs/1?token=eyJ.a.b HTTP/1.1" 101']) }, 'no-ws-token-in-log');
    expect(r.detail).toMatch(/1 \/ws\/ lines/);
    expect(evaluateLiveRules(topo(), { ...healthy, accessLog: ok(['x "GET /api/site/dialogs/1/messages?site_token=a" 200']) }).find((r) => r.id === 'no-ws-token-in-log')!.status).toBe('pass');
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
