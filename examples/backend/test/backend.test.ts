import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { tokenProtocols } from '@replyx/gateway/auth/credentials';
import { signSiteToken, signWidgetToken } from '@replyx/gateway/auth/tokens';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RedisPublisher } from '@replyx/gateway/broker/publisher';
import { createTestDatabase, sharedRedisUrl } from '../../../test/services.js';
import { startRedis } from '../../../infra/targets/local/processes.js';
import { freePort, waitUntil } from '../../../infra/targets/local/ports.js';
import { configFromEnv } from '../src/config.js';
import { DEFAULT_TOKEN_POLICY, demoSiteTokens, demoVisitorKey, PROBE_DIALOG_ID, signAdminToken } from '../src/demo.js';
import { createLogger } from '../src/log.js';
import { WS_ROUTE_BACKEND, WS_ROUTE_HEADER } from '../src/legacy-route.js';
import pino from 'pino';
import { GATEWAY_DATABASE_ROLE, loadMigrations, migrate } from '../src/migrate.js';
import { messageIdempotencyKey, OutboxRelay } from '../src/outbox.js';
import { seedDemoData } from '../src/seed.js';
import { messageData } from '../src/store.js';
import { startWorker, type BackendWorker } from '../src/worker.js';
import { UPGRADE_REQUIRED_HINT } from '@replyx/gateway/access/endpoints';
import { ACCESS_CHANGES_CHANNEL, parseAccessChange, type AccessChange } from '@replyx/gateway/access/access-changes';

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

/** The header nginx's rendered /ws/ location adds when the stack plan routes /ws/ to the backend. */
const ROUTED = { [WS_ROUTE_HEADER]: WS_ROUTE_BACKEND };

/** Opens a legacy /ws/ socket as nginx's backend route would (with its mark), unless `routed` is false. */
function openSocket(path: string, opts: { headers?: Record<string, string>; token?: string; port?: number; routed?: boolean } = {}): Promise<{ ws: WebSocket; frames: Record<string, unknown>[]; closed: Promise<{ code: number; reason: string }> }> {
  const headers = { ...(opts.routed === false ? {} : ROUTED), ...opts.headers };
  const ws = new WebSocket(`ws://127.0.0.1:${opts.port ?? worker.port}${path}`, opts.token ? tokenProtocols(opts.token) : [], { headers });
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

describe('probe dialog', () => {
  it('the health probe resumes its own dialog and may delete its messages; other dialogs refuse with 409', async () => {
    const admin = bearer(await signAdminToken(SECRETS.JWT_SECRET, 1));
    const resumed = await session({ assistant_id: 3, parent_origin: LOCAL, visitor_key: demoVisitorKey(SECRETS.WIDGET_TOKEN_SECRET, PROBE_DIALOG_ID) });
    expect(resumed.json.dialog_id).toBe(PROBE_DIALOG_ID);
    expect((await post(`/api/dialogs/${PROBE_DIALOG_ID}/messages`, { text: 'replyx health probe x' }, admin)).status).toBe(201);
    const cleared = await request('DELETE', `/api/dialogs/${PROBE_DIALOG_ID}/messages`, undefined, admin);
    expect(cleared).toMatchObject({ status: 200, json: { dialog_id: PROBE_DIALOG_ID } });
    expect(cleared.json.deleted).toBeGreaterThanOrEqual(1);
    expect((await request('GET', `/api/dialogs/${PROBE_DIALOG_ID}/messages`, undefined, admin)).json.messages).toEqual([]);
    expect(await request('DELETE', '/api/dialogs/123/messages', undefined, admin)).toMatchObject({ status: 409, json: { error: { code: 'NOT_A_PROBE_DIALOG' } } });
    expect((await request('DELETE', `/api/dialogs/${PROBE_DIALOG_ID}/messages`, undefined, bearer(await signAdminToken(SECRETS.JWT_SECRET, 2)))).status).toBe(404);
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

  it('every access change notifies the gateway’s channel, which the gateway’s role may LISTEN to (migration 007)', async () => {
    const listener = new pg.Client({ connectionString: databaseUrl });
    await listener.connect();
    const changes: (AccessChange | undefined)[] = [];
    listener.on('notification', (m) => {
      if (m.channel === ACCESS_CHANGES_CHANNEL) changes.push(parseAccessChange(m.payload));
    });
    try {
      // LISTEN runs with the gateway role's rights: it needs none beyond 005's.
      await listener.query(`SET ROLE ${listener.escapeIdentifier(GATEWAY_DATABASE_ROLE)}`);
      await listener.query(`LISTEN ${listener.escapeIdentifier(ACCESS_CHANGES_CHANNEL)}`);
      const issued = (await post('/api/site-tokens', { assistant_id: 4 }, bearer(await admin1()))).json as { token: string; jti: string };
      expect((await request('DELETE', `/api/site-tokens/${issued.jti}`, undefined, bearer(await admin1()))).status).toBe(204);
      await sql.query("UPDATE assistants SET allowed_domains = array_append(allowed_domains, 'added.example.com') WHERE id = 4");
      await sql.query("UPDATE assistants SET allowed_domains = array_remove(allowed_domains, 'added.example.com'), name = name || '' WHERE id = 4");
      // A rename alone, and a new dialog, revoke nothing and send nothing.
      await sql.query("UPDATE assistants SET name = name || '' WHERE id = 4");
      const { rows } = await sql.query<{ id: string }>('INSERT INTO dialogs (assistant_id) VALUES (4) RETURNING id');
      const dialog = Number(rows[0]!.id);
      await sql.query('UPDATE dialogs SET assistant_id = 3 WHERE id = $1', [dialog]);
      await sql.query('DELETE FROM dialogs WHERE id = $1', [dialog]);
      // The last change: once it is in, everything before it is (notifications come in commit order).
      const sentinel = `sentinel-${Date.now()}`;
      await sql.query("INSERT INTO site_token_revocations (jti, expires_at) VALUES ($1, now() + interval '1 minute')", [sentinel]);
      await waitUntil(async () => changes.some((c) => c?.kind === 'site-token' && c.jti === sentinel), 5000);
      expect(changes).toEqual([
        { kind: 'site-token', jti: issued.jti },
        { kind: 'assistant', assistantId: 4 },
        { kind: 'assistant', assistantId: 4 },
        { kind: 'dialog', dialogId: dialog },
        { kind: 'dialog', dialogId: dialog },
        { kind: 'site-token', jti: sentinel },
      ]);
    } finally {
      await listener.end();
    }
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

/** A migrated, seeded database of its own, where no other worker's relay runs. */
async function freshDatabase(name: string): Promise<{ url: string; sql: pg.Client }> {
  const url = await createTestDatabase(name);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await migrate(client, await loadMigrations());
  await seedDemoData(client, { widgetTokenSecret: SECRETS.WIDGET_TOKEN_SECRET });
  return { url, sql: client };
}

describe('stored means published: the outbox', () => {
  it('while Redis is down: 201 with event_id null, counted; once Redis is back the relay publishes it exactly once', { timeout: 60_000 }, async () => {
    const redisPort = await freePort();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-outbox-'));
    await chmod(dir, 0o755);
    // Its own database: the suite's other workers run relays too, and would publish these rows to their Redis.
    const { url: ownDb, sql } = await freshDatabase('outbox');
    const env = { DATABASE_URL: ownDb, REDIS_URL: `redis://127.0.0.1:${redisPort}`, ...SECRETS, LOG_LEVEL: 'silent', OUTBOX_POLL_MS: '50', OUTBOX_RETRY_MAX_MS: '200', OUTBOX_CLAIM_DELAY_MS: '0' };
    const broken = await startWorker(configFromEnv(env), createLogger('silent'), 0, () => true, { processMetrics: false });
    let own: Awaited<ReturnType<typeof startRedis>> | undefined;
    try {
      const at = `http://127.0.0.1:${broken.port}`;
      const [site1] = await demoSiteTokens(SECRETS.SITE_TOKEN_SECRET);
      const headers = { ...bearer(site1!.token), 'idempotency-key': 'outage-1' };
      const res = await post('/api/site/dialogs/100/messages', { text: 'stored while Redis is down' }, headers, at);
      expect(res).toMatchObject({ status: 201, json: { event_id: null, message: { text: 'stored while Redis is down', event_id: null } } });
      const id = (res.json.message as { id: number }).id;
      // The client's retry (it never saw the reply, say) answers the same message.
      const retry = await post('/api/site/dialogs/100/messages', { text: 'stored while Redis is down' }, headers, at);
      expect(retry).toMatchObject({ status: 201, json: { message: { id } } });
      const text = await (await fetch(`${at}/metrics`)).text();
      expect(text).toMatch(/^replyx_backend_publish_failures_total [1-9]/m);
      expect(text).toMatch(/^replyx_backend_http_requests_total\{method="POST",route="\/api\/site\/dialogs\/\{id\}\/messages",status="201"\} 2$/m);
      expect((await sql.query('SELECT 1 FROM message_outbox WHERE message_id = $1', [id])).rowCount).toBe(1);

      own = await startRedis({ dir, port: redisPort });
      const published = await waitUntil(async () => (await sql.query('SELECT event_id FROM messages WHERE id = $1', [id])).rows[0]?.event_id !== null, 15_000, 50);
      expect(published).toBe(true);
      const eventId = String((await sql.query('SELECT event_id FROM messages WHERE id = $1', [id])).rows[0].event_id);
      expect((await sql.query('SELECT 1 FROM message_outbox WHERE message_id = $1', [id])).rowCount).toBe(0);
      const check = new Redis(`redis://127.0.0.1:${redisPort}`);
      const history = await check.xrange('replyx:dialog:100:events', '-', '+');
      check.disconnect();
      const mine = history.filter(([, f]) => f[3]?.includes(`"id":${id},`));
      expect(mine.map(([e]) => e)).toEqual([eventId]);
      // The frame's data is the message (its id is the reply's message.id); the event id is the frame's own id.
      const body = JSON.parse(`{"id":"${eventId}",${mine[0]![1][3]!}}`) as { id: string; data: Record<string, unknown> };
      expect(body.data).toEqual({ id, dialog_id: 100, sender: 'site', text: 'stored while Redis is down', created_at: (res.json.message as { created_at: string }).created_at });
      // A retry now answers the published event id.
      const late = await post('/api/site/dialogs/100/messages', { text: 'stored while Redis is down' }, headers, at);
      expect(late).toMatchObject({ status: 201, json: { event_id: eventId, message: { id, event_id: eventId } } });
    } finally {
      await broken.close();
      await sql.end();
      await own?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('four relays over 200 waiting messages publish each exactly once (SKIP LOCKED + idempotency key)', { timeout: 30_000 }, async () => {
    const { url, sql } = await freshDatabase('relays');
    // The shared Redis keeps dialog 200's stream across runs: count this run's events by their tag.
    const tag = `bulk-${Date.now()}-`;
    const ids = (await sql.query<{ id: string }>(
      `WITH m AS (INSERT INTO messages (dialog_id, sender, text) SELECT 200, 'site', $1 || g FROM generate_series(1, 200) g RETURNING id)
       INSERT INTO message_outbox (message_id) SELECT id FROM m RETURNING message_id AS id`,
      [tag],
    )).rows.map((r) => Number(r.id));
    const pool = new pg.Pool({ connectionString: url, max: 8 });
    const conn = new Redis(sharedRedisUrl());
    const publisher = new RedisPublisher(conn);
    const firsts: number[] = [];
    const relays = Array.from({ length: 4 }, () =>
      new OutboxRelay(
        {
          db: pool,
          log: createLogger('silent'),
          publish: (row) => publisher.publishEvent({ dialogId: row.dialog_id, type: 'message:new', data: messageData(row), idempotencyKey: messageIdempotencyKey(row) }),
          onPublished: (row) => firsts.push(row.id),
          onFailed: () => undefined,
        },
        { pollMs: 10, retryMaxMs: 100, batchSize: 7, idempotencyRetentionS: 86_400 },
      ),
    );
    try {
      for (const r of relays) r.start();
      const drained = await waitUntil(async () => (await sql.query('SELECT count(*)::int AS n FROM message_outbox WHERE message_id = ANY($1::bigint[])', [ids])).rows[0].n === 0, 15_000, 20);
      await Promise.all(relays.map((r) => r.stop()));
      expect(drained).toBe(true);
      const history = await redis.xrange('replyx:dialog:200:events', '-', '+');
      expect(history.filter(([, f]) => f[3]?.includes(`"text":"${tag}`))).toHaveLength(200);
      expect(firsts.sort((a, b) => a - b)).toEqual(ids);
      const unset = await sql.query('SELECT count(*)::int AS n FROM messages WHERE id = ANY($1::bigint[]) AND event_id IS NULL', [ids]);
      expect(unset.rows[0].n).toBe(0);
    } finally {
      await pool.end();
      await sql.end();
      conn.disconnect();
    }
  });

  it('a database outage answers 503 DATABASE_UNAVAILABLE (retry with the same key), never 500', async () => {
    const deadDb = `postgres://replyx@127.0.0.1:${await freePort()}/none`;
    const down = await startWorker(configFromEnv({ DATABASE_URL: deadDb, REDIS_URL: sharedRedisUrl(), ...SECRETS, LOG_LEVEL: 'silent' }), createLogger('silent'), 0, () => true, { processMetrics: false });
    try {
      const [site1] = await demoSiteTokens(SECRETS.SITE_TOKEN_SECRET);
      const res = await post('/api/site/dialogs/100/messages', { text: 'db down' }, { ...bearer(site1!.token), 'idempotency-key': 'db-down-1' }, `http://127.0.0.1:${down.port}`);
      expect(res).toMatchObject({ status: 503, json: { error: { code: 'DATABASE_UNAVAILABLE' } } });
    } finally {
      await down.close();
    }
  });
});

describe('Idempotency-Key', () => {
  it('a retried POST answers the first result (same status and message) and stores once; concurrent retries too', async () => {
    const admin = await signAdminToken(SECRETS.JWT_SECRET);
    // Redis is shared across runs: this run's text is its own.
    const once = `exactly once ${Date.now()}`;
    const headers = { ...bearer(admin), 'idempotency-key': 'b7a1d1e0-retry-1' };
    const first = await post('/api/dialogs/123/messages', { text: once }, headers);
    expect(first.status).toBe(201);
    const again = await post('/api/dialogs/123/messages', { text: once }, headers);
    expect(again).toEqual(first);
    const burst = await Promise.all(Array.from({ length: 8 }, () => post('/api/dialogs/123/messages', { text: 'burst' }, { ...bearer(admin), 'idempotency-key': 'burst-1' })));
    expect(new Set(burst.map((r) => r.status))).toEqual(new Set([201]));
    expect(new Set(burst.map((r) => (r.json.message as { id: number }).id)).size).toBe(1);
    const stored = await sql.query("SELECT count(*)::int AS n FROM messages WHERE text IN ($1, 'burst')", [once]);
    expect(stored.rows[0].n).toBe(2);
    // One event per message in the history, whatever the retries.
    const history = await redis.xrange('replyx:dialog:123:events', '-', '+');
    expect(history.filter(([, f]) => f[3]?.includes(`"text":"${once}"`))).toHaveLength(1);
  });

  it('is scoped to the caller and dialog; another body under the same key is 422; malformed keys are 400', async () => {
    const [site1, site2] = await demoSiteTokens(SECRETS.SITE_TOKEN_SECRET);
    const admin = await signAdminToken(SECRETS.JWT_SECRET);
    const key = { 'idempotency-key': 'shared-key-1' };
    const a = await post('/api/dialogs/100/messages', { text: 'scoped' }, { ...bearer(admin), ...key });
    const b = await post('/api/site/dialogs/100/messages', { text: 'scoped' }, { ...bearer(site1!.token), ...key });
    const c = await post('/api/dialogs/123/messages', { text: 'scoped' }, { ...bearer(admin), ...key });
    const ids = [a, b, c].map((r) => (r.json.message as { id: number }).id);
    expect([a.status, b.status, c.status]).toEqual([201, 201, 201]);
    expect(new Set(ids).size).toBe(3);
    const reused = await post('/api/dialogs/100/messages', { text: 'something else' }, { ...bearer(admin), ...key });
    expect(reused).toMatchObject({ status: 422, json: { error: { code: 'IDEMPOTENCY_KEY_REUSED' } } });
    for (const bad of ['has space', 'x'.repeat(201), '']) {
      const r = await post('/api/site/dialogs/100/messages', { text: 'bad key' }, { ...bearer(site1!.token), 'idempotency-key': bad });
      expect(r).toMatchObject({ status: 400, json: { error: { code: 'BAD_IDEMPOTENCY_KEY' } } });
    }
    // Another site token of the same user is another caller.
    const other = await post('/api/site/dialogs/100/messages', { text: 'scoped' }, { ...bearer(site2!.token), ...key });
    expect(other.status === 201 ? (other.json.message as { id: number }).id : undefined).not.toBe(ids[1]);
  });

  it('text with a NUL byte is a 400 with the reason, not a 500', async () => {
    const admin = await signAdminToken(SECRETS.JWT_SECRET);
    const r = await post('/api/dialogs/123/messages', { text: 'a\u0000b' }, bearer(admin));
    expect(r).toMatchObject({ status: 400, json: { error: { code: 'BAD_REQUEST' } } });
    expect(String((r.json.error as { message: string }).message)).toContain('NUL');
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

  it('resumes since= from the same Redis history and ids as the gateway: replay, then live, no gap or duplicate', async () => {
    const admin = await signAdminToken(SECRETS.JWT_SECRET);
    const ids: string[] = [];
    for (const text of ['r1', 'r2', 'r3']) ids.push(String((await post('/api/dialogs/200/messages', { text }, bearer(admin))).json.event_id));
    // An event another publisher (a gateway's POST /internal/publish, another backend) stored meanwhile.
    const other = await new RedisPublisher(redis).publish({ dialogId: 200, type: 'typing', data: { who: 'operator' } });
    const c = await openSocket(`/ws/dialogs/200?since=${ids[0]}`, { token: admin });
    await waitUntil(async () => c.frames.length === 4, 2000);
    const live = await post('/api/dialogs/200/messages', { text: 'r4' }, bearer(admin));
    await waitUntil(async () => c.frames.length === 5, 2000);
    await new Promise((r) => setTimeout(r, 100));
    expect(c.frames.slice(1).map((f) => f.id)).toEqual([ids[1], ids[2], other, live.json.event_id]);
    expect(c.frames[1]).toMatchObject({ type: 'message:new', dialog_id: 200, data: { text: 'r2' } });
    expect(c.frames[4]).toMatchObject({ data: { id: (live.json.message as { id: number }).id, text: 'r4' } });
    expect(c.frames.some((f) => f.type === 'resync')).toBe(false);
    c.ws.close();
  });

  it('sends resync where continuity cannot be proven, and closes bad since= with 4009 and the reason', async () => {
    const admin = await signAdminToken(SECRETS.JWT_SECRET);
    // Dialog 300 has no history stream: nothing proves the client missed nothing.
    await redis.del('replyx:dialog:300:events');
    const lost = await openSocket('/ws/dialogs/300?since=1700000000000-0', { token: admin });
    await waitUntil(async () => lost.frames.length === 2, 2000);
    expect(lost.frames[1]).toEqual({ type: 'resync' });
    const live = await post('/api/dialogs/300/messages', { text: 'after resync' }, bearer(admin));
    await waitUntil(async () => lost.frames.length === 3, 2000);
    expect(lost.frames[2]).toMatchObject({ id: live.json.event_id });
    lost.ws.close();
    const newest = String(live.json.event_id);
    const cases: [string, RegExp][] = [
      ['abc', /^since must be an event id such as/],
      ['99999999999999999999-0', /^since has a part above 18446744073709551615/],
      [`${Number(newest.split('-')[0]) + 3_600_000}-0`, /^since is ahead of the dialog's newest event$/],
    ];
    for (const [since, reason] of cases) {
      const s = await openSocket(`/ws/dialogs/300?since=${since}`, { token: admin });
      const closed = await s.closed;
      expect({ since, code: closed.code }).toEqual({ since, code: 4009 });
      expect(closed.reason).toMatch(reason);
    }
  });

  it('closes refused connections with the gateway’s codes; no credential-less widget by default', async () => {
    expect(await closeCode(openSocket('/ws/widget/dialogs/123?assistant_id=3&parent_origin=http://localhost:8080'))).toBe(4001);
    expect(await closeCode(openSocket('/ws/dialogs/123?token=nope'))).toBe(4001);
    expect(await closeCode(openSocket(`/ws/dialogs/999?token=${await signAdminToken(SECRETS.JWT_SECRET)}`))).toBe(4004);
    const widget100 = await signWidgetToken(SECRETS.WIDGET_TOKEN_SECRET, { dialogId: 100, assistantId: 3, origin: LOCAL }, DEFAULT_TOKEN_POLICY);
    expect(await closeCode(openSocket('/ws/widget/dialogs/123', { token: widget100.token }))).toBe(4004);
  });

  it('refuses /ws/ that did not come over the stack plan\'s backend route with 4102 (backoff) and the fix, counts it on /metrics and logs it once per interval', async () => {
    const admin = await signAdminToken(SECRETS.JWT_SECRET);
    const metric = async () => Number(/^replyx_backend_ws_not_routed_handshakes_total (\d+)$/m.exec(await (await fetch(`${base}/metrics`)).text())?.[1]);
    const before = await metric();
    expect(before).toBeGreaterThanOrEqual(0);
    // A valid token changes nothing, nor does a mark with another value: the route is wrong, not the client.
    for (const headers of [{}, { [WS_ROUTE_HEADER]: 'gateway' }] as Record<string, string>[]) {
      const s = await openSocket('/ws/dialogs/123', { token: admin, routed: false, headers });
      expect(s.frames, 'no connected frame').toEqual([]);
      expect(await s.closed).toEqual({ code: 4102, reason: '/ws/ is routed to the backend but the stack plan routes it to the gateway: run npm run check' });
    }
    expect(await metric()).toBe(before + 2);
    const marked = await openSocket('/ws/dialogs/123', { token: admin });
    expect(marked.frames[0]).toMatchObject({ type: 'connected', server: 'backend' });
    marked.ws.close();
    expect(await metric(), 'a marked handshake is not counted').toBe(before + 2);

    const lines: string[] = [];
    const logged = await startWorker(configFromEnv({ DATABASE_URL: databaseUrl, REDIS_URL: sharedRedisUrl(), ...SECRETS }), pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) }), 0);
    try {
      for (let i = 0; i < 3; i += 1) expect(await closeCode(openSocket('/ws/widget/dialogs/123', { port: logged.port, routed: false }))).toBe(4102);
      const refusals = lines.map((l) => JSON.parse(l) as { msg: string; refused: number }).filter((l) => l.msg.includes('refused with 4102'));
      expect(refusals.map((l) => l.refused), 'one line for the first refusal; the next two wait for the interval').toEqual([1]);
      expect(refusals[0]!.msg).toContain('[Widget]');
      expect(refusals[0]!.msg).toContain(`without the ${WS_ROUTE_HEADER} header`);
      expect(refusals[0]!.msg).toContain('npm run check, then npm run stack -- apply');
    } finally {
      await logged.close(0);
    }
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
        // A message whose publish keeps failing: its outbox row is 90 s old and not due for an hour.
        await stored.query(
          `WITH m AS (INSERT INTO messages (dialog_id, sender, text, created_at) VALUES (100, 'site', 'stuck', now() - interval '90 seconds') RETURNING id)
           INSERT INTO message_outbox (message_id, created_at, next_attempt_at, attempts) SELECT id, now() - interval '90 seconds', now() + interval '1 hour', 9 FROM m`,
        );
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
    expect(versions.rows.map((r: { version: number }) => r.version)).toEqual((await loadMigrations()).map((m) => m.version));
    const access = await client.query('SELECT dialog_id::int, assistant_id::int, user_id::int FROM replyx_dialog_access ORDER BY dialog_id');
    expect(access.rows).toEqual([
      { dialog_id: 100, assistant_id: 3, user_id: 1 },
      { dialog_id: 123, assistant_id: 3, user_id: 1 },
      { dialog_id: 200, assistant_id: 4, user_id: 1 },
      { dialog_id: 300, assistant_id: 5, user_id: 1 },
      { dialog_id: PROBE_DIALOG_ID, assistant_id: 3, user_id: 1 },
    ]);
    const keyed = await client.query('SELECT id::int, probe FROM dialogs WHERE visitor_key_hash IS NOT NULL ORDER BY id');
    expect(keyed.rows).toEqual([
      { id: 123, probe: false },
      { id: PROBE_DIALOG_ID, probe: true },
    ]);
    await client.end();
  });
});
