import { z } from 'zod';

// Environment of the reference backend, validated once at start. Names follow the team
// contract (and the seed's UVICORN_WORKERS, which operators already set).

const intFrom = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const envSchema = z.object({
  PORT: intFrom(1, 65535).default(8000),
  HOST: z.string().min(1).default('127.0.0.1'),
  BACKEND_WORKERS: intFrom(1, 64).optional(),
  UVICORN_WORKERS: intFrom(1, 64).optional(),
  DATABASE_URL: z.string().min(1, 'DATABASE_URL is required (postgres://user@host:port/db)'),
  REDIS_URL: z.string().min(1, 'REDIS_URL is required (redis://host:port)'),
  JWT_SECRET: z.string().min(16, 'JWT_SECRET must be at least 16 characters'),
  HISTORY_LENGTH: intFrom(0, 1_000_000).default(1000),
  HISTORY_TTL_S: intFrom(60, 30 * 86_400).default(86_400),
  MAX_BODY_BYTES: intFrom(256, 16 * 1024 * 1024).default(64 * 1024),
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
  readonly jwtSecret: string;
  readonly historyLength: number;
  readonly historyTtlS: number;
  /** Largest request body accepted; bigger gets 413. */
  readonly maxBodyBytes: number;
  readonly logLevel: string;
  /** Whether the primary inserts the demo user, assistants and dialogs. */
  readonly seedDemo: boolean;
}

/** Parses the environment; throws one Error listing every bad variable. */
export function configFromEnv(env: NodeJS.ProcessEnv): BackendConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid backend environment: ${problems}`);
  }
  const e = parsed.data;
  return {
    port: e.PORT,
    host: e.HOST,
    workers: e.BACKEND_WORKERS ?? e.UVICORN_WORKERS ?? 4,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    jwtSecret: e.JWT_SECRET,
    historyLength: e.HISTORY_LENGTH,
    historyTtlS: e.HISTORY_TTL_S,
    maxBodyBytes: e.MAX_BODY_BYTES,
    logLevel: e.LOG_LEVEL,
    seedDemo: e.SEED_DEMO === '1',
  };
}
