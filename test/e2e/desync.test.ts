import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TopologyInput } from '../../infra/topology/index.js';
import { startLocalStack, type LocalStackHandle } from '../../infra/targets/local/local-stack.js';
import { createTestDatabase } from '../services.js';
import { openSocket, postMessage, widgetSession, type TestSocket } from './clients.js';

// The seed's bug, reproduced and fixed. With /ws/ served by the backend (wsRoute=backend)
// every socket lives in one worker's memory and a message only reaches the sockets of the
// worker that handled its POST. Node's cluster hands connections to workers round-robin, so
// four sockets opened one after another land on different workers: every message then misses
// at least one socket. One worker, or the gateway, delivers everything.

const SOCKETS = 4;
const MESSAGES = 50;

interface Outcome {
  readonly delivered: number;
  readonly expected: number;
  readonly workers: number;
}

async function measure(stack: LocalStackHandle): Promise<Outcome> {
  const { ws, public: api } = stack.urls;
  // The widget's session comes from the API (the demo visitor key resumes dialog 123).
  const session = await widgetSession(api, { assistant_id: 3, parent_origin: `http://localhost:${stack.ports.nginx}`, visitor_key: stack.tokens.widget.visitorKey });
  expect(session).toMatchObject({ status: 201, dialogId: 123 });
  const clients = Array.from({ length: SOCKETS }, (_, i) =>
    i % 2 === 0 ? { url: `${ws}/ws/dialogs/123`, token: stack.tokens.adminToken } : { url: `${ws}/ws/widget/dialogs/123`, token: session.token },
  );
  const sockets: TestSocket[] = [];
  // One after another, so the cluster's round-robin spreads them as real clients arriving would.
  for (const c of clients) sockets.push(await openSocket(c.url, { token: c.token }));
  const site = stack.tokens.siteTokens[0]!.token;
  const ids: string[] = [];
  for (let i = 0; i < MESSAGES; i += 1) {
    const r = await postMessage(`${api}/api/site/dialogs/123/messages`, `desync probe ${i}`, site);
    expect(r.status).toBe(201);
    ids.push(r.eventId!);
  }
  // Deliveries are sent before the POST answers; give the last frames time to arrive.
  await new Promise((r) => setTimeout(r, 1000));
  const delivered = sockets.reduce((n, s) => n + s.events().filter((e) => ids.includes(e.id!)).length, 0);
  const workers = new Set(sockets.map((s) => s.frames[0]?.worker ?? s.frames[0]?.instance)).size;
  sockets.forEach((s) => s.ws.close());
  return { delivered, expected: SOCKETS * MESSAGES, workers };
}

function report(label: string, o: Outcome): void {
  const lost = o.expected - o.delivered;
  console.log(`[e2e] desync ${label}: delivered ${o.delivered}/${o.expected}, lost ${lost} (${((100 * lost) / o.expected).toFixed(1)}%), sockets on ${o.workers} process(es)`);
}

function scenario(label: string, topology: TopologyInput, check: (o: Outcome) => void): void {
  describe(label, () => {
    let stack: LocalStackHandle;
    beforeAll(async () => {
      stack = await startLocalStack({ topology, databaseUrl: await createTestDatabase('e2e_desync') });
    }, 180_000);
    afterAll(async () => {
      await stack?.stop();
    }, 60_000);
    it(`${SOCKETS} sockets on dialog 123, ${MESSAGES} messages`, async () => {
      const outcome = await measure(stack);
      report(label, outcome);
      check(outcome);
    }, 60_000);
  });
}

scenario('wsRoute=backend, 4 workers (pre-migration)', { wsRoute: 'backend', backend: { workers: 4 } }, (o) => {
  expect(o.workers).toBeGreaterThanOrEqual(2);
  expect(o.delivered).toBeLessThan(o.expected);
  // One socket per worker: each POST reaches exactly the one socket on the worker that took it.
  if (o.workers === SOCKETS) expect(o.delivered).toBe(MESSAGES);
});

scenario('wsRoute=backend, 1 worker (rollback)', { wsRoute: 'backend', backend: { workers: 1 } }, (o) => {
  expect(o.workers).toBe(1);
  expect(o.delivered).toBe(o.expected);
});

scenario('wsRoute=gateway, 4 backend workers (migrated)', { wsRoute: 'gateway', backend: { workers: 4 } }, (o) => {
  expect(o.delivered).toBe(o.expected);
});
