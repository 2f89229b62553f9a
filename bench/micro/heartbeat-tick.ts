#!/usr/bin/env tsx
// Micro-benchmark of one heartbeat tick on the gateway: how long the event loop is held while a
// slice of open sockets is pinged, with ws's `ping()` (a header and option object per socket)
// against the gateway transport's ping (the shared pre-encoded PING_FRAME written to the socket,
// which is all WebSocketTransport#ping does), for slices of several sizes. Every
// event that arrives during a tick waits for it, so the tick's wall time is what the heartbeat
// adds to delivery latency. The clients live in a child process (they answer the pings there).
// Rounds alternate so both ways meet the same machine load; prints the median µs per tick.
// Usage: npx tsx bench/micro/heartbeat-tick.ts [connections=2000] [rounds=30] [slices=8,40]
import { fork } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import type { Socket } from 'node:net';
import { PING_FRAME } from '../../gateway/src/transport/frames.js';

/** Median of a list of numbers. */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (process.argv[2] === '--clients') {
  // Child: open the connections and answer pings (ws does), until the parent goes away.
  const [url, count] = [process.argv[3]!, Number(process.argv[4])];
  const open: WebSocket[] = [];
  for (let i = 0; i < count; i++) {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    open.push(ws);
  }
  process.send?.('ready');
  process.on('disconnect', () => process.exit(0));
} else {
  const connections = Number(process.argv[2] ?? 2000);
  const rounds = Number(process.argv[3] ?? 30);
  const slices = (process.argv[4] ?? '8,40').split(',').map(Number);
  const server = http.createServer();
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  const sockets: WebSocket[] = [];
  wss.on('connection', (ws) => sockets.push(ws));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const child = fork(fileURLToPath(import.meta.url), ['--clients', `ws://127.0.0.1:${port}`, String(connections)], { execArgv: ['--import', 'tsx'] });
  await new Promise((resolve) => child.once('message', resolve));
  while (sockets.length < connections) await sleep(10);
  const ways = { 'ws.ping()': (ws: WebSocket) => ws.ping(), 'transport ping': (ws: WebSocket) => (ws as unknown as { _socket: Socket })._socket.write(PING_FRAME) };
  for (const size of slices) {
    const times: Record<string, number[]> = { 'ws.ping()': [], 'transport ping': [] };
    for (let r = 0; r < rounds; r++) {
      for (const [name, ping] of Object.entries(ways)) {
        const slice = sockets.slice((r * size) % (connections - size), ((r * size) % (connections - size)) + size);
        const t0 = process.hrtime.bigint();
        for (const ws of slice) ping(ws);
        times[name]!.push(Number(process.hrtime.bigint() - t0) / 1000);
        // Let the pongs come back before the next tick, as the 100 ms between ticks does.
        await sleep(20);
      }
    }
    const line = Object.entries(times).map(([name, t]) => `${name} ${median(t).toFixed(0)} µs`).join(', ');
    console.log(`slice of ${size} sockets: ${line} per tick (median of ${rounds})`);
  }
  child.kill();
  wss.close();
  server.close();
  process.exit(0);
}
