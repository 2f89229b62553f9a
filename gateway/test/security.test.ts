import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TrustedProxies } from '../src/limits/client-ip.js';
import {
  TestClient,
  adminToken,
  createAccessDatabase,
  eventually,
  protocols,
  siteToken,
  startGateway,
  testConfig,
  widgetToken,
  type AccessDatabase,
  type TestGateway,
} from './harness.js';

// Every connection proves who it is, against a real gateway and Postgres: tokens in the
// subprotocol (answered with replyx.v1 only), deprecated query tokens still accepted and counted,
// the credential-less widget only behind LEGACY_WIDGET_AUTH (and then without revealing owners),
// revoked site tokens, live re-authorization (expiry, revocation, moved dialogs, removed
// domains) within REAUTH_INTERVAL_MS, trusted proxies and public-suffix wildcards.

let db: AccessDatabase;
let sql: pg.Client;
let gw: TestGateway;
const REAUTH_MS = 1000;

/** A dialog created for one test, so moving or deleting it disturbs no other test. */
async function newDialog(assistantId: number): Promise<number> {
  const { rows } = await sql.query<{ id: string }>('INSERT INTO dialogs (assistant_id) VALUES ($1) RETURNING id', [assistantId]);
  return Number(rows[0]!.id);
}

beforeAll(async () => {
  db = await createAccessDatabase();
  sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  // Dialog ids are random per database; start the serial above them.
  await sql.query(`SELECT setval(pg_get_serial_sequence('dialogs', 'id'), (SELECT max(id) FROM dialogs) + 1000)`);
  await sql.query('INSERT INTO users (id, email) VALUES (3, $1)', ['u3@example.com']);
  await sql.query('INSERT INTO assistants (id, user_id, name, allowed_domains) VALUES (30, 3, $1, $2)', ['suffixes', ['*.com', '*.github.io', 'widgets.example.net']]);
  gw = await startGateway(testConfig({ databaseUrl: db.url, reauthIntervalMs: REAUTH_MS, instanceId: 'gw-sec' }));
});

afterAll(async () => {
  await gw?.stop();
  await sql?.end();
});

const adminUrl = (dialog: number) => `${gw.ws}/ws/dialogs/${dialog}`;
const siteUrl = (dialog: number) => `${gw.ws}/ws/site/dialogs/${dialog}`;
const widgetUrl = (dialog: number) => `${gw.ws}/ws/widget/dialogs/${dialog}`;

async function refusedWith(client: TestClient): Promise<number> {
  const { code } = await client.closed;
  expect(client.frames.some((f) => f.json.type === 'connected')).toBe(false);
  return code;
}

describe('tokens outside URLs', () => {
  it('takes the token from Sec-WebSocket-Protocol and answers replyx.v1 only, never the token', async () => {
    const token = await adminToken(db.a.userId);
    const ws = new WebSocket(adminUrl(db.a.dialogs[0]!), protocols(token));
    const answered = new Promise<string | undefined>((resolve) => ws.once('upgrade', (res) => resolve(res.headers['sec-websocket-protocol'] as string | undefined)));
    const first = new Promise<string>((resolve) => ws.once('message', (d: Buffer) => resolve(d.toString())));
    expect(await answered).toBe('replyx.v1');
    expect(JSON.parse(await first)).toMatchObject({ type: 'connected' });
    expect(ws.protocol).toBe('replyx.v1');
    ws.close();
    expect(gw.logs.some((l) => l.includes(token) || l.includes(token.split('.')[2]!))).toBe(false);
  });

  it('takes site and widget tokens the same way, and Authorization: Bearer from servers', async () => {
    const site = new TestClient(siteUrl(db.a.dialogs[0]!), {}, protocols(await siteToken(db.a.userId, db.a.assistantId)));
    const widget = new TestClient(widgetUrl(db.a.dialogs[0]!), {}, protocols(await widgetToken(db.a.dialogs[0]!, db.a.assistantId, 'https://example.com')));
    const bearer = new TestClient(siteUrl(db.a.dialogs[1]!), { Authorization: `Bearer ${await siteToken(db.a.userId, db.a.assistantId)}` });
    await Promise.all([site.ready(), widget.ready(), bearer.ready()]);
    await Promise.all([site.close(), widget.close(), bearer.close()]);
  });

  it('still accepts the deprecated ?token= and ?site_token=, counted in a metric and never logged', async () => {
    const token = await adminToken(db.a.userId);
    const site = await siteToken(db.a.userId, db.a.assistantId);
    const a = new TestClient(`${adminUrl(db.a.dialogs[0]!)}?token=${token}`);
    const s = new TestClient(`${siteUrl(db.a.dialogs[0]!)}?site_token=${site}`);
    await Promise.all([a.ready(), s.ready()]);
    await Promise.all([a.close(), s.close()]);
    const metrics = await (await fetch(`${gw.base}/metrics`)).text();
    expect(metrics).toMatch(/replyx_gateway_deprecated_credentials_total\{type="admin",via="query"\} [1-9]/);
    expect(metrics).toMatch(/replyx_gateway_deprecated_credentials_total\{type="site",via="query"\} [1-9]/);
    expect(gw.logs.some((l) => l.includes(token) || l.includes(site))).toBe(false);
  });

  it('refuses a widget without a session token (4001) although its origin is allowed: no legacy handshake by default', async () => {
    const d = db.a.dialogs[0]!;
    expect(await refusedWith(new TestClient(`${widgetUrl(d)}?assistant_id=${db.a.assistantId}`, { Origin: 'https://example.com' }))).toBe(4001);
    expect(await refusedWith(new TestClient(`${widgetUrl(d)}?assistant_id=${db.a.assistantId}&parent_origin=${encodeURIComponent('https://example.com')}`))).toBe(4001);
    // A query token is not a way in for widgets either.
    expect(await refusedWith(new TestClient(`${widgetUrl(d)}?token=${await widgetToken(d, db.a.assistantId, 'https://example.com')}`))).toBe(4001);
  });
});

describe('site tokens', () => {
  it('a token narrowed to one dialog opens that dialog only', async () => {
    const token = await siteToken(db.a.userId, db.a.assistantId, { dialogId: db.a.dialogs[0]! });
    const mine = new TestClient(siteUrl(db.a.dialogs[0]!), {}, protocols(token));
    await mine.ready();
    expect(await refusedWith(new TestClient(siteUrl(db.a.dialogs[1]!), {}, protocols(token)))).toBe(4004);
    await mine.close();
  });

  it('a revoked token is refused at the handshake and its open connections are closed with 4001 "access revoked"', async () => {
    const jti = `revoke-me-${Date.now()}`;
    const token = await siteToken(db.a.userId, db.a.assistantId, { jti });
    const open = new TestClient(siteUrl(db.a.dialogs[0]!), {}, protocols(token));
    await open.ready();
    await sql.query("INSERT INTO site_token_revocations (jti, expires_at) VALUES ($1, now() + interval '1 hour')", [jti]);
    const revokedAt = Date.now();
    expect(await open.closed).toEqual({ code: 4001, reason: 'access revoked' });
    expect(Date.now() - revokedAt).toBeLessThan(REAUTH_MS * 2 + 500);
    expect(await refusedWith(new TestClient(siteUrl(db.a.dialogs[0]!), {}, protocols(token)))).toBe(4001);
    expect(gw.logs.some((l) => l.includes('[Site] access revoked (site token revoked)'))).toBe(true);
    // Another token of the same site is unaffected.
    const other = new TestClient(siteUrl(db.a.dialogs[0]!), {}, protocols(await siteToken(db.a.userId, db.a.assistantId)));
    await other.ready();
    await other.close();
  });
});

describe('live re-authorization', () => {
  it('closes with 4001 "token expired" when exp passes (checked every tick)', async () => {
    const iat = Math.floor(Date.now() / 1000);
    const c = new TestClient(adminUrl(db.a.dialogs[1]!), {}, protocols(await adminToken(db.a.userId, { claims: { iat, exp: iat + 2 } })));
    await c.ready();
    expect(await c.closed).toEqual({ code: 4001, reason: 'token expired' });
    expect(Date.now()).toBeGreaterThanOrEqual((iat + 2) * 1000);
    expect(Date.now()).toBeLessThan((iat + 2) * 1000 + 1000);
  });

  it('closes the old owner and the widget when a dialog moves to another assistant, within the interval', async () => {
    const dialog = await newDialog(db.a.assistantId);
    const admin = new TestClient(adminUrl(dialog), {}, protocols(await adminToken(db.a.userId)));
    const widget = new TestClient(widgetUrl(dialog), {}, protocols(await widgetToken(dialog, db.a.assistantId, 'https://example.com')));
    await Promise.all([admin.ready(), widget.ready()]);
    await sql.query('UPDATE dialogs SET assistant_id = $2 WHERE id = $1', [dialog, db.b.assistantId]);
    const movedAt = Date.now();
    expect(await admin.closed).toEqual({ code: 4001, reason: 'access revoked' });
    expect(await widget.closed).toEqual({ code: 4001, reason: 'access revoked' });
    expect(Date.now() - movedAt).toBeLessThan(REAUTH_MS * 2 + 500);
    // The new owner connects, the old one is refused like a stranger.
    const newOwner = new TestClient(adminUrl(dialog), {}, protocols(await adminToken(db.b.userId)));
    await newOwner.ready();
    expect(await refusedWith(new TestClient(adminUrl(dialog), {}, protocols(await adminToken(db.a.userId))))).toBe(4004);
    await newOwner.close();
  });

  it('closes a widget whose origin left the allowed domains, and keeps one whose origin stays', async () => {
    const { rows } = await sql.query<{ id: string }>("INSERT INTO assistants (user_id, name, allowed_domains) VALUES ($1, 'shop', $2) RETURNING id", [db.a.userId, ['shop.example.com', 'blog.example.com']]);
    const assistant = Number(rows[0]!.id);
    const dialog = await newDialog(assistant);
    const shop = new TestClient(widgetUrl(dialog), {}, protocols(await widgetToken(dialog, assistant, 'https://shop.example.com')));
    const blog = new TestClient(widgetUrl(dialog), {}, protocols(await widgetToken(dialog, assistant, 'https://blog.example.com')));
    await Promise.all([shop.ready(), blog.ready()]);
    await sql.query('UPDATE assistants SET allowed_domains = $2 WHERE id = $1', [assistant, ['blog.example.com']]);
    expect(await shop.closed).toEqual({ code: 4001, reason: 'access revoked' });
    await new Promise((r) => setTimeout(r, REAUTH_MS + 200));
    expect(blog.ws.readyState).toBe(WebSocket.OPEN);
    await blog.close();
    expect(gw.logs.some((l) => l.includes('[Widget] access revoked (origin no longer in allowed domains)'))).toBe(true);
  });

  it('closes connections to a deleted dialog', async () => {
    const dialog = await newDialog(db.a.assistantId);
    const c = new TestClient(siteUrl(dialog), {}, protocols(await siteToken(db.a.userId, db.a.assistantId)));
    await c.ready();
    await sql.query('DELETE FROM dialogs WHERE id = $1', [dialog]);
    expect(await c.closed).toEqual({ code: 4001, reason: 'access revoked' });
  });
});

describe('allowed domains', () => {
  it('ignores public-suffix wildcards (*.com, *.github.io) with a warning; other entries still work', async () => {
    const dialog = await newDialog(30);
    for (const origin of ['https://evil.com', 'https://attacker.github.io']) {
      expect(await refusedWith(new TestClient(widgetUrl(dialog), {}, protocols(await widgetToken(dialog, 30, origin))))).toBe(4003);
    }
    const ok = new TestClient(widgetUrl(dialog), {}, protocols(await widgetToken(dialog, 30, 'https://widgets.example.net')));
    await ok.ready();
    await ok.close();
    const warning = gw.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.entry === '*.com');
    expect(warning).toMatchObject({ level: 40, assistant_id: 30, problem: 'public-suffix-wildcard' });
    expect(gw.logs.filter((l) => l.includes('"entry":"*.com"'))).toHaveLength(1);
  });
});

describe('legacy widget handshake (LEGACY_WIDGET_AUTH=1)', () => {
  let legacy: TestGateway;
  beforeAll(async () => {
    legacy = await startGateway(testConfig({ databaseUrl: db.url, legacyWidgetAuth: true, instanceId: 'gw-legacy' }));
  });
  afterAll(async () => {
    await legacy?.stop();
  });
  const url = (dialog: number | string, assistant: number | string, extra = '') => `${legacy.ws}/ws/widget/dialogs/${dialog}?assistant_id=${assistant}${extra}`;

  it('accepts assistant_id with an allowed origin (parent_origin wins over Origin) and counts it as deprecated', async () => {
    const a = new TestClient(url(db.a.dialogs[0]!, db.a.assistantId), { Origin: 'https://example.com' });
    const iframe = new TestClient(url(db.a.dialogs[0]!, db.a.assistantId, `&parent_origin=${encodeURIComponent('https://deep.shop.example.org/page')}`), { Origin: 'https://widget.replyx.example' });
    await Promise.all([a.ready(), iframe.ready()]);
    await Promise.all([a.close(), iframe.close()]);
    expect(await (await fetch(`${legacy.base}/metrics`)).text()).toMatch(/replyx_gateway_deprecated_credentials_total\{type="widget",via="legacy"\} 2/);
    // Session tokens work there too.
    const t = new TestClient(`${legacy.ws}/ws/widget/dialogs/${db.a.dialogs[0]}`, {}, protocols(await widgetToken(db.a.dialogs[0]!, db.a.assistantId, 'https://example.com')));
    await t.ready();
    await t.close();
  });

  it('answers a foreign origin with 4003 whatever the dialog, so 4003 vs 4004 reveals no owner', async () => {
    const a = db.a.assistantId;
    const evil = { Origin: 'https://evil.example' };
    // A's own dialog, B's dialog, a dialog that does not exist: all 4003 for a foreign origin.
    for (const dialog of [db.a.dialogs[0]!, db.b.dialogs[0]!, 999_999_999]) expect(await refusedWith(new TestClient(url(dialog, a), evil))).toBe(4003);
    // With A's allowed origin: B's dialog and a missing one are the same 4004.
    for (const dialog of [db.b.dialogs[0]!, 999_999_999]) expect(await refusedWith(new TestClient(url(dialog, a), { Origin: 'https://example.com' }))).toBe(4004);
    // An assistant that does not exist has no allowed origin.
    expect(await refusedWith(new TestClient(url(db.a.dialogs[0]!, 987_654), { Origin: 'https://example.com' }))).toBe(4003);
    expect(await refusedWith(new TestClient(url(db.a.dialogs[0]!, a)))).toBe(4003);
    expect(await refusedWith(new TestClient(url(db.a.dialogs[0]!, 'x'), { Origin: 'https://example.com' }))).toBe(4009);
    expect(legacy.logs.some((l) => l.includes('WEBSOCKET_4003_ERROR') && l.includes('evil.example'))).toBe(true);
  });
});

describe('trusted proxies', () => {
  it('with TRUSTED_PROXIES=none, X-Real-IP from loopback is ignored: the per-IP limit counts the peer', async () => {
    const strict = await startGateway(testConfig({ databaseUrl: db.url, trustedProxies: new TrustedProxies([]), maxConnectionsPerIp: 1, instanceId: 'gw-noproxy' }));
    try {
      const t = await adminToken(db.a.userId);
      const first = new TestClient(`${strict.ws}/ws/dialogs/${db.a.dialogs[0]}`, { 'X-Real-IP': '203.0.113.1' }, protocols(t));
      await first.ready();
      expect(await refusedWith(new TestClient(`${strict.ws}/ws/dialogs/${db.a.dialogs[0]}`, { 'X-Real-IP': '203.0.113.2' }, protocols(t)))).toBe(4100);
      await first.close();
    } finally {
      await strict.stop();
    }
  });

  it('debug endpoints: direct loopback without forwarding headers, or the token', async () => {
    const status = `${gw.base}/api/debug/websocket/status`;
    expect((await fetch(status)).status).toBe(200);
    expect((await fetch(status, { headers: { 'X-Real-IP': '127.0.0.1' } })).status).toBe(403);
    await eventually(async () => (await fetch(status, { headers: { 'X-Forwarded-For': '10.1.1.1' } })).status === 403, 1000, 'proxied caller refused');
  });
});
