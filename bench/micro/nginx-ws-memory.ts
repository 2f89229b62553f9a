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
import { idleRound, median, startWsUpstream, type NginxSettings } from './nginx-ws-rig.js';

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

const SETTINGS: Record<string, NginxSettings> = {
  "nginx's defaults (1k, 4096)": { clientHeaderBufferKb: 1, requestPoolBytes: 4096 },
  'topology defaults': {},
  'topology defaults, 1 KiB /ws/ buffers': { wsProxyBufferBytes: 1024 },
};
const HANDSHAKES: Record<string, Record<string, string>> = { 'bench client': {}, 'browser via an ALB': BROWSER_HEADERS };

/** nginx KiB per idle WebSocket with `settings`, opened with `headers`. */
function round(upstreamPort: number, settings: NginxSettings, headers: Record<string, string>, connections: number): Promise<number> {
  return idleRound({ upstreamPort, settings, path: '/ws/widget/dialogs/1', protocols: TOKEN_PROTOCOLS, headers, connections, settleMs: { warm: 300, measured: 500 } }, (r) => r.kibPerConn);
}

const connections = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 3);
const upstream = await startWsUpstream();
const variants = Object.keys(SETTINGS).flatMap((s) => Object.keys(HANDSHAKES).map((h) => [s, h] as const));
const results = new Map<string, number[]>(variants.map(([s, h]) => [`${s} | ${h}`, []]));
try {
  for (let r = 0; r < rounds; r++) {
    for (const [s, h] of r % 2 === 0 ? variants : [...variants].reverse()) {
      results.get(`${s} | ${h}`)!.push(await round(upstream.port, SETTINGS[s]!, HANDSHAKES[h]!, connections));
    }
  }
} finally {
  await upstream.close();
}
console.log(`nginx RSS per idle proxied WebSocket, ${connections} connections, median of ${rounds} rounds:`);
for (const [name, kib] of results) console.log(`  ${name.padEnd(60)} ${median(kib).toFixed(2)} KiB   (rounds: ${kib.map((k) => k.toFixed(2)).join(', ')})`);
