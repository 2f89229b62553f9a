import { messageOf, optionError, ReplyxClientError } from './errors.js';
import { isJwt, jwtExpiresAt, type TokenSource } from './token.js';

// A widget's credential: `POST /api/widget/sessions` checks the embedding page's origin and
// answers a short-lived token bound to one dialog, plus a visitor key that resumes that dialog
// next time. This keeps the visitor key in a pluggable storage and renews the token on demand
// before `expires_at` (the DialogClient asks for a fresh one ahead of `exp`).

/** Where the visitor key is kept; `localStorage` and `sessionStorage` fit as they are. */
export interface VisitorKeyStorage {
  getItem(key: string): string | null | undefined | Promise<string | null | undefined>;
  setItem(key: string, value: string): unknown;
}

/** The part of a fetch Response the session reads. */
export interface FetchResponseLike {
  readonly ok: boolean;
  readonly status: number;
  json(): Promise<unknown>;
}

/** A fetch function (the global one by default). */
export type FetchLike = (url: string, init: { method: string; headers: Record<string, string>; body: string }) => Promise<FetchResponseLike>;

/** Settings of a {@link WidgetSession}. */
export interface WidgetSessionOptions {
  /** Base URL of the API, e.g. `https://chat.example.com` (`/api/widget/sessions` is appended). */
  readonly apiUrl: string;
  readonly assistantId: number;
  /** Origin of the page embedding the widget's iframe; without it the API judges the `Origin` header. */
  readonly parentOrigin?: string;
  /** Keeps the visitor key across page loads. Default: memory (a new dialog per page load). */
  readonly storage?: VisitorKeyStorage;
  /** Storage key of the visitor key. Default `replyx.visitor_key.<assistantId>`. */
  readonly storageKey?: string;
  /** A cached token with less life left than this is renewed before use. Default 60000. */
  readonly renewBeforeMs?: number;
  readonly fetch?: FetchLike;
}

/** One widget session as the API answered it. */
export interface WidgetSessionInfo {
  readonly token: string;
  /** Expiry in epoch ms (`expires_at`, else the token's `exp`); undefined if neither says. */
  readonly expiresAt: number | undefined;
  readonly dialogId: number;
  readonly visitorKey: string | undefined;
}

/** The API path that issues widget sessions. */
export const WIDGET_SESSIONS_PATH = '/api/widget/sessions';

/** Close code equivalent of a refused session: terminal for client errors, none (retry) for 408, 429, 5xx. */
export function sessionRefusalCloseCode(status: number): number | undefined {
  if (status === 408 || status === 429 || status >= 500) return undefined;
  return status === 401 ? 4001 : status === 403 ? 4003 : status === 404 ? 4004 : 4009;
}

/** `expires_at` as epoch ms: epoch seconds or ms, or an ISO date; falls back to the token's `exp`. */
function expiresAtMs(value: unknown, token: string): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value < 1e12 ? value * 1000 : value;
  const parsed = typeof value === 'string' ? Date.parse(value) : NaN;
  return Number.isNaN(parsed) ? jwtExpiresAt(token) : parsed;
}

function newIdempotencyKey(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** Obtains and renews widget session tokens for one assistant; pass `getToken` to a widget DialogClient. */
export class WidgetSession {
  readonly #url: string;
  readonly #assistantId: number;
  readonly #parentOrigin: string | undefined;
  readonly #storage: VisitorKeyStorage;
  readonly #storageKey: string;
  readonly #renewBeforeMs: number;
  readonly #fetch: FetchLike;
  #current: WidgetSessionInfo | undefined;
  #inflight: Promise<WidgetSessionInfo> | undefined;
  /** Kept across retries of one creation, so a retried POST whose answer was lost creates nothing twice. */
  #idempotencyKey: string | undefined;

  /** Validates the options (throws `RPX_CLIENT_OPTIONS`); requests nothing yet. */
  constructor(options: WidgetSessionOptions) {
    let api: URL;
    try {
      api = new URL(options.apiUrl);
    } catch {
      throw optionError('apiUrl', 'an absolute http(s) URL such as https://chat.example.com', options.apiUrl);
    }
    if (!/^https?:$/.test(api.protocol)) throw optionError('apiUrl', 'an http:// or https:// URL', options.apiUrl);
    api.pathname = api.pathname.replace(/\/+$/, '') + WIDGET_SESSIONS_PATH;
    this.#url = api.href;
    if (!Number.isSafeInteger(options.assistantId) || options.assistantId < 1) throw optionError('assistantId', 'a positive whole number', options.assistantId);
    this.#assistantId = options.assistantId;
    this.#parentOrigin = options.parentOrigin;
    const memory = new Map<string, string>();
    this.#storage = options.storage ?? { getItem: (key) => memory.get(key), setItem: (key, value) => memory.set(key, value) };
    this.#storageKey = options.storageKey ?? `replyx.visitor_key.${options.assistantId}`;
    this.#renewBeforeMs = options.renewBeforeMs ?? 60_000;
    if (!(this.#renewBeforeMs >= 0)) throw optionError('renewBeforeMs', 'a number of milliseconds >= 0', options.renewBeforeMs);
    this.#fetch = options.fetch ?? ((url, init) => fetch(url, init));
  }

  /** The latest session, if one was obtained. */
  get current(): WidgetSessionInfo | undefined {
    return this.#current;
  }

  /** The current session, or a new one when there is none, it is near expiry, or `fresh` is asked for. */
  get(request: { fresh?: boolean } = {}): Promise<WidgetSessionInfo> {
    const current = this.#current;
    if (!request.fresh && current && (current.expiresAt === undefined || current.expiresAt - Date.now() > this.#renewBeforeMs)) return Promise.resolve(current);
    this.#inflight ??= this.#request().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  /**
   * Token source for a widget DialogClient. Throws a terminal error (4004) if a renewal moved
   * the visitor to another dialog (the API no longer knew the visitor key): open a client for
   * `current.dialogId` then.
   */
  readonly getToken: TokenSource = async ({ fresh }) => {
    const before = this.#current?.dialogId;
    const session = await this.get({ fresh });
    if (before !== undefined && session.dialogId !== before) {
      throw new ReplyxClientError('RPX_WIDGET_SESSION', `the session moved from dialog ${before} to dialog ${session.dialogId} (visitor key not recognised); connect to the new dialog`, 4004);
    }
    return session.token;
  };

  /** `Bearer <token>` for the widget's API calls (`Authorization` header). */
  async authorization(): Promise<string> {
    return `Bearer ${(await this.get()).token}`;
  }

  async #request(): Promise<WidgetSessionInfo> {
    let visitorKey = (await this.#storage.getItem(this.#storageKey)) || undefined;
    for (;;) {
      const body = JSON.stringify({ assistant_id: this.#assistantId, parent_origin: this.#parentOrigin, visitor_key: visitorKey });
      const idempotencyKey = (this.#idempotencyKey ??= newIdempotencyKey());
      let response: FetchResponseLike;
      try {
        response = await this.#fetch(this.#url, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey }, body });
      } catch (error) {
        throw new ReplyxClientError('RPX_WIDGET_SESSION', `POST ${this.#url} failed: ${messageOf(error)}; retrying`);
      }
      const payload = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined;
      const closeCode = response.ok ? undefined : sessionRefusalCloseCode(response.status);
      if (closeCode !== undefined) this.#idempotencyKey = undefined;
      if (response.status === 404 && visitorKey !== undefined) {
        // The stored visitor key no longer resumes a dialog: start a new one.
        visitorKey = undefined;
        continue;
      }
      if (!response.ok) {
        const detail = typeof payload?.error === 'string' ? `: ${payload.error}` : '';
        throw new ReplyxClientError('RPX_WIDGET_SESSION', `the API refused the widget session with HTTP ${response.status}${detail}`, closeCode, response.status);
      }
      this.#idempotencyKey = undefined;
      const { token, dialog_id: dialogId, visitor_key: issuedKey, expires_at: expiresAt } = payload ?? {};
      if (!isJwt(token) || typeof dialogId !== 'number' || !Number.isSafeInteger(dialogId)) {
        throw new ReplyxClientError('RPX_WIDGET_SESSION', `POST ${this.#url} answered ${response.status} without a token and dialog_id; is apiUrl the replyx API?`, 4009, response.status);
      }
      if (typeof issuedKey === 'string' && issuedKey !== visitorKey) await this.#storage.setItem(this.#storageKey, issuedKey);
      const key = typeof issuedKey === 'string' ? issuedKey : visitorKey;
      this.#current = { token, expiresAt: expiresAtMs(expiresAt, token), dialogId, visitorKey: key };
      return this.#current;
    }
  }
}
