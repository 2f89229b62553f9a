import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { tokenProtocols } from '@replyx/gateway/auth/credentials';
import { signSiteToken, signWidgetToken } from '@replyx/gateway/auth/tokens';
import { createTestDatabase, sharedRedisUrl } from '../../../test/services.js';
import { freePort, waitUntil } from '../../../infra/targets/local/ports.js';
import { configFromEnv } from '../src/config.js';
import { DEFAULT_TOKEN_POLICY, demoSiteTokens, demoVisitorKey, signAdminToken } from '../src/demo.js';
import { createLogger } from '../src/log.js';
import { loadMigrations, migrate } from '../src/migrate.js';
import { seedDemoData } from '../src/seed.js';
import { startWorker, type BackendWorker } from '../src/worker.js';
import { UPGRADE_REQUIRED_HINT } from '@replyx/gateway/access/endpoints';

// The backend against the suite's real Postgres and Redis: one in-process worker for the API
// and legacy /ws/ (and one with LEGACY_WIDGET_AUTH), and the real cluster entry point for health
// and migrations.

const SECRETS = {
  JWT_SECRET: 'test-jwt-secret-0123456789abcdef-0123456789',
  SITE_TOKEN_SECRET: 'test-site-secret-0123456789abcdef-012345678',
  WIDGET_TOKEN_SECRET: 'test-widget-secret-0123456789abcdef-0123456',
};
const LOCAL = 'http://localhost:8080';

let databaseUrl: string;
let worker: BackendWorker;
let legacyWorker: BackendWorker;
let base: string;
let redis: Redis;
let sql: pg.Client;

beforeAll(async () => {
  databaseUrl = await createTestDatabase('backend');
  sql = new pg.Client({ connectionString: databaseUrl });
  await sql.connect();
  await migrate(sql, await loadMigrations());
  await seedDemoData(sql, { widgetTokenSecret: SECRETS.WIDGET_TOKEN_SECRET });
  await sql.query("INSERT INTO users (id, email, name) VALUES (2, 'other@example.com', 'Other operator')");
  const env = { DATABASE_URL: databaseUrl, REDIS_URL: sharedRedisUrl(), ...SECRETS, LOG_LEVEL: 'silent' };
  worker = await startWorker(configFromEnv(env), createLogger('silent'), 0);
  legacyWorker = await startWorker(configFromEnv({ ...env, LEGACY_WIDGET_AUTH: '1' }), createLogger('silent'), 0);
  base = `http://127.0.0.1:${worker.port}`;
  redis = new Redis(sharedRedisUrl());
});

afterAll(async () => {
  await worker?.close();
  await legacyWorker?.close();
  await sql?.end();
  redis?.disconnect();
});

async function request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, at = base): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${at}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}
const post = (path: string, body: unknown, headers: Record<string, string> = {}, at = base) => request('POST', path, body, headers, at);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Opens a widget session the way the embed does (parent_origin of the page). */
async function session(body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return post('/api/widget/sessions', body, headers);
}

function openSocket(path: string, opts: { headers?: Record<string, string>; token?: string; port?: number } = {}): Promise<{ ws: WebSocket; frames: Record<string, unknown>[]; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${opts.port ?? worker.port}${path}`, opts.token ? tokenProtocols(opts.token) : [], { headers: opts.headers ?? {} });
  const frames: Record<string, unknown>[] = [];
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return new Promise((resolve, reject) => {
    ws.on('message', (d) => {
      const frame = JSON.parse(d.toString()) as Record<string, unknown>;
      frames.push(frame);
      if (frame.type === 'connected') resolve({ ws, frames, closed });
    });
    ws.on('error', reject);
    void closed.then(() => resolve({ ws, frames, closed }));
  });
}
const closeCode = async (s: Promise<{ closed: Promise<{ code: number }> }>) => (await (await s).closed).code;

describe('HTTP API', () => {
  it('stores a site message (Bearer, and the deprecated ?site_token=), publishes it through Redis and returns the event id', async () => {
    const [site1] = await demoSiteTokens(SECRETS.SITE_TOKEN_SECRET);
    const sub = new Redis(sharedRedisUrl());
    const got = new Promise<string>((resolve) => sub.on('message', (_c, m) => resolve(m)));
    await sub.subscribe('replyx:dialog:100');
    const r = await post('/api/site/dialogs/100/messages', { text: 'Test message' }, bearer(site1!.token));
    expect(r.status).toBe(201);
    expect(r.json.message).toMatchObject({ dialog_id: 100, sender: 'site', text: 'Test message' });
    expect(r.json.event_id).toMatch(/^\d+-\d+$/);
    const wire = await got;
    expect(wire.startsWith(`${String(r.json.event_id)}||`)).toBe(true);
    expect(JSON.parse(wire.slice(wire.indexOf('|', wire.indexOf('|') + 1) + 1))).toMatchObject({ type: 'message:new', dialog_id: 100, data: { text: 'Test message' } });
    sub.disconnect();
    expect((await post(`/api/site/dialogs/100/messages?site_token=${site1!.token}`, { text: 'via query' })).status).toBe(201);
  });

  it('takes the operator JWT and a widget session token, and lists history for either', async () => {
    const admin = await signAdminToken(SECRETS.JWT_SECRET);
    const a = await post('/api/dialogs/123/messages', { text: 'from operator' }, bearer(admin));
    expect(a.status).toBe(201);
    const s = await session({ assistant_id: 3, parent_origin: 'https://shop.example.com', visitor_key: demoVisitorKey(SECRETS.WIDGET_TOKEN_SECRET) });
    expect(s).toMatchObject({ status: 201, json: { dialog_id: 123 } });
    const widget = String(s.json.token);
    const w = await post('/api/widget/dialogs/123/messages', { text: 'from widget' }, bearer(widget));
    expect(w.status).toBe(201);
    const since = Number((a.json.message as { id: number }).id) - 1;
    for (const token of [admin, widget]) {
      const res = await request('GET', `/api/dialogs/123/messages?since=${since}`, undefined, bearer(token));
      const body = res.json as { messages: { text: string; sender: string; event_id: string }[] };
      expect(body.messages.map((m) => [m.sender, m.text])).toEqual([['operator', 'from operator'], ['user', 'from widget']]);
    }
  });

  it('answers bad input with 400 and the reason, and refusals with 401/403/404', async () => {
    const [site1, site2] = await demoSiteTokens(SECRETS.SITE_TOKEN_SECRET);
    const s1 = bearer(site1!.token);
    const bad = await post('/api/site/dialogs/100/messages', { text: '' }, s1);
    expect(bad).toMatchObject({ status: 400, json: { error: { code: 'BAD_REQUEST' } } });
    expect(String((bad.json.error as { message: string }).message)).toContain('text');
    expect((await post('/api/site/dialogs/100/messages', '{nope', s1)).status).toBe(400);
    expect((await post('/api/site/dialogs/abc/messages', { text: 'x' }, s1)).status).toBe(400);
    expect((await post('/api/site/dialogs/100/messages', { text: 'x', extra: 1 }, s1)).status).toBe(400);
    expect((await post('/api/site/dialogs/100/messages?site_token=garbage', { text: 'x' })).json).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    // The seed's site tokens were signed with JWT_SECRET and had no exp: refused now.
    const legacySite = await signSiteToken(SECRETS.JWT_SECRET, { userId: 1, assistantId: 3, ttlS: 60 }, DEFAULT_TOKEN_POLICY);
    expect((await post('/api/site/dialogs/100/messages', { text: 'x' }, bearer(legacySite.token))).status).toBe(401);
    expect((await post('/api/site/dialogs/100/messages', { text: 'x' }, bearer(site2!.token))).status).toBe(404);
    expect((await post('/api/site/dialogs/999/messages', { text: 'x' }, s1)).status).toBe(404);
    expect((await post('/api/dialogs/123/messages', { text: 'x' })).status).toBe(401);
    expect((await post('/api/dialogs/123/messages', { text: 'x' }, s1)).status).toBe(401);
    expect((await post('/api/dialogs/123/messages', { text: 'x' }, bearer(await signAdminToken(SECRETS.JWT_SECRET, 2)))).status).toBe(404);
    // No credential-less widget unless LEGACY_WIDGET_AUTH: an allowed origin is not a credential.
    expect((await post('/api/widget/dialogs/123/messages?assistant_id=3&parent_origin=http://localhost:8080', { text: 'x' })).json).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    expect((await post('/api/widget/dialogs/123/messages?assistant_id=3', { text: 'x' }, { origin: LOCAL })).status).toBe(401);
    expect((await request('GET', '/api/dialogs/123/messages?assistant_id=3&parent_origin=http://localhost:8080')).status).toBe(401);
    // A widget token opens its own dialog only; a missing dialog and another's answer alike.
    const widget100 = await signWidgetToken(SECRETS.WIDGET_TOKEN_SECRET, { dialogId: 100, assistantId: 3, origin: LOCAL }, DEFAULT_TOKEN_POLICY);
    const other = await post('/api/widget/dialogs/200/messages', { text: 'x' }, bearer(widget100.token));
    const missing = await post('/api/widget/dialogs/999/messages', { text: 'x' }, bearer(widget100.token));
    expect(other).toEqual({ status: 404, json: { error: { code: 'DIALOG_NOT_FOUND', message: 'dialog not found' } } });
    expect(missing).toEqual(other);
    const big = await post('/api/site/dialogs/100/messages', { text: 'x'.repeat(70 * 1024) }, s1);
    expect(big).toMatchObject({ status: 413, json: { error: { code: 'PAYLOAD_TOO_LARGE' } } });
    expect((await fetch(`${base}/api/nothing`)).status).toBe(404);
    // A WebSocket path asked without an upgrade gets the gateway's own 426 and hint (after a rollback nginx sends /ws/ here).
    const plain = await fetch(`${base}/ws/widget/dialogs/123?assistant_id=3`);
    expect({ status: plain.status, upgrade: plain.headers.get('upgrade'), body: await plain.text() }).toEqual({ status: 426, upgrade: 'websocket', body: `${UPGRADE_REQUIRED_HINT}\n` });
    expect((await fetch(`${base}/api/site/dialogs/100/messages`, { method: 'DELETE' })).status).toBe(405);
  });

  it('refuses admin tokens outside the contract (no exp, type refresh, foreign audience)', async () => {
    const { SignJWT } = await import('jose');
    const key = new TextEncoder().encode(SECRETS.JWT_SECRET);
    const now = Math.floor(Date.now() / 1000);
    const variants = [
      { type: 'access', iss: 'replyx', aud: 'replyx-admin', iat: now },
      { type: 'refresh', iss: 'replyx', aud: 'replyx-admin', iat: now, exp: now + 60 },
      { type: 'access', iss: 'replyx', aud: 'elsewhere', iat: now, exp: now + 60 },
    ];
    for (const claims of variants) {
      const token = await new SignJWT({ ...claims, sub: '1' }).setProtectedHeader({ alg: 'HS256' }).sign(key);
      expect((await post('/api/dialogs/123/messages', { text: 'x' }, bearer(token))).status).toBe(401);
    }
  });

  it('counts requests by route template, method and status, their latency and the publishes on GET /metrics', async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/^replyx_backend_http_requests_total\{method="POST",route="\/api\/site\/dialogs\/\{id\}\/messages",status="201"\} [1-9]/m);
    expect(text).toMatch(/^replyx_backend_http_requests_total\{method="POST",route="\/api\/site\/dialogs\/\{id\}\/messages",status="400"\} [1-9]/m);
    expect(text).toMatch(/^replyx_backend_http_requests_total\{method="GET",route="unmatched",status="404"\} [1-9]/m);
    expect(text).toMatch(/^replyx_backend_http_requests_total\{method="DELETE",route="\/api\/site\/dialogs\/\{id\}\/messages",status="405"\} 1$/m);
    expect(text).toMatch(/^replyx_backend_http_request_duration_seconds_bucket\{le="\+Inf",method="POST",route="\/api\/dialogs\/\{id\}\/messages"\} [1-9]/m);
    expect(text).toMatch(/^replyx_backend_events_published_total [1-9]/m);
    expect(text).toMatch(/^replyx_backend_publish_failures_total 0$/m);
    expect(text).toMatch(/^replyx_backend_process_resident_memory_bytes [1-9]/m);
    // No dialog id ever becomes a label value.
    expect(text).not.toMatch(/route="[^"]*\d/);
  });

  it('reports health with db and redis state', async () => {
    const res = await fetch(`${base}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', pid: process.pid, workers: 4, db: 'ok', redis: 'ok' });
  });
});

describe('widget sessions', () => {
  it('creates a dialog for a new visitor (key returned once, stored hashed) and resumes it with the key', async () => {
    const created = await session({ assistant_id: 4 }, { origin: 'https://site2.example.org' });
    expect(created.status).toBe(201);
    const { token, dialog_id: dialogId, visitor_key: key, expires_at: expiresAt } = created.json as { token: string; dialog_id: number; visitor_key: string; expires_at: string };
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(890_000);
    expect(Date.parse(expiresAt) - Date.now()).toBeLessThanOrEqual(900_000);
    const stored = await sql.query<{ visitor_key_hash: Buffer }>('SELECT visitor_key_hash FROM dialogs WHERE id = $1', [dialogId]);
    expect(stored.rows[0]!.visitor_key_hash).toHaveLength(32);
    expect(stored.rows[0]!.visitor_key_hash.toString('base64url')).not.toContain(key);
    expect((await post(`/api/widget/dialogs/${dialogId}/messages`, { text: 'hello' }, bearer(token))).status).toBe(201);
    const resumed = await session({ assistant_id: 4, visitor_key: key, parent_origin: 'https://site2.example.org' });
    expect(resumed.status).toBe(201);
    expect(resumed.json.dialog_id).toBe(dialogId);
    expect(resumed.json.visitor_key).toBeUndefined();
    expect(resumed.json.token).not.toBe(token);
  });

  it('checks the origin first (parent_origin wins over Origin) with one answer for unknown assistants', async () => {
    const refused = (r: { status: number; json: Record<string, unknown> }) => [r.status, (r.json.error as { code: string }).code];
    expect(refused(await session({ assistant_id: 3, parent_origin: 'https://evil.example' }, { origin: LOCAL }))).toEqual([403, 'ORIGIN_FORBIDDEN']);
    expect(refused(await session({ assistant_id: 3 }))).toEqual([403, 'ORIGIN_FORBIDDEN']);
    expect(refused(await session({ assistant_id: 3, parent_origin: 'javascript:alert(1)' }))).toEqual([403, 'ORIGIN_FORBIDDEN']);
    expect(refused(await session({ assistant_id: 999_999 }, { origin: LOCAL }))).toEqual([403, 'ORIGIN_FORBIDDEN']);
    expect((await session({ assistant_id: 3, parent_origin: LOCAL }, { origin: 'https://evil.example' })).status).toBe(201);
    expect(refused(await session({ assistant_id: 'x' }, { origin: LOCAL }))).toEqual([400, 'BAD_REQUEST']);
    expect(refused(await session({ assistant_id: 3, extra: true }, { origin: LOCAL }))).toEqual([400, 'BAD_REQUEST']);
  });

  it('does not reveal whose a visitor key is: unknown and another assistant’s key get the same 404', async () => {
    const demoKey = demoVisitorKey(SECRETS.WIDGET_TOKEN_SECRET); // dialog 123, assistant 3
    const foreign = await session({ assistant_id: 4, visitor_key: demoKey }, { origin: 'https://site2.example.org' });
    const unknown = await session({ assistant_id: 4, visitor_key: 'u'.repeat(43) }, { origin: 'https://site2.example.org' });
    expect(foreign.status).toBe(404);
    expect(foreign).toEqual(unknown);
  });
});

describe('site tokens: issue and revoke', () => {
  const admin1 = () => signAdminToken(SECRETS.JWT_SECRET, 1);
  const admin2 = () => signAdminToken(SECRETS.JWT_SECRET, 2);

  it('issues an expiring token narrowed to one dialog, which opens that dialog only', async () => {
    const r = await post('/api/site-tokens', { assistant_id: 3, dialog_id: 100, ttl_s: 600 }, bearer(await admin1()));
    expect(r.status).toBe(201);
    const body = r.json as { token: string; jti: string; expires_at: string; dialog_id: number };
    expect(body.dialog_id).toBe(100);
    expect(Date.parse(body.expires_at) - Date.now()).toBeLessThanOrEqual(600_000);
    expect((await post('/api/site/dialogs/100/messages', { text: 'scoped' }, bearer(body.token))).status).toBe(201);
    expect((await post('/api/site/dialogs/123/messages', { text: 'scoped' }, bearer(body.token))).status).toBe(404);
  });

  it('revokes by jti: the token stops working, the gateway view lists it; only its owner can revoke', async () => {
    const issued = (await post('/api/site-tokens', { assistant_id: 4 }, bearer(await admin1()))).json as { token: string; jti: string };
    expect((await post('/api/site/dialogs/200/messages', { text: 'before' }, bearer(issued.token))).status).toBe(201);
    expect((await request('DELETE', `/api/site-tokens/${issued.jti}`, undefined, bearer(await admin2()))).status).toBe(404);
    expect((await request('DELETE', `/api/site-tokens/${issued.jti}`, undefined, bearer(issued.token))).status).toBe(401);
    expect((await request('DELETE', `/api/site-tokens/${issued.jti}`, undefined, bearer(await admin1()))).status).toBe(204);
    expect((await request('DELETE', `/api/site-tokens/${issued.jti}`, undefined, bearer(await admin1()))).status).toBe(204);
    const after = await post('/api/site/dialogs/200/messages', { text: 'after' }, bearer(issued.token));
    expect(after).toMatchObject({ status: 401, json: { error: { message: 'site token revoked' } } });
    const view = await sql.query('SELECT jti FROM replyx_revoked_site_tokens WHERE jti = $1', [issued.jti]);
    expect(view.rowCount).toBe(1);
    expect((await request('DELETE', '/api/site-tokens/no-such-token-id', undefined, bearer(await admin1()))).status).toBe(404);
    expect((await request('DELETE', '/api/site-tokens/%zz', undefined, bearer(await admin1()))).status).toBe(400);
  });

  it('refuses other users’ assistants and dialogs, lifetimes over the maximum, and non-operators', async () => {
    expect((await post('/api/site-tokens', { assistant_id: 3 }, bearer(await admin2()))).status).toBe(404);
    expect((await post('/api/site-tokens', { assistant_id: 3, dialog_id: 200 }, bearer(await admin1()))).status).toBe(404);
    expect((await post('/api/site-tokens', { assistant_id: 3, ttl_s: 31 * 86_400 }, bearer(await admin1()))).status).toBe(400);
    const [site1] = await demoSiteTokens(SECRETS.SITE_TOKEN_SECRET);
    expect((await post('/api/site-tokens', { assistant_id: 3 }, bearer(site1!.token))).status).toBe(401);
    expect((await post('/api/site-tokens', { assistant_id: 3 })).status).toBe(401);
  });

  it('demo site tokens have fixed, registered jtis and can be revoked like any other', async () => {
    const tokens = await demoSiteTokens(SECRETS.SITE_TOKEN_SECRET);
    expect(tokens.map((t) => t.jti)).toEqual(['demo-site1-token', 'demo-site2-token', 'demo-site3-token']);
    const registered = await sql.query('SELECT jti FROM site_tokens WHERE jti LIKE $1 ORDER BY jti', ['demo-%']);
    expect(registered.rows.map((r: { jti: string }) => r.jti)).toEqual(['demo-site1-token', 'demo-site2-token', 'demo-site3-token']);
  });
});

describe('publish failures', () => {
  it('answers 503 PUBLISH_FAILED, keeps the message and counts the failure', async () => {
    const deadRedis = `redis://127.0.0.1:${await freePort()}`;
    const config = configFromEnv({ DATABASE_URL: databaseUrl, REDIS_URL: deadRedis, ...SECRETS, LOG_LEVEL: 'silent' });
    const broken = await startWorker(config, createLogger('silent'), 0, () => true, { processMetrics: false });
    try {
      const [site1] = await demoSiteTokens(SECRETS.SITE_TOKEN_SECRET);
      const res = await fetch(`http://127.0.0.1:${broken.port}/api/site/dialogs/100/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${site1!.token}` },
        body: JSON.stringify({ text: 'never published' }),
      });
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ error: { code: 'PUBLISH_FAILED' } });
      const text = await (await fetch(`http://127.0.0.1:${broken.port}/metrics`)).text();
      expect(text).toMatch(/^replyx_backend_publish_failures_total 1$/m);
      expect(text).toMatch(/^replyx_backend_http_requests_total\{method="POST",route="\/api\/site\/dialogs\/\{id\}\/messages",status="503"\} 1$/m);
    } finally {
      await broken.close();
    }
  });
});

describe('legacy /ws/ mode', () => {
  it('delivers to this worker’s admin, widget and site sockets on the dialog only; tokens in the subprotocol are answered with replyx.v1', async () => {
    const [site1] = await demoSiteTokens(SECRETS.SITE_TOKEN_SECRET);
    const admin = await openSocket(`/ws/dialogs/100?token=${await signAdminToken(SECRETS.JWT_SECRET)}`);
    const widgetToken = await signWidgetToken(SECRETS.WIDGET_TOKEN_SECRET, { dialogId: 100, assistantId: 3, origin: LOCAL }, DEFAULT_TOKEN_POLICY);
    const widget = await openSocket('/ws/widget/dialogs/100', { token: widgetToken.token });
    const site = await openSocket('/ws/site/dialogs/100', { token: site1!.token });
    const other = await openSocket('/ws/dialogs/123', { token: await signAdminToken(SECRETS.JWT_SECRET) });
    expect(admin.frames[0]).toMatchObject({ type: 'connected', server: 'backend', worker: process.pid });
    expect([widget.ws.protocol, site.ws.protocol, admin.ws.protocol]).toEqual(['replyx.v1', 'replyx.v1', '']);
    const r = await post('/api/site/dialogs/100/messages', { text: 'legacy hello' }, bearer(site1!.token));
    for (const c of [admin, widget, site]) {
      await waitUntil(async () => c.frames.length === 2, 2000);
      expect(c.frames[1]).toMatchObject({ id: r.json.event_id, type: 'message:new', dialog_id: 100, data: { text: 'legacy hello' } });
    }
    admin.ws.send('{"type":"ping"}');
    await waitUntil(async () => admin.frames.length === 3, 2000);
    expect(admin.frames[2]).toEqual({ type: 'pong' });
    expect(other.frames).toHaveLength(1);
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toContain('replyx_backend_ws_connections{type="admin"} 2');
    expect(text).toContain('replyx_backend_ws_connections{type="widget"} 1');
    for (const c of [admin, widget, site, other]) c.ws.close();
  });

  it('closes refused connections with the gateway’s codes; no credential-less widget by default', async () => {
    expect(await closeCode(openSocket('/ws/widget/dialogs/123?assistant_id=3&parent_origin=http://localhost:8080'))).toBe(4001);
    expect(await closeCode(openSocket('/ws/dialogs/123?token=nope'))).toBe(4001);
    expect(await closeCode(openSocket(`/ws/dialogs/999?token=${await signAdminToken(SECRETS.JWT_SECRET)}`))).toBe(4004);
    const widget100 = await signWidgetToken(SECRETS.WIDGET_TOKEN_SECRET, { dialogId: 100, assistantId: 3, origin: LOCAL }, DEFAULT_TOKEN_POLICY);
    expect(await closeCode(openSocket('/ws/widget/dialogs/123', { token: widget100.token }))).toBe(4004);
  });

  it('closes a socket with 4001 "token expired" when its token expires', async () => {
    const { SignJWT } = await import('jose');
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ type: 'access', sub: '1' }).setProtectedHeader({ alg: 'HS256' }).setIssuer('replyx').setAudience('replyx-admin').setIssuedAt(now).setExpirationTime(now + 2).sign(new TextEncoder().encode(SECRETS.JWT_SECRET));
    const c = await openSocket('/ws/dialogs/123', { token });
    expect(c.frames[0]).toMatchObject({ type: 'connected' });
    expect(await c.closed).toEqual({ code: 4001, reason: 'token expired' });
    expect(Date.now()).toBeGreaterThanOrEqual((now + 2) * 1000);
  });

  it('with LEGACY_WIDGET_AUTH: assistant_id + origin works, checked against the claimed assistant first', async () => {
    const port = legacyWorker.port;
    const ok = await openSocket('/ws/widget/dialogs/123?assistant_id=3&parent_origin=http://localhost:8080', { port });
    expect(ok.frames[0]).toMatchObject({ type: 'connected' });
    ok.ws.close();
    // A foreign origin: 4003 whether the dialog is assistant 3's, assistant 4's or missing.
    for (const dialog of [123, 200, 999]) expect(await closeCode(openSocket(`/ws/widget/dialogs/${dialog}?assistant_id=3`, { port, headers: { origin: 'https://evil.example' } }))).toBe(4003);
    // An allowed origin: another assistant's dialog and a missing one are the same 4004.
    for (const dialog of [200, 999]) expect(await closeCode(openSocket(`/ws/widget/dialogs/${dialog}?assistant_id=3`, { port, headers: { origin: LOCAL } }))).toBe(4004);
    expect(await closeCode(openSocket('/ws/widget/dialogs/123?assistant_id=x', { port, headers: { origin: LOCAL } }))).toBe(4009);
    const legacyApi = `http://127.0.0.1:${port}`;
    expect((await post('/api/widget/dialogs/123/messages?assistant_id=3&parent_origin=http://localhost:8080', { text: 'legacy widget' }, {}, legacyApi)).status).toBe(201);
    expect((await post('/api/widget/dialogs/200/messages?assistant_id=3', { text: 'x' }, { origin: 'https://evil.example' }, legacyApi)).status).toBe(403);
    expect((await post('/api/widget/dialogs/200/messages?assistant_id=3', { text: 'x' }, { origin: LOCAL }, legacyApi)).status).toBe(404);
  });
});

describe('cluster entry point', () => {
  let child: ChildProcess | undefined;
  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });

  it('refuses to start with a short secret, in one line naming the variable and the fix', async () => {
    const entry = fileURLToPath(new URL('../src/main.ts', import.meta.url));
    const env = { ...process.env, PORT: String(await freePort()), DATABASE_URL: databaseUrl, REDIS_URL: sharedRedisUrl(), ...SECRETS, JWT_SECRET: 'too-short' };
    const bad = spawn(process.execPath, ['--import', 'tsx', entry], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    bad.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const [code] = (await once(bad, 'exit')) as [number | null];
    expect(code).toBe(1);
    expect(stderr.trim()).toMatch(/^error RPX_BACKEND_CONFIG: JWT_SECRET: must be at least 32 characters — set JWT_SECRET to a random string of 32\+ characters/);
    expect(stderr).not.toContain('too-short');
  });

  it('migrates a fresh database once, seeds idempotently and spreads requests over its workers', { timeout: 120_000 }, async () => {
    const url = await createTestDatabase('cluster');
    const port = await freePort();
    const env = { ...process.env, PORT: String(port), UVICORN_WORKERS: '2', DATABASE_URL: url, REDIS_URL: sharedRedisUrl(), ...SECRETS, LOG_LEVEL: 'warn' };
    const entry = fileURLToPath(new URL('../src/main.ts', import.meta.url));
    const run = () => spawn(process.execPath, ['--import', 'tsx', entry], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const healthy = async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok;
    for (let round = 0; round < 2; round += 1) {
      child = run();
      expect(await waitUntil(healthy, 20_000, 100)).toBe(true);
      // Health answers as soon as one worker listens; the other may still be loading.
      const pids = new Set<number>();
      const bothAnswer = await waitUntil(async () => {
        const h = (await (await fetch(`http://127.0.0.1:${port}/health`, { headers: { connection: 'close' } })).json()) as { pid: number; workers: number };
        expect(h.workers).toBe(2);
        pids.add(h.pid);
        return pids.size === 2;
      }, 30_000, 50);
      expect(bothAnswer).toBe(true);
      if (round === 1) {
        // One scrape, whichever worker answers it, describes the whole cluster.
        for (let i = 0; i < 6; i += 1) await fetch(`http://127.0.0.1:${port}/health`, { headers: { connection: 'close' } });
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        expect(text).toMatch(/^replyx_backend_workers 2$/m);
        expect(text).toMatch(/^replyx_backend_workers_configured 2$/m);
        expect(text).toMatch(/^replyx_backend_outbox_pending_messages 0$/m);
        expect(text).toMatch(/^replyx_backend_outbox_lag_seconds 0$/m);
        const healthCount = Number(/^replyx_backend_http_requests_total\{method="GET",route="\/health",status="200"\} (\d+)$/m.exec(text)?.[1]);
        expect(healthCount).toBeGreaterThanOrEqual(6);
        expect(text.match(/^# TYPE replyx_backend_http_requests_total /gm)).toHaveLength(1);
        const stored = new pg.Client({ connectionString: url });
        await stored.connect();
        await stored.query("INSERT INTO messages (dialog_id, sender, text, created_at) VALUES (100, 'site', 'stuck', now() - interval '90 seconds')");
        await stored.end();
        const after = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        expect(after).toMatch(/^replyx_backend_outbox_pending_messages 1$/m);
        expect(Number(/^replyx_backend_outbox_lag_seconds (\S+)$/m.exec(after)?.[1])).toBeGreaterThanOrEqual(90);
      }
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(0);
    }
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const versions = await client.query('SELECT version FROM schema_migrations ORDER BY version');
    expect(versions.rows.map((r: { version: number }) => r.version)).toEqual([1, 2, 3]);
    const access = await client.query('SELECT dialog_id::int, assistant_id::int, user_id::int FROM replyx_dialog_access ORDER BY dialog_id');
    expect(access.rows).toEqual([
      { dialog_id: 100, assistant_id: 3, user_id: 1 },
      { dialog_id: 123, assistant_id: 3, user_id: 1 },
      { dialog_id: 200, assistant_id: 4, user_id: 1 },
      { dialog_id: 300, assistant_id: 5, user_id: 1 },
    ]);
    const keyed = await client.query('SELECT id::int FROM dialogs WHERE visitor_key_hash IS NOT NULL');
    expect(keyed.rows).toEqual([{ id: 123 }]);
    await client.end();
  });
});
