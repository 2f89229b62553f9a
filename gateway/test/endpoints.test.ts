import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { sharedRedisUrl } from '../../test/services.js';
import { UPGRADE_REQUIRED_HINT } from '../src/access/endpoints.js';
import { RedisPublisher } from '../src/broker/publisher.js';
import {
  DEBUG_TOKEN,
  TestClient,
  adminToken,
  createAccessDatabase,
  eventually,
  httpPublish,
  noneToken,
  protocols,
  siteToken,
  startGateway,
  testConfig,
  widgetToken,
  type AccessDatabase,
  type TestGateway,
} from './harness.js';

// The three seed endpoints against a real gateway, Redis and Postgres: happy paths, every
// refusal with its close code, cross-tenant attempts, origins, tokens, audience filtering.

let db: AccessDatabase;
let gw: TestGateway;
let redis: Redis;
let publisher: RedisPublisher;

beforeAll(async () => {
  db = await createAccessDatabase();
  gw = await startGateway(testConfig({ databaseUrl: db.url, broker: 'redis', redisUrl: sharedRedisUrl() }));
  redis = new Redis(sharedRedisUrl());
  publisher = new RedisPublisher(redis, { historyLength: 100, historyTtlS: 600 });
});

afterAll(async () => {
  await gw?.stop();
  redis?.disconnect();
});

const adminUrl = (dialog: number, token: string, extra = '') => `${gw.ws}/ws/dialogs/${dialog}?token=${encodeURIComponent(token)}${extra}`;
const widgetUrl = (dialog: number) => `${gw.ws}/ws/widget/dialogs/${dialog}`;
/** A widget client with a session token for `origin` (sent as the replyx.token subprotocol). */
const widgetClient = async (dialog: number, assistant: number, origin: string, headers: Record<string, string> = {}) =>
  new TestClient(widgetUrl(dialog), headers, protocols(await widgetToken(dialog, assistant, origin)));
const expired = () => ({ iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 });
const siteUrl = (dialog: number, token: string) => `${gw.ws}/ws/site/dialogs/${dialog}?site_token=${encodeURIComponent(token)}`;

async function expectClose(client: TestClient, code: number): Promise<void> {
  const closed = await client.closed;
  expect(closed.code).toBe(code);
  expect(client.frames.filter((f) => f.json.type === 'connected')).toHaveLength(0);
}

describe('happy paths', () => {
  it('admin, widget and site on one dialog all get connected, then the event published through Lua', async () => {
    const dialog = db.a.dialogs[0]!;
    const admin = new TestClient(adminUrl(dialog, await adminToken(db.a.userId)));
    const widget = await widgetClient(dialog, db.a.assistantId, 'https://example.com');
    const site = new TestClient(siteUrl(dialog, await siteToken(db.a.userId, db.a.assistantId)));
    for (const c of [admin, widget, site]) {
      const hello = await c.ready();
      expect(hello.json).toEqual({ type: 'connected', server: 'ws-gateway', instance: 'gw-test', heartbeat_ms: 25_000 });
    }
    await eventually(() => gw.gateway.hub.dialogCounts(dialog).site === 1, 5000, 'all three attached');
    const id = await publisher.publish({ dialogId: dialog, type: 'message:new', data: { text: 'Test message' } });
    for (const c of [admin, widget, site]) {
      const [ev] = await c.waitFor((f) => f.json.id === id);
      expect(ev!.json).toMatchObject({ id, type: 'message:new', dialog_id: dialog, data: { text: 'Test message' } });
      expect(typeof ev!.json.ts).toBe('number');
    }
    expect(gw.logs.some((l) => l.includes('[Admin] connected'))).toBe(true);
    expect(gw.logs.some((l) => l.includes('[Widget] connected'))).toBe(true);
    expect(gw.logs.some((l) => l.includes('[Site] connected'))).toBe(true);
    const broadcast = gw.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => String(l.msg).startsWith('Broadcasting message') && l.event_id === id);
    expect(broadcast).toMatchObject({ dialog_id: dialog, type: 'message:new', recipients: 3 });
    await Promise.all([admin, widget, site].map((c) => c.close()));
    await eventually(() => !gw.gateway.hub.has(dialog), 5000, 'dialog left');
    expect(gw.logs.some((l) => l.includes('[Widget] disconnected'))).toBe(true);
  });

  it('a widget is judged by the origin its session token was issued for, not the Origin header (iframe)', async () => {
    const c = await widgetClient(db.a.dialogs[0]!, db.a.assistantId, 'https://deep.shop.example.org', { Origin: 'https://widget.replyx.example' });
    await c.ready();
    await c.close();
  });

  it('answers an application ping with pong and ignores unknown frames', async () => {
    const c = new TestClient(adminUrl(db.a.dialogs[0]!, await adminToken(db.a.userId)));
    await c.ready();
    c.ws.send('{"type":"hello"}');
    c.ws.send('not json');
    c.ws.send(Buffer.from([1, 2, 3]));
    c.ws.send(JSON.stringify({ type: 'ping' }));
    await c.waitFor((f) => f.json.type === 'pong');
    expect(c.frames.map((f) => f.json.type)).toEqual(['connected', 'pong']);
    await c.close();
  });

  it('multi-site: three dialogs, no cross-talk', async () => {
    const dialogs = [db.a.dialogs[0]!, db.a.dialogs[1]!, db.b.dialogs[0]!];
    const clients = await Promise.all(
      dialogs.map(async (d, i) => new TestClient(siteUrl(d, i < 2 ? await siteToken(db.a.userId, db.a.assistantId) : await siteToken(db.b.userId, db.b.assistantId)))),
    );
    await Promise.all(clients.map((c) => c.ready()));
    const ids = await Promise.all(dialogs.map((d) => publisher.publish({ dialogId: d, type: 'message:new', data: { d } })));
    for (const [i, c] of clients.entries()) {
      await c.waitFor((f) => f.json.id === ids[i]);
    }
    await new Promise((r) => setTimeout(r, 100));
    for (const [i, c] of clients.entries()) {
      expect(c.events().map((f) => f.json.dialog_id)).toEqual([dialogs[i]]);
    }
    await Promise.all(clients.map((c) => c.close()));
  });
});

describe('audience', () => {
  it('delivers only to the kinds named in audience (Lua and HTTP)', async () => {
    const dialog = db.a.dialogs[1]!;
    const admin = new TestClient(adminUrl(dialog, await adminToken(db.a.userId)));
    const widget = await widgetClient(dialog, db.a.assistantId, 'https://example.com');
    const site = new TestClient(siteUrl(dialog, await siteToken(db.a.userId, db.a.assistantId)));
    await Promise.all([admin, widget, site].map((c) => c.ready()));
    await eventually(() => gw.gateway.hub.dialogCounts(dialog).site === 1);
    const adminOnly = await publisher.publish({ dialogId: dialog, type: 'note:internal', data: {}, audience: ['admin'] });
    const viaHttp = await httpPublish(gw.base, { dialog_id: dialog, type: 'typing', data: null, audience: ['widget', 'site'] });
    expect(viaHttp.status).toBe(202);
    const everyone = await publisher.publish({ dialogId: dialog, type: 'message:new', data: {} });
    for (const c of [admin, widget, site]) await c.waitFor((f) => f.json.id === everyone);
    expect(admin.events().map((f) => f.json.id)).toEqual([adminOnly, everyone]);
    expect(widget.events().map((f) => f.json.id)).toEqual([viaHttp.body.id, everyone]);
    expect(site.events().map((f) => f.json.id)).toEqual([viaHttp.body.id, everyone]);
    await Promise.all([admin, widget, site].map((c) => c.close()));
  });
});

describe('refusals and close codes', () => {
  it('4001: missing, expired, wrongly signed and alg:none admin tokens', async () => {
    const d = db.a.dialogs[0]!;
    const tokens = [
      '',
      await adminToken(db.a.userId, { claims: expired() }),
      await adminToken(db.a.userId, { secret: 'another-secret-0123456789abcdef-0123456789' }),
      noneToken({ sub: String(db.a.userId) }),
      'not.a.jwt',
      await siteToken(db.a.userId, db.a.assistantId), // a site token is not an admin token
    ];
    for (const t of tokens) await expectClose(new TestClient(adminUrl(d, t)), 4001);
    await expectClose(new TestClient(`${gw.ws}/ws/dialogs/${d}`), 4001);
  });

  it('4001: expired, wrongly signed, alg:none and admin tokens on the site endpoint', async () => {
    const d = db.a.dialogs[0]!;
    const tokens = [
      await siteToken(db.a.userId, db.a.assistantId, { claims: expired() }),
      await siteToken(db.a.userId, db.a.assistantId, { secret: 'another-secret-0123456789abcdef-0123456789' }),
      noneToken({ type: 'site', user_id: db.a.userId, assistant_id: db.a.assistantId }),
      await adminToken(db.a.userId),
    ];
    for (const t of tokens) await expectClose(new TestClient(siteUrl(d, t)), 4001);
  });

  it('4004: cross-tenant admin JWT and site token, and unknown dialogs', async () => {
    await expectClose(new TestClient(adminUrl(db.b.dialogs[0]!, await adminToken(db.a.userId))), 4004);
    await expectClose(new TestClient(siteUrl(db.b.dialogs[0]!, await siteToken(db.a.userId, db.a.assistantId))), 4004);
    // A site token naming B's assistant but A's user does not match B's dialog either.
    await expectClose(new TestClient(siteUrl(db.b.dialogs[0]!, await siteToken(db.a.userId, db.b.assistantId))), 4004);
    // A widget token of A's assistant naming B's dialog: the same 4004 as a dialog that does not exist.
    await expectClose(await widgetClient(db.b.dialogs[0]!, db.a.assistantId, 'https://example.com'), 4004);
    await expectClose(await widgetClient(999_999_999, db.a.assistantId, 'https://example.com'), 4004);
    // A token for one dialog does not open another of the same assistant.
    await expectClose(new TestClient(widgetUrl(db.a.dialogs[1]!), {}, protocols(await widgetToken(db.a.dialogs[0]!, db.a.assistantId, 'https://example.com'))), 4004);
    await expectClose(new TestClient(adminUrl(999_999_999, await adminToken(db.a.userId))), 4004);
  });

  it('4003: widget tokens for origins outside the allowed domains (spoofed, wildcard apex); logs WEBSOCKET_4003_ERROR', async () => {
    const d = db.a.dialogs[0]!;
    const a = db.a.assistantId;
    // A token's origin was allowed when it was issued; these model domains removed since.
    for (const origin of ['https://evil.com', 'https://example.com.evil.com', 'https://notexample.com', 'https://shop.example.org']) {
      await expectClose(await widgetClient(d, a, origin, { Origin: 'https://example.com' }), 4003);
    }
    const line = gw.logs.find((l) => l.includes('WEBSOCKET_4003_ERROR') && l.includes('evil.com'));
    expect(line).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({ assistant_id: a, origin: 'https://evil.com', code: 4003 });
    // Accepted: exact host with a port, a subdomain and a deeper subdomain of the wildcard.
    for (const origin of ['https://example.com:8443', 'http://a.shop.example.org', 'https://x.y.shop.example.org']) {
      const c = await widgetClient(d, a, origin);
      await c.ready();
      await c.close();
    }
  });

  it('4003 for a site connection whose browser Origin is not allowed; none or allowed is fine', async () => {
    const d = db.a.dialogs[0]!;
    const t = await siteToken(db.a.userId, db.a.assistantId);
    await expectClose(new TestClient(siteUrl(d, t), { Origin: 'https://evil.com' }), 4003);
    const ok = new TestClient(siteUrl(d, t), { Origin: 'https://example.com' });
    await ok.ready();
    await ok.close();
  });

  it('4009: malformed dialog id and since', async () => {
    const t = await adminToken(db.a.userId);
    await expectClose(new TestClient(`${gw.ws}/ws/dialogs/abc?token=${t}`), 4009);
    await expectClose(new TestClient(`${gw.ws}/ws/dialogs/0?token=${t}`), 4009);
    await expectClose(new TestClient(adminUrl(db.a.dialogs[0]!, t, '&since=yesterday')), 4009);
  });

  it('unknown paths are refused before upgrading (HTTP 404)', async () => {
    const c = new TestClient(`${gw.ws}/ws/nope/1`);
    expect(await c.opened).toBe(false);
    expect((await c.closed).code).toBe(1006);
  });

  it('a plain HTTP request on a WebSocket path answers 426 with the one-line hint; other paths stay 404', async () => {
    for (const path of ['/ws/dialogs/123', '/ws/widget/dialogs/5/', '/ws/site/dialogs/300?site_token=x']) {
      const res = await fetch(`${gw.base}${path}`);
      expect({ path, status: res.status, upgrade: res.headers.get('upgrade'), type: res.headers.get('content-type') }).toEqual({ path, status: 426, upgrade: 'websocket', type: 'text/plain; charset=utf-8' });
      expect(await res.text()).toBe(`${UPGRADE_REQUIRED_HINT}\n`);
    }
    expect(UPGRADE_REQUIRED_HINT).not.toContain('\n');
    const head = await fetch(`${gw.base}/ws/dialogs/1`, { method: 'HEAD' });
    expect({ status: head.status, body: await head.text() }).toEqual({ status: 426, body: '' });
    for (const path of ['/ws/nope/1', '/ws/', '/ws/dialogs/1/extra']) expect({ path, status: (await fetch(`${gw.base}${path}`)).status }).toEqual({ path, status: 404 });
  });

  it('1009: a 65 KiB frame closes the connection', async () => {
    const c = new TestClient(adminUrl(db.a.dialogs[0]!, await adminToken(db.a.userId)));
    await c.ready();
    c.ws.send(Buffer.alloc(65 * 1024, 'a'));
    expect((await c.closed).code).toBe(1009);
  });

  it('4100: a client sending frames faster than the limit is closed', async () => {
    const c = new TestClient(adminUrl(db.a.dialogs[0]!, await adminToken(db.a.userId)));
    await c.ready();
    for (let i = 0; i < 50; i += 1) c.ws.send('{"type":"ping"}');
    expect((await c.closed).code).toBe(4100);
  });

  it('4101: a client that stops reading is closed as a slow consumer', async () => {
    const dialog = db.a.dialogs[1]!;
    const c = new TestClient(adminUrl(dialog, await adminToken(db.a.userId)));
    await c.ready();
    await eventually(() => gw.gateway.hub.has(dialog));
    // Stop reading: the kernel buffers fill, then the gateway's send buffer passes its cap.
    const raw = (c.ws as unknown as { _socket: Socket })._socket;
    raw.pause();
    const big = { text: 'x'.repeat(200 * 1024) };
    const slow = () => gw.logs.some((l) => l.includes('slow consumer') && l.includes('"code":4101'));
    for (let i = 0; i < 200 && !slow(); i += 1) {
      const res = await httpPublish(gw.base, { dialog_id: dialog, type: 'message:new', data: big });
      expect(res.status).toBe(202);
    }
    expect(slow()).toBe(true);
    raw.resume();
    expect((await c.closed).code).toBe(4101);
    await eventually(() => gw.logs.some((l) => l.includes('[Admin] disconnected') && l.includes('"code":4101')), 5000, 'disconnect logged');
  });

  it('1011: database unreachable while authorizing', async () => {
    const broken = await startGateway(testConfig({ databaseUrl: 'postgres://nobody@127.0.0.1:1/none', broker: 'memory' }));
    try {
      const c = new TestClient(`${broken.ws}/ws/dialogs/${db.a.dialogs[0]}?token=${await adminToken(db.a.userId)}`);
      expect((await c.closed).code).toBe(1011);
      const health = await fetch(`${broken.base}/health`);
      expect(health.status).toBe(503);
      expect(await health.json()).toMatchObject({ db: 'down', redis: 'not-used' });
    } finally {
      await broken.stop();
    }
  });

  it('closes by code are counted in /metrics, including 4003', async () => {
    const text = await (await fetch(`${gw.base}/metrics`)).text();
    expect(text).toMatch(/replyx_gateway_closes_total\{code="4003"\} [1-9]/);
    expect(text).toMatch(/replyx_gateway_domain_forbidden_total [1-9]/);
    expect(text).toMatch(/replyx_gateway_closes_total\{code="4001"\} [1-9]/);
    expect(text).toMatch(/replyx_gateway_events_delivered_total\{type="admin"\} [1-9]/);
    expect(text).toMatch(/replyx_gateway_handshakes_total\{type="widget",outcome="domain_forbidden"\} [1-9]/);
    expect(text).toMatch(/replyx_gateway_handshakes_total\{type="admin",outcome="accepted"\} [1-9]/);
    expect(text).toContain('replyx_gateway_dependency_up{dependency="postgres"} 1');
    expect(text).toContain('replyx_gateway_dependency_up{dependency="redis"} 1');
    expect(text).toMatch(/replyx_gateway_redis_roundtrip_seconds 0\.\d+/);
    expect(text).toContain('replyx_gateway_connections{type="admin"}');
    expect(text).toContain('replyx_gateway_publish_to_send_seconds_bucket');
  });

  it('debug endpoints answer loopback callers (and a token)', async () => {
    const d = db.a.dialogs[0]!;
    const c = new TestClient(adminUrl(d, await adminToken(db.a.userId)));
    await c.ready();
    await eventually(() => gw.gateway.hub.has(d));
    const id = await publisher.publish({ dialogId: d, type: 'message:new', data: {} });
    const status = (await (await fetch(`${gw.base}/api/debug/websocket/status`)).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ instance: 'gw-test', pid: process.pid, workers: 1, dialogs: 1, connections: { admin: 1, widget: 0, site: 0, total: 1 } });
    expect(typeof status.uptime_s).toBe('number');
    const sync = (await (await fetch(`${gw.base}/api/debug/websocket/sync?dialog_id=${d}`, { headers: { 'x-debug-token': DEBUG_TOKEN } })).json()) as Record<string, unknown>;
    expect(sync).toMatchObject({ dialog_id: d, attached: { admin: 1, widget: 0, site: 0, total: 1 }, last_event_id: id });
    expect((await fetch(`${gw.base}/api/debug/websocket/sync?dialog_id=x`)).status).toBe(400);
    await c.close();
  });
});

describe('limits, heartbeat and internal-only endpoints on a dedicated gateway', () => {
  let tight: TestGateway;
  beforeAll(async () => {
    tight = await startGateway(testConfig({ databaseUrl: db.url, broker: 'memory', maxConnectionsPerIp: 2, handshakesPerIpPerSecond: 5, heartbeatMs: 1000, instanceId: 'gw-tight' }));
  });
  afterAll(async () => {
    await tight?.stop();
  });
  const url = async () => `${tight.ws}/ws/dialogs/${db.a.dialogs[0]}?token=${await adminToken(db.a.userId)}`;

  it('4100: connections per client address (X-Real-IP from a loopback proxy counts as the client)', async () => {
    const u = await url();
    const a = new TestClient(u, { 'X-Real-IP': '203.0.113.7' });
    const b = new TestClient(u, { 'X-Real-IP': '203.0.113.7' });
    await Promise.all([a.ready(), b.ready()]);
    await expectClose(new TestClient(u, { 'X-Real-IP': '203.0.113.7' }), 4100);
    const other = new TestClient(u, { 'X-Real-IP': '203.0.113.8' });
    await other.ready();
    await Promise.all([a.close(), b.close(), other.close()]);
  });

  it('4100: handshakes per address per second', async () => {
    const u = await url();
    const clients = Array.from({ length: 8 }, () => new TestClient(u, { 'X-Real-IP': '198.51.100.1' }));
    // Each ends up either connected or closed; 5 handshakes per second pass (2 of them stay, per-IP).
    const outcome = await Promise.all(clients.map((c) => Promise.race([c.ready().then(() => 0), c.closed.then((x) => x.code)])));
    expect(outcome.filter((code) => code === 4100).length).toBeGreaterThanOrEqual(3);
    expect(outcome.filter((code) => code === 0).length).toBeLessThanOrEqual(2);
    await Promise.all(clients.map((c) => c.close()));
  }, 15_000);

  it('heartbeat: a peer that stops answering protocol pings is terminated and cleaned up', async () => {
    const dialog = db.a.dialogs[1]!;
    const ws = new WebSocket(`${tight.ws}/ws/dialogs/${dialog}?token=${await adminToken(db.a.userId)}`, { autoPong: false, headers: { 'X-Real-IP': '192.0.2.50' } });
    const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
    ws.on('error', () => undefined);
    await eventually(() => tight.gateway.hub.has(dialog), 5000, 'attached');
    expect(await closed).toBe(1006);
    await eventually(() => !tight.gateway.hub.has(dialog), 5000, 'removed from the hub');
    expect(tight.logs.some((l) => l.includes('cleanup: dead connection terminated'))).toBe(true);
  }, 15_000);

  it('a live client answering pings survives several heartbeats', async () => {
    const c = new TestClient(await url(), { 'X-Real-IP': '192.0.2.51' });
    await c.ready();
    await new Promise((r) => setTimeout(r, 2500));
    expect(c.ws.readyState).toBe(1);
    await c.close();
  }, 15_000);

  it('debug endpoints refuse a public client forwarded by a proxy unless it has the debug token', async () => {
    const status = `${tight.base}/api/debug/websocket/status`;
    expect((await fetch(status, { headers: { 'X-Forwarded-For': '8.8.8.8' } })).status).toBe(403);
    expect((await fetch(status, { headers: { 'X-Forwarded-For': '8.8.8.8', 'X-Debug-Token': 'wrong-token-0123456789abcdef' } })).status).toBe(403);
    // Even a forwarded loopback or private client: a loopback peer with forwarding headers is a proxy.
    expect((await fetch(status, { headers: { 'X-Real-IP': '127.0.0.1' } })).status).toBe(403);
    expect((await fetch(status, { headers: { 'X-Forwarded-For': '10.0.0.5' } })).status).toBe(403);
    expect((await fetch(status, { headers: { Forwarded: 'for=10.0.0.5' } })).status).toBe(403);
    const ok = await fetch(status, { headers: { 'X-Forwarded-For': '8.8.8.8', 'X-Debug-Token': DEBUG_TOKEN } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ instance: 'gw-tight', workers: 1 });
  });
});

describe('protocol ping and pong floods', () => {
  it('protocol-level pings count toward the frame rate (4100)', async () => {
    const c = new TestClient(`${gw.ws}/ws/dialogs/${db.a.dialogs[0]}?token=${await adminToken(db.a.userId)}`);
    await c.ready();
    for (let i = 0; i < 50; i += 1) c.ws.ping();
    expect((await c.closed).code).toBe(4100);
  });

  it('unsolicited pongs count toward the frame rate too (4100)', async () => {
    const c = new TestClient(`${gw.ws}/ws/dialogs/${db.a.dialogs[0]}?token=${await adminToken(db.a.userId)}`);
    await c.ready();
    for (let i = 0; i < 50; i += 1) c.ws.pong();
    expect((await c.closed).code).toBe(4100);
    await eventually(() => gw.logs.some((l) => l.includes('client frame flood')), 2000, 'flood logged');
  });
});
