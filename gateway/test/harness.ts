import { readFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { SignJWT } from 'jose';
import pg from 'pg';
import WebSocket from 'ws';
import { createTestDatabase } from '../../test/services.js';
import { tokenProtocols } from '../src/auth/credentials.js';
import { SITE_AUDIENCE, WIDGET_AUDIENCE, type TokenPolicy } from '../src/auth/tokens.js';
import { DEFAULTS, type GatewayConfig } from '../src/config.js';
import { TrustedProxies } from '../src/limits/client-ip.js';
import { createGateway, type Gateway } from '../src/server.js';

// Shared fixtures for the gateway tests: a database with the reference schema and two tenants,
// token minting, an in-process gateway with captured logs, and a WebSocket client that records
// every frame from the first byte (so no test races the server's first frames).

/** HS256 secret the test gateways verify with. */
export const JWT_SECRET = 'test-secret-0123456789abcdef-0123456789';
/** HS256 key of site tokens. */
export const SITE_TOKEN_SECRET = 'site-secret-0123456789abcdef-0123456789';
/** HS256 key of widget session tokens. */
export const WIDGET_TOKEN_SECRET = 'widget-secret-0123456789abcdef-01234567';
/** X-Publish-Key of the test gateways. */
export const PUBLISH_KEY = 'publish-key-0123456789abcdef-0123456789';
/** X-Debug-Token of the test gateways. */
export const DEBUG_TOKEN = 'debug-token-0123456789abcdef-0123456789';
/** The smallest environment loadConfig accepts (the pure config tests start from it). */
export const CONFIG_BASE = {
  REDIS_URL: 'redis://127.0.0.1:6380',
  DATABASE_URL: 'postgres://u@127.0.0.1:5433/replyx',
  JWT_SECRET,
  SITE_TOKEN_SECRET,
  WIDGET_TOKEN_SECRET,
  PUBLISH_KEY,
};
/** The env vars a gateway process needs besides the database and Redis. */
export const SECRETS_ENV = { JWT_SECRET, SITE_TOKEN_SECRET, WIDGET_TOKEN_SECRET, PUBLISH_KEY };
/** The default token policy (issuer replyx, the default audiences and lifetimes). */
export const POLICY: TokenPolicy = {
  issuer: DEFAULTS.JWT_ISSUER,
  adminAudience: DEFAULTS.JWT_AUDIENCE,
  adminMaxTtlS: DEFAULTS.ADMIN_TOKEN_MAX_TTL_S,
  siteMaxTtlS: DEFAULTS.SITE_TOKEN_MAX_TTL_S,
  widgetTtlS: DEFAULTS.WIDGET_TOKEN_TTL_S,
};

/** One tenant: an operator, their assistant, its dialogs and allowed domains. */
export interface Tenant {
  readonly userId: number;
  readonly assistantId: number;
  readonly dialogs: readonly number[];
  readonly domains: readonly string[];
}

/** The seeded database: its URL and two tenants (A: user 1, assistant 10; B: user 2, assistant 20). */
export interface AccessDatabase {
  readonly url: string;
  readonly a: Tenant;
  readonly b: Tenant;
}

/** The reference backend's migration whose triggers notify access changes (gateway/src/access/access-changes.ts). */
export const ACCESS_CHANGES_MIGRATION = new URL('../../examples/backend/migrations/007_access_changes.sql', import.meta.url);

/**
 * Creates a fresh database with gateway/sql/dialog_access.sql and two tenants (and, with
 * `accessChanges`, the triggers of ACCESS_CHANGES_MIGRATION). Dialog ids get a random base
 * because Redis pub/sub channels are shared by every test file on the shared Redis.
 */
export async function createAccessDatabase(options: { readonly accessChanges?: boolean } = {}): Promise<AccessDatabase> {
  const url = await createTestDatabase('gw');
  const base = (1 + Math.floor(Math.random() * 1_000_000)) * 1000;
  const TENANTS = {
    a: { userId: 1, assistantId: 10, dialogs: [base + 100, base + 101], domains: ['example.com', '*.shop.example.org'] },
    b: { userId: 2, assistantId: 20, dialogs: [base + 200], domains: ['b.example.net'] },
  };
  const sql = await readFile(new URL('../sql/dialog_access.sql', import.meta.url), 'utf8');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
    if (options.accessChanges) await client.query(await readFile(ACCESS_CHANGES_MIGRATION, 'utf8'));
    for (const t of Object.values(TENANTS)) {
      await client.query('INSERT INTO users (id, email) VALUES ($1, $2)', [t.userId, `u${t.userId}@example.com`]);
      await client.query('INSERT INTO assistants (id, user_id, name, allowed_domains) VALUES ($1, $2, $3, $4)', [t.assistantId, t.userId, `a${t.assistantId}`, t.domains]);
      for (const d of t.dialogs) await client.query('INSERT INTO dialogs (id, assistant_id) VALUES ($1, $2)', [d, t.assistantId]);
    }
  } finally {
    await client.end();
  }
  return { url, ...TENANTS };
}

/** A config for tests: port 0, loopback, generous handshake limits, quick heartbeat. */
export function testConfig(overrides: Partial<GatewayConfig> & Pick<GatewayConfig, 'databaseUrl'>): GatewayConfig {
  return {
    port: 0,
    host: '127.0.0.1',
    broker: 'memory',
    jwtSecret: JWT_SECRET,
    siteTokenSecret: SITE_TOKEN_SECRET,
    widgetTokenSecret: WIDGET_TOKEN_SECRET,
    tokenPolicy: POLICY,
    legacyWidgetAuth: false,
    reauthIntervalMs: DEFAULTS.REAUTH_INTERVAL_MS,
    publishKey: PUBLISH_KEY,
    debugToken: DEBUG_TOKEN,
    heartbeatMs: 25_000,
    drainWindowMs: 0,
    handoverTimeoutMs: 60_000,
    maxPayloadBytes: 64 * 1024,
    sendBufferBytes: 1024 * 1024,
    maxConnections: 50_000,
    maxConnectionsPerIp: 10_000,
    handshakesPerIpPerSecond: 100_000,
    clientFramesPerSecond: 20,
    historyLength: 1000,
    historyTtlS: 86_400,
    publishIdempotencyTtlS: DEFAULTS.PUBLISH_IDEMPOTENCY_TTL_S,
    accessCacheTtlMs: 5000,
    accessCacheMax: 10_000,
    accessLookupBatchMax: 500,
    accessLookupWindowMs: DEFAULTS.ACCESS_LOOKUP_WINDOW_MS,
    publishMaxBytes: 256 * 1024,
    memoryHistoryDialogs: DEFAULTS.MEMORY_HISTORY_DIALOGS,
    maxPendingEvents: DEFAULTS.MAX_PENDING_EVENTS,
    maxParsedFrameBytes: DEFAULTS.MAX_PARSED_FRAME_BYTES,
    shutdownGraceMs: DEFAULTS.SHUTDOWN_GRACE_MS,
    listenBacklog: DEFAULTS.LISTEN_BACKLOG,
    redisCommandTimeoutMs: DEFAULTS.REDIS_COMMAND_TIMEOUT_MS,
    redisStartTimeoutMs: DEFAULTS.REDIS_START_TIMEOUT_MS,
    databasePoolSize: DEFAULTS.DATABASE_POOL_SIZE,
    databaseQueryTimeoutMs: DEFAULTS.DATABASE_QUERY_TIMEOUT_MS,
    trustedProxies: new TrustedProxies(['127.0.0.1/32', '::1/128']),
    logLevel: 'info',
    instanceId: 'gw-test',
    ...overrides,
  };
}

/** A gateway started in-process, with every log line captured. */
export interface TestGateway {
  readonly gateway: Gateway;
  readonly base: string;
  readonly ws: string;
  readonly logs: string[];
  stop(): Promise<void>;
}

/** A log stream that keeps every JSON line it is given. */
export function captureLogs(): { readonly logs: string[]; readonly stream: Writable } {
  const logs: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(line);
      cb();
    },
  });
  return { logs, stream };
}

/** Starts a gateway on port 0 and captures its pino output. */
export async function startGateway(config: GatewayConfig): Promise<TestGateway> {
  const { logs, stream } = captureLogs();
  const gateway = createGateway(config, { logStream: stream, processMetrics: false });
  const port = await gateway.listen();
  return { gateway, base: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}`, logs, stop: () => gateway.close() };
}

/** How a test token departs from the contract: other claims (undefined removes one), key or lifetime. */
export interface TokenOptions {
  readonly secret?: string;
  /** Lifetime in seconds from now (default 3600; widget 600). */
  readonly ttlS?: number;
  /** Claims to set or, with undefined, to remove. */
  readonly claims?: Record<string, unknown>;
}

/** Signs exactly `payload` (HS256). */
export async function signRaw(payload: Record<string, unknown>, secret: string): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(secret));
}

async function contractToken(type: string, aud: string, claims: Record<string, unknown>, secret: string, opts: TokenOptions, ttlS: number): Promise<string> {
  const iat = Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = { iss: POLICY.issuer, aud, type, iat, exp: iat + (opts.ttlS ?? ttlS), ...claims, ...opts.claims };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  return signRaw(payload, opts.secret ?? secret);
}

/** Signs an admin-panel JWT as the contract says (`type: "access"`, iss, aud, iat, exp), unless told otherwise. */
export function adminToken(userId: number | string, opts: TokenOptions = {}): Promise<string> {
  return contractToken('access', POLICY.adminAudience, { sub: String(userId) }, JWT_SECRET, opts, 3600);
}

/** Signs a site token for an assistant (optionally one dialog) with a random jti unless given. */
export function siteToken(userId: number, assistantId: number, opts: TokenOptions & { dialogId?: number; jti?: string } = {}): Promise<string> {
  const claims = { user_id: userId, assistant_id: assistantId, jti: opts.jti ?? `test-${Math.random().toString(36).slice(2)}-${Date.now()}`, ...(opts.dialogId ? { dialog_id: opts.dialogId } : {}) };
  return contractToken('site', SITE_AUDIENCE, claims, SITE_TOKEN_SECRET, opts, 3600);
}

/** Signs a widget session token for one dialog and origin. */
export function widgetToken(dialogId: number, assistantId: number, origin: string, opts: TokenOptions = {}): Promise<string> {
  const claims = { dialog_id: dialogId, assistant_id: assistantId, origin, jti: `w-${Math.random().toString(36).slice(2)}-${Date.now()}` };
  return contractToken('widget', WIDGET_AUDIENCE, claims, WIDGET_TOKEN_SECRET, opts, 600);
}

/** The subprotocols that carry `token` (replyx.v1, replyx.token.<token>). */
export const protocols = tokenProtocols;

/** An unsigned `alg: none` token with the given payload. */
export function noneToken(payload: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`;
}

/** A recorded frame: parsed JSON (or the raw text) and when it arrived. */
export interface Frame {
  readonly json: Record<string, unknown>;
  readonly text: string;
  readonly at: number;
}

/** A test client that records frames and the close from the start. */
export class TestClient {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<boolean>;
  #waiters: (() => void)[] = [];
  /** The close code once closed. */
  closeCode: number | undefined;

  /** Connects to `url` with optional headers (Origin, X-Real-IP) and subprotocols (the token). */
  constructor(url: string, headers: Record<string, string> = {}, subprotocols: readonly string[] = []) {
    this.ws = new WebSocket(url, [...subprotocols], { headers, perMessageDeflate: false });
    this.ws.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        json = {};
      }
      this.frames.push({ json, text, at: Date.now() });
      for (const w of this.#waiters.splice(0)) w();
    });
    this.ws.on('error', () => undefined);
    this.opened = new Promise((resolve) => {
      this.ws.once('open', () => resolve(true));
      this.ws.once('close', () => resolve(false));
    });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code: number, reason: Buffer) => {
        this.closeCode = code;
        resolve({ code, reason: reason.toString() });
        for (const w of this.#waiters.splice(0)) w();
      });
    });
  }

  /** Waits until `count` frames matching `pred` arrived; returns them. */
  async waitFor(pred: (f: Frame) => boolean, count = 1, timeoutMs = 5000): Promise<Frame[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.filter(pred);
      if (found.length >= count) return found;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} frame(s); got ${JSON.stringify(this.frames.map((f) => f.text))}`);
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed (${this.closeCode}) while waiting; frames ${JSON.stringify(this.frames.map((f) => f.text))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for the `connected` frame. */
  async ready(): Promise<Frame> {
    return (await this.waitFor((f) => f.json.type === 'connected'))[0]!;
  }

  /** Event frames (those with an id), in arrival order. */
  events(): Frame[] {
    return this.frames.filter((f) => typeof f.json.id === 'string');
  }

  /** Closes and waits for the close to complete. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    await this.closed;
  }
}

/** Polls until `probe` is true or throws after `timeoutMs`. */
export async function eventually(probe: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** POSTs JSON to the gateway's publish endpoint. */
export async function httpPublish(base: string, body: unknown, key: string | null = PUBLISH_KEY): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}/internal/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { 'x-publish-key': key } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
