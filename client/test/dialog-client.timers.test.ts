import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DialogClient, type ClientState, type DialogClientOptions, type WebSocketLike } from '../src/index.js';
import { fakeJwt } from './scripted-server.js';

// Exact timing of the client under fake timers, with an in-memory socket: backoff delays, the
// ping interval and dead-connection timer, renewal ahead of `exp`, and that close() leaves no
// timer behind. The same behaviours are shown over real sockets in dialog-client.test.ts.

class FakeSocket implements WebSocketLike {
  static made: FakeSocket[] = [];
  readyState = 0;
  readonly sent: string[] = [];
  closedWith: { code?: number; reason?: string } | undefined;
  onmessage: ((event: never) => void) | null = null;
  onclose: ((event: never) => void) | null = null;
  onerror: ((event: never) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {
    FakeSocket.made.push(this);
  }

  send(data: string): void {
    this.sent.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  /** Server side: accept and send `connected`. */
  accept(heartbeatMs = 1000): void {
    this.readyState = 1;
    this.frame({ type: 'connected', server: 'ws-gateway', instance: 'fake', heartbeat_ms: heartbeatMs });
  }

  frame(frame: unknown): void {
    (this.onmessage as ((e: { data: string }) => void) | null)?.({ data: JSON.stringify(frame) });
  }

  serverClose(code: number, reason = ''): void {
    this.readyState = 3;
    (this.onclose as ((e: { code: number; reason: string }) => void) | null)?.({ code, reason });
  }
}

const last = () => FakeSocket.made.at(-1)!;
let states: ClientState[];

function start(overrides: Partial<DialogClientOptions> = {}): DialogClient {
  const client = new DialogClient({ url: 'ws://gateway.test', kind: 'admin', dialogId: 5, token: fakeJwt({ sub: '1' }), WebSocket: FakeSocket, random: () => 0.5, ...overrides });
  states = [];
  client.on('state', (s) => states.push(s));
  client.connect();
  return client;
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_732_780_000_000 });
  FakeSocket.made = [];
});

afterEach(() => {
  vi.useRealTimers();
});

describe('timers', () => {
  it('backs off 500, 1000, 2000, … 15000 ms with the default base and cap (random 0.5)', async () => {
    start();
    await vi.advanceTimersByTimeAsync(0);
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      const before = FakeSocket.made.length;
      last().serverClose(1006);
      const delay = (states.at(-1) as { delayMs: number }).delayMs;
      delays.push(delay);
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(FakeSocket.made).toHaveLength(before);
      await vi.advanceTimersByTimeAsync(1);
      expect(FakeSocket.made).toHaveLength(before + 1);
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
  });

  it('reconnects after a drain within soonJitterMs without growing the backoff', async () => {
    start();
    await vi.advanceTimersByTimeAsync(0);
    last().serverClose(1011);
    await vi.advanceTimersByTimeAsync(500);
    last().serverClose(4200, 'gateway draining');
    expect(states.at(-1)).toMatchObject({ state: 'reconnecting', code: 4200, delayMs: 1000, attempt: 1 });
    await vi.advanceTimersByTimeAsync(1000);
    last().serverClose(1006);
    expect(states.at(-1)).toMatchObject({ delayMs: 1000, attempt: 2 });
  });

  it('a background tab whose timers run once a minute is not taken for dead while pongs come', async () => {
    start();
    await vi.advanceTimersByTimeAsync(0);
    const socket = last();
    socket.accept(25_000);
    const tick = vi.getTimerCount();
    expect(tick).toBe(1);
    for (let minute = 0; minute < 5; minute++) {
      // The ping interval (12.5 s) is throttled: it fires once now, after a minute.
      vi.setSystemTime(Date.now() + 60_000);
      vi.runOnlyPendingTimers();
      socket.frame({ type: 'pong' });
    }
    expect(socket.closedWith).toBeUndefined();
    expect(socket.sent).toHaveLength(5);
  });

  it('pings every heartbeat/2 and declares the connection dead after 2 × heartbeat without a frame', async () => {
    start();
    await vi.advanceTimersByTimeAsync(0);
    const socket = last();
    socket.accept(1000);
    // One ping out at a time: sent at 500, unanswered until the pong at 1500.
    await vi.advanceTimersByTimeAsync(1500);
    expect(socket.sent).toEqual(['{"type":"ping"}']);
    socket.frame({ type: 'pong' });
    await vi.advanceTimersByTimeAsync(500);
    expect(socket.sent).toHaveLength(2);
    // Silence since the pong at 1500: the ping of 2000 is unanswered at 3000, given up at 3500.
    await vi.advanceTimersByTimeAsync(1499);
    expect(socket.closedWith).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(socket.closedWith).toEqual({ code: 1000, reason: undefined });
    expect(states.at(-1)).toMatchObject({ state: 'reconnecting', code: 1006, reason: 'no frame from the server for 2000 ms' });
  });

  it('renews renewBeforeMs ahead of exp with a fresh token, keeping the socket until the new token is there', async () => {
    const requests: boolean[] = [];
    start({
      token: undefined,
      renewBeforeMs: 60_000,
      getToken: ({ fresh }) => {
        requests.push(fresh);
        return fakeJwt({ sub: '1', exp: Math.floor(Date.now() / 1000) + 900 });
      },
    });
    await vi.advanceTimersByTimeAsync(0);
    const first = last();
    first.accept(25_000);
    for (let t = 0; t < 839; t++) {
      await vi.advanceTimersByTimeAsync(1000);
      first.frame({ type: 'pong' });
    }
    expect(FakeSocket.made).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeSocket.made).toHaveLength(2);
    expect(first.closedWith).toEqual({ code: 1000, reason: 'token renewal' });
    expect(requests).toEqual([false, true]);
  });

  it('keeps a long-lived token (30 days, beyond the timer limit) without reconnecting', async () => {
    const requests: boolean[] = [];
    start({
      token: undefined,
      getToken: ({ fresh }) => {
        requests.push(fresh);
        return fakeJwt({ sub: '1', exp: Math.floor(Date.now() / 1000) + 30 * 86_400 });
      },
    });
    await vi.advanceTimersByTimeAsync(0);
    last().accept(25_000);
    for (let t = 0; t < 10; t++) {
      await vi.advanceTimersByTimeAsync(1000);
      last().frame({ type: 'pong' });
    }
    expect(FakeSocket.made).toHaveLength(1);
    expect(requests).toEqual([false]);
  });

  it('does not renew ahead a token that (by this clock) expires within 2 s; the 4001 path renews it', async () => {
    start({ token: undefined, getToken: () => fakeJwt({ exp: Math.floor(Date.now() / 1000) + 1 }) });
    await vi.advanceTimersByTimeAsync(0);
    last().accept(25_000);
    await vi.advanceTimersByTimeAsync(5000);
    expect(FakeSocket.made).toHaveLength(1);
    last().serverClose(4001, 'token expired');
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.made).toHaveLength(2);
  });

  it.each(['open', 'reconnecting', 'connecting'] as const)('close() while %s leaves no timer running', async (phase) => {
    const client = start();
    await vi.advanceTimersByTimeAsync(0);
    if (phase !== 'connecting') last().accept(1000);
    if (phase === 'reconnecting') last().serverClose(1011);
    expect(client.state.state).toBe(phase);
    expect(vi.getTimerCount()).toBeGreaterThan(0);
    client.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(client.state).toEqual({ state: 'closed', code: 1000, reason: 'closed by client', terminal: false });
  });

  it('a throwing listener does not stop the others; the error surfaces asynchronously', async () => {
    const client = start();
    const seen: string[] = [];
    client.on('event', () => {
      throw new Error('listener bug');
    });
    client.on('event', (e) => seen.push(e.id));
    await vi.advanceTimersByTimeAsync(0);
    last().accept();
    last().frame({ id: '1-0', type: 'm', dialog_id: 5, data: {}, ts: 1 });
    expect(seen).toEqual(['1-0']);
    expect(() => vi.advanceTimersToNextTimer()).toThrow('listener bug');
  });
});

describe('options and tokens', () => {
  it('stops with RPX_CLIENT_TOKEN when getToken returns something that is not a JWT', async () => {
    const client = start({ token: undefined, getToken: () => 'Bearer abc' });
    await vi.advanceTimersByTimeAsync(0);
    expect(client.state).toMatchObject({ state: 'closed', code: 4001, terminal: true, reason: 'RPX_CLIENT_TOKEN: getToken returned something that is not a JWT; return the token string itself' });
    expect(FakeSocket.made).toHaveLength(0);
  });

  it('names the missing WebSocket class in Node', () => {
    vi.stubGlobal('WebSocket', undefined);
    try {
      expect(() => new DialogClient({ url: 'ws://x', kind: 'admin', dialogId: 1, token: fakeJwt({}) })).toThrow("RPX_CLIENT_OPTIONS: WebSocket: must be a WebSocket class (this runtime has no global one: in Node pass `import WebSocket from 'ws'`)");
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it.each([
    [{ token: undefined }, 'getToken/token: must be exactly one of them (a token source, or a fixed token) (got "neither")'],
    [{ getToken: () => 'x' }, 'getToken/token: must be exactly one of them (a token source, or a fixed token) (got "both")'],
    [{ token: 'not a jwt' }, 'token: must be a JWT (three base64url parts) (got "[redacted]")'],
    [{ since: 'yesterday' }, 'since: must be an event id such as "1732780000000-0" (got "yesterday")'],
    [{ backoffBaseMs: -1 }, 'backoffBaseMs: must be a number of milliseconds >= 0 (got -1)'],
    [{ connectTimeoutMs: Number.NaN }, 'connectTimeoutMs: must be a number of milliseconds >= 0 (got NaN)'],
    [{ dialogId: -4 }, 'dialogId: must be a positive whole number (got -4)'],
  ] as [Partial<DialogClientOptions>, string][])('refuses %o', (overrides, message) => {
    expect(() => new DialogClient({ url: 'ws://gateway.test', kind: 'admin', dialogId: 5, token: fakeJwt({}), WebSocket: FakeSocket, ...overrides })).toThrow(`RPX_CLIENT_OPTIONS: ${message}`);
  });
});
