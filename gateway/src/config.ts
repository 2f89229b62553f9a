import os from 'node:os';
import { z } from 'zod';
import { TOKEN_DEFAULTS, TOKEN_ENV_FIXES, TOKEN_ENV_SHAPE, tokenPolicyOf, tokenSecretProblem, tokenSecretsOf } from './auth/token-settings.js';
import type { TokenPolicy } from './auth/tokens.js';
import { DEFAULT_IDEMPOTENCY_TTL_S } from './broker/publisher.js';
import { envInt as int, envSecret } from './env-fields.js';
import { gatewayErrorLine, type GatewayErrorCode } from './error-codes.js';
import { DEFAULT_TRUSTED_PROXIES, TrustedProxies } from './limits/client-ip.js';
import { DEFAULT_LISTEN_BACKLOG } from './limits/listen-backlog.js';

// Gateway configuration from the environment. Every variable is optional except the secrets
// the gateway cannot run without; defaults match infra/topology/schema.ts. A bad value stops
// start-up with one line that names the variable and the fix (see GatewayConfigError).

/** A configuration problem: the env var, what is wrong, and how to fix it. */
export class GatewayConfigError extends Error {
  override readonly name = 'GatewayConfigError';
  /** Stable code, documented in docs/errors.md. */
  readonly code: GatewayErrorCode = 'RPX_GATEWAY_CONFIG';
  /** Creates an error about one env var with a fix sentence. */
  constructor(
    readonly variable: string,
    message: string,
    readonly fix: string,
  ) {
    super(`${variable}: ${message}`);
  }

  /** The one line printed before exiting. */
  toLine(): string {
    return gatewayErrorLine(this.code, this.message, this.fix);
  }
}

const url = (protocols: readonly string[]) =>
  z
    .string()
    .trim()
    .refine((v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    }, `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`);

/** Defaults of every limit, documented in docs/gateway.md. */
export const DEFAULTS = {
  PORT: 8001,
  HOST: '0.0.0.0',
  HEARTBEAT_MS: 25_000,
  DRAIN_WINDOW_MS: 5_000,
  HANDOVER_TIMEOUT_MS: 60_000,
  MAX_PAYLOAD_BYTES: 64 * 1024,
  SEND_BUFFER_BYTES: 1024 * 1024,
  MAX_CONNECTIONS: 50_000,
  MAX_CONNECTIONS_PER_IP: 500,
  HANDSHAKES_PER_IP_PER_SECOND: 50,
  CLIENT_FRAMES_PER_SECOND: 20,
  HISTORY_LENGTH: 1000,
  HISTORY_TTL_S: 86_400,
  PUBLISH_IDEMPOTENCY_TTL_S: DEFAULT_IDEMPOTENCY_TTL_S,
  ACCESS_CACHE_TTL_MS: 5_000,
  ACCESS_CACHE_MAX: 10_000,
  ACCESS_LOOKUP_BATCH_MAX: 500,
  ACCESS_LOOKUP_WINDOW_MS: 4,
  PUBLISH_MAX_BYTES: 256 * 1024,
  MEMORY_HISTORY_DIALOGS: 10_000,
  MAX_PENDING_EVENTS: 10_000,
  MAX_PARSED_FRAME_BYTES: 256,
  SHUTDOWN_GRACE_MS: 2_000,
  LISTEN_BACKLOG: DEFAULT_LISTEN_BACKLOG,
  REDIS_COMMAND_TIMEOUT_MS: 2_000,
  REDIS_START_TIMEOUT_MS: 5_000,
  DATABASE_POOL_SIZE: 4,
  DATABASE_QUERY_TIMEOUT_MS: 3_000,
  REAUTH_INTERVAL_MS: 15_000,
  ...TOKEN_DEFAULTS,
} as const;

/** The longest REAUTH_INTERVAL_MS accepted: revoked access is cut within this bound. */
export const MAX_REAUTH_INTERVAL_MS = 60_000;

const envSchema = z
  .object({
    PORT: int(0, 65_535, DEFAULTS.PORT),
    HOST: z.string().trim().min(1).optional().transform((v) => v ?? DEFAULTS.HOST),
    BROKER: z.enum(['redis', 'memory'], 'must be "redis" or "memory"').optional().transform((v) => v ?? 'redis'),
    REDIS_URL: url(['redis:', 'rediss:']).optional(),
    DATABASE_URL: url(['postgres:', 'postgresql:']).optional(),
    ...TOKEN_ENV_SHAPE,
    JWT_PUBLIC_KEY: z
      .string()
      .refine((v) => v.includes('-----BEGIN PUBLIC KEY-----'), 'must be an RS256 public key in PEM (SPKI) form, "-----BEGIN PUBLIC KEY-----"')
      .optional(),
    PUBLISH_KEY: envSecret(32).optional(),
    DEBUG_TOKEN: envSecret(32).optional(),
    HEARTBEAT_MS: int(1000, 600_000, DEFAULTS.HEARTBEAT_MS),
    DRAIN_WINDOW_MS: int(0, 300_000, DEFAULTS.DRAIN_WINDOW_MS),
    HANDOVER_TIMEOUT_MS: int(1000, 600_000, DEFAULTS.HANDOVER_TIMEOUT_MS),
    MAX_PAYLOAD_BYTES: int(1024, 16 * 1024 * 1024, DEFAULTS.MAX_PAYLOAD_BYTES),
    SEND_BUFFER_BYTES: int(16 * 1024, 256 * 1024 * 1024, DEFAULTS.SEND_BUFFER_BYTES),
    MAX_CONNECTIONS: int(1, 10_000_000, DEFAULTS.MAX_CONNECTIONS),
    MAX_CONNECTIONS_PER_IP: int(1, 1_000_000, DEFAULTS.MAX_CONNECTIONS_PER_IP),
    HANDSHAKES_PER_IP_PER_SECOND: int(1, 100_000, DEFAULTS.HANDSHAKES_PER_IP_PER_SECOND),
    CLIENT_FRAMES_PER_SECOND: int(1, 100_000, DEFAULTS.CLIENT_FRAMES_PER_SECOND),
    HISTORY_LENGTH: int(0, 1_000_000, DEFAULTS.HISTORY_LENGTH),
    HISTORY_TTL_S: int(60, 30 * 86_400, DEFAULTS.HISTORY_TTL_S),
    PUBLISH_IDEMPOTENCY_TTL_S: int(1, 7 * 86_400, DEFAULTS.PUBLISH_IDEMPOTENCY_TTL_S),
    ACCESS_CACHE_TTL_MS: int(0, 600_000, DEFAULTS.ACCESS_CACHE_TTL_MS),
    ACCESS_CACHE_MAX: int(0, 10_000_000, DEFAULTS.ACCESS_CACHE_MAX),
    ACCESS_LOOKUP_BATCH_MAX: int(1, 10_000, DEFAULTS.ACCESS_LOOKUP_BATCH_MAX),
    ACCESS_LOOKUP_WINDOW_MS: int(0, 100, DEFAULTS.ACCESS_LOOKUP_WINDOW_MS),
    PUBLISH_MAX_BYTES: int(1024, 16 * 1024 * 1024, DEFAULTS.PUBLISH_MAX_BYTES),
    MEMORY_HISTORY_DIALOGS: int(1, 10_000_000, DEFAULTS.MEMORY_HISTORY_DIALOGS),
    MAX_PENDING_EVENTS: int(1, 1_000_000, DEFAULTS.MAX_PENDING_EVENTS),
    // A ping is 15 bytes; below that no client frame would ever be understood.
    MAX_PARSED_FRAME_BYTES: int(15, 65_536, DEFAULTS.MAX_PARSED_FRAME_BYTES),
    SHUTDOWN_GRACE_MS: int(0, 60_000, DEFAULTS.SHUTDOWN_GRACE_MS),
    LISTEN_BACKLOG: int(1, 65_535, DEFAULTS.LISTEN_BACKLOG),
    REDIS_COMMAND_TIMEOUT_MS: int(100, 60_000, DEFAULTS.REDIS_COMMAND_TIMEOUT_MS),
    REDIS_START_TIMEOUT_MS: int(0, 300_000, DEFAULTS.REDIS_START_TIMEOUT_MS),
    DATABASE_POOL_SIZE: int(1, 100, DEFAULTS.DATABASE_POOL_SIZE),
    DATABASE_QUERY_TIMEOUT_MS: int(100, 60_000, DEFAULTS.DATABASE_QUERY_TIMEOUT_MS),
    REAUTH_INTERVAL_MS: int(1000, MAX_REAUTH_INTERVAL_MS, DEFAULTS.REAUTH_INTERVAL_MS),
    TRUSTED_PROXIES: z
      .string()
      .trim()
      .optional()
      .transform((v, ctx) => {
        const entries = v === undefined ? DEFAULT_TRUSTED_PROXIES : v === 'none' ? [] : v.split(',').map((e) => e.trim()).filter((e) => e !== '');
        try {
          return new TrustedProxies(entries);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `${(err as Error).message}; give a comma-separated list of addresses or CIDRs, or "none"` });
          return z.NEVER;
        }
      }),
    LOG_LEVEL: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'must be one of fatal, error, warn, info, debug, trace, silent')
      .optional()
      .transform((v) => v ?? 'info'),
    INSTANCE_ID: z.string().trim().min(1).max(100).optional(),
    // Seed compatibility: the old compose file set these; only the values that hold here are accepted.
    SERVICE_MODE: z.literal('websocket', 'must be "websocket" (the gateway only serves WebSockets)').optional(),
    UVICORN_WORKERS: z.literal('1', 'must be 1 (the gateway is one process; scale with replicas and the redis broker)').optional(),
  });

/** Every environment variable the gateway reads (docs/gateway.md documents each one). */
export const GATEWAY_ENV_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

/** Validated gateway configuration (see docs/gateway.md for every field). */
export interface GatewayConfig {
  readonly port: number;
  readonly host: string;
  readonly broker: 'redis' | 'memory';
  /** Required with broker "redis". */
  readonly redisUrl?: string;
  readonly databaseUrl: string;
  /** Exactly one of jwtSecret (HS256) and jwtPublicKey (RS256 PEM) for admin tokens. */
  readonly jwtSecret?: string;
  readonly jwtPublicKey?: string;
  /** HS256 key of site tokens (SITE_TOKEN_SECRET). */
  readonly siteTokenSecret: string;
  /** HS256 key of widget session tokens (WIDGET_TOKEN_SECRET). */
  readonly widgetTokenSecret: string;
  /** Issuer, audience and lifetime bounds of every token. */
  readonly tokenPolicy: TokenPolicy;
  /** Accept the seed's credential-less widget handshake (`assistant_id` + origin only). */
  readonly legacyWidgetAuth: boolean;
  /** How often the access of open connections is re-read (revocations cut within this). */
  readonly reauthIntervalMs: number;
  readonly publishKey: string;
  readonly debugToken?: string;
  readonly heartbeatMs: number;
  readonly drainWindowMs: number;
  /** After SIGUSR2 (listener handed to a successor), drain by itself if no SIGTERM came within this. */
  readonly handoverTimeoutMs: number;
  readonly maxPayloadBytes: number;
  readonly sendBufferBytes: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  readonly handshakesPerIpPerSecond: number;
  readonly clientFramesPerSecond: number;
  readonly historyLength: number;
  readonly historyTtlS: number;
  /** Seconds a publish's idempotency key is remembered (a repeat within it publishes nothing). */
  readonly publishIdempotencyTtlS: number;
  readonly accessCacheTtlMs: number;
  readonly accessCacheMax: number;
  /** Most dialogs one handshake lookup query reads (the cache misses of one event-loop turn). */
  readonly accessLookupBatchMax: number;
  /**
   * Least time between the starts of two handshake lookup queries: misses that arrive sooner wait
   * for the rest of it and go in the next one (0: the next event-loop turn).
   */
  readonly accessLookupWindowMs: number;
  readonly publishMaxBytes: number;
  /** Dialogs whose history the memory broker keeps (least recently published dropped first). */
  readonly memoryHistoryDialogs: number;
  /** Live events buffered per connection while its `since` replay runs; beyond it, 4101. */
  readonly maxPendingEvents: number;
  /** Client frames larger than this are never parsed (only pings are understood). */
  readonly maxParsedFrameBytes: number;
  /** After the drain window, how long peers get to answer the 4200 close before being cut. */
  readonly shutdownGraceMs: number;
  /** Accept queue length of the listening socket (LISTEN_BACKLOG). */
  readonly listenBacklog: number;
  /** Per-command timeout on the Redis command connection (publish, history). */
  readonly redisCommandTimeoutMs: number;
  /** How long start-up waits for Redis before listening anyway (/health stays 503 until it is up). */
  readonly redisStartTimeoutMs: number;
  /** Postgres connections of the dialog-access pool. */
  readonly databasePoolSize: number;
  /** Connect and query timeout of that pool. */
  readonly databaseQueryTimeoutMs: number;
  /** Peers whose X-Real-IP / X-Forwarded-For are believed (nginx in front). */
  readonly trustedProxies: TrustedProxies;
  readonly logLevel: string;
  readonly instanceId: string;
}

const FIXES: Record<string, string> = {
  REDIS_URL: 'set REDIS_URL=redis://host:6379 (or BROKER=memory for a single process without Redis)',
  DATABASE_URL: 'set DATABASE_URL=postgres://user:password@host:5432/db (the database with the replyx_dialog_access view)',
  ...TOKEN_ENV_FIXES,
  JWT_PUBLIC_KEY: 'set JWT_PUBLIC_KEY to the PEM public key (RS256) or unset it and use JWT_SECRET',
  PUBLISH_KEY: 'set PUBLISH_KEY to a random string of 32+ characters (openssl rand -hex 32); backends send it as X-Publish-Key',
  DEBUG_TOKEN: 'set DEBUG_TOKEN to a random string of 32+ characters (openssl rand -hex 32) or unset it',
  TRUSTED_PROXIES: 'set TRUSTED_PROXIES to the addresses/CIDRs of the proxies in front (nginx), e.g. 127.0.0.1/32,::1/128,10.0.0.0/8',
};

function defaultFix(variable: string): string {
  const def = (DEFAULTS as Record<string, unknown>)[variable];
  return def === undefined ? `correct ${variable} or unset it` : `correct ${variable} or unset it to use the default ${String(def)}`;
}

/** Parses and validates the environment; throws GatewayConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  // Empty strings mean "unset": compose files often pass `VAR=` through.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'environment');
    const shown = typeof cleaned[variable] === 'string' && !/SECRET|KEY|TOKEN|URL/.test(variable) ? ` (got "${cleaned[variable]}")` : '';
    throw new GatewayConfigError(variable, `${issue.message}${shown}`, FIXES[variable] ?? defaultFix(variable));
  }
  const e = parsed.data;
  if (e.BROKER === 'redis' && !e.REDIS_URL) throw new GatewayConfigError('REDIS_URL', 'is required with BROKER=redis', FIXES.REDIS_URL!);
  if (!e.DATABASE_URL) throw new GatewayConfigError('DATABASE_URL', 'is required', FIXES.DATABASE_URL!);
  if (!e.JWT_SECRET && !e.JWT_PUBLIC_KEY) throw new GatewayConfigError('JWT_SECRET', 'is required (or JWT_PUBLIC_KEY)', FIXES.JWT_SECRET!);
  if (e.JWT_SECRET && e.JWT_PUBLIC_KEY) {
    throw new GatewayConfigError('JWT_PUBLIC_KEY', 'is set together with JWT_SECRET; pinning one algorithm needs exactly one key', 'unset JWT_SECRET (RS256) or JWT_PUBLIC_KEY (HS256)');
  }
  const secrets = tokenSecretProblem(e);
  if (secrets) throw new GatewayConfigError(secrets.variable, secrets.message, FIXES[secrets.variable]!);
  if (!e.PUBLISH_KEY) throw new GatewayConfigError('PUBLISH_KEY', 'is required', FIXES.PUBLISH_KEY!);
  return {
    port: e.PORT,
    host: e.HOST,
    broker: e.BROKER,
    redisUrl: e.REDIS_URL,
    databaseUrl: e.DATABASE_URL,
    jwtSecret: e.JWT_SECRET,
    jwtPublicKey: e.JWT_PUBLIC_KEY,
    ...tokenSecretsOf(e),
    tokenPolicy: tokenPolicyOf(e),
    legacyWidgetAuth: e.LEGACY_WIDGET_AUTH,
    reauthIntervalMs: e.REAUTH_INTERVAL_MS,
    publishKey: e.PUBLISH_KEY,
    debugToken: e.DEBUG_TOKEN,
    heartbeatMs: e.HEARTBEAT_MS,
    drainWindowMs: e.DRAIN_WINDOW_MS,
    handoverTimeoutMs: e.HANDOVER_TIMEOUT_MS,
    maxPayloadBytes: e.MAX_PAYLOAD_BYTES,
    sendBufferBytes: e.SEND_BUFFER_BYTES,
    maxConnections: e.MAX_CONNECTIONS,
    maxConnectionsPerIp: e.MAX_CONNECTIONS_PER_IP,
    handshakesPerIpPerSecond: e.HANDSHAKES_PER_IP_PER_SECOND,
    clientFramesPerSecond: e.CLIENT_FRAMES_PER_SECOND,
    historyLength: e.HISTORY_LENGTH,
    historyTtlS: e.HISTORY_TTL_S,
    publishIdempotencyTtlS: e.PUBLISH_IDEMPOTENCY_TTL_S,
    accessCacheTtlMs: e.ACCESS_CACHE_TTL_MS,
    accessCacheMax: e.ACCESS_CACHE_MAX,
    accessLookupBatchMax: e.ACCESS_LOOKUP_BATCH_MAX,
    accessLookupWindowMs: e.ACCESS_LOOKUP_WINDOW_MS,
    publishMaxBytes: e.PUBLISH_MAX_BYTES,
    memoryHistoryDialogs: e.MEMORY_HISTORY_DIALOGS,
    maxPendingEvents: e.MAX_PENDING_EVENTS,
    maxParsedFrameBytes: e.MAX_PARSED_FRAME_BYTES,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    listenBacklog: e.LISTEN_BACKLOG,
    redisCommandTimeoutMs: e.REDIS_COMMAND_TIMEOUT_MS,
    redisStartTimeoutMs: e.REDIS_START_TIMEOUT_MS,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    databaseQueryTimeoutMs: e.DATABASE_QUERY_TIMEOUT_MS,
    trustedProxies: e.TRUSTED_PROXIES,
    logLevel: e.LOG_LEVEL,
    instanceId: e.INSTANCE_ID ?? `${os.hostname()}-${process.pid}`,
  };
}
