import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { sharedPostgresUrl } from '../../test/services.js';
import { ACCESS_CHANGES_CHANNEL } from '../src/access/access-changes.js';
import { GATEWAY_ERROR_CODES } from '../src/error-codes.js';
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

// Access changes reach the gateway at once: a real gateway LISTENs on a real Postgres whose
// tables carry the triggers of examples/backend/migrations/007_access_changes.sql, and changes
// are written with plain SQL, as a person in psql would. ACCESS_CACHE_TTL_MS and
// REAUTH_INTERVAL_MS are both 60 s here, so only the notification can explain a handshake refused
// with a cached row, or an open socket closed, within a test. Then the listener's connection is
// killed: it reconnects, re-authorizes what changed while it was away, and sees later changes.

const SLOW_MS = 60_000;
let db: AccessDatabase;
let sql: pg.Client;
let gw: TestGateway;

async function newAssistant(domains: readonly string[]): Promise<number> {
  const { rows } = await sql.query<{ id: string }>("INSERT INTO assistants (user_id, name, allowed_domains) VALUES ($1, 'changes', $2) RETURNING id", [db.a.userId, domains]);
  return Number(rows[0]!.id);
}

async function newDialog(assistantId: number): Promise<number> {
  const { rows } = await sql.query<{ id: string }>('INSERT INTO dialogs (assistant_id) VALUES ($1) RETURNING id', [assistantId]);
  return Number(rows[0]!.id);
}

/** A metric's value from GET /metrics (undefined when absent). */
async function metric(name: string): Promise<number | undefined> {
  const text = await (await fetch(`${gw.base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

async function refusedWith(client: TestClient): Promise<number> {
  const { code } = await client.closed;
  expect(client.frames.some((f) => f.json.type === 'connected')).toBe(false);
  return code;
}

/** Connects, waits for `connected`, and closes: the dialog's row is in the gateway's cache now. */
async function connectOnce(url: string, token: string): Promise<void> {
  const c = new TestClient(url, {}, protocols(token));
  await c.ready();
  await c.close();
}

const REVOKED = { code: 4001, reason: 'access revoked' };
const adminUrl = (dialog: number) => `${gw.ws}/ws/dialogs/${dialog}`;
const siteUrl = (dialog: number) => `${gw.ws}/ws/site/dialogs/${dialog}`;
const widgetUrl = (dialog: number) => `${gw.ws}/ws/widget/dialogs/${dialog}`;
const listenerLost = () => gw.logs.filter((l) => l.includes('"code":"RPX_GATEWAY_ACCESS_LISTENER"'));
const listenerBack = () => gw.logs.filter((l) => l.includes('access change listener is back'));

beforeAll(async () => {
  db = await createAccessDatabase({ accessChanges: true });
  sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  await sql.query(`SELECT setval(pg_get_serial_sequence('dialogs', 'id'), (SELECT max(id) FROM dialogs) + 1000)`);
  await sql.query(`SELECT setval(pg_get_serial_sequence('assistants', 'id'), 1000)`);
  gw = await startGateway(testConfig({ databaseUrl: db.url, reauthIntervalMs: SLOW_MS, accessCacheTtlMs: SLOW_MS, instanceId: 'gw-changes' }));
  await eventually(async () => (await metric('replyx_gateway_access_listener_connected')) === 1, 10_000, 'the access change listener');
});

afterAll(async () => {
  await gw?.stop();
  await sql?.end();
});

describe('access change notifications', () => {
  it('the migration notifies the channel the gateway listens on', async () => {
    const { rows } = await sql.query<{ src: string }>("SELECT prosrc AS src FROM pg_proc WHERE proname = 'replyx_notify_access_change'");
    expect(rows[0]?.src).toContain(`pg_notify('${ACCESS_CHANGES_CHANNEL}', payload)`);
  });

  it('allowed domains: the removed origin is closed with 4001 at once and refused at the handshake despite a cached row; the kept one stays', async () => {
    const assistant = await newAssistant(['shop.example.com', 'blog.example.com']);
    const [open, cached] = [await newDialog(assistant), await newDialog(assistant)];
    await connectOnce(widgetUrl(cached), await widgetToken(cached, assistant, 'https://shop.example.com'));
    const shop = new TestClient(widgetUrl(open), {}, protocols(await widgetToken(open, assistant, 'https://shop.example.com')));
    const blog = new TestClient(widgetUrl(open), {}, protocols(await widgetToken(open, assistant, 'https://blog.example.com')));
    await Promise.all([shop.ready(), blog.ready()]);
    await sql.query('UPDATE assistants SET allowed_domains = $2 WHERE id = $1', [assistant, ['blog.example.com']]);
    expect(await shop.closed).toEqual(REVOKED);
    expect(await refusedWith(new TestClient(widgetUrl(cached), {}, protocols(await widgetToken(cached, assistant, 'https://shop.example.com'))))).toBe(4003);
    expect(blog.ws.readyState).toBe(WebSocket.OPEN);
    await connectOnce(widgetUrl(cached), await widgetToken(cached, assistant, 'https://blog.example.com'));
    await blog.close();
  });

  it('a dialog moved to another owner and one deleted: sockets closed with 4001 at once, cached rows dropped', async () => {
    const [moved, movedCached, deleted] = [await newDialog(db.a.assistantId), await newDialog(db.a.assistantId), await newDialog(db.a.assistantId)];
    const ownerToken = await adminToken(db.a.userId);
    await connectOnce(adminUrl(movedCached), ownerToken);
    const admin = new TestClient(adminUrl(moved), {}, protocols(ownerToken));
    const siteTokenA = await siteToken(db.a.userId, db.a.assistantId);
    const site = new TestClient(siteUrl(deleted), {}, protocols(siteTokenA));
    await Promise.all([admin.ready(), site.ready()]);
    // One transaction, the cached-only dialog first: notifications arrive in that order, so once
    // the sockets are closed its row has been dropped too.
    await sql.query('BEGIN');
    await sql.query('UPDATE dialogs SET assistant_id = $2 WHERE id = $1', [movedCached, db.b.assistantId]);
    await sql.query('UPDATE dialogs SET assistant_id = $2 WHERE id = $1', [moved, db.b.assistantId]);
    await sql.query('DELETE FROM dialogs WHERE id = $1', [deleted]);
    await sql.query('COMMIT');
    expect(await admin.closed).toEqual(REVOKED);
    expect(await site.closed).toEqual(REVOKED);
    expect(await refusedWith(new TestClient(adminUrl(movedCached), {}, protocols(ownerToken)))).toBe(4004);
    expect(await refusedWith(new TestClient(adminUrl(moved), {}, protocols(ownerToken)))).toBe(4004);
    expect(await refusedWith(new TestClient(siteUrl(deleted), {}, protocols(siteTokenA)))).toBe(4004);
    await connectOnce(adminUrl(movedCached), await adminToken(db.b.userId));
  });

  it('a revoked site token: its socket closed with 4001 at once, it and another revoked token refused at the handshake, other tokens unaffected', async () => {
    const dialog = await newDialog(db.a.assistantId);
    const [idle, used] = [`idle-${Date.now()}`, `used-${Date.now()}`];
    const idleToken = await siteToken(db.a.userId, db.a.assistantId, { jti: idle });
    const usedToken = await siteToken(db.a.userId, db.a.assistantId, { jti: used });
    await connectOnce(siteUrl(dialog), idleToken);
    const open = new TestClient(siteUrl(dialog), {}, protocols(usedToken));
    const other = new TestClient(siteUrl(dialog), {}, protocols(await siteToken(db.a.userId, db.a.assistantId)));
    await Promise.all([open.ready(), other.ready()]);
    await sql.query("INSERT INTO site_token_revocations (jti, expires_at) VALUES ($1, now() + interval '1 hour'), ($2, now() + interval '1 hour')", [idle, used]);
    expect(await open.closed).toEqual(REVOKED);
    expect(await refusedWith(new TestClient(siteUrl(dialog), {}, protocols(idleToken)))).toBe(4001);
    expect(await refusedWith(new TestClient(siteUrl(dialog), {}, protocols(usedToken)))).toBe(4001);
    expect(other.ws.readyState).toBe(WebSocket.OPEN);
    await other.close();
    expect(gw.logs.some((l) => l.includes('[Site] access revoked (site token revoked)'))).toBe(true);
    expect(await metric('replyx_gateway_access_notifications_total')).toBeGreaterThanOrEqual(5);
  });

  it('a handshake whose authorization spans a change is re-checked once attached', async () => {
    // ACCESS_LOOKUP_WINDOW_MS holds the dialog read of a handshake for up to a second after the
    // previous read, so a revocation can land after its revoked-token check and before it joins.
    const slow = await startGateway(testConfig({ databaseUrl: db.url, reauthIntervalMs: SLOW_MS, accessCacheTtlMs: SLOW_MS, accessLookupWindowMs: 1000, instanceId: 'gw-changes-window' }));
    try {
      await eventually(() => slow.logs.some((l) => l.includes('access change listener is listening')), 10_000, 'the second listener');
      const [first, second] = [await newDialog(db.a.assistantId), await newDialog(db.a.assistantId)];
      const jti = `spanning-${Date.now()}`;
      await connectOnce(`${slow.ws}/ws/site/dialogs/${first}`, await siteToken(db.a.userId, db.a.assistantId));
      const spanning = new TestClient(`${slow.ws}/ws/site/dialogs/${second}`, {}, protocols(await siteToken(db.a.userId, db.a.assistantId, { jti })));
      await new Promise((r) => setTimeout(r, 200));
      expect(spanning.frames).toHaveLength(0);
      await sql.query("INSERT INTO site_token_revocations (jti, expires_at) VALUES ($1, now() + interval '1 hour')", [jti]);
      await spanning.ready();
      expect(await spanning.closed).toEqual(REVOKED);
    } finally {
      await slow.stop();
    }
  });

  it('after its connection is killed the listener reconnects with backoff, logs the outage once, re-authorizes what changed meanwhile, and sees later changes', async () => {
    const database = new URL(db.url).pathname.slice(1);
    const [duringOutage, later] = [await newDialog(db.a.assistantId), await newDialog(db.a.assistantId)];
    const ownerToken = await adminToken(db.a.userId);
    const early = new TestClient(adminUrl(duringOutage), {}, protocols(ownerToken));
    const late = new TestClient(adminUrl(later), {}, protocols(ownerToken));
    await Promise.all([early.ready(), late.ready()]);
    expect(listenerLost()).toHaveLength(0);
    // New connections to the database are refused for a while, so reconnects fail and retry
    // (ALTER DATABASE from another database: Postgres refuses it for the current one).
    const admin = new pg.Client({ connectionString: sharedPostgresUrl() });
    await admin.connect();
    const allowConnections = (allow: boolean) => admin.query(`ALTER DATABASE ${admin.escapeIdentifier(database)} WITH ALLOW_CONNECTIONS ${allow}`);
    await allowConnections(false);
    try {
      const { rows } = await sql.query<{ killed: boolean }>(
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'replyx-ws-gateway-listener'",
      );
      expect(rows).toEqual([{ killed: true }]);
      await eventually(() => listenerLost().length > 0, 5000, 'the listener to notice');
      // Lost while the listener is away: no notification reaches it.
      await sql.query('DELETE FROM dialogs WHERE id = $1', [duringOutage]);
      await new Promise((r) => setTimeout(r, 1500));
      expect(early.ws.readyState).toBe(WebSocket.OPEN);
    } finally {
      await allowConnections(true);
      await admin.end();
    }
    await eventually(() => listenerBack().length > 0, 10_000, 'the listener to reconnect');
    expect(listenerLost()).toHaveLength(1);
    expect(listenerLost()[0]).toContain(GATEWAY_ERROR_CODES.RPX_GATEWAY_ACCESS_LISTENER);
    // The reconnect re-authorized every open socket: the change made while away is honoured.
    expect(await early.closed).toEqual(REVOKED);
    expect(await metric('replyx_gateway_access_listener_connected')).toBe(1);
    expect(late.ws.readyState).toBe(WebSocket.OPEN);
    await sql.query('UPDATE dialogs SET assistant_id = $2 WHERE id = $1', [later, db.b.assistantId]);
    expect(await late.closed).toEqual(REVOKED);
  }, 30_000);
});
