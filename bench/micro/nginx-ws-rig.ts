import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { renderNginxConfig } from '../../infra/render/nginx.js';
import { freePort } from '../../infra/targets/local/ports.js';
import { nginxOpenFileLimit, startNginx } from '../../infra/targets/local/processes.js';
import { validateTopology, type TopologyInput } from '../../infra/topology/index.js';
import { measure, processTree } from '../proc.js';

// The set-up the nginx micro-benchmarks share: the local render with one worker in front of a
// bare `ws` upstream, so every figure is nginx's own, and idle WebSockets opened through it with
// nginx's RSS read before and after.

/** nginx settings a round varies (the topology's `nginx.*` keys). */
export type NginxSettings = Omit<NonNullable<TopologyInput['nginx']>, 'port'>;

/** Median of a list of numbers (the upper middle for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** A bare `ws` upstream that greets every socket with one frame, as the gateway sends `connected`. */
export interface WsUpstream {
  readonly port: number;
  readonly server: WebSocketServer;
  close(): Promise<void>;
}

/** Starts the upstream on a free loopback port; it accepts the `replyx.v1` subprotocol. */
export async function startWsUpstream(): Promise<WsUpstream> {
  const http1 = http.createServer();
  const server = new WebSocketServer({ noServer: true, perMessageDeflate: false, handleProtocols: () => 'replyx.v1' });
  http1.on('upgrade', (req, socket, head) => server.handleUpgrade(req, socket, head, (ws) => ws.send('{"type":"connected"}')));
  await new Promise<void>((resolve) => http1.listen(0, '127.0.0.1', resolve));
  return {
    port: (http1.address() as AddressInfo).port,
    server,
    close: () => {
      for (const ws of server.clients) ws.terminate();
      server.close();
      http1.closeAllConnections();
      return new Promise<void>((resolve) => http1.close(() => resolve()));
    },
  };
}

/** How one round opens its idle WebSockets. */
export interface IdleRoundOptions {
  readonly upstreamPort: number;
  readonly settings: NginxSettings;
  /** Path of the handshake (`/ws/dialogs/1`). */
  readonly path: string;
  readonly protocols: readonly string[];
  readonly headers?: Readonly<Record<string, string>>;
  readonly connections: number;
  /** Pause after the warm-up sockets, and after the measured ones, before RSS is read. */
  readonly settleMs: { readonly warm: number; readonly measured: number };
}

/** What a round measured, with nginx and the sockets still up for further measuring. */
export interface IdleRound {
  /** nginx's RSS growth per measured idle WebSocket, KiB. */
  readonly kibPerConn: number;
  /** Every open socket (warm-up included). */
  readonly sockets: readonly WebSocket[];
  /** nginx's master and worker pids, for `measure`. */
  readonly pids: readonly number[];
}

/** Runs nginx with `settings`, opens the round's idle WebSockets, hands what it measured to `use`, then tears everything down. */
export async function idleRound<T>(opts: IdleRoundOptions, use: (round: IdleRound) => Promise<T> | T): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-micro-nginx-'));
  await chmod(dir, 0o755);
  const port = await freePort();
  const { topology } = validateTopology(
    {
      target: 'local',
      gateway: { port: opts.upstreamPort },
      backend: { port: await freePort() },
      nginx: { ...opts.settings, port, wsConnectionsPerClient: 65_535, wsHandshakesPerSecond: 100_000, wsHandshakeBurst: 100_000 },
    },
    'micro topology',
  );
  const configFile = path.join(dir, 'nginx.conf');
  // One worker, so every connection lands in the process whose memory is read.
  await writeFile(configFile, renderNginxConfig(topology, 'local', { openFileLimit: nginxOpenFileLimit() }).replace(/worker_processes [^;]+;/, 'worker_processes 1;'));
  const nginx = await startNginx({ dir, port, configFile });
  const sockets: WebSocket[] = [];
  try {
    const pids = await processTree(nginx.pid);
    const open = () =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}${opts.path}`, [...opts.protocols], { perMessageDeflate: false, headers: { ...opts.headers } });
        ws.once('message', () => resolve(ws));
        ws.once('error', reject);
      });
    const openMany = async (n: number) => {
      for (let i = 0; i < n; i += 50) sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, open))));
    };
    // The worker's first connections grow its heap, pools and tables: not what one more costs.
    await openMany(200);
    await new Promise((r) => setTimeout(r, opts.settleMs.warm));
    const before = await measure(pids);
    await openMany(opts.connections);
    await new Promise((r) => setTimeout(r, opts.settleMs.measured));
    const after = await measure(pids);
    return await use({ kibPerConn: (after.rssBytes - before.rssBytes) / opts.connections / 1024, sockets, pids });
  } finally {
    for (const s of sockets) s.terminate();
    await nginx.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
