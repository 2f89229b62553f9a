import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import WebSocket from 'ws';
import { selectProtocol } from '../src/auth/credentials.js';
import type { FrameError } from '../src/transport/frame-parser.js';
import { answerHandshake } from '../src/transport/handshake.js';
import { WebSocketTransport } from '../src/transport/web-socket.js';

// A server-side transport that records what it gets, behind a real HTTP server on port 0, and a
// ws client (or a raw TCP client) talking to it: the transport tested without the gateway.

/** A WebSocketTransport that records messages, pings/pongs, protocol errors and its close code. */
export class RecordingWebSocket extends WebSocketTransport {
  readonly messages: { data: Buffer; binary: boolean }[] = [];
  controls = 0;
  errors: FrameError[] = [];
  closedWith: number | undefined;
  readonly closed: Promise<number>;
  #resolve!: (code: number) => void;

  constructor(
    socket: Socket,
    readonly maxPayload: number,
    readonly closeTimeout: number,
  ) {
    super(socket);
    this.closed = new Promise((resolve) => (this.#resolve = resolve));
  }

  protected override get closeTimeoutMs(): number {
    return this.closeTimeout;
  }

  onMessage(data: Buffer, binary: boolean): void {
    this.messages.push({ data, binary });
  }

  protected onPingOrPong(): void {
    this.controls += 1;
  }

  protected onProtocolError(error: FrameError): void {
    this.errors.push(error);
  }

  protected onClosed(code: number): void {
    this.closedWith = code;
    this.#resolve(code);
  }
}

/** A server whose every upgrade becomes a RecordingWebSocket (answered as the gateway answers). */
export interface TransportServer {
  readonly url: string;
  readonly port: number;
  /** The next server-side socket to be accepted. */
  next(): Promise<RecordingWebSocket>;
  close(): Promise<void>;
}

/** Starts a TransportServer on port 0 (maxPayload and close timeout as given). */
export async function transportServer(maxPayload = 64 * 1024, closeTimeoutMs = 30_000): Promise<TransportServer> {
  const server = http.createServer();
  const waiting: ((ws: RecordingWebSocket) => void)[] = [];
  const ready: RecordingWebSocket[] = [];
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const answer = answerHandshake(req, selectProtocol);
    if (!answer.ok) return void socket.end(answer.response);
    socket.write(answer.response);
    const ws = new RecordingWebSocket(socket, maxPayload, closeTimeoutMs);
    ws.start(head);
    const take = waiting.shift();
    if (take) take(ws);
    else ready.push(ws);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/`,
    port,
    next: () => {
      const ws = ready.shift();
      return ws ? Promise.resolve(ws) : new Promise((resolve) => waiting.push(resolve));
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Opens a ws client to `url` and resolves once it is open. */
export async function openClient(url: string, protocols: string[] = []): Promise<WebSocket> {
  const client = new WebSocket(url, protocols, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve());
    client.once('error', reject);
  });
  return client;
}

/** Polls `check` every 5 ms until it holds (5 s at most). */
export async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}
