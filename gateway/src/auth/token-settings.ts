import { envBool, envInt, envSecret, envText } from '../env-fields.js';
import type { TokenKeys, TokenPolicy } from './tokens.js';

// The credential settings every component that checks tokens reads from its environment: the
// gateway's config and the reference backend's config both spread `TOKEN_ENV_SHAPE` into their
// schemas, so names, defaults, ranges and fixes exist once.

/** Every signing secret is at least this long (characters). */
export const MIN_SECRET_LENGTH = 32;

/** Defaults of the credential settings (docs/security.md, docs/gateway.md). */
export const TOKEN_DEFAULTS = {
  JWT_ISSUER: 'replyx',
  JWT_AUDIENCE: 'replyx-admin',
  ADMIN_TOKEN_MAX_TTL_S: 86_400,
  SITE_TOKEN_MAX_TTL_S: 30 * 86_400,
  WIDGET_TOKEN_TTL_S: 900,
} as const;

/** The zod fields of the credential settings (spread into a config's env schema). */
export const TOKEN_ENV_SHAPE = {
  JWT_SECRET: envSecret(MIN_SECRET_LENGTH).optional(),
  SITE_TOKEN_SECRET: envSecret(MIN_SECRET_LENGTH).optional(),
  WIDGET_TOKEN_SECRET: envSecret(MIN_SECRET_LENGTH).optional(),
  JWT_ISSUER: envText(TOKEN_DEFAULTS.JWT_ISSUER),
  JWT_AUDIENCE: envText(TOKEN_DEFAULTS.JWT_AUDIENCE),
  ADMIN_TOKEN_MAX_TTL_S: envInt(60, 30 * 86_400, TOKEN_DEFAULTS.ADMIN_TOKEN_MAX_TTL_S),
  SITE_TOKEN_MAX_TTL_S: envInt(60, 365 * 86_400, TOKEN_DEFAULTS.SITE_TOKEN_MAX_TTL_S),
  WIDGET_TOKEN_TTL_S: envInt(60, 86_400, TOKEN_DEFAULTS.WIDGET_TOKEN_TTL_S),
  LEGACY_WIDGET_AUTH: envBool(false),
};

/** The parsed credential settings (the output of TOKEN_ENV_SHAPE). */
export interface TokenEnv {
  readonly JWT_SECRET?: string | undefined;
  readonly SITE_TOKEN_SECRET?: string | undefined;
  readonly WIDGET_TOKEN_SECRET?: string | undefined;
  readonly JWT_ISSUER: string;
  readonly JWT_AUDIENCE: string;
  readonly ADMIN_TOKEN_MAX_TTL_S: number;
  readonly SITE_TOKEN_MAX_TTL_S: number;
  readonly WIDGET_TOKEN_TTL_S: number;
  readonly LEGACY_WIDGET_AUTH: boolean;
}

const secretFix = (variable: string, what: string) =>
  `set ${variable} to a random string of ${MIN_SECRET_LENGTH}+ characters (openssl rand -base64 32), the same value on the gateway and the backend; ${what}`;

/** What to do about each credential variable, for the config error line. */
export const TOKEN_ENV_FIXES: Readonly<Record<string, string>> = {
  JWT_SECRET: secretFix('JWT_SECRET', 'admin panel tokens are signed with it (or set JWT_PUBLIC_KEY for RS256 on the gateway)'),
  SITE_TOKEN_SECRET: secretFix('SITE_TOKEN_SECRET', 'site tokens are signed with it, and it must differ from the other two secrets'),
  WIDGET_TOKEN_SECRET: secretFix('WIDGET_TOKEN_SECRET', 'widget session tokens are signed with it, and it must differ from the other two secrets'),
  JWT_ISSUER: 'set JWT_ISSUER to the `iss` every token carries (default replyx), the same on the gateway and the backend',
  JWT_AUDIENCE: 'set JWT_AUDIENCE to the `aud` of admin tokens (default replyx-admin)',
  LEGACY_WIDGET_AUTH: 'set LEGACY_WIDGET_AUTH=1 only while migrating widgets to sessions, else unset it',
};

/** A missing or reused secret: the variable and what is wrong (undefined when all is well). */
export function tokenSecretProblem(e: Pick<TokenEnv, 'JWT_SECRET' | 'SITE_TOKEN_SECRET' | 'WIDGET_TOKEN_SECRET'>): { variable: string; message: string } | undefined {
  if (!e.SITE_TOKEN_SECRET) return { variable: 'SITE_TOKEN_SECRET', message: 'is required' };
  if (!e.WIDGET_TOKEN_SECRET) return { variable: 'WIDGET_TOKEN_SECRET', message: 'is required' };
  // One key per kind: a reused secret would let one kind's signer mint another kind's tokens.
  if (e.SITE_TOKEN_SECRET === e.JWT_SECRET) return { variable: 'SITE_TOKEN_SECRET', message: 'must differ from JWT_SECRET' };
  if (e.WIDGET_TOKEN_SECRET === e.JWT_SECRET || e.WIDGET_TOKEN_SECRET === e.SITE_TOKEN_SECRET) return { variable: 'WIDGET_TOKEN_SECRET', message: 'must differ from JWT_SECRET and SITE_TOKEN_SECRET' };
  return undefined;
}

/** The token policy of parsed settings. */
export function tokenPolicyOf(e: TokenEnv): TokenPolicy {
  return {
    issuer: e.JWT_ISSUER,
    adminAudience: e.JWT_AUDIENCE,
    adminMaxTtlS: e.ADMIN_TOKEN_MAX_TTL_S,
    siteMaxTtlS: e.SITE_TOKEN_MAX_TTL_S,
    widgetTtlS: e.WIDGET_TOKEN_TTL_S,
  };
}

/** The site and widget keys of parsed settings (call after tokenSecretProblem returned undefined). */
export function tokenSecretsOf(e: TokenEnv): Pick<TokenKeys, 'siteTokenSecret' | 'widgetTokenSecret'> {
  return { siteTokenSecret: e.SITE_TOKEN_SECRET!, widgetTokenSecret: e.WIDGET_TOKEN_SECRET! };
}
