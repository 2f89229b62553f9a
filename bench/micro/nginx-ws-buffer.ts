#!/usr/bin/env tsx
// Micro-benchmark of nginx.wsProxyBufferBytes: nginx's RSS per idle proxied WebSocket and its CPU
// per delivered frame in a fan-out burst to every open socket, for several buffer sizes, in alternating rounds. The
// local render (one worker) runs in front of a bare `ws` upstream, so every figure is nginx's
// own; clients offer a token subprotocol as the gateway's do.
// Usage: npx tsx bench/micro/nginx-ws-buffer.ts [connections=2000] [burst-events=300] [rounds=3] [sizes-bytes=384,1024]
import type { WebSocketServer } from 'ws';
import { measure } from '../proc.js';
import { idleRound, median, startWsUpstream } from './nginx-ws-rig.js';

/** A frame the size of a chat event. */
const FRAME = JSON.stringify({ id: '1700000000000-0', type: 'message:new', dialog_id: 1, data: { text: 'x'.repeat(200) }, ts: 1700000000000 });
/** A token as long as a widget session token. */
const TOKEN_PROTOCOLS = ['replyx.v1', `replyx.token.${'e'.repeat(420)}`];

/** One round with `bytes`: nginx KiB per idle WebSocket, and nginx CPU µs per frame of a burst. */
function round(upstreamPort: number, upstream: WebSocketServer, bytes: number, connections: number, burst: number): Promise<{ kibPerConn: number; cpuUsPerFrame: number }> {
  return idleRound({ upstreamPort, settings: { wsProxyBufferBytes: bytes }, path: '/ws/dialogs/1', protocols: TOKEN_PROTOCOLS, connections, settleMs: { warm: 500, measured: 1000 } }, async ({ kibPerConn, sockets, pids }) => {
    // Every open socket gets the burst (once the upstream has let go of earlier rounds' sockets).
    while (upstream.clients.size !== sockets.length) await new Promise((r) => setTimeout(r, 50));
    let received = 0;
    const total = burst * sockets.length;
    const done = new Promise<void>((resolve) => {
      for (const s of sockets)
        s.on('message', () => {
          received += 1;
          if (received === total) resolve();
        });
    });
    const cpu0 = await measure(pids);
    for (const ws of upstream.clients) for (let i = 0; i < burst; i++) ws.send(FRAME);
    await done;
    const cpu1 = await measure(pids);
    return { kibPerConn, cpuUsPerFrame: ((cpu1.cpuSeconds - cpu0.cpuSeconds) * 1e6) / total };
  });
}

const connections = Number(process.argv[2] ?? 2000);
const burst = Number(process.argv[3] ?? 300);
const rounds = Number(process.argv[4] ?? 3);
const sizes = (process.argv[5] ?? '384,1024').split(',').map(Number);
const upstream = await startWsUpstream();
const results = new Map<number, { kib: number[]; cpu: number[] }>(sizes.map((bytes) => [bytes, { kib: [], cpu: [] }]));
try {
  for (let r = 0; r < rounds; r++) {
    for (const bytes of r % 2 === 0 ? sizes : [...sizes].reverse()) {
      const { kibPerConn, cpuUsPerFrame } = await round(upstream.port, upstream.server, bytes, connections, burst);
      results.get(bytes)!.kib.push(kibPerConn);
      results.get(bytes)!.cpu.push(cpuUsPerFrame);
    }
  }
} finally {
  await upstream.close();
}
console.log(`nginx per proxied WebSocket, ${connections} idle connections, burst of ${burst} frames each, median of ${rounds} rounds:`);
for (const [bytes, r] of results) {
  console.log(`  wsProxyBufferBytes ${String(bytes).padEnd(5)} ${median(r.kib).toFixed(1)} KiB per idle connection   ${median(r.cpu).toFixed(2)} µs nginx CPU per frame (rounds: ${r.cpu.map((c) => c.toFixed(2)).join(', ')})`);
}
