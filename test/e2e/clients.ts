import WebSocket from 'ws';
import { waitUntil } from '../../infra/targets/local/ports.js';

// WebSocket and HTTP clients for the end-to-end tests: they talk to the stack only through
// nginx, like the seed's admin panel, widget and third-party sites.

/** A frame the server sent, parsed. */
export type Frame = Record<string, unknown> & { type?: string; id?: string; dialog_id?: number };

/** A connected test client that records every frame. */
export interface TestSocket {
  readonly ws: WebSocket;
  readonly frames: Frame[];
  /** Event frames only (those with an id). */
  events(): Frame[];
  /** Resolves with the close code once the socket closes. */
  readonly closed: Promise<number>;
  /** Close code, once closed. */
  closeCode(): number | undefined;
}

/** Opens a WebSocket and resolves after the server's `connected` frame, or on close. */
export function openSocket(url: string, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<TestSocket> {
  const ws = new WebSocket(url, { headers });
  const frames: Frame[] = [];
  let code: number | undefined;
  const closed = new Promise<number>((resolve) =>
    ws.on('close', (c) => {
      code = c;
      resolve(c);
    }),
  );
  const socket: TestSocket = { ws, frames, closed, events: () => frames.filter((f) => typeof f.id === 'string'), closeCode: () => code };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connected frame from ${url.replace(/(token=)[^&]+/g, '$1…')} within ${timeoutMs} ms`)), timeoutMs);
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as Frame;
      frames.push(frame);
      if (frame.type === 'connected') {
        clearTimeout(timer);
        resolve(socket);
      }
    });
    ws.on('error', () => undefined);
    void closed.then(() => {
      clearTimeout(timer);
      resolve(socket);
    });
  });
}

/** POSTs `{"text"}` as JSON and returns status and body. */
export async function postMessage(url: string, text: string, headers: Record<string, string> = {}): Promise<{ status: number; eventId?: string; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ text }) });
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  return { status: res.status, eventId: typeof body.event_id === 'string' ? body.event_id : undefined, body };
}

/** Waits until `socket` has received an event with `eventId`; resolves whether it did in time. */
export function receives(socket: TestSocket, eventId: string, timeoutMs: number): Promise<boolean> {
  return waitUntil(async () => socket.frames.some((f) => f.id === eventId), timeoutMs, 5);
}

/**
 * A client that behaves like a well-written widget: on a non-terminal close it reconnects
 * (4200: at once with jitter; anything else: after a short backoff) and resumes with
 * `since=<last event id>`. It records every event it receives, duplicates included.
 */
export class ResumingClient {
  readonly received: string[] = [];
  readonly closeCodes: number[] = [];
  connects = 0;
  #lastId: string | undefined;
  #ws: WebSocket | undefined;
  #stopped = false;

  /** Creates a client for `baseUrl` (which already carries its query string). */
  constructor(readonly baseUrl: string) {}

  /** Connects the first time; resolves once the server said `connected`. */
  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#connect(resolve));
  }

  #connect(onConnected?: () => void): void {
    if (this.#stopped) return;
    const url = this.#lastId ? `${this.baseUrl}&since=${encodeURIComponent(this.#lastId)}` : this.baseUrl;
    const ws = new WebSocket(url);
    this.#ws = ws;
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as Frame;
      if (frame.type === 'connected') {
        this.connects += 1;
        onConnected?.();
        return;
      }
      if (typeof frame.id === 'string') {
        this.received.push(frame.id);
        this.#lastId = frame.id;
      }
    });
    ws.on('error', () => undefined);
    ws.on('close', (code) => {
      this.closeCodes.push(code);
      if (this.#stopped || (code >= 4000 && code < 4100)) return;
      const delay = code >= 4200 && code < 4300 ? Math.random() * 100 : 200;
      setTimeout(() => this.#connect(onConnected), delay);
    });
  }

  /** Stops reconnecting and closes. */
  stop(): void {
    this.#stopped = true;
    this.#ws?.close();
  }
}
