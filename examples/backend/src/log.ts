import pino, { type Logger } from 'pino';

// JSON logs (pino). Tokens travel in query strings and Authorization headers, so both are
// redacted before anything is written.

const SECRET_PARAMS = ['token', 'site_token', 'access_token'];

/** A URL path with the values of token-bearing query parameters replaced by `[redacted]`. */
export function redactUrl(rawUrl: string): string {
  const q = rawUrl.indexOf('?');
  if (q < 0) return rawUrl;
  const params = new URLSearchParams(rawUrl.slice(q + 1));
  for (const name of SECRET_PARAMS) if (params.has(name)) params.set(name, '[redacted]');
  return `${rawUrl.slice(0, q)}?${params.toString()}`;
}

/** The backend's logger; `base` names the process role (primary or worker). */
export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: 'backend', pid: process.pid, ...base },
    redact: { paths: ['req.headers.authorization', 'headers.authorization', 'token', 'site_token', '*.token', '*.site_token', 'jwtSecret', 'config.jwtSecret', 'tokenKeys', 'config.tokenKeys', 'keys', '*.keys'], censor: '[redacted]' },
  });
}
