import * as hdr from 'hdr-histogram-js';
import WebSocket from 'ws';
import { io, type Socket } from 'socket.io-client';
import { parseEventStamp, sharedClockMs } from '../event.js';
import type { ClientKind, ConnectResult, ConnectTarget, GeneratorCommand, GeneratorReply, GeneratorStats, HeartbeatCounts, ReadyOn } from './messages.js';
import { serveCommands } from './pool.js';

// Load generator process (forked by the harness): opens WebSocket or Socket.IO connections,
// counts bench events per connection and records publish -> receive latency. Several of these
// run side by side so one Node process never has to hold all 10,000 sockets.

/** Longest latency the histogram tracks, in microseconds (beyond it values are clamped). */
const HIGHEST_TRACKABLE_US = 120_000_000;
/** Distinct error strings kept per connect command. */
const MAX_ERROR_SAMPLES = 5;

interface Connection {
  readonly dialog: number;
  count: number;
  /** Protocol pings received (the server's heartbeat; ws answers each with a pong). */
  pings: number;
  ready: boolean;
  closed: boolean;
  close(): void;
}

const connections: Connection[] = [];
let histogram = newHistogram();
let received = 0;
let dropped = 0;
let firstReceiveMs = 0;
let lastReceiveMs = 0;

function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_TRACKABLE_US, numberOfSignificantValueDigits: 3 });
}

function onFrame(conn: Connection, frame: string | Buffer): void {
  const stamp = parseEventStamp(frame);
  if (!stamp) return;
  const now = sharedClockMs();
  conn.count++;
  received++;
  if (firstReceiveMs === 0) firstReceiveMs = now;
  lastReceiveMs = now;
  const micros = Math.round((now - stamp.t) * 1000);
  histogram.recordValue(Math.min(HIGHEST_TRACKABLE_US, Math.max(1, micros)));
}

function connectWs(target: ConnectTarget, readyOn: ReadyOn, timeoutMs: number): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target.url, [...(target.protocols ?? [])], {
      headers: target.origin ? { Origin: target.origin } : {},
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
      ...(target.localAddress !== undefined ? { localAddress: target.localAddress } : {}),
    });
    const conn: Connection = { dialog: target.dialog, count: 0, pings: 0, ready: false, closed: false, close: () => ws.terminate() };
    const timer = setTimeout(() => fail('timeout'), timeoutMs);
    function ready(): void {
      if (conn.ready) return;
      conn.ready = true;
      clearTimeout(timer);
      resolve(conn);
    }
    function fail(reason: string): void {
      clearTimeout(timer);
      ws.terminate();
      reject(new Error(reason));
    }
    ws.on('open', () => {
      if (readyOn === 'open') ready();
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!conn.ready) ready();
      if (!isBinary) onFrame(conn, data);
    });
    ws.on('ping', () => {
      conn.pings++;
    });
    ws.on('close', (code: number, reason: Buffer) => {
      conn.closed = true;
      if (conn.ready) dropped++;
      else fail(`closed ${code} ${reason.toString()}`.trim());
    });
    ws.on('error', (err: Error) => {
      if (!conn.ready) fail(err.message);
    });
  });
}

function connectSocketIo(target: ConnectTarget, timeoutMs: number): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const url = new URL(target.url);
    const socket: Socket = io(url.origin, {
      path: url.pathname === '/' ? '/socket.io/' : url.pathname,
      query: Object.fromEntries(url.searchParams),
      transports: ['websocket'],
      // One engine per socket: without it the client multiplexes every socket over one connection.
      forceNew: true,
      reconnection: false,
      timeout: timeoutMs,
    });
    const conn: Connection = { dialog: target.dialog, count: 0, pings: 0, ready: false, closed: false, close: () => socket.disconnect() };
    socket.on('event', (frame: string) => onFrame(conn, frame));
    socket.once('connect', () => {
      conn.ready = true;
      resolve(conn);
    });
    socket.once('connect_error', (err: Error) => {
      socket.disconnect();
      reject(err);
    });
    socket.on('disconnect', (reason: string) => {
      conn.closed = true;
      if (conn.ready && reason !== 'io client disconnect') dropped++;
    });
  });
}

async function connectAll(client: ClientKind, targets: readonly ConnectTarget[], readyOn: ReadyOn, concurrency: number, timeoutMs: number): Promise<ConnectResult> {
  const started = performance.now();
  let next = 0;
  let ok = 0;
  let failed = 0;
  const errors = new Set<string>();
  async function worker(): Promise<void> {
    while (next < targets.length) {
      const target = targets[next++]!;
      try {
        const conn = client === 'ws' ? await connectWs(target, readyOn, timeoutMs) : await connectSocketIo(target, timeoutMs);
        connections.push(conn);
        ok++;
      } catch (err) {
        failed++;
        if (errors.size < MAX_ERROR_SAMPLES) errors.add((err as Error).message);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, targets.length)) }, () => worker()));
  return { op: 'connected', ok, failed, elapsedMs: performance.now() - started, errors: [...errors] };
}

function stats(expectedPerDialog: Readonly<Record<number, number>>): GeneratorStats {
  let lost = 0;
  let extra = 0;
  for (const conn of connections) {
    const expected = expectedPerDialog[conn.dialog] ?? 0;
    if (conn.count < expected) lost += expected - conn.count;
    else extra += conn.count - expected;
  }
  return { op: 'stats', received, lost, extra, dropped, histogram: hdr.encodeIntoCompressedBase64(histogram), firstReceiveMs, lastReceiveMs };
}

function heartbeats(restart: boolean): HeartbeatCounts {
  const connectionsByPings: Record<number, number> = {};
  for (const conn of connections) {
    if (conn.closed) continue;
    connectionsByPings[conn.pings] = (connectionsByPings[conn.pings] ?? 0) + 1;
    if (restart) conn.pings = 0;
  }
  return { op: 'heartbeats', connectionsByPings, dropped };
}

function reset(): void {
  histogram.destroy();
  histogram = newHistogram();
  received = 0;
  dropped = 0;
  firstReceiveMs = 0;
  lastReceiveMs = 0;
  for (const conn of connections) conn.count = 0;
}

serveCommands<GeneratorCommand, GeneratorReply>(async (command) => {
  switch (command.op) {
    case 'connect':
      return connectAll(command.client, command.targets, command.readyOn, command.concurrency, command.timeoutMs);
    case 'reset':
      reset();
      return { op: 'reset-done' };
    case 'count':
      return { op: 'count', received };
    case 'heartbeats':
      return heartbeats(command.restart);
    case 'stats':
      return stats(command.expectedPerDialog);
    case 'close':
      for (const conn of connections.splice(0)) conn.close();
      // Let the close frames and FINs leave before the harness moves on.
      await new Promise((r) => setTimeout(r, 200));
      reset();
      return { op: 'closed' };
  }
});
