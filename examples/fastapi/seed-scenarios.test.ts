import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack, type LocalStackHandle } from '../../infra/targets/local/local-stack.js';
import { waitUntil } from '../../infra/targets/local/ports.js';
import { createTestDatabase } from '../../test/services.js';
import { openSocket, postMessage, receives, widgetSession } from '../../test/e2e/clients.js';

// The seed's scenarios against the FastAPI example backend (backend.kind: fastapi, 4 uvicorn
// workers) through real nginx, the gateway, Redis and Postgres, started by the local target:
// admin panel and widget on one dialog (200/200), three sites at once, the three write routes,
// Idempotency-Key retries, the outbox (a message stored while Redis stalls is published once
// Redis answers again, as one event) and a backend restart that WebSockets do not notice.

let stack: LocalStackHandle;
let ws: string;
let api: string;
let origin: string;

beforeAll(async () => {
  stack = await startLocalStack({
    topology: { backend: { kind: 'fastapi', workers: 4 }, gateway: { drainWindowMs: 1000 } },
    databaseUrl: await createTestDatabase('e2e_fastapi'),
  });
  ws = stack.urls.ws;
  api = stack.urls.public;
  origin = `http://localhost:${stack.ports.nginx}`;
}, 180_000);

afterAll(async () => {
  await stack?.stop();
}, 60_000);

const site1 = () => stack.tokens.siteTokens.find((s) => s.name === 'SITE1')!.token;
const postSite = (dialogId: number, text: string, token = site1()) => postMessage(`${api}/api/site/dialogs/${dialogId}/messages`, text, token);
async function widgetToken123(): Promise<string> {
  const s = await widgetSession(api, { assistant_id: 3, parent_origin: origin, visitor_key: stack.tokens.widget.visitorKey });
  expect({ status: s.status, dialog: s.dialogId }).toEqual({ status: 201, dialog: 123 });
  return s.token;
}

describe('the FastAPI backend', () => {
  it('runs 4 uvicorn workers and answers /health', async () => {
    const res = await fetch(`${stack.urls.backend}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', kind: 'fastapi', workers: 4 });
    // The kernel hands a shared listening socket's connections to whichever worker it likes, so
    // count the workers themselves: uvicorn's spawned children of the backend process.
    const backend = stack.plan.services.find((s) => s.name === 'backend')!;
    const parent = Number((await readFile(backend.pidFile, 'utf8')).trim());
    const children = (await readdir('/proc')).filter((d) => /^\d+$/.test(d)).filter((pid) => {
      try {
        const ppid = /^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
        return Number(ppid) === parent && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('spawn_main');
      } catch {
        return false;
      }
    });
    expect(children).toHaveLength(4);
  });
});

describe('seed scenario 1 on FastAPI: admin panel and widget on dialog 123', () => {
  it('delivers every site message to both, 200 times in a row, each within 1 s', async () => {
    const admin = await openSocket(`${ws}/ws/dialogs/123`, { token: stack.tokens.adminToken });
    const widget = await openSocket(`${ws}/ws/widget/dialogs/123`, { token: await widgetToken123() });
    let adminOk = 0;
    let widgetOk = 0;
    for (let i = 0; i < 200; i += 1) {
      const r = await postSite(123, `Test message ${i}`);
      expect(r.status).toBe(201);
      const [a, w] = await Promise.all([receives(admin, r.eventId!, 1000), receives(widget, r.eventId!, 1000)]);
      adminOk += Number(a);
      widgetOk += Number(w);
    }
    console.log(`[e2e fastapi] basic: admin ${adminOk}/200, widget ${widgetOk}/200`);
    expect({ adminOk, widgetOk }).toEqual({ adminOk: 200, widgetOk: 200 });
    const first = admin.events()[0]!;
    expect(first).toMatchObject({ type: 'message:new', dialog_id: 123, data: { text: 'Test message 0', sender: 'site', dialog_id: 123 } });
    expect((first.data as Record<string, unknown>).created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(admin.events()).toHaveLength(200);
    admin.ws.close();
    widget.ws.close();
  }, 120_000);

  it('takes messages from the admin and the widget routes too, and lists them', async () => {
    const adminPost = await postMessage(`${api}/api/dialogs/123/messages`, 'from the operator', stack.tokens.adminToken);
    const widgetPost = await postMessage(`${api}/api/widget/dialogs/123/messages`, 'from the visitor', await widgetToken123());
    expect([adminPost.status, widgetPost.status]).toEqual([201, 201]);
    expect([(adminPost.body.message as { sender: string }).sender, (widgetPost.body.message as { sender: string }).sender]).toEqual(['operator', 'user']);
    const list = await fetch(`${api}/api/dialogs/123/messages?limit=500`, { headers: { authorization: `Bearer ${stack.tokens.adminToken}` } });
    const texts = ((await list.json()) as { messages: { text: string }[] }).messages.map((m) => m.text);
    expect(texts.slice(-2)).toEqual(['from the operator', 'from the visitor']);
    expect((await postMessage(`${api}/api/widget/dialogs/123/messages`, 'no credential')).status).toBe(401);
    expect((await postSite(200, 'site 1 on site 2’s dialog')).status).toBe(404);
  });
});

describe('seed scenario 2 on FastAPI: three sites at once', () => {
  it('gives each site exactly its own dialog’s messages', async () => {
    const sites = stack.tokens.siteTokens;
    const clients = await Promise.all(sites.map((s) => openSocket(`${ws}/ws/site/dialogs/${s.dialogId}`, { token: s.token })));
    const expected = new Map<number, string[]>();
    for (let round = 0; round < 5; round += 1) {
      await Promise.all(
        sites.map(async (s) => {
          const r = await postSite(s.dialogId, `${s.name} #${round}`, s.token);
          expect(r.status).toBe(201);
          expected.set(s.dialogId, [...(expected.get(s.dialogId) ?? []), r.eventId!]);
        }),
      );
    }
    await waitUntil(async () => clients.every((c, i) => c.events().length >= 5 && expected.get(sites[i]!.dialogId)!.length === 5), 5000);
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

describe('retries and the outbox on FastAPI', () => {
  it('a POST retried with its Idempotency-Key stores and publishes once; the key with another body is refused', async () => {
    const admin = await openSocket(`${ws}/ws/dialogs/123`, { token: stack.tokens.adminToken });
    const send = (text: string) =>
      fetch(`${api}/api/site/dialogs/123/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${site1()}`, 'idempotency-key': `retry-${stack.ports.nginx}` },
        body: JSON.stringify({ text }),
      });
    const first = await send('once only');
    const again = await send('once only');
    const firstBody = (await first.json()) as { message: { id: number }; event_id: string };
    const againBody = (await again.json()) as { message: { id: number }; event_id: string };
    expect([first.status, again.status, again.headers.get('idempotent-replayed')]).toEqual([201, 201, 'true']);
    expect(againBody.message.id).toBe(firstBody.message.id);
    expect(againBody.event_id).toBe(firstBody.event_id);
    expect((await send('another text')).status).toBe(422);
    await receives(admin, firstBody.event_id, 2000);
    await new Promise((r) => setTimeout(r, 300));
    expect(admin.events().filter((e) => (e.data as { text?: string }).text === 'once only')).toHaveLength(1);
    admin.ws.close();
  });

  it('a message stored while Redis stalls is answered 201 at once and published by the relay, once', async () => {
    const admin = await openSocket(`${ws}/ws/dialogs/123`, { token: stack.tokens.adminToken });
    const redis = new Redis(`redis://127.0.0.1:${stack.ports.redis}`);
    try {
      await redis.call('CLIENT', 'PAUSE', '3000', 'ALL');
      const started = Date.now();
      const r = await postSite(123, 'stored during a Redis stall');
      expect(r.status).toBe(201);
      // The publish timed out (2 s): the reply says the event is not published yet.
      expect(r.body.event_id).toBeNull();
      expect(Date.now() - started).toBeLessThan(4000);
      const id = (r.body.message as { id: number }).id;
      expect(await waitUntil(async () => admin.events().some((e) => (e.data as { id?: number }).id === id), 15_000)).toBe(true);
      await new Promise((res) => setTimeout(res, 1000));
      // The timed-out publish ran when Redis resumed and the relay's retry met its idempotency key: one event.
      expect(admin.events().filter((e) => (e.data as { id?: number }).id === id)).toHaveLength(1);
      const listed = await fetch(`${api}/api/dialogs/123/messages?since=${id - 1}&limit=1`, { headers: { authorization: `Bearer ${stack.tokens.adminToken}` } });
      const [stored] = ((await listed.json()) as { messages: { id: number; event_id: string | null }[] }).messages;
      expect(stored).toMatchObject({ id, event_id: admin.events().find((e) => (e.data as { id?: number }).id === id)!.id });
    } finally {
      redis.disconnect();
      admin.ws.close();
    }
  }, 30_000);
});

describe('seed scenario 4 on FastAPI: restart resilience', () => {
  it('restarting the backend (all its workers) leaves WebSockets open and they get messages sent after it', async () => {
    const admin = await openSocket(`${ws}/ws/dialogs/123`, { token: stack.tokens.adminToken });
    const widget = await openSocket(`${ws}/ws/widget/dialogs/123`, { token: await widgetToken123() });
    const before = ((await (await fetch(`${stack.urls.backend}/health`)).json()) as { pid: number }).pid;
    await stack.restart('backend');
    // The old workers are gone with their parent, not left serving the port.
    expect(() => process.kill(before, 0)).toThrow();
    expect([admin.closeCode(), widget.closeCode()]).toEqual([undefined, undefined]);
    const r = await postSite(123, 'after backend restart');
    expect(r.status).toBe(201);
    expect(await receives(admin, r.eventId!, 2000)).toBe(true);
    expect(await receives(widget, r.eventId!, 2000)).toBe(true);
    admin.ws.close();
    widget.ws.close();
  }, 120_000);
});
