import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack, type LocalStackHandle } from '../../infra/targets/local/local-stack.js';
import { waitUntil } from '../../infra/targets/local/ports.js';
import { createTestDatabase } from '../services.js';
import { openSocket, postMessage, receives, ResumingClient } from './clients.js';

// The seed's test scenarios, end to end through real nginx, the real gateway, the reference
// backend (4 workers), Redis and Postgres, all started by the local target's process manager.
// One stack for the whole file; the restart scenarios run last because they disturb it.

let stack: LocalStackHandle;
let ws: string;
let api: string;
let site1: string;

beforeAll(async () => {
  stack = await startLocalStack({
    topology: { backend: { workers: 4 }, gateway: { drainWindowMs: 1000 } },
    databaseUrl: await createTestDatabase('e2e_seed'),
  });
  ws = stack.urls.ws;
  api = stack.urls.public;
  site1 = stack.tokens.siteTokens.find((s) => s.name === 'SITE1')!.token;
}, 180_000);

afterAll(async () => {
  await stack?.stop();
}, 60_000);

const adminUrl = (dialogId: number) => `${ws}/ws/dialogs/${dialogId}?token=${stack.tokens.adminToken}`;
const widgetUrl = (dialogId: number, parentOrigin: string) => `${ws}/ws/widget/dialogs/${dialogId}?assistant_id=3&parent_origin=${encodeURIComponent(parentOrigin)}`;
const postSite = (dialogId: number, text: string, token = site1) => postMessage(`${api}/api/site/dialogs/${dialogId}/messages?site_token=${token}`, text);

describe('seed scenario 1: admin panel and widget on dialog 123', () => {
  it('delivers every site message to both, 200 times in a row, each within 1 s', async () => {
    const admin = await openSocket(adminUrl(123));
    const widget = await openSocket(widgetUrl(123, `http://localhost:${stack.ports.nginx}`));
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
    const clients = await Promise.all(sites.map((s) => openSocket(`${ws}/ws/site/dialogs/${s.dialogId}?site_token=${s.token}`)));
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
  it('closes a widget with a forbidden parent_origin with 4003 and logs WEBSOCKET_4003_ERROR', async () => {
    const denied = await openSocket(widgetUrl(123, 'https://evil.example.org'));
    expect(await denied.closed).toBe(4003);
    const allowed = await openSocket(widgetUrl(123, 'https://shop.example.com'));
    expect(allowed.closeCode()).toBeUndefined();
    allowed.ws.close();
    expect(await waitUntil(async () => (await readFile(stack.logFile('ws-gateway'), 'utf8')).includes('WEBSOCKET_4003_ERROR'), 3000)).toBe(true);
  });
});

describe('seed scenario 4: restart resilience', () => {
  it('restarting the backend leaves WebSockets open and they get messages sent after it', async () => {
    const admin = await openSocket(adminUrl(123));
    const widget = await openSocket(widgetUrl(123, `http://localhost:${stack.ports.nginx}`));
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
    const clients = [new ResumingClient(adminUrl(123)), new ResumingClient(widgetUrl(123, `http://localhost:${stack.ports.nginx}`))];
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

