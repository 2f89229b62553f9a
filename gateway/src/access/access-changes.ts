import pg from 'pg';
import type { Logger } from 'pino';
import { GATEWAY_ERROR_CODES } from '../error-codes.js';

// The change signal of access: triggers on the tables behind `replyx_dialog_access` and
// `replyx_revoked_site_tokens` (examples/backend/migrations/007_access_changes.sql) call
// pg_notify on ACCESS_CHANGES_CHANNEL with what changed, whoever writes (the backend, a person in
// psql). The gateway holds one connection of its own that LISTENs: a notification drops the
// affected cache entries at once and re-authorizes the open connections it may concern, so a
// revocation is honoured in milliseconds instead of ACCESS_CACHE_TTL_MS / REAUTH_INTERVAL_MS.
// Those two stay as the bounds when the signal is missing (a database without the triggers, the
// listener's connection lost). Notifications sent while the listener is away are lost, so every
// (re)connect forgets every cached row and re-authorizes every open connection.

/** The one NOTIFY channel of access changes; the migration's triggers name the same (checked by the gateway's tests). */
export const ACCESS_CHANGES_CHANNEL = 'replyx_access_changes';

/** Which open connections to re-authorize: every one, or those of some dialogs and of some site tokens (hub/reauthorizer.ts). */
export type ReauthScope = { readonly all: true } | { readonly dialogs?: readonly number[]; readonly siteTokens?: readonly string[] };

/** What one notification says changed. */
export type AccessChange =
  | { readonly kind: 'dialog'; readonly dialogId: number }
  | { readonly kind: 'assistant'; readonly assistantId: number }
  | { readonly kind: 'site-token'; readonly jti: string }
  | { readonly kind: 'all' };

/** A positive integer id from a JSON number or a string of digits; undefined otherwise. */
function idOf(value: unknown): number | undefined {
  const id = typeof value === 'string' && /^[1-9][0-9]{0,15}$/.test(value) ? Number(value) : value;
  return typeof id === 'number' && Number.isSafeInteger(id) && id > 0 ? id : undefined;
}

/**
 * Parses a notification payload: `{"dialog_id":N}`, `{"assistant_id":N}`, `{"site_token":"jti"}`,
 * or an empty payload (anything may have changed, e.g. a TRUNCATE); undefined for anything else.
 */
export function parseAccessChange(payload: string | undefined): AccessChange | undefined {
  if (payload === undefined || payload.trim() === '') return { kind: 'all' };
  let body: unknown;
  try {
    body = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const fields = body as Record<string, unknown>;
  const keys = Object.keys(fields);
  if (keys.length !== 1) return undefined;
  if (keys[0] === 'dialog_id') {
    const dialogId = idOf(fields.dialog_id);
    return dialogId === undefined ? undefined : { kind: 'dialog', dialogId };
  }
  if (keys[0] === 'assistant_id') {
    const assistantId = idOf(fields.assistant_id);
    return assistantId === undefined ? undefined : { kind: 'assistant', assistantId };
  }
  if (keys[0] === 'site_token') {
    const jti = fields.site_token;
    return typeof jti === 'string' && jti.length > 0 ? { kind: 'site-token', jti } : undefined;
  }
  return undefined;
}

/** What a change invalidates: the access cache, the revoked-token list, and which connections are checked again. */
export interface AccessChangeTargets {
  readonly access: { forget(dialogId: number): void; forgetAssistant(assistantId: number): void; clear(): void };
  readonly revoked: { invalidate(): void };
  readonly reauthorizer: { request(scope: ReauthScope): void };
}

/**
 * Applies one change: a dialog's cached row goes and its connections are checked; an assistant's
 * rows go and every open connection is checked (which of them sit on its dialogs takes a read
 * anyway, and the sweep is that read); a site token makes the revoked list stale and its
 * connections are checked; `all` does all of that.
 */
export function applyAccessChange(change: AccessChange, targets: AccessChangeTargets): void {
  switch (change.kind) {
    case 'dialog':
      targets.access.forget(change.dialogId);
      targets.reauthorizer.request({ dialogs: [change.dialogId] });
      return;
    case 'assistant':
      targets.access.forgetAssistant(change.assistantId);
      targets.reauthorizer.request({ all: true });
      return;
    case 'site-token':
      targets.revoked.invalidate();
      targets.reauthorizer.request({ siteTokens: [change.jti] });
      return;
    case 'all':
      targets.access.clear();
      targets.revoked.invalidate();
      targets.reauthorizer.request({ all: true });
      return;
  }
}

/** First and longest wait between reconnect attempts of the listener. */
export const LISTENER_BACKOFF = { firstMs: 100, maxMs: 5000 } as const;

/** Wait before reconnect attempt `attempt` (0-based): doubling from firstMs up to maxMs, with up to 20 % jitter so replicas spread out. */
export function listenerBackoffMs(attempt: number, random = Math.random()): number {
  const base = Math.min(LISTENER_BACKOFF.maxMs, LISTENER_BACKOFF.firstMs * 2 ** Math.min(attempt, 16));
  return Math.round(base * (1 + 0.2 * random));
}

/**
 * How often the listener's idle connection is asked `SELECT 1`: a connection that died without a
 * word (a partition, a dropped NAT entry) delivers no notification and no error, so without this
 * the gateway would believe it listens until TCP gives up, hours later.
 */
export const LISTENER_PING_MS = 10_000;

/** How the listener connects and whom it tells. */
export interface AccessChangeListenerOptions {
  readonly databaseUrl: string;
  /** Connect and LISTEN timeout (DATABASE_QUERY_TIMEOUT_MS). */
  readonly connectTimeoutMs: number;
  readonly log: Logger;
  /** Each parsed notification (an unparsable payload counts as `all`). */
  onChange(change: AccessChange): void;
  /** Every successful (re)connect: notifications sent while away are lost, so everything is stale. */
  onConnected(): void;
  /** Each notification received on the channel (for the metric). */
  onNotification?(): void;
}

/** One dedicated Postgres connection that LISTENs on ACCESS_CHANGES_CHANNEL and reconnects with backoff. */
export class AccessChangeListener {
  readonly #options: AccessChangeListenerOptions;
  #client: pg.Client | undefined;
  #connected = false;
  #stopped = false;
  #attempt = 0;
  #retry: NodeJS.Timeout | undefined;
  #ping: NodeJS.Timeout | undefined;
  /** When the current outage began (undefined while connected or before the first attempt). */
  #downSince: number | undefined;
  #warnedBadPayload = false;

  /** Nothing connects until start(). */
  constructor(options: AccessChangeListenerOptions) {
    this.#options = options;
  }

  /** True while the LISTEN connection is up. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Connects in the background; failures are retried with backoff, never thrown. */
  start(): void {
    void this.#connect();
  }

  /** Stops listening and retrying. */
  async close(): Promise<void> {
    this.#stopped = true;
    if (this.#retry) clearTimeout(this.#retry);
    if (this.#ping) clearInterval(this.#ping);
    this.#connected = false;
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const { databaseUrl, connectTimeoutMs } = this.#options;
    // keepAlive: a peer that vanished without a FIN is noticed by TCP, not only at the next write.
    const client = new pg.Client({
      connectionString: databaseUrl,
      connectionTimeoutMillis: connectTimeoutMs,
      query_timeout: connectTimeoutMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: LISTENER_PING_MS,
      application_name: 'replyx-ws-gateway-listener',
    });
    let lost = false;
    const onLost = (err?: unknown): void => {
      if (lost) return;
      lost = true;
      if (this.#client === client) this.#client = undefined;
      if (this.#ping) clearInterval(this.#ping);
      void client.end().catch(() => undefined);
      this.#lost(err);
    };
    client.on('error', onLost);
    client.on('end', () => onLost(new Error('connection ended')));
    client.on('notification', (msg) => {
      if (msg.channel === ACCESS_CHANGES_CHANNEL) this.#notified(msg.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${client.escapeIdentifier(ACCESS_CHANGES_CHANNEL)}`);
    } catch (err) {
      onLost(err);
      return;
    }
    if (lost) return;
    if (this.#stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#connected = true;
    this.#attempt = 0;
    this.#ping = setInterval(() => void client.query('SELECT 1').catch(onLost), LISTENER_PING_MS);
    this.#ping.unref();
    const { log } = this.#options;
    if (this.#downSince !== undefined) log.info({ down_ms: Date.now() - this.#downSince }, `access change listener is back on ${ACCESS_CHANGES_CHANNEL}; cache cleared and open connections re-authorized`);
    else log.info({ channel: ACCESS_CHANGES_CHANNEL }, `access change listener is listening on ${ACCESS_CHANGES_CHANNEL}`);
    this.#downSince = undefined;
    this.#options.onConnected();
  }

  #lost(err: unknown): void {
    this.#connected = false;
    if (this.#stopped) return;
    if (this.#downSince === undefined) {
      this.#downSince = Date.now();
      // Once per outage: retries stay quiet until it is back.
      this.#options.log.warn(
        { code: 'RPX_GATEWAY_ACCESS_LISTENER', err: String(err) },
        `RPX_GATEWAY_ACCESS_LISTENER: ${GATEWAY_ERROR_CODES.RPX_GATEWAY_ACCESS_LISTENER}; reconnecting with backoff`,
      );
    }
    const wait = listenerBackoffMs(this.#attempt);
    this.#attempt += 1;
    this.#retry = setTimeout(() => void this.#connect(), wait);
    this.#retry.unref();
  }

  #notified(payload: string | undefined): void {
    this.#options.onNotification?.();
    const change = parseAccessChange(payload);
    if (change === undefined && !this.#warnedBadPayload) {
      this.#warnedBadPayload = true;
      this.#options.log.warn({ payload: payload?.slice(0, 200) }, `unrecognised ${ACCESS_CHANGES_CHANNEL} payload; treated as "anything may have changed" (expected {"dialog_id":N}, {"assistant_id":N}, {"site_token":"jti"} or empty)`);
    }
    this.#options.onChange(change ?? { kind: 'all' });
  }
}
