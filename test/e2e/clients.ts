import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { tokenProtocols } from '../../gateway/src/auth/credentials.js';
import { waitUntil } from '../../infra/targets/local/ports.js';

// WebSocket and HTTP clients for the end-to-end tests: they talk to the stack only through
// nginx, like the seed's admin panel, widget and third-party sites. Tokens travel as the
// `replyx.token.<JWT>` subprotocol (or, for the seed's clients, the deprecated query string).

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

/** Opens a WebSocket (with `token` in the subprotocol, if given) and resolves after the server's `connected` frame, or on close. */
export function openSocket(url: string, opts: { headers?: Record<string, string>; token?: string } = {}, timeoutMs = 10_000): Promise<TestSocket> {
  const ws = new WebSocket(url, opts.token ? tokenProtocols(opts.token) : [], { headers: opts.headers ?? {} });
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

/** POSTs `{"text"}` as JSON (with `Authorization: Bearer <token>`, if given) and returns status and body. */
export async function postMessage(url: string, text: string, token?: string): Promise<{ status: number; eventId?: string; body: Record<string, unknown> }> {
  // As a careful client posts: with an Idempotency-Key, retried when the connection itself failed
  // (a kept-alive socket that nginx closed on a reload as the request went out); the key makes the
  // retry store and publish the message once.
  const headers = { 'content-type': 'application/json', 'idempotency-key': randomUUID(), ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const send = () => fetch(url, { method: 'POST', headers, body: JSON.stringify({ text }) });
  const res = await send().catch(async () => {
    await new Promise((r) => setTimeout(r, 50));
    return send();
  });
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  return { status: res.status, eventId: typeof body.event_id === 'string' ? body.event_id : undefined, body };
}

/** A widget session as the embed opens one: `POST /api/widget/sessions` through nginx. */
export async function widgetSession(api: string, body: { assistant_id: number; parent_origin?: string; visitor_key?: string }): Promise<{ status: number; token: string; dialogId: number; body: Record<string, unknown> }> {
  const res = await fetch(`${api}/api/widget/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  return { status: res.status, token: String(json.token ?? ''), dialogId: Number(json.dialog_id ?? 0), body: json };
}

/** Waits until `socket` has received an event with `eventId`; resolves whether it did in time. */
export function receives(socket: TestSocket, eventId: string, timeoutMs: number): Promise<boolean> {
  return waitUntil(async () => socket.frames.some((f) => f.id === eventId), timeoutMs, 5);
}

/**
 * A client that behaves like a well-written widget: on a non-terminal close it reconnects
 * (4200: at once with jitter; anything else: after a short backoff) and resumes with
 * `since=<last event id>`, offering its token in the subprotocol each time. It records every
 * event it receives, duplicates included.
 */
export class ResumingClient {
  readonly received: string[] = [];
  readonly closeCodes: number[] = [];
  connects = 0;
  #lastId: string | undefined;
  #ws: WebSocket | undefined;
  #stopped = false;

  /** Creates a client for `baseUrl` that presents `token` in the subprotocol. */
  constructor(
    readonly baseUrl: string,
    readonly token: string,
  ) {}

  /** Connects the first time; resolves once the server said `connected`. */
  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#connect(resolve));
  }

  #connect(onConnected?: () => void): void {
    if (this.#stopped) return;
    const url = new URL(this.baseUrl);
    if (this.#lastId) url.searchParams.set('since', this.#lastId);
    const ws = new WebSocket(url, tokenProtocols(this.token));
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
