import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { validateTopology, type TopologyInput, type WsRoute } from '../topology/index.js';
import { freePort, waitUntil } from '../targets/local/ports.js';
import { nginxOpenFileLimit, startNginx, type ServiceProcess } from '../targets/local/processes.js';
import { reloadAndWait } from '../targets/local/nginx-workers.js';
import { WS_ROUTE_HEADER } from '../../examples/backend/src/legacy-route.js';
import { renderNginxConfig } from './nginx.js';

// The local render, run by a real nginx in front of two tiny servers that stand in for the
// backend and the gateway. Both answer 200 to every path and accept WebSocket upgrades, so a
// 404 can only come from nginx and each reply says which server it came from.

interface Upstream {
  readonly name: 'backend' | 'gateway';
  readonly port: number;
  /** Raw request targets (path + query) the server received. */
  readonly seen: string[];
  close(): Promise<void>;
}

async function startUpstream(name: Upstream['name']): Promise<Upstream> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.url ?? '');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ server: name, url: req.url, realIp: req.headers['x-real-ip'], forwardedFor: req.headers['x-forwarded-for'] }));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    seen.push(req.url ?? '');
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(JSON.stringify({ server: name, url: req.url, realIp: req.headers['x-real-ip'], routeMark: req.headers[WS_ROUTE_HEADER.toLowerCase()] }));
      ws.on('message', (data) => ws.send(`echo:${data.toString()}`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    name,
    port: (server.address() as AddressInfo).port,
    seen,
    async close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface WsReply {
  readonly first: { server: string; url: string; realIp?: string; routeMark?: string };
  readonly echo: string;
}

/** Opens a WebSocket, reads the greeting, checks a round trip, then closes it cleanly. */
async function wsRoundTrip(url: string, headers: Record<string, string> = {}): Promise<WsReply> {
  const ws = new WebSocket(url, { headers });
  const messages: string[] = [];
  ws.on('message', (data) => messages.push(data.toString()));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  await waitUntil(async () => messages.length >= 1, 5000, 10);
  ws.send('hi');
  await waitUntil(async () => messages.length >= 2, 5000, 10);
  await new Promise<void>((resolve) => {
    ws.once('close', () => resolve());
    ws.close(1000);
  });
  return { first: JSON.parse(messages[0] ?? '{}') as WsReply['first'], echo: messages[1] ?? '' };
}

/** Sends a request with a raw request target, which fetch would normalise first. */
async function rawGet(port: number, target: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, method: 'GET', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Status of a WebSocket handshake that nginx refuses or fails. */
async function wsHandshakeStatus(url: string): Promise<number> {
  const ws = new WebSocket(url);
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('handshake unexpectedly succeeded'));
    });
    ws.once('error', reject);
  });
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function stackFor(wsRoute: WsRoute, nginxSettings: Omit<NonNullable<TopologyInput['nginx']>, 'port'> = {}) {
  const backend = await startUpstream('backend');
  cleanups.push(() => backend.close());
  const gateway = await startUpstream('gateway');
  cleanups.push(() => gateway.close());
  const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-nginx-live-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  // Started as root, nginx workers run unprivileged and must reach their temp dirs in here.
  await chmod(dir, 0o755);
  const nginxPort = await freePort();
  const { topology } = validateTopology({ target: 'local', wsRoute, nginx: { ...nginxSettings, port: nginxPort }, backend: { port: backend.port }, gateway: { port: gateway.port } });
  const configFile = path.join(dir, 'nginx.conf');
  // Rendered as the local target renders it: worker_rlimit_nofile within the limit nginx inherits.
  await writeFile(configFile, renderNginxConfig(topology, 'local', { openFileLimit: nginxOpenFileLimit() }));
  const nginx: ServiceProcess = await startNginx({ dir, port: nginxPort, configFile });
  cleanups.push(() => nginx.stop());
  const base = `127.0.0.1:${nginxPort}`;
  const accessLog = path.join(dir, 'logs', 'access.log');
  const errorLog = path.join(dir, 'logs', 'error.log');
  return { topology, backend, gateway, nginxPort, nginxPid: nginx.pid, base, configFile, accessLog, errorLog, wsServer: wsRoute === 'gateway' ? gateway : backend };
}

const readText = (file: string) => readFile(file, 'utf8').catch(() => '');

describe.each(['gateway', 'backend'] as const)('nginx (local render) in front of real servers, ws -> %s', (wsRoute) => {
  it('routes /api/ to the backend and upgrades /ws/ on the right upstream, with client headers', async () => {
    const { base, backend, wsServer } = await stackFor(wsRoute);

    const api = await fetch(`http://${base}/api/x?site_token=abc`);
    expect(api.status).toBe(200);
    expect(await api.json()).toMatchObject({ server: 'backend', url: '/api/x?site_token=abc', realIp: '127.0.0.1', forwardedFor: '127.0.0.1' });
    expect(backend.seen).toContain('/api/x?site_token=abc');

    const reply = await wsRoundTrip(`ws://${base}/ws/dialogs/123?token=secret-token-123`);
    // The query reaches the upstream (it authenticates with it); only the logs must not keep it.
    // The backend's legacy /ws/ needs the route mark; it is sent only when the plan routes /ws/ there.
    expect(reply.first).toEqual({ server: wsServer.name, url: '/ws/dialogs/123?token=secret-token-123', realIp: '127.0.0.1', routeMark: wsRoute === 'backend' ? 'backend' : undefined });
    expect(reply.echo).toBe('echo:hi');

    const health = await fetch(`http://${base}/health`);
    expect([health.status, await health.text()]).toEqual([200, 'ok']);
    expect((await fetch(`http://${base}/`)).status).toBe(404);
  });

  it("with the default /ws/ proxy buffer (nginx.wsProxyBufferBytes, smaller than one frame) and the server's request header buffer and pool sizes, passes a browser-sized token handshake and 64 KiB frames both ways on /ws/, and long cookies and URLs on /api/", async () => {
    const { base, wsServer } = await stackFor(wsRoute);
    // About 1.4 KB of headers, as a browser sends them with a widget token: more than nginx's
    // default 1 KiB buffer, within nginx.clientHeaderBufferKb.
    const ws = new WebSocket(`ws://${base}/ws/widget/dialogs/123`, ['replyx.v1', `replyx.token.${'t'.repeat(600)}`], {
      headers: {
        'User-Agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
        Origin: 'https://shop.example.com',
        'Accept-Encoding': 'gzip, deflate, br, zstd',
        'Accept-Language': 'en-US,en;q=0.9,de;q=0.8',
        'Cache-Control': 'no-cache',
        Pragma: 'no-cache',
        Cookie: `session=${'c'.repeat(200)}`,
      },
    });
    const messages: string[] = [];
    ws.on('message', (data) => messages.push(data.toString()));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    expect(ws.protocol).toBe('replyx.v1');
    // Frames far above the 1 KiB proxy buffer pass in several reads, in both directions.
    const big = 'y'.repeat(64 * 1024);
    ws.send(big);
    await waitUntil(async () => messages.length >= 2, 5000, 10);
    expect(JSON.parse(messages[0]!)).toMatchObject({ server: wsServer.name, url: '/ws/widget/dialogs/123' });
    expect(messages[1]).toBe(`echo:${big}`);
    ws.close(1000);

    // Headers and URLs beyond the buffer still pass in the large header buffers (8 KiB a line).
    const longPath = `/api/x?q=${'u'.repeat(4000)}`;
    const api = await fetch(`http://${base}${longPath}`, { headers: { cookie: `a=${'a'.repeat(6000)}`, 'x-extra': 'e'.repeat(3000) } });
    expect(api.status).toBe(200);
    expect(((await api.json()) as { url: string }).url).toBe(longPath);
  });

  it('asks for no more open files than the hard limit it inherits, so neither a start nor a reload logs a setrlimit alert', async () => {
    const { topology, base, configFile, errorLog, nginxPort, nginxPid } = await stackFor(wsRoute);
    const hard = execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
    const wanted = 2 * topology.nginx.workerConnections;
    const want = hard === 'unlimited' ? wanted : Math.min(wanted, Number(hard));
    expect(await readFile(configFile, 'utf8')).toContain(`\nworker_rlimit_nofile ${want};\n`);
    // The alert comes from the workers: wait for one to serve, then reload once for a second set.
    expect((await fetch(`http://${base}/health`)).status).toBe(200);
    const { reloaded } = await reloadAndWait(nginxPid);
    expect(reloaded).toBe(true);
    expect(await rawGet(nginxPort, '/health')).toBe(200);
    expect(await readText(errorLog)).not.toMatch(/setrlimit|RLIMIT_NOFILE/);
  });

  it('does not let debug or internal endpoints through, however the path is spelled', async () => {
    const { base, nginxPort, gateway, backend } = await stackFor(wsRoute);
    // The stand-ins answer these paths, so any 404 below is nginx's own.
    expect((await fetch(`http://127.0.0.1:${gateway.port}/api/debug/websocket/status`)).status).toBe(200);
    gateway.seen.length = 0;

    expect((await fetch(`http://${base}/api/debug/websocket/status`)).status).toBe(404);
    expect((await fetch(`http://${base}/api/debug/websocket/sync?dialog_id=123`)).status).toBe(404);
    expect((await fetch(`http://${base}/internal/publish`, { method: 'POST', body: '{}' })).status).toBe(404);
    expect((await fetch(`http://${base}/metrics`)).status).toBe(404);
    for (const target of ['/api/x/../debug/websocket/status', '/api/%64ebug/websocket/status', '//api/debug/websocket/status', '/ws/..%2Finternal/publish', '/ws/../api/debug/websocket/status', '/api/../metrics', '/api/%2e%2e/metrics', '/metrics?x=1']) {
      expect(await rawGet(nginxPort, target), target).toBe(404);
    }
    expect(await wsHandshakeStatus(`ws://${base}/api/debug/websocket/status`)).toBe(404);
    expect([...gateway.seen, ...backend.seen].filter((u) => /debug|internal|metrics/.test(u))).toEqual([]);
  });

  it('keeps /ws/ query strings (tokens) out of the access and error logs, also when the upstream is down', async () => {
    const { base, accessLog, errorLog, wsServer } = await stackFor(wsRoute);
    await wsRoundTrip(`ws://${base}/ws/dialogs/123?token=secret-token-123`);
    await fetch(`http://${base}/api/site/dialogs/123/messages?site_token=site-secret-456`, { method: 'POST', body: '{}' });
    // A WebSocket is logged when it closes; wait for both lines.
    expect(await waitUntil(async () => /"\/ws\/dialogs\/123"/.test(await readText(accessLog)) && /\/api\/site\//.test(await readText(accessLog)), 5000)).toBe(true);

    await wsServer.close();
    expect(await wsHandshakeStatus(`ws://${base}/ws/dialogs/200?token=secret-token-789`)).toBe(502);
    expect(await waitUntil(async () => /"\/ws\/dialogs\/200"/.test(await readText(accessLog)), 5000)).toBe(true);

    const log = await readText(accessLog);
    // One JSON object per line.
    const lines = log.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as Record<string, unknown>);
    const wsLines = lines.filter((l) => String(l.uri).startsWith('/ws/'));
    expect(wsLines).toHaveLength(2);
    expect(wsLines[0]).toMatchObject({ service: 'nginx', kind: 'ws', method: 'GET', uri: '/ws/dialogs/123', protocol: 'HTTP/1.1', status: 101, upstream_status: '101' });
    expect(wsLines[1]).toMatchObject({ kind: 'ws', uri: '/ws/dialogs/200', status: 502, upstream_status: '502' });
    expect(typeof wsLines[0]!.duration).toBe('number');
    expect(lines).toContainEqual(expect.objectContaining({ kind: 'http', method: 'POST', uri: '/api/site/dialogs/123/messages', status: 200 }));
    for (const secret of ['secret-token-123', 'secret-token-789', 'site-secret-456', 'token=', '?']) expect(log).not.toContain(secret);
    expect(await readText(errorLog)).not.toMatch(/secret-token/);
  });

  it('writes no token to either log when requests with query tokens fail: 413, upstream down, rate-limited', async () => {
    const { base, accessLog, errorLog, backend, wsServer } = await stackFor(wsRoute, { clientMaxBodySize: '1k', apiRequestsPerSecond: 1, apiBurst: 1, wsHandshakesPerSecond: 1, wsHandshakeBurst: 1 });
    const big = 'x'.repeat(4096);
    expect((await fetch(`http://${base}/api/site/dialogs/1/messages?site_token=leak-413-site`, { method: 'POST', body: big })).status).toBe(413);
    await backend.close();
    if (wsServer !== backend) await wsServer.close();
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`http://${base}/api/dialogs/1/messages?site_token=leak-502-site-${i}&token=leak-502-admin-${i}`)).status);
    // The first request (the burst) reaches the dead upstream (502); the rest are over the rate (429).
    expect(statuses[0]).toBe(502);
    expect(statuses.slice(1)).toContain(429);
    const ws: number[] = [];
    for (let i = 0; i < 4; i++) ws.push(await wsHandshakeStatus(`ws://${base}/ws/dialogs/7?token=leak-ws-${i}`));
    expect(ws[0]).toBe(502);
    expect(ws.slice(1)).toContain(429);
    expect(await waitUntil(async () => (await readText(accessLog)).split('\n').filter((l) => l.includes('"/ws/dialogs/7"')).length === 4, 5000)).toBe(true);

    const access = await readText(accessLog);
    const lines = access.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toContainEqual(expect.objectContaining({ kind: 'http', uri: '/api/site/dialogs/1/messages', status: 413 }));
    expect(lines).toContainEqual(expect.objectContaining({ kind: 'http', status: 502, upstream_status: '502' }));
    expect(lines).toContainEqual(expect.objectContaining({ kind: 'http', status: 429, limit_req: 'REJECTED' }));
    expect(lines).toContainEqual(expect.objectContaining({ kind: 'ws', status: 429, limit_req: 'REJECTED' }));
    const errors = await readText(errorLog);
    for (const text of [access, errors]) {
      expect(text).not.toMatch(/leak-|token=|\?/);
    }
  });
});

describe('the /ws/ route mark (examples/backend/src/legacy-route.ts)', () => {
  it("is absent after a hand edit points the gateway route's /ws/ at the backend, even when the client sends one itself", async () => {
    const { base, configFile, nginxPid } = await stackFor('gateway');
    const forged = { [WS_ROUTE_HEADER]: 'backend' };
    expect((await wsRoundTrip(`ws://${base}/ws/dialogs/1`, forged)).first).toEqual({ server: 'gateway', url: '/ws/dialogs/1', realIp: '127.0.0.1' });

    const rendered = await readFile(configFile, 'utf8');
    const edited = rendered.replace(/(location \/ws\/ \{[^}]*?proxy_pass http:\/\/)replyx_ws_gateway;/, '$1replyx_backend;');
    expect(edited).not.toBe(rendered);
    await writeFile(configFile, edited);
    expect((await reloadAndWait(nginxPid)).reloaded).toBe(true);

    // Now on the backend: no mark, the client's own dropped, so the backend refuses it (4102).
    const first = await waitUntil(async () => (await wsRoundTrip(`ws://${base}/ws/dialogs/1`, forged)).first.server === 'backend', 10_000, 100);
    expect(first, 'the hand edit is live').toBe(true);
    expect((await wsRoundTrip(`ws://${base}/ws/dialogs/1`, forged)).first).toEqual({ server: 'backend', url: '/ws/dialogs/1', realIp: '127.0.0.1' });
  });
});
