import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { tokenProtocols } from '../gateway/src/auth/credentials.js';
import { DEFAULT_TOKEN_POLICY, signAdminToken } from '../examples/backend/src/demo.js';
import { dialogChannel, dialogStream } from '../gateway/src/broker/protocol.js';
import { redisCommand } from '../infra/operate/probes.js';
import { redisUrlFor, type RedisRole } from '../infra/render/redis-acl.js';
import { startLocalStack, type LocalStackHandle } from '../infra/targets/local/local-stack.js';
import { waitUntil } from '../infra/targets/local/ports.js';
import { openSocket, widgetSession, type TestSocket } from './e2e/clients.js';
import { createTestDatabase } from './services.js';

// Issue 12's security review, probe by probe, against a live local stack: through nginx like a
// stranger on the internet, and directly where a point is about direct access (Redis, the
// gateway's own port). Every token this file sends is remembered and must not appear in any of
// nginx's logs at the end.

const API_RATE = 20;
const API_BURST = 20;
const WS_RATE = 10;
const WS_BURST = 10;

let stack: LocalStackHandle;
let api: string;
let ws: string;
let adminToken: string;
let origin: string;
const sentTokens: string[] = [];
const redisClients: Redis[] = [];

/** Remembers a token so the log check at the end looks for it. */
const sent = (token: string): string => {
  sentTokens.push(token);
  return token;
};

beforeAll(async () => {
  stack = await startLocalStack({
    topology: {
      backend: { workers: 1 },
      gateway: { drainWindowMs: 500 },
      nginx: { apiRequestsPerSecond: API_RATE, apiBurst: API_BURST, wsHandshakesPerSecond: WS_RATE, wsHandshakeBurst: WS_BURST },
    },
    databaseUrl: await createTestDatabase('security'),
  });
  api = stack.urls.public;
  ws = stack.urls.ws;
  adminToken = sent(stack.tokens.adminToken);
  origin = stack.tokens.widget.allowedOrigin;
}, 180_000);

afterAll(async () => {
  for (const r of redisClients) r.disconnect();
  await stack?.stop();
}, 60_000);

/** A fresh second under nginx's rate limits, so one test's burst does not refuse the next. */
const pause = (ms = 1100) => new Promise((resolve) => setTimeout(resolve, ms));

/** Opens a socket through nginx with `token` in the subprotocol; resolves with how it ended or that it connected. */
async function handshake(path: string, token?: string): Promise<TestSocket> {
  return openSocket(`${ws}${path}`, token ? { token: sent(token) } : {});
}

const connected = (s: TestSocket) => s.frames.some((f) => f.type === 'connected') && s.closeCode() === undefined;

/** Signs arbitrary claims with a key (HS256), for tokens the stack must refuse. */
async function forge(secret: string, claims: Record<string, unknown>, opts: { iat?: number; exp?: number; iss?: string; aud?: string } = {}): Promise<string> {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' });
  if (opts.iss !== undefined) jwt = jwt.setIssuer(opts.iss);
  if (opts.aud !== undefined) jwt = jwt.setAudience(opts.aud);
  if (opts.iat !== undefined) jwt = jwt.setIssuedAt(opts.iat);
  if (opts.exp !== undefined) jwt = jwt.setExpirationTime(opts.exp);
  return sent(await jwt.sign(new TextEncoder().encode(secret)));
}

function redisAs(role: RedisRole): Redis {
  const passwords = { gateway: stack.secrets.redisGatewayPassword, publisher: stack.secrets.redisPublisherPassword, admin: stack.secrets.redisAdminPassword };
  const client = new Redis(redisUrlFor(role, passwords[role], '127.0.0.1', stack.ports.redis), { maxRetriesPerRequest: 0, lazyConnect: true });
  client.on('error', () => undefined);
  redisClients.push(client);
  return client;
}

/** The error text of a Redis command, or "OK" when it succeeded. */
async function redisOutcome(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return 'OK';
  } catch (err) {
    return String((err as Error).message);
  }
}

/** A raw HTTP GET with chosen headers (fetch would refuse some) from a chosen local address. */
function rawGet(url: string, headers: Record<string, string>, localAddress?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false, ...(localAddress ? { localAddress } : {}) }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

describe('widgets prove who they are (issue 12, point 1)', () => {
  it('refuses the credential-less widget socket and API calls, with an allowed origin in the query', async () => {
    const { widget } = stack.tokens;
    const legacy = `/ws/widget/dialogs/${widget.dialogId}?assistant_id=${widget.assistantId}&parent_origin=${encodeURIComponent(origin)}`;
    const s = await handshake(legacy);
    expect(connected(s)).toBe(false);
    expect(s.closeCode()).toBe(4001);
    const history = await fetch(`${api}/api/dialogs/${widget.dialogId}/messages?assistant_id=${widget.assistantId}&parent_origin=${encodeURIComponent(origin)}`);
    expect(history.status).toBe(401);
    const post = await fetch(`${api}/api/widget/dialogs/${widget.dialogId}/messages?assistant_id=${widget.assistantId}`, { method: 'POST', headers: { 'content-type': 'application/json', origin }, body: '{"text":"injected"}' });
    expect(post.status).toBe(401);
  });

  it('lets a widget in with a session token bound to its own dialog only', async () => {
    const { widget } = stack.tokens;
    const session = await widgetSession(api, { assistant_id: widget.assistantId, parent_origin: origin, visitor_key: widget.visitorKey });
    expect(session.status).toBe(201);
    sent(session.token);
    const own = await handshake(`/ws/widget/dialogs/${session.dialogId}`, session.token);
    expect(connected(own)).toBe(true);
    own.ws.close();
    const other = await handshake(`/ws/widget/dialogs/${session.dialogId + 1}`, session.token);
    expect(connected(other)).toBe(false);
    // A foreign origin gets no session at all.
    expect((await widgetSession(api, { assistant_id: widget.assistantId, parent_origin: 'https://attacker.example.net' })).status).toBe(403);
  });

  it('refuses a public-suffix wildcard in allowed domains: *.com does not let evil.com in', async () => {
    const db = new pg.Client({ connectionString: stack.plan.databaseUrl });
    await db.connect();
    try {
      await db.query("INSERT INTO assistants (id, user_id, name, allowed_domains) VALUES (9101, 1, 'suffix test', ARRAY['*.com', '*.github.io'])");
    } finally {
      await db.end();
    }
    await pause();
    for (const page of ['https://evil.com', 'https://someone.github.io']) {
      expect((await widgetSession(api, { assistant_id: 9101, parent_origin: page })).status, page).toBe(403);
    }
  });
});

describe('strict, typed, expiring tokens (point 2)', () => {
  it('refuses admin tokens without exp, of another type, audience or issuer, or issued in the future', async () => {
    await pause();
    const secret = stack.secrets.jwtSecret;
    const now = Math.floor(Date.now() / 1000);
    const good = { iss: DEFAULT_TOKEN_POLICY.issuer, aud: DEFAULT_TOKEN_POLICY.adminAudience, iat: now, exp: now + 600 };
    const bad: Record<string, string> = {
      'no exp': await forge(secret, { type: 'access', sub: '1' }, { ...good, exp: undefined }),
      'type refresh': await forge(secret, { type: 'refresh', sub: '1' }, good),
      'type password_reset': await forge(secret, { type: 'password_reset', sub: '1' }, good),
      'no type': await forge(secret, { sub: '1' }, good),
      'foreign aud': await forge(secret, { type: 'access', sub: '1' }, { ...good, aud: 'someone-else' }),
      'foreign iss': await forge(secret, { type: 'access', sub: '1' }, { ...good, iss: 'someone-else' }),
      'iat ten years ahead': await forge(secret, { type: 'access', sub: '1' }, { ...good, iat: now + 10 * 365 * 86_400, exp: now + 10 * 365 * 86_400 + 600 }),
      'lifetime beyond the maximum': await forge(secret, { type: 'access', sub: '1' }, { ...good, exp: now + DEFAULT_TOKEN_POLICY.adminMaxTtlS * 2 }),
      'site key': await forge(stack.secrets.siteTokenSecret, { type: 'access', sub: '1' }, good),
    };
    const control = await forge(secret, { type: 'access', sub: '1' }, good);
    const ok = await handshake('/ws/dialogs/123', control);
    expect(connected(ok)).toBe(true);
    ok.ws.close();
    for (const [what, token] of Object.entries(bad)) {
      const s = await handshake('/ws/dialogs/123', token);
      expect(connected(s), what).toBe(false);
      expect(s.closeCode(), what).toBe(4001);
    }
    await pause();
    for (const [what, token] of Object.entries(bad)) {
      const res = await fetch(`${api}/api/dialogs/123/messages`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status, what).toBe(401);
    }
  });

  it('closes a socket with 4001 when its token expires', async () => {
    const token = sent(await signAdminToken(stack.secrets.jwtSecret, 1, 2));
    const s = await handshake('/ws/dialogs/123', token);
    expect(connected(s)).toBe(true);
    const t0 = Date.now();
    expect(await s.closed).toBe(4001);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('revokes one site token without rotating a secret: the API at once, open sockets within REAUTH_INTERVAL_MS', async () => {
    await pause();
    const site = stack.tokens.siteTokens.find((t) => t.name === 'SITE2')!;
    sent(site.token);
    const s = await handshake(`/ws/site/dialogs/${site.dialogId}`, site.token);
    expect(connected(s)).toBe(true);
    const revoke = await fetch(`${api}/api/site-tokens/${site.jti}`, { method: 'DELETE', headers: { authorization: `Bearer ${adminToken}` } });
    expect(revoke.status).toBe(204);
    const history = await fetch(`${api}/api/dialogs/${site.dialogId}/messages`, { headers: { authorization: `Bearer ${site.token}` } });
    expect(history.status).toBe(401);
    // Default REAUTH_INTERVAL_MS is 15 s (bounded at 60 s); allow one full period plus slack.
    const code = await Promise.race([s.closed, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 20_000))]);
    expect(code).toBe(4001);
    const again = await handshake(`/ws/site/dialogs/${site.dialogId}`, site.token);
    expect(connected(again)).toBe(false);
  }, 30_000);
});

describe('least privilege (point 5)', () => {
  it('refuses every Redis command without credentials', async () => {
    expect(await redisCommand(stack.ports.redis, 'PING')).toMatch(/^-NOAUTH/);
    expect(await redisCommand(stack.ports.redis, `PUBLISH ${dialogChannel(123)} forged`)).toMatch(/^-NOAUTH/);
    expect(await redisCommand(stack.ports.redis, `XRANGE ${dialogStream(123)} - +`)).toMatch(/^-NOAUTH/);
    expect(await redisCommand(stack.ports.redis, 'AUTH default nopass')).toMatch(/^-(WRONGPASS|ERR)/);
  });

  it('lets the publisher user call the publish function and read histories, and nothing that subscribes, evaluates or replaces code', async () => {
    const publisher = redisAs('publisher');
    await publisher.connect();
    expect(await redisOutcome(() => publisher.xrange(dialogStream(123), '-', '+'))).toBe('OK');
    const denied = {
      subscribe: () => publisher.subscribe(dialogChannel(123)),
      eval: () => publisher.eval("return redis.call('PUBLISH', KEYS[1], 'x')", 1, dialogChannel(123)),
      functionDelete: () => publisher.function('DELETE', 'replyx'),
      functionLoad: () => publisher.function('LOAD', 'REPLACE', "#!lua name=replyx\nredis.register_function('replyx_publish', function() return 1 end)"),
      keys: () => publisher.keys('*'),
      flushall: () => publisher.flushall(),
      config: () => publisher.config('GET', 'requirepass'),
      foreignKey: () => publisher.set('other:key', '1'),
      foreignChannel: () => publisher.publish('other-channel', 'x'),
    };
    for (const [what, run] of Object.entries(denied)) expect(await redisOutcome(run), what).toMatch(/NOPERM|no permissions/i);
    // The stack itself publishes through the same user: a message to dialog 123 reaches an operator.
    const op = await handshake('/ws/dialogs/123', adminToken);
    const post = await fetch(`${api}/api/dialogs/123/messages`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` }, body: '{"text":"through the function"}' });
    expect(post.status).toBe(201);
    expect(await waitUntil(async () => op.events().length > 0, 5000)).toBe(true);
    op.ws.close();
  });

  it('lets the gateway user read histories and subscribe, but not administer Redis', async () => {
    const gateway = redisAs('gateway');
    await gateway.connect();
    expect(await redisOutcome(() => gateway.xrange(dialogStream(123), '-', '+'))).toBe('OK');
    for (const [what, run] of Object.entries({
      flushall: () => gateway.flushall(),
      config: () => gateway.config('GET', '*'),
      keys: () => gateway.keys('*'),
      eval: () => gateway.eval('return 1', 0),
      functionDelete: () => gateway.function('DELETE', 'replyx'),
      aclList: () => gateway.acl('LIST'),
    })) {
      expect(await redisOutcome(run), what).toMatch(/NOPERM|no permissions/i);
    }
    const admin = redisAs('admin');
    await admin.connect();
    expect(await admin.acl('WHOAMI')).toBe('replyx-admin');
  });

  it('connects the gateway to Postgres as a role that can only SELECT the two access views', async () => {
    const url = stack.plan.services.find((s) => s.name === 'gateway')!.env.DATABASE_URL!;
    expect(decodeURIComponent(new URL(url).username)).toBe('replyx_gateway');
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      expect((await db.query('SELECT count(*) FROM replyx_dialog_access')).rowCount).toBe(1);
      expect((await db.query('SELECT count(*) FROM replyx_revoked_site_tokens')).rowCount).toBe(1);
      const denied: Record<string, string> = {};
      for (const sql of [
        'SELECT * FROM messages LIMIT 1',
        'SELECT * FROM users LIMIT 1',
        'SELECT * FROM assistants LIMIT 1',
        'SELECT * FROM dialogs LIMIT 1',
        'SELECT * FROM site_tokens LIMIT 1',
        "UPDATE assistants SET allowed_domains = ARRAY['*'] WHERE id = 3",
        'DELETE FROM site_token_revocations',
        'CREATE TABLE gateway_was_here (x int)',
      ]) {
        denied[sql] = await db.query(sql).then(
          () => 'allowed',
          (err: { code?: string }) => String(err.code),
        );
      }
      // 42501: insufficient_privilege.
      for (const [sql, code] of Object.entries(denied)) expect(code, sql).toBe('42501');
    } finally {
      await db.end();
    }
  });

  it('ignores X-Real-IP and X-Forwarded-For sent by a client, through nginx and directly', async () => {
    await pause();
    const spoofed = '203.0.113.77';
    const viaNginx = new WebSocket(`${ws}/ws/dialogs/123`, tokenProtocols(adminToken), { headers: { 'X-Real-IP': spoofed, 'X-Forwarded-For': spoofed } });
    await new Promise((resolve) => viaNginx.once('message', resolve));
    viaNginx.close();
    // A peer that is not nginx (127.0.0.2 is not in TRUSTED_PROXIES) is judged by its own address.
    const direct = new WebSocket(`ws://127.0.0.1:${stack.ports.gateway}/ws/dialogs/123`, tokenProtocols(adminToken), { headers: { 'X-Real-IP': spoofed, 'X-Forwarded-For': spoofed }, localAddress: '127.0.0.2' });
    await new Promise((resolve) => direct.once('message', resolve));
    direct.close();
    await waitUntil(async () => (await readFile(stack.logFile('gateway'), 'utf8')).includes('"ip":"127.0.0.2"'), 5000);
    const log = await readFile(stack.logFile('gateway'), 'utf8');
    expect(log).toContain('"ip":"127.0.0.2"');
    expect(log).not.toContain(spoofed);
  });

  it('answers debug endpoints only with the debug token, except to a direct loopback caller without forwarding headers', async () => {
    const status = `http://127.0.0.1:${stack.ports.gateway}/api/debug/websocket/status`;
    expect((await rawGet(status, {})).status).toBe(200);
    expect((await rawGet(status, { 'X-Forwarded-For': '127.0.0.1' })).status).toBe(403);
    expect((await rawGet(status, { 'X-Real-IP': '127.0.0.1' })).status).toBe(403);
    expect((await rawGet(status, { 'X-Debug-Token': 'x'.repeat(43), 'X-Forwarded-For': '10.0.0.1' })).status).toBe(403);
    // Another loopback address is not "loopback without proxy" either when it forwards someone.
    expect((await rawGet(status, { 'X-Forwarded-For': '10.0.0.1' }, '127.0.0.2')).status).toBe(403);
    expect((await rawGet(status, { 'X-Debug-Token': stack.secrets.debugToken, 'X-Forwarded-For': '10.0.0.1' })).status).toBe(200);
    expect((await rawGet(`${api}/api/debug/websocket/status`, { 'X-Debug-Token': stack.secrets.debugToken })).status).toBe(404);
  });

  it('counts unsolicited pongs toward the frame limit (4100)', async () => {
    await pause();
    const s = await handshake('/ws/dialogs/123', adminToken);
    expect(connected(s)).toBe(true);
    for (let i = 0; i < 200 && s.closeCode() === undefined; i++) s.ws.pong();
    const code = await Promise.race([s.closed, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 5000))]);
    expect(code).toBe(4100);
  });
});

describe('nginx (points 4 and 5)', () => {
  it('rate-limits the API and WebSocket handshakes per client with 429', async () => {
    await pause();
    const statuses = await Promise.all(Array.from({ length: API_BURST * 3 }, () => fetch(`${api}/api/dialogs/123/messages`, { headers: { authorization: `Bearer ${adminToken}` } }).then((r) => r.status)));
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(API_BURST);
    await pause();
    const sockets = await Promise.all(
      Array.from(
        { length: WS_BURST * 3 },
        () =>
          new Promise<number>((resolve) => {
            const w = new WebSocket(`${ws}/ws/dialogs/123`, tokenProtocols(adminToken));
            w.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
            w.once('open', () => {
              resolve(101);
              w.close();
            });
            w.once('error', () => resolve(0));
          }),
      ),
    );
    expect(sockets.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(sockets.filter((s) => s === 101).length).toBeGreaterThanOrEqual(WS_BURST);
  });

  it('writes no token this file sent, nor any query string, to the access or the error log', async () => {
    await pause();
    // Query-string tokens (deprecated but accepted) that fail in every way nginx can log.
    const site = stack.tokens.siteTokens.find((t) => t.name === 'SITE1')!;
    sent(site.token);
    await fetch(`${api}/api/site/dialogs/${site.dialogId}/messages?site_token=${site.token}`, { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024) }).catch(() => undefined);
    await handshake(`/ws/dialogs/123?token=${adminToken}`);
    await fetch(`${api}/api/dialogs/123/messages?token=${adminToken}&site_token=${site.token}`);
    const [access, errors] = await Promise.all(stack.logFiles('nginx').slice(0, 2).map((f) => readFile(f, 'utf8')));
    expect(access!.length).toBeGreaterThan(0);
    for (const [name, text] of [['access', access!], ['error', errors!]] as const) {
      for (const token of new Set(sentTokens)) expect(text.includes(token), `${name} log carries a token`).toBe(false);
      expect(text, name).not.toMatch(/token=|\?/);
    }
  }, 60_000);
});
