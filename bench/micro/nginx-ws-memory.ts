#!/usr/bin/env tsx
// Micro-benchmark of nginx's memory per idle proxied WebSocket (its share of bench (c)) for the
// request settings: nginx's own defaults (client_header_buffer_size 1k, request_pool_size 4k)
// against the topology's (nginx.clientHeaderBufferKb, nginx.requestPoolBytes), and the topology's
// with 1 KiB /ws/ proxy buffers instead of nginx.wsProxyBufferBytes,
// each with a handshake as the benchmark's clients send it and one as a browser's reaches nginx
// on aws (its usual headers, a widget-sized token and the load balancer's X-Forwarded-* and
// trace headers: about 1.1 KB). The local render (one worker) runs in
// front of a bare `ws` upstream, so every figure is nginx's own; variants alternate per round.
// Usage: npx tsx bench/micro/nginx-ws-memory.ts [connections=2000] [rounds=3]
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { renderNginxConfig } from '../../infra/render/nginx.js';
import { freePort } from '../../infra/targets/local/ports.js';
import { startNginx } from '../../infra/targets/local/processes.js';
import { validateTopology, type TopologyInput } from '../../infra/topology/index.js';
import { measure, processTree } from '../proc.js';

/** The subprotocols a widget offers: its session token is about 350 characters. */
const TOKEN_PROTOCOLS = ['replyx.v1', `replyx.token.${'e'.repeat(350)}`];

/** What a browser adds to a WebSocket handshake besides the ones `ws` sends, and what an ALB adds. */
const BROWSER_HEADERS = {
  Host: 'chat.example-replyx.com',
  'User-Agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  Origin: 'https://shop.example.com',
  Pragma: 'no-cache',
  'Cache-Control': 'no-cache',
  'Accept-Encoding': 'gzip, deflate, br, zstd',
  'Accept-Language': 'en-US,en;q=0.9,de;q=0.8',
  'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits',
  'X-Forwarded-For': '203.0.113.57',
  'X-Forwarded-Proto': 'https',
  'X-Forwarded-Port': '443',
  'X-Amzn-Trace-Id': 'Root=1-67891233-abcdef012345678912345678',
};

const SETTINGS: Record<string, NonNullable<TopologyInput['nginx']>> = {
  "nginx's defaults (1k, 4096)": { clientHeaderBufferKb: 1, requestPoolBytes: 4096 },
  'topology defaults': {},
  'topology defaults, 1 KiB /ws/ buffers': { wsProxyBufferBytes: 1024 },
};
const HANDSHAKES: Record<string, Record<string, string>> = { 'bench client': {}, 'browser via an ALB': BROWSER_HEADERS };

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** nginx KiB per idle WebSocket with `settings`, opened with `headers`. */
async function round(upstreamPort: number, settings: NonNullable<TopologyInput['nginx']>, headers: Record<string, string>, connections: number): Promise<number> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-micro-nginx-'));
  await chmod(dir, 0o755);
  const port = await freePort();
  const { topology } = validateTopology(
    {
      target: 'local',
      gateway: { port: upstreamPort },
      backend: { port: await freePort() },
      nginx: { ...settings, port, wsConnectionsPerClient: 65_535, wsHandshakesPerSecond: 100_000, wsHandshakeBurst: 100_000 },
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
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/widget/dialogs/1`, TOKEN_PROTOCOLS, { perMessageDeflate: false, headers });
        ws.once('message', () => resolve(ws));
        ws.once('error', reject);
      });
    const openMany = async (n: number) => {
      for (let i = 0; i < n; i += 50) sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, open))));
    };
    // The worker's first connections grow its heap and tables: not what one more costs.
    await openMany(200);
    await new Promise((r) => setTimeout(r, 300));
    const before = await measure(pids);
    await openMany(connections);
    await new Promise((r) => setTimeout(r, 500));
    const after = await measure(pids);
    return (after.rssBytes - before.rssBytes) / connections / 1024;
  } finally {
    for (const s of sockets) s.terminate();
    await nginx.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const connections = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 3);
const server = http.createServer();
const upstream = new WebSocketServer({ noServer: true, perMessageDeflate: false, handleProtocols: () => 'replyx.v1' });
server.on('upgrade', (req, socket, head) => upstream.handleUpgrade(req, socket, head, (ws) => ws.send('{"type":"connected"}')));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const upstreamPort = (server.address() as AddressInfo).port;
const variants = Object.keys(SETTINGS).flatMap((s) => Object.keys(HANDSHAKES).map((h) => [s, h] as const));
const results = new Map<string, number[]>(variants.map(([s, h]) => [`${s} | ${h}`, []]));
try {
  for (let r = 0; r < rounds; r++) {
    for (const [s, h] of r % 2 === 0 ? variants : [...variants].reverse()) {
      results.get(`${s} | ${h}`)!.push(await round(upstreamPort, SETTINGS[s]!, HANDSHAKES[h]!, connections));
    }
  }
} finally {
  server.close();
}
console.log(`nginx RSS per idle proxied WebSocket, ${connections} connections, median of ${rounds} rounds:`);
for (const [name, kib] of results) console.log(`  ${name.padEnd(60)} ${median(kib).toFixed(2)} KiB   (rounds: ${kib.map((k) => k.toFixed(2)).join(', ')})`);
