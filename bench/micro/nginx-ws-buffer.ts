#!/usr/bin/env tsx
// Micro-benchmark of nginx.wsProxyBufferBytes: nginx's RSS per idle proxied WebSocket and its CPU
// per delivered frame in a fan-out burst to every open socket, for several buffer sizes, in alternating rounds. The
// local render (one worker) runs in front of a bare `ws` upstream, so every figure is nginx's
// own; clients offer a token subprotocol as the gateway's do.
// Usage: npx tsx bench/micro/nginx-ws-buffer.ts [connections=2000] [burst-events=300] [rounds=3] [sizes-bytes=384,1024]
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { renderNginxConfig } from '../../infra/render/nginx.js';
import { freePort } from '../../infra/targets/local/ports.js';
import { startNginx } from '../../infra/targets/local/processes.js';
import { validateTopology } from '../../infra/topology/index.js';
import { measure, processTree } from '../proc.js';

/** A frame the size of a chat event. */
const FRAME = JSON.stringify({ id: '1700000000000-0', type: 'message:new', dialog_id: 1, data: { text: 'x'.repeat(200) }, ts: 1700000000000 });
/** A token as long as a widget session token. */
const TOKEN_PROTOCOLS = ['replyx.v1', `replyx.token.${'e'.repeat(420)}`];

/** Median of a list of numbers. */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** One round with `bytes`: nginx KiB per idle WebSocket, and nginx CPU µs per frame of a burst. */
async function round(upstreamPort: number, upstream: WebSocketServer, bytes: number, connections: number, burst: number): Promise<{ kibPerConn: number; cpuUsPerFrame: number }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-micro-nginx-'));
  await chmod(dir, 0o755);
  const port = await freePort();
  const { topology } = validateTopology(
    {
      target: 'local',
      gateway: { port: upstreamPort },
      backend: { port: await freePort() },
      nginx: { port, wsProxyBufferBytes: bytes, wsConnectionsPerClient: 65_535, wsHandshakesPerSecond: 100_000, wsHandshakeBurst: 100_000 },
    },
    'micro topology',
  );
  const configFile = path.join(dir, 'nginx.conf');
  // One worker, so every connection lands in the process whose memory is read.
  await writeFile(configFile, renderNginxConfig(topology, 'local').replace(/worker_processes [^;]+;/, 'worker_processes 1;'));
  const nginx = await startNginx({ dir, port, configFile });
  const sockets: WebSocket[] = [];
  try {
    const pids = await processTree(nginx.pid);
    const open = () =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/dialogs/1`, TOKEN_PROTOCOLS, { perMessageDeflate: false });
        ws.once('message', () => resolve(ws));
        ws.once('error', reject);
      });
    const openMany = async (n: number) => {
      for (let i = 0; i < n; i += 50) sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, open))));
    };
    // The worker's first connections grow its pools and tables: not what one more costs.
    await openMany(200);
    await new Promise((r) => setTimeout(r, 500));
    const before = await measure(pids);
    await openMany(connections);
    await new Promise((r) => setTimeout(r, 1000));
    const after = await measure(pids);
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
    return { kibPerConn: (after.rssBytes - before.rssBytes) / connections / 1024, cpuUsPerFrame: ((cpu1.cpuSeconds - cpu0.cpuSeconds) * 1e6) / total };
  } finally {
    for (const s of sockets) s.terminate();
    await nginx.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const connections = Number(process.argv[2] ?? 2000);
const burst = Number(process.argv[3] ?? 300);
const rounds = Number(process.argv[4] ?? 3);
const sizes = (process.argv[5] ?? '384,1024').split(',').map(Number);
const server = http.createServer();
const upstream = new WebSocketServer({ noServer: true, perMessageDeflate: false, handleProtocols: () => 'replyx.v1' });
server.on('upgrade', (req, socket, head) => upstream.handleUpgrade(req, socket, head, (ws) => ws.send('{"type":"connected"}')));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const upstreamPort = (server.address() as AddressInfo).port;
const results = new Map<number, { kib: number[]; cpu: number[] }>(sizes.map((bytes) => [bytes, { kib: [], cpu: [] }]));
try {
  for (let r = 0; r < rounds; r++) {
    for (const bytes of r % 2 === 0 ? sizes : [...sizes].reverse()) {
      const { kibPerConn, cpuUsPerFrame } = await round(upstreamPort, upstream, bytes, connections, burst);
      results.get(bytes)!.kib.push(kibPerConn);
      results.get(bytes)!.cpu.push(cpuUsPerFrame);
    }
  }
} finally {
  server.close();
}
console.log(`nginx per proxied WebSocket, ${connections} idle connections, burst of ${burst} frames each, median of ${rounds} rounds:`);
for (const [bytes, r] of results) {
  console.log(`  wsProxyBufferBytes ${String(bytes).padEnd(5)} ${median(r.kib).toFixed(1)} KiB per idle connection   ${median(r.cpu).toFixed(2)} µs nginx CPU per frame (rounds: ${r.cpu.map((c) => c.toFixed(2)).join(', ')})`);
}
