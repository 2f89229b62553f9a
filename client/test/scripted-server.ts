import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

// A real WebSocket (and HTTP) server on port 0 that a test scripts frame by frame: it plays the
// gateway's side of the contract (subprotocol answer, `connected`, events, close codes, pongs)
// so the client's reconnect behaviour is observed over real sockets.

/** One accepted connection, as the server saw it. */
export interface ServerConnection {
  readonly url: URL;
  readonly headers: IncomingMessage['headers'];
  /** The subprotocols the client offered, in order. */
  readonly protocols: string[];
  /** The token from `replyx.token.<JWT>`, if offered. */
  readonly token: string | undefined;
  readonly ws: WebSocket;
  /** Text frames the client sent. */
  readonly received: string[];
  /** Resolves with the close code once the socket is closed (either side). */
  readonly closed: Promise<number>;
  /** Whether `{"type":"ping"}` is answered with a pong (default true). */
  answerPings: boolean;
  /** Sends the `connected` frame. */
  connected(heartbeatMs?: number): void;
  /** Sends one event frame per id. */
  events(...ids: string[]): void;
  send(frame: unknown): void;
  close(code: number, reason?: string): void;
}

/** The server and what it saw. */
export interface ScriptedServer {
  readonly wsUrl: string;
  readonly httpUrl: string;
  readonly connections: ServerConnection[];
  /** Resolves with the next connection not yet returned by `next()`. */
  next(timeoutMs?: number): Promise<ServerConnection>;
  /** Heartbeat of the `connected` frame sent as soon as a client connects; false to script it. Default 25000. */
  autoConnected: number | false;
  /** Handles plain HTTP requests (default 404). */
  http: (req: IncomingMessage, body: string, res: ServerResponse) => void;
  close(): Promise<void>;
}

/** Starts a scripted server on 127.0.0.1, port 0. */
export async function startScriptedServer(): Promise<ScriptedServer> {
  const http = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => server.http(req, body, res));
  });
  const wss = new WebSocketServer({ server: http, handleProtocols: (offered) => (offered.has('replyx.v1') ? 'replyx.v1' : false) });
  const connections: ServerConnection[] = [];
  let taken = 0;
  const waiters: (() => void)[] = [];
  wss.on('connection', (ws, req) => {
    const protocols = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    const received: string[] = [];
    const conn: ServerConnection = {
      url: new URL(req.url ?? '/', 'ws://127.0.0.1'),
      headers: req.headers,
      protocols,
      token: protocols.find((p) => p.startsWith('replyx.token.'))?.slice('replyx.token.'.length),
      ws,
      received,
      closed: new Promise((resolve) => ws.on('close', (code) => resolve(code))),
      answerPings: true,
      connected: (heartbeatMs = 25_000) => conn.send({ type: 'connected', server: 'ws-gateway', instance: 'scripted', heartbeat_ms: heartbeatMs }),
      events: (...ids) => {
        for (const id of ids) conn.send({ id, type: 'message:new', dialog_id: Number(conn.url.pathname.split('/').pop()), data: { text: `event ${id}` }, ts: Number(id.split('-')[0]) });
      },
      send: (frame) => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
      },
      close: (code, reason) => ws.close(code, reason),
    };
    ws.on('message', (data) => {
      const text = String(data);
      received.push(text);
      if (text === '{"type":"ping"}' && conn.answerPings) conn.send({ type: 'pong' });
    });
    ws.on('error', () => undefined);
    connections.push(conn);
    if (server.autoConnected !== false) conn.connected(server.autoConnected);
    for (const wake of waiters.splice(0)) wake();
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  const server: ScriptedServer = {
    wsUrl: `ws://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${port}`,
    connections,
    autoConnected: 25_000,
    http: (_req, _body, res) => res.writeHead(404).end(),
    async next(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (connections.length <= taken) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no connection #${taken + 1} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return connections[taken++] as ServerConnection;
    },
    async close() {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
  return server;
}

/** An unsigned JWT with these claims (the client reads `exp` without verifying). */
export function fakeJwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}.c2lnbmF0dXJl`;
}
