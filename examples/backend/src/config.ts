import { z } from 'zod';
import { TOKEN_ENV_FIXES, TOKEN_ENV_SHAPE, tokenPolicyOf, tokenSecretProblem, tokenSecretsOf } from '@replyx/gateway/auth/token-settings';
import type { TokenKeys, TokenPolicy } from '@replyx/gateway/auth/tokens';
import { DEFAULT_IDEMPOTENCY_TTL_S } from '@replyx/gateway/broker/publisher';

// Environment of the reference backend, validated once at start. Names follow the team
// contract (and the seed's UVICORN_WORKERS, which operators already set). The credential
// settings (secrets, issuer, audiences, lifetimes, LEGACY_WIDGET_AUTH) are the gateway's own
// definitions, so both components read the same names with the same rules.

const intFrom = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const envSchema = z.object({
  PORT: intFrom(1, 65535).default(8000),
  HOST: z.string().min(1).default('127.0.0.1'),
  BACKEND_WORKERS: intFrom(1, 64).optional(),
  UVICORN_WORKERS: intFrom(1, 64).optional(),
  DATABASE_URL: z.string().min(1, 'is required (postgres://user@host:port/db)'),
  REDIS_URL: z.string().min(1, 'is required (redis://host:port)'),
  ...TOKEN_ENV_SHAPE,
  HISTORY_LENGTH: intFrom(0, 1_000_000).default(1000),
  HISTORY_TTL_S: intFrom(60, 30 * 86_400).default(86_400),
  MAX_BODY_BYTES: intFrom(256, 16 * 1024 * 1024).default(64 * 1024),
  PUBLISH_IDEMPOTENCY_TTL_S: intFrom(1, 7 * 86_400).default(DEFAULT_IDEMPOTENCY_TTL_S),
  IDEMPOTENCY_RETENTION_S: intFrom(60, 30 * 86_400).default(86_400),
  OUTBOX_POLL_MS: intFrom(10, 60_000).default(500),
  OUTBOX_RETRY_MAX_MS: intFrom(100, 600_000).default(5000),
  OUTBOX_CLAIM_DELAY_MS: intFrom(0, 60_000).default(2000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SEED_DEMO: z.enum(['0', '1']).default('1'),
});

/** The backend's settings. */
export interface BackendConfig {
  readonly port: number;
  readonly host: string;
  /** Worker processes; BACKEND_WORKERS wins over UVICORN_WORKERS; default 4. */
  readonly workers: number;
  readonly databaseUrl: string;
  readonly redisUrl: string;
  /** The three signing keys (admin tokens are HS256 with JWT_SECRET here). */
  readonly tokenKeys: Required<Pick<TokenKeys, 'jwtSecret'>> & TokenKeys;
  /** Issuer, admin audience and lifetimes of every token. */
  readonly tokenPolicy: TokenPolicy;
  /** Accept the seed's credential-less widget calls (`assistant_id` + origin) on the API and /ws/. */
  readonly legacyWidgetAuth: boolean;
  readonly historyLength: number;
  readonly historyTtlS: number;
  /** Seconds Redis remembers a message's publish (its idempotency key `message:<id>:<created_at>`). */
  readonly publishIdempotencyTtlS: number;
  /** Seconds an `Idempotency-Key` of the public API answers retries. */
  readonly idempotencyRetentionS: number;
  /** How often an idle outbox relay looks for unpublished messages. */
  readonly outboxPollMs: number;
  /** Longest delay between the relay's publish retries while Redis is down. */
  readonly outboxRetryMaxMs: number;
  /** How long the relay leaves a new message to the request that stored it. */
  readonly outboxClaimDelayMs: number;
  /** Largest request body accepted; bigger gets 413. */
  readonly maxBodyBytes: number;
  readonly logLevel: string;
  /** Whether the primary inserts the demo user, assistants and dialogs. */
  readonly seedDemo: boolean;
}

/** One bad variable: what is wrong and what to do. */
export interface ConfigProblem {
  readonly variable: string;
  readonly message: string;
  readonly fix: string;
}

/** The backend's environment is unusable; `toLine()` is the one line printed before exiting. */
export class BackendConfigError extends Error {
  override readonly name = 'BackendConfigError';
  /** Stable code, documented in docs/errors.md. */
  readonly code = 'RPX_BACKEND_CONFIG';
  /** Lists every problem found. */
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(`invalid backend environment: ${problems.map((p) => `${p.variable}: ${p.message}`).join('; ')}`);
  }

  /** `error RPX_BACKEND_CONFIG: VAR: problem — fix; VAR2: …` */
  toLine(): string {
    return `error ${this.code}: ${this.problems.map((p) => `${p.variable}: ${p.message} — ${p.fix}`).join('; ')}`;
  }
}

const fixFor = (variable: string): string => TOKEN_ENV_FIXES[variable] ?? `correct ${variable} or unset it to use its default (see examples/backend/src/config.ts)`;

/** Parses the environment; throws BackendConfigError naming every bad variable and its fix. */
export function configFromEnv(env: NodeJS.ProcessEnv): BackendConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new BackendConfigError(
      parsed.error.issues.map((i) => {
        const variable = String(i.path[0] ?? 'environment');
        return { variable, message: i.message, fix: fixFor(variable) };
      }),
    );
  }
  const e = parsed.data;
  const problem = e.JWT_SECRET ? tokenSecretProblem(e) : { variable: 'JWT_SECRET', message: 'is required' };
  if (problem) throw new BackendConfigError([{ ...problem, fix: fixFor(problem.variable) }]);
  return {
    port: e.PORT,
    host: e.HOST,
    workers: e.BACKEND_WORKERS ?? e.UVICORN_WORKERS ?? 4,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    tokenKeys: { jwtSecret: e.JWT_SECRET!, ...tokenSecretsOf(e) },
    tokenPolicy: tokenPolicyOf(e),
    legacyWidgetAuth: e.LEGACY_WIDGET_AUTH,
    historyLength: e.HISTORY_LENGTH,
    historyTtlS: e.HISTORY_TTL_S,
    maxBodyBytes: e.MAX_BODY_BYTES,
    publishIdempotencyTtlS: e.PUBLISH_IDEMPOTENCY_TTL_S,
    idempotencyRetentionS: e.IDEMPOTENCY_RETENTION_S,
    outboxPollMs: e.OUTBOX_POLL_MS,
    outboxRetryMaxMs: e.OUTBOX_RETRY_MAX_MS,
    outboxClaimDelayMs: e.OUTBOX_CLAIM_DELAY_MS,
    logLevel: e.LOG_LEVEL,
    seedDemo: e.SEED_DEMO === '1',
  };
}
