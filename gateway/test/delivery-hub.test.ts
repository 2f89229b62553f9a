import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { Authorized } from '../src/access/authorize.js';
import type { BrokerHandlers, HistoryResult } from '../src/broker/broker.js';
import { MemoryBroker, type MemoryBrokerOptions } from '../src/broker/memory-broker.js';
import type { ConnectionKind } from '../src/connection-kinds.js';
import { DeliveryHub, type DeliveryHubOptions } from '../src/hub/delivery-hub.js';
import { createLogger } from '../src/log/logger.js';
import { GatewayMetrics } from '../src/metrics/gateway-metrics.js';
import { selectProtocol } from '../src/auth/credentials.js';
import { answerHandshake } from '../src/transport/handshake.js';
import { TestClient, captureLogs, eventually } from './harness.js';

// The delivery hub on its own: a real HTTP server on port 0 answers each handshake and hands every socket to hub.attach, a
// real memory broker feeds hub.deliver. The path of a test socket names what the gateway's
// authorizer would have decided: /<kind>/<dialog>[?since=ID].

/** A memory broker whose history reads wait until the test opens the gate. */
class GatedBroker extends MemoryBroker {
  #gate: Promise<void> = Promise.resolve();
  #open: () => void = () => undefined;

  /** Makes the next history reads wait for open(). */
  closeGate(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }

  /** Lets waiting history reads go on. */
  open(): void {
    this.#open();
  }

  override async history(dialogId: number, sinceId: string): Promise<HistoryResult> {
    await this.#gate;
    return super.history(dialogId, sinceId);
  }
}

interface Fixture {
  readonly hub: DeliveryHub;
  readonly broker: GatedBroker;
  readonly metrics: GatewayMetrics;
  readonly logs: string[];
  url(kind: ConnectionKind, dialog: number, since?: string, exp?: number): string;
  readonly port: number;
}

const servers: http.Server[] = [];
const clients: TestClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    s.close();
  }
});

const HUB_DEFAULTS: DeliveryHubOptions = {
  instanceId: 'hub-test',
  heartbeatMs: 25_000,
  sendBufferBytes: 1024 * 1024,
  clientFramesPerSecond: 20,
  maxParsedFrameBytes: 256,
  maxPayloadBytes: 64 * 1024,
  maxPendingEvents: 10_000,
  shutdownGraceMs: 2000,
};

async function fixture(hubOptions: Partial<DeliveryHubOptions> = {}, brokerOptions: Partial<MemoryBrokerOptions> = {}): Promise<Fixture> {
  const { logs, stream } = captureLogs();
  const handlers: BrokerHandlers = { onEvent: (event) => hub.deliver(event), onResync: (dialogId) => hub.resync(dialogId) };
  const broker = new GatedBroker({ historyLength: 100, historyTtlS: 600, maxDialogs: 100, ...brokerOptions }, handlers);
  const metrics: GatewayMetrics = new GatewayMetrics(
    { connections: () => hub.members.counts(), dialogs: () => hub.members.dialogCount, connectionCapacity: () => 50_000, dependencies: async () => ({ postgres: true }), accessListenerConnected: () => false },
    false,
  );
  const hub: DeliveryHub = new DeliveryHub(broker, { ...HUB_DEFAULTS, ...hubOptions }, metrics, createLogger('info', stream));
  const server = http.createServer();
  servers.push(server);
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const answer = answerHandshake(req, selectProtocol);
    if (!answer.ok) return void socket.end(answer.response);
    socket.write(answer.response);
    const url = new URL(req.url ?? '/', 'http://hub');
    const [, kind, dialog] = url.pathname.split('/');
    const expiresAt = Number(url.searchParams.get('exp') ?? 0);
    const auth: Authorized = { ok: true, kind: kind as ConnectionKind, dialogId: Number(dialog), since: url.searchParams.get('since') ?? undefined, grant: { kind: 'admin', userId: 1 }, expiresAt, via: 'protocol', who: {} };
    void hub.attach(socket, head, auth, '127.0.0.1');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return { hub, broker, metrics, logs, port, url: (kind, dialog, since, exp) => `ws://127.0.0.1:${port}/${kind}/${dialog}?${new URLSearchParams({ ...(since ? { since } : {}), ...(exp ? { exp: String(exp) } : {}) }).toString()}` };
}

async function connect(url: string): Promise<TestClient> {
  const c = new TestClient(url);
  clients.push(c);
  await c.ready();
  return c;
}

const ids = (c: TestClient) => c.events().map((f) => f.json.id);

describe('DeliveryHub', () => {
  it('writes one event to every connection of its dialog and audience, with the same bytes, and logs the broadcast', async () => {
    const f = await fixture();
    const [admin, widget, site, elsewhere] = await Promise.all([connect(f.url('admin', 1)), connect(f.url('widget', 1)), connect(f.url('site', 1)), connect(f.url('admin', 2))]);
    const id = await f.broker.publish({ dialogId: 1, type: 'message:new', data: { text: 'hi' }, audience: ['admin', 'site'] });
    const [a] = await admin.waitFor((fr) => fr.json.id === id);
    const [s] = await site.waitFor((fr) => fr.json.id === id);
    expect(a!.text).toBe(s!.text);
    expect(a!.json).toMatchObject({ id, type: 'message:new', dialog_id: 1, data: { text: 'hi' } });
    await new Promise((r) => setTimeout(r, 50));
    expect(widget.events()).toEqual([]);
    expect(elsewhere.events()).toEqual([]);
    expect(f.metrics.delivered).toEqual({ admin: 1, widget: 0, site: 1 });
    expect(f.metrics.recipients).toEqual({ admin: 1, widget: 0, site: 1 });
    expect(f.logs.some((l) => l.includes(`Broadcasting message dialog=1 type=message:new recipients=2`))).toBe(true);
  });

  it('buffers live events while a since replay reads history, then sends history and live in id order, once each', async () => {
    const f = await fixture();
    const stored = [];
    for (let i = 0; i < 4; i += 1) stored.push(await f.broker.publish({ dialogId: 7, type: 'e', data: { i } }));
    const watcher = await connect(f.url('admin', 7)); // keeps the dialog subscribed, so live events flow
    f.broker.closeGate();
    const late = new TestClient(f.url('widget', 7, stored[0]));
    clients.push(late);
    await late.ready();
    await eventually(() => f.hub.members.dialogCounts(7).widget === 1);
    const live = [await f.broker.publish({ dialogId: 7, type: 'e', data: { live: 1 } }), await f.broker.publish({ dialogId: 7, type: 'e', data: { live: 2 } })];
    await new Promise((r) => setTimeout(r, 50));
    expect(late.events()).toEqual([]); // held back until the history is read
    f.broker.open();
    await late.waitFor((fr) => fr.json.id === live[1]);
    expect(ids(late)).toEqual([...stored.slice(1), ...live]);
    const after = await f.broker.publish({ dialogId: 7, type: 'e', data: { after: 1 } });
    await late.waitFor((fr) => fr.json.id === after);
    await watcher.waitFor((fr) => fr.json.id === after);
    expect(ids(late)).toEqual([...stored.slice(1), ...live, after]);
    expect(ids(watcher)).toEqual([...live, after]);
    // History and the buffered live events count as replayed; only `after` was a live delivery to it.
    expect(f.metrics.replayed.widget).toBe(5);
    expect(f.metrics.delivered.widget).toBe(1);
    expect(await f.metrics.render()).toContain('replyx_gateway_resumes_total{outcome="replayed"} 1');
  });

  it('closes a replaying connection with 4101 once more live events wait than maxPendingEvents', async () => {
    const f = await fixture({ maxPendingEvents: 2 });
    const first = await f.broker.publish({ dialogId: 3, type: 'e', data: null });
    await connect(f.url('admin', 3));
    f.broker.closeGate();
    const slow = new TestClient(f.url('site', 3, first));
    clients.push(slow);
    await slow.ready();
    await eventually(() => f.hub.members.dialogCounts(3).site === 1);
    for (let i = 0; i < 3; i += 1) await f.broker.publish({ dialogId: 3, type: 'e', data: { i } });
    expect((await slow.closed).code).toBe(4101);
    // The third event found its buffer full: addressed to the site client and never delivered live.
    expect(f.metrics.recipients.site).toBe(1);
    expect(f.metrics.delivered.site).toBe(0);
    f.broker.open();
    await eventually(() => f.hub.members.dialogCounts(3).site === 0);
    expect(f.logs.some((l) => l.includes('[Site] slow consumer'))).toBe(true);
  });

  it('sends resync when since is older than the retained history, then the live events', async () => {
    const f = await fixture({}, { historyLength: 2 });
    const stored = [];
    for (let i = 0; i < 4; i += 1) stored.push(await f.broker.publish({ dialogId: 5, type: 'e', data: { i } }));
    const c = await connect(f.url('admin', 5, stored[0]));
    await c.waitFor((fr) => fr.json.type === 'resync');
    const live = await f.broker.publish({ dialogId: 5, type: 'e', data: { live: true } });
    await c.waitFor((fr) => fr.json.id === live);
    expect(c.frames.map((fr) => fr.json.type ?? fr.json.id)).toEqual(['connected', 'resync', 'e']);
    f.hub.resync(5);
    await c.waitFor((fr) => fr.json.type === 'resync', 2);
    const text = await f.metrics.render();
    expect(text).toContain('replyx_gateway_resumes_total{outcome="resync"} 1');
    expect(text).toContain('replyx_gateway_resyncs_total{cause="resume_gap"} 1');
    expect(text).toContain('replyx_gateway_resyncs_total{cause="broker_gap"} 1');
  });

  it('drain closes every connection with 4200 spread over the window, without waiting the grace when all answer, and leaves the hub empty', async () => {
    const f = await fixture();
    const all = await Promise.all(Array.from({ length: 12 }, (_, i) => connect(f.url('admin', 10 + (i % 3)))));
    const started = Date.now();
    await f.hub.drain(300);
    const codes = await Promise.all(all.map((c) => c.closed.then((r) => r.code)));
    expect(codes).toEqual(all.map(() => 4200));
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(HUB_DEFAULTS.shutdownGraceMs);
    expect(f.hub.size).toBe(0);
    expect(f.hub.members.size).toBe(0);
    expect(f.broker.subscribedCount).toBe(0);
  });

  it('drain cuts a peer that never answers the close once shutdownGraceMs has passed', async () => {
    const f = await fixture({ shutdownGraceMs: 150 });
    // A raw TCP client: completes the handshake, then reads and drops everything, never
    // answering the close frame.
    const socket = net.connect(f.port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.resume();
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('GET /admin/9 HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    await eventually(() => f.hub.size === 1);
    const ended = new Promise((resolve) => socket.once('close', resolve));
    const started = Date.now();
    await f.hub.drain(0);
    await ended;
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    await eventually(() => f.hub.size === 0);
  });
});

describe('ClientConnection (through the hub)', () => {
  it('answers pings no larger than maxParsedFrameBytes, ignores larger frames, and closes a flood with 4100', async () => {
    const f = await fixture({ maxParsedFrameBytes: 16, clientFramesPerSecond: 5 });
    const c = await connect(f.url('widget', 4));
    c.ws.send('{"type":"ping"}  '); // 17 bytes: never parsed
    c.ws.send('{"type":"ping"}');
    await c.waitFor((fr) => fr.json.type === 'pong');
    await new Promise((r) => setTimeout(r, 50));
    expect(c.frames.map((fr) => fr.json.type)).toEqual(['connected', 'pong']);
    for (let i = 0; i < 5; i += 1) c.ws.send('{}');
    expect((await c.closed).code).toBe(4100);
    expect(f.logs.some((l) => l.includes('[Widget] client frame flood; closing with 4100'))).toBe(true);
    await eventually(() => f.hub.size === 0);
  });
});

describe('token expiry (through the hub)', () => {
  it('closes a connection with 4001 "token expired" on the first heartbeat tick at or after its exp, and only it', async () => {
    const f = await fixture();
    const exp = Math.floor(Date.now() / 1000) + 2;
    const [expiring, lasting, none] = await Promise.all([connect(f.url('site', 12, undefined, exp)), connect(f.url('admin', 12, undefined, exp + 3600)), connect(f.url('widget', 12))]);
    expect(f.hub.expiring).toBe(2);
    const ticks = setInterval(() => f.hub.heartbeat(), 100);
    try {
      const closed = await expiring.closed;
      expect(closed).toEqual({ code: 4001, reason: 'token expired' });
      // exp is a whole second: closed once that second began, within one tick of it.
      expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000);
      expect(Date.now()).toBeLessThan(exp * 1000 + 1000);
    } finally {
      clearInterval(ticks);
    }
    expect([lasting.ws.readyState, none.ws.readyState]).toEqual([1, 1]);
    await eventually(() => f.hub.expiring === 1, 2000, 'expired connection forgotten');
    expect(f.logs.some((l) => l.includes('[Site] token expired; closing with 4001'))).toBe(true);
  });

  it('refuses to attach a connection whose exp passed between the handshake and the attach', async () => {
    const f = await fixture();
    f.hub.heartbeat();
    const c = new TestClient(f.url('admin', 13, undefined, Math.floor(Date.now() / 1000) - 1));
    clients.push(c);
    expect(await c.closed).toEqual({ code: 4001, reason: 'token expired' });
    expect(f.hub.members.has(13)).toBe(false);
  });
});
