import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { signWidgetToken } from '../../gateway/src/auth/tokens.js';
import { DEFAULT_TOKEN_POLICY, signAdminToken } from '../../examples/backend/src/demo.js';
import { startLocalStack, type LocalStackHandle } from '../../infra/targets/local/local-stack.js';
import { waitUntil } from '../../infra/targets/local/ports.js';
import { createTestDatabase } from '../services.js';
import { openSocket, postMessage, receives, ResumingClient, widgetSession } from './clients.js';

// The seed's test scenarios, end to end through real nginx, the real gateway, the reference
// backend (4 workers), Redis and Postgres, all started by the local target's process manager.
// Widgets open a session through the API (the demo visitor key resumes dialog 123) and present
// its token in the subprotocol; the admin panel of scenario 1 keeps the seed's ?token= URL (still
// accepted, deprecated). One stack for the whole file; the restart scenarios run last because
// they disturb it.

let stack: LocalStackHandle;
let ws: string;
let api: string;
let site1: string;
let origin: string;

beforeAll(async () => {
  stack = await startLocalStack({
    topology: { backend: { workers: 4 }, gateway: { drainWindowMs: 1000 } },
    databaseUrl: await createTestDatabase('e2e_seed'),
  });
  ws = stack.urls.ws;
  api = stack.urls.public;
  site1 = stack.tokens.siteTokens.find((s) => s.name === 'SITE1')!.token;
  origin = `http://localhost:${stack.ports.nginx}`;
}, 180_000);

afterAll(async () => {
  await stack?.stop();
}, 60_000);

const adminUrl = (dialogId: number) => `${ws}/ws/dialogs/${dialogId}`;
const widgetUrl = (dialogId: number) => `${ws}/ws/widget/dialogs/${dialogId}`;
const postSite = (dialogId: number, text: string, token = site1) => postMessage(`${api}/api/site/dialogs/${dialogId}/messages`, text, token);
/** The demo widget on dialog 123: a session from the API with the demo visitor key, as the embed renews it. */
async function widgetToken123(parentOrigin = origin): Promise<string> {
  const s = await widgetSession(api, { assistant_id: 3, parent_origin: parentOrigin, visitor_key: stack.tokens.widget.visitorKey });
  expect({ status: s.status, dialog: s.dialogId }).toEqual({ status: 201, dialog: 123 });
  return s.token;
}

describe('seed scenario 1: admin panel and widget on dialog 123', () => {
  it('delivers every site message to both, 200 times in a row, each within 1 s', async () => {
    // The seed's admin panel URL (token in the query string): deprecated, still accepted.
    const admin = await openSocket(`${adminUrl(123)}?token=${stack.tokens.adminToken}`);
    const widget = await openSocket(widgetUrl(123), { token: await widgetToken123() });
    expect(admin.frames[0]).toMatchObject({ type: 'connected', server: 'ws-gateway' });
    expect(widget.frames[0]).toMatchObject({ type: 'connected', server: 'ws-gateway' });
    let adminOk = 0;
    let widgetOk = 0;
    for (let i = 0; i < 200; i += 1) {
      const r = await postSite(123, `Test message ${i}`);
      expect(r.status).toBe(201);
      const [a, w] = await Promise.all([receives(admin, r.eventId!, 1000), receives(widget, r.eventId!, 1000)]);
      adminOk += Number(a);
      widgetOk += Number(w);
    }
    console.log(`[e2e] basic: admin ${adminOk}/200, widget ${widgetOk}/200`);
    expect({ adminOk, widgetOk }).toEqual({ adminOk: 200, widgetOk: 200 });
    expect(admin.events()[0]).toMatchObject({ type: 'message:new', dialog_id: 123, data: { text: 'Test message 0', sender: 'site' } });
    admin.ws.close();
    widget.ws.close();
  }, 120_000);
});

describe('seed scenario 2: three sites at once', () => {
  it('gives each site exactly its own dialog’s messages', async () => {
    const sites = stack.tokens.siteTokens;
    const clients = await Promise.all(sites.map((s) => openSocket(`${ws}/ws/site/dialogs/${s.dialogId}`, { token: s.token })));
    const expected = new Map<number, string[]>();
    for (let round = 0; round < 5; round += 1) {
      // Interleave the dialogs so a cross-talk bug would have every chance to show.
      await Promise.all(
        sites.map(async (s) => {
          const r = await postSite(s.dialogId, `${s.name} #${round}`, s.token);
          expect(r.status).toBe(201);
          expected.set(s.dialogId, [...(expected.get(s.dialogId) ?? []), r.eventId!]);
        }),
      );
    }
    await waitUntil(async () => clients.every((c, i) => c.events().length >= expected.get(sites[i]!.dialogId)!.length), 5000);
    await new Promise((r) => setTimeout(r, 300));
    clients.forEach((c, i) => {
      const dialogId = sites[i]!.dialogId;
      expect(c.events().every((e) => e.dialog_id === dialogId)).toBe(true);
      expect(new Set(c.events().map((e) => e.id))).toEqual(new Set(expected.get(dialogId)));
      expect(c.events()).toHaveLength(5);
    });
    clients.forEach((c) => c.ws.close());
  }, 60_000);
});

describe('domain validation', () => {
  it('refuses a widget session for a forbidden parent_origin (403) and gives one for an allowed subdomain', async () => {
    const denied = await widgetSession(api, { assistant_id: 3, parent_origin: 'https://evil.example.org', visitor_key: stack.tokens.widget.visitorKey });
    expect(denied).toMatchObject({ status: 403, body: { error: { code: 'ORIGIN_FORBIDDEN' } } });
    const allowed = await openSocket(widgetUrl(123), { token: await widgetToken123('https://shop.example.com') });
    expect(allowed.closeCode()).toBeUndefined();
    allowed.ws.close();
  });

  it('closes a widget whose token names an origin that is not (or no longer) allowed with 4003 and logs WEBSOCKET_4003_ERROR', async () => {
    // As if example.org had been allowed when the token was issued and removed since.
    const stale = await signWidgetToken(stack.secrets.widgetTokenSecret, { dialogId: 123, assistantId: 3, origin: 'https://evil.example.org' }, DEFAULT_TOKEN_POLICY);
    const denied = await openSocket(widgetUrl(123), { token: stale.token });
    expect(await denied.closed).toBe(4003);
    expect(await waitUntil(async () => (await readFile(stack.logFile('ws-gateway'), 'utf8')).includes('WEBSOCKET_4003_ERROR'), 3000)).toBe(true);
  });
});

describe('credentials through nginx', () => {
  it('passes the subprotocol through and answers replyx.v1 only; the token never reaches a log', async () => {
    // A token used nowhere else (scenario 1 puts the demo one in a URL on purpose).
    const token = await signAdminToken(stack.secrets.jwtSecret, 1, 600);
    const socket = await openSocket(adminUrl(123), { token });
    expect(socket.frames[0]).toMatchObject({ type: 'connected' });
    expect(socket.ws.protocol).toBe('replyx.v1');
    socket.ws.close();
    const signature = token.split('.')[2]!;
    for (const svc of ['ws-gateway', 'backend', 'nginx'] as const) {
      const text = await readFile(stack.logFile(svc), 'utf8').catch(() => '');
      expect(text.includes(signature), svc).toBe(false);
    }
  });

  it('refuses the credential-less widget (4001) and widget API calls without a session token (401)', async () => {
    const bare = await openSocket(`${widgetUrl(123)}?assistant_id=3&parent_origin=${encodeURIComponent(origin)}`);
    expect(await bare.closed).toBe(4001);
    expect((await postMessage(`${api}/api/widget/dialogs/123/messages?assistant_id=3&parent_origin=${encodeURIComponent(origin)}`, 'no credential')).status).toBe(401);
    expect((await postMessage(`${api}/api/widget/dialogs/123/messages`, 'with a session', await widgetToken123())).status).toBe(201);
  });

  it('a site token revoked through the API is refused, and its open socket is closed with 4001 "access revoked"', async () => {
    const issued = await fetch(`${api}/api/site-tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.tokens.adminToken}` },
      body: JSON.stringify({ assistant_id: 4, dialog_id: 200, ttl_s: 3600 }),
    });
    const { token, jti } = (await issued.json()) as { token: string; jti: string };
    expect(issued.status).toBe(201);
    const socket = await openSocket(`${ws}/ws/site/dialogs/200`, { token });
    const reason = new Promise<string>((resolve) => socket.ws.once('close', (_code: number, r: Buffer) => resolve(r.toString())));
    const revoked = await fetch(`${api}/api/site-tokens/${jti}`, { method: 'DELETE', headers: { authorization: `Bearer ${stack.tokens.adminToken}` } });
    expect(revoked.status).toBe(204);
    const revokedAt = Date.now();
    expect(await socket.closed).toBe(4001);
    expect(await reason).toBe('access revoked');
    // REAUTH_INTERVAL_MS defaults to 15 s: the socket is closed within it (plus one sweep's work).
    expect(Date.now() - revokedAt).toBeLessThan(17_000);
    expect((await postSite(200, 'after revocation', token)).status).toBe(401);
    const again = new WebSocket(`${ws}/ws/site/dialogs/200`, ['replyx.v1', `replyx.token.${token}`]);
    expect(await new Promise<number>((resolve) => again.once('close', (code: number) => resolve(code)))).toBe(4001);
  }, 30_000);
});

describe('seed scenario 4: restart resilience', () => {
  it('restarting the backend leaves WebSockets open and they get messages sent after it', async () => {
    const admin = await openSocket(adminUrl(123), { token: stack.tokens.adminToken });
    const widget = await openSocket(widgetUrl(123), { token: await widgetToken123() });
    await stack.restart('backend');
    expect([admin.closeCode(), widget.closeCode()]).toEqual([undefined, undefined]);
    const r = await postSite(123, 'after backend restart');
    expect(r.status).toBe(201);
    expect(await receives(admin, r.eventId!, 2000)).toBe(true);
    expect(await receives(widget, r.eventId!, 2000)).toBe(true);
    admin.ws.close();
    widget.ws.close();
  }, 120_000);

  it('restarting ws-gateway while publishing: clients resume with since and get every message exactly once', async () => {
    const clients = [new ResumingClient(adminUrl(123), stack.tokens.adminToken), new ResumingClient(widgetUrl(123), await widgetToken123())];
    await Promise.all(clients.map((c) => c.start()));
    const published: string[] = [];
    let publishing = true;
    const publisher = (async () => {
      for (let i = 0; publishing || i < 30; i += 1) {
        const r = await postSite(123, `during gateway restart ${i}`);
        expect(r.status).toBe(201);
        published.push(r.eventId!);
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    await waitUntil(async () => published.length >= 20, 10_000);
    await stack.restart('ws-gateway');
    await waitUntil(async () => clients.every((c) => c.connects >= 2), 15_000);
    publishing = false;
    await publisher;
    const complete = await waitUntil(async () => clients.every((c) => c.received.length >= published.length), 15_000);
    await new Promise((r) => setTimeout(r, 300));
    clients.forEach((c) => c.stop());
    console.log(`[e2e] gateway restart: ${published.length} published; received ${clients.map((c) => c.received.length).join(' / ')}; first close codes ${clients.map((c) => c.closeCodes[0]).join(' / ')}, reconnect attempts ${clients.map((c) => c.closeCodes.length).join(' / ')}`);
    expect(complete).toBe(true);
    for (const c of clients) {
      expect(c.connects).toBeGreaterThanOrEqual(2);
      expect(c.closeCodes).toContain(4200);
      expect(c.received).toEqual(published);
    }
  }, 120_000);
});

