import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { DialogClient, type ClientState, type DialogClientOptions, type TokenRequest } from '../src/index.js';
import { fakeJwt, startScriptedServer, type ScriptedServer, type ServerConnection } from './scripted-server.js';

// The reconnect contract over real sockets: a scripted `ws` server on port 0 plays the gateway
// and the client under test is the library itself with `ws` injected.

const T0 = 1_732_780_000_000;
/** Event id `<T0 + ms>-<seq>`: realistic 13-digit stream ids. */
const id = (ms: number, seq = 0) => `${T0 + ms}-${seq}`;

let server: ScriptedServer;
const clients: DialogClient[] = [];

beforeEach(async () => {
  server = await startScriptedServer();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server.close();
});

interface Recorded {
  client: DialogClient;
  events: string[];
  states: ClientState[];
  tokenRequests: TokenRequest[];
}

/** A client on the scripted server with fast timings; records events, states and token requests. */
function start(overrides: Partial<DialogClientOptions> = {}): Recorded {
  const tokenRequests: TokenRequest[] = [];
  const client = new DialogClient({
    url: server.wsUrl,
    kind: 'admin',
    dialogId: 123,
    getToken: (request) => {
      tokenRequests.push(request);
      return fakeJwt({ sub: '1', n: tokenRequests.length, exp: Math.floor(Date.now() / 1000) + 3600 });
    },
    WebSocket,
    backoffBaseMs: 50,
    backoffCapMs: 200,
    soonJitterMs: 50,
    connectTimeoutMs: 2000,
    ...overrides,
  });
  clients.push(client);
  const rec: Recorded = { client, events: [], states: [], tokenRequests };
  client.on('event', (e) => rec.events.push(e.id));
  client.on('state', (s) => rec.states.push(s));
  client.connect();
  return rec;
}

/** Waits for the next connection to open, sends `ids` on it and waits until the client delivered them. */
async function openAndDeliver(r: Recorded, ...ids: string[]): Promise<ServerConnection> {
  const conn = await server.next();
  await r.client.opened();
  conn.events(...ids);
  await vi.waitFor(() => expect(r.events.slice(-ids.length)).toEqual(ids));
  return conn;
}

const stateNames = (r: Recorded) => r.states.map((s) => s.state);
const lastState = (r: Recorded) => r.states.at(-1);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('connecting', () => {
  it('opens an admin client with the token only in Sec-WebSocket-Protocol and delivers events', async () => {
    const r = start();
    const conn = await server.next();
    await r.client.opened();
    expect(conn.url.pathname).toBe('/ws/dialogs/123');
    expect(conn.url.search).toBe('');
    expect(conn.protocols).toEqual(['replyx.v1', `replyx.token.${conn.token}`]);
    expect(conn.ws.protocol).toBe('replyx.v1');
    expect(r.client.connected).toMatchObject({ server: 'ws-gateway', instance: 'scripted', heartbeat_ms: 25_000 });
    conn.events(id(1), id(2));
    await vi.waitFor(() => expect(r.events).toEqual([id(1), id(2)]));
    expect(r.client.lastEventId).toBe(id(2));
    expect(stateNames(r)).toEqual(['connecting', 'open']);
  });

  it.each([
    ['widget', '/ws/widget/dialogs/77'],
    ['site', '/ws/site/dialogs/77'],
  ] as const)('connects a %s client to %s', async (kind, path) => {
    const r = start({ kind, dialogId: 77 });
    const conn = await server.next();
    await r.client.opened();
    expect(conn.url.pathname).toBe(path);
    expect(conn.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  it('in Node, a ws subclass adds handshake headers such as Origin', async () => {
    class OriginWebSocket extends WebSocket {
      constructor(url: string, protocols: string[]) {
        super(url, protocols, { headers: { origin: 'https://shop.example.com' } });
      }
    }
    const r = start({ WebSocket: OriginWebSocket });
    const conn = await server.next();
    await r.client.opened();
    expect(conn.headers.origin).toBe('https://shop.example.com');
  });

  it('starts from the since= it was given', async () => {
    start({ since: id(5, 2) });
    const conn = await server.next();
    expect(conn.url.searchParams.get('since')).toBe(id(5, 2));
  });
});

describe('resume, de-duplication and order', () => {
  it('on 4200 reconnects soon with since= the last id and drops replayed duplicates', async () => {
    const r = start();
    const first = await openAndDeliver(r, id(1), id(1, 1), id(2));
    const closedAt = Date.now();
    first.close(4200, 'gateway draining');
    const second = await server.next();
    expect(Date.now() - closedAt).toBeLessThan(1000);
    expect(second.url.searchParams.get('since')).toBe(id(2));
    // A replay that overlaps what was delivered, then live events.
    second.events(id(1, 1), id(2), id(2, 1), id(3));
    await vi.waitFor(() => expect(r.events).toEqual([id(1), id(1, 1), id(2), id(2, 1), id(3)]));
    const reconnecting = r.states.find((s) => s.state === 'reconnecting');
    expect(reconnecting).toMatchObject({ code: 4200, reason: 'gateway draining' });
    expect((reconnecting as { delayMs: number }).delayMs).toBeLessThan(50);
  });

  it('compares ids numerically: a longer millisecond part is newer, an older or repeated id is dropped', async () => {
    const r = start();
    const conn = await server.next();
    await r.client.opened();
    conn.events('999999999999-5', '1000000000000-0', '999999999999-9', '1000000000000-0', '1000000000000-10', '1000000000000-9');
    conn.events('1000000000001-0');
    await vi.waitFor(() => expect(r.events.at(-1)).toBe('1000000000001-0'));
    expect(r.events).toEqual(['999999999999-5', '1000000000000-0', '1000000000000-10', '1000000000001-0']);
  });

  it('after a dropped connection (1006) resumes with since= and keeps order across the gap', async () => {
    const r = start();
    const first = await openAndDeliver(r, id(10));
    first.ws.terminate();
    const second = await server.next();
    expect(second.url.searchParams.get('since')).toBe(id(10));
    second.events(id(11), id(12));
    await vi.waitFor(() => expect(r.events).toEqual([id(10), id(11), id(12)]));
    expect(r.states.find((s) => s.state === 'reconnecting')).toMatchObject({ code: 1006 });
  });
});

describe('close-code classes', () => {
  it('backs off after 4100 with full jitter under ceilings that double to the cap, and starts over after a connect', async () => {
    server.autoConnected = false;
    const r = start({ backoffBaseMs: 100, backoffCapMs: 250, random: () => 0.999 });
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      const conn = await server.next();
      times.push(Date.now());
      conn.close(4100, 'over limits');
    }
    const fifth = await server.next();
    times.push(Date.now());
    const delays = () => r.states.flatMap((s) => (s.state === 'reconnecting' ? [s.delayMs] : []));
    expect(delays()).toEqual([99, 199, 249, 249]);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(delays()[i - 1]! - 5);
    fifth.connected();
    await r.client.opened();
    fifth.close(4101, 'slow consumer');
    await server.next();
    expect(delays().at(-1)).toBe(99);
    expect(lastState(r)).toMatchObject({ state: 'reconnecting', code: 4101, reason: 'slow consumer', attempt: 1 });
  });

  it.each([1011, 1001])('backs off after %i and resumes with since=', async (code) => {
    const r = start();
    const first = await openAndDeliver(r, id(1));
    first.close(code);
    const second = await server.next();
    expect(second.url.searchParams.get('since')).toBe(id(1));
    const reconnecting = r.states.find((s) => s.state === 'reconnecting');
    expect(reconnecting).toMatchObject({ code });
    expect((reconnecting as { delayMs: number }).delayMs).toBeLessThan(50);
  });

  it.each([
    [4003, 'domain forbidden'],
    [4004, 'dialog not found'],
    [4009, 'bad request'],
    [4050, 'a terminal code this client has never seen'],
  ])('stops on terminal %i and reports it', async (code, reason) => {
    const r = start();
    const conn = await server.next();
    conn.close(code, reason);
    await vi.waitFor(() => expect(lastState(r)).toEqual({ state: 'closed', code, reason, terminal: true }));
    await expect(r.client.opened()).rejects.toMatchObject({ code: 'RPX_CLIENT_CLOSED', closeCode: code });
    await sleep(300);
    expect(server.connections).toHaveLength(1);
    expect(stateNames(r)).toEqual(['connecting', 'open', 'closed']);
  });

  it('on 4001 fetches a fresh token and retries once; a second 4001 stops', async () => {
    const r = start();
    const first = await openAndDeliver(r, id(1));
    first.close(4001, 'token expired');
    const second = await server.next();
    expect(second.token).not.toBe(first.token);
    expect(second.url.searchParams.get('since')).toBe(id(1));
    await vi.waitFor(() => expect(lastState(r)?.state).toBe('open'));
    // The retry connected, so a later 4001 (e.g. the next expiry) is retried again.
    second.close(4001, 'token expired');
    server.autoConnected = false;
    const third = await server.next();
    third.close(4001, 'access revoked');
    await vi.waitFor(() => expect(lastState(r)).toEqual({ state: 'closed', code: 4001, reason: 'access revoked', terminal: true }));
    expect(r.tokenRequests).toEqual([{ fresh: false }, { fresh: true }, { fresh: true }]);
    await sleep(200);
    expect(server.connections).toHaveLength(3);
  });

  it('with a fixed token, 4001 is terminal', async () => {
    const r = start({ getToken: undefined, token: fakeJwt({ type: 'site' }) });
    const conn = await server.next();
    conn.close(4001, 'unauthorized');
    await vi.waitFor(() => expect(lastState(r)).toMatchObject({ state: 'closed', code: 4001, terminal: true }));
    await sleep(200);
    expect(server.connections).toHaveLength(1);
  });
});

describe('token source', () => {
  it('retries a failing token source with backoff and stops when it throws a terminal closeCode', async () => {
    let calls = 0;
    const r = start({
      getToken: () => {
        calls += 1;
        if (calls === 1) throw new Error('auth server unreachable');
        if (calls === 2) return fakeJwt({ sub: '1' });
        throw Object.assign(new Error('signed out'), { closeCode: 4001 });
      },
    });
    const conn = await server.next();
    expect(r.states[1]).toMatchObject({ state: 'reconnecting', code: 1006, reason: 'getToken failed: auth server unreachable' });
    await r.client.opened();
    conn.close(1011);
    await vi.waitFor(() => expect(lastState(r)).toMatchObject({ state: 'closed', code: 4001, reason: 'signed out', terminal: true }));
    expect(server.connections).toHaveLength(1);
  });

  it('renews before exp: reconnects with a fresh token and since=, no gap', async () => {
    const requests: TokenRequest[] = [];
    const r = start({
      renewBeforeMs: 1000,
      getToken: (request) => {
        requests.push(request);
        return fakeJwt({ sub: '1', n: requests.length, exp: Math.floor(Date.now() / 1000) + 3 });
      },
    });
    const first = await openAndDeliver(r, id(1));
    const second = await server.next(4000);
    expect(await first.closed).toBe(1000);
    expect(second.token).not.toBe(first.token);
    expect(second.url.searchParams.get('since')).toBe(id(1));
    expect(requests).toEqual([{ fresh: false }, { fresh: true }]);
    expect(stateNames(r)).toEqual(['connecting', 'open', 'reconnecting', 'open']);
    expect(r.states).toContainEqual({ state: 'reconnecting', code: 1000, reason: 'token renewal', delayMs: 0, attempt: 0 });
    second.events(id(1), id(2));
    await vi.waitFor(() => expect(r.events).toEqual([id(1), id(2)]));
  });
});

describe('resync', () => {
  it('calls the resync listener, holds events until its refetch settles, then takes the next event whatever its id', async () => {
    const r = start();
    const conn = await openAndDeliver(r, id(50));
    let finishRefetch!: () => void;
    const refetches: number[] = [];
    r.client.on('resync', () => {
      refetches.push(r.events.length);
      return new Promise<void>((resolve) => (finishRefetch = resolve));
    });
    conn.send({ type: 'resync' });
    // History was lost (e.g. Redis restarted empty): new ids may be lower than the last one.
    conn.events(id(7), id(8), id(8));
    await vi.waitFor(() => expect(refetches).toEqual([1]));
    await sleep(50);
    expect(r.events).toEqual([id(50)]);
    finishRefetch();
    await vi.waitFor(() => expect(r.events).toEqual([id(50), id(7), id(8)]));
    expect(r.client.lastEventId).toBe(id(8));
  });

  it('a synchronous resync listener does not hold events', async () => {
    const r = start();
    const conn = await server.next();
    await r.client.opened();
    let resyncs = 0;
    r.client.on('resync', () => void (resyncs += 1));
    conn.send({ type: 'resync' });
    conn.events(id(1));
    await vi.waitFor(() => expect(r.events).toEqual([id(1)]));
    expect(resyncs).toBe(1);
  });
});

describe('dead connections', () => {
  it('pings at half the heartbeat, stays open while pongs come, and reconnects after 2 × heartbeat of silence', async () => {
    server.autoConnected = 100;
    const r = start();
    const conn = await server.next();
    await r.client.opened();
    conn.events(id(1));
    await sleep(600);
    expect(server.connections).toHaveLength(1);
    expect(conn.received.filter((f) => f === '{"type":"ping"}').length).toBeGreaterThanOrEqual(8);
    const silentFrom = Date.now();
    conn.answerPings = false;
    const second = await server.next();
    const silence = Date.now() - silentFrom;
    // The first unanswered ping leaves within 50 ms of the switch (or just before it, still in
    // flight) and is given up 1.5 heartbeats (150 ms) after it left.
    expect(silence).toBeGreaterThanOrEqual(95);
    expect(silence).toBeLessThan(600);
    expect(second.url.searchParams.get('since')).toBe(id(1));
    expect(r.states.find((s) => s.state === 'reconnecting')).toMatchObject({ code: 1006, reason: expect.stringMatching(/^no frame from the server for \d+ ms$/) });
    await conn.closed;
  });

  it('gives up on a handshake that never brings `connected` after connectTimeoutMs', async () => {
    server.autoConnected = false;
    const r = start({ connectTimeoutMs: 150 });
    await server.next();
    const second = await server.next();
    expect(r.states[1]).toMatchObject({ state: 'reconnecting', code: 1006, reason: 'no connected frame within 150 ms' });
    second.connected();
    await r.client.opened();
  });
});

describe('close()', () => {
  it('closes with 1000 and never reconnects', async () => {
    const r = start();
    const conn = await server.next();
    await r.client.opened();
    r.client.close();
    expect(lastState(r)).toEqual({ state: 'closed', code: 1000, reason: 'closed by client', terminal: false });
    expect(await conn.closed).toBe(1000);
    await sleep(300);
    expect(server.connections).toHaveLength(1);
  });

  it('cancels a pending reconnect', async () => {
    const r = start({ backoffBaseMs: 200, random: () => 0.99 });
    const conn = await server.next();
    await r.client.opened();
    conn.close(1011);
    await vi.waitFor(() => expect(lastState(r)?.state).toBe('reconnecting'));
    r.client.close();
    await sleep(400);
    expect(server.connections).toHaveLength(1);
    expect(lastState(r)).toMatchObject({ state: 'closed', terminal: false });
  });

  it('can connect again after a terminal close, resuming from the last id', async () => {
    const r = start();
    const first = await openAndDeliver(r, id(3));
    first.close(4004, 'dialog not found');
    await vi.waitFor(() => expect(lastState(r)?.state).toBe('closed'));
    r.client.connect();
    const second = await server.next();
    expect(second.url.searchParams.get('since')).toBe(id(3));
    await r.client.opened();
  });
});
