import pino, { type DestinationStream, type Logger } from 'pino';

// JSON logs whose messages keep the seed's grep-able words ([Admin], [Widget], [Site],
// Broadcasting message, WEBSOCKET_4003_ERROR). Tokens travel in query strings, so every URL
// is sanitised before it is logged, and pino's redact is a second net for headers and fields.

const SECRET_PARAMS = new Set(['token', 'site_token', 'key', 'publish_key', 'debug_token', 'access_token']);

/** Paths pino replaces with "[redacted]" wherever they appear in a log object. */
export const REDACT_PATHS = [
  'token',
  'site_token',
  '*.token',
  '*.site_token',
  'headers.authorization',
  'headers.cookie',
  'headers["x-publish-key"]',
  'headers["x-debug-token"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["x-publish-key"]',
  '*.headers["x-debug-token"]',
];

/** A request URL with the values of secret query parameters replaced by "[redacted]". */
export function sanitizeUrl(rawUrl: string | undefined): string {
  if (!rawUrl) return '';
  const q = rawUrl.indexOf('?');
  if (q < 0) return rawUrl;
  const parts = rawUrl.slice(q + 1).split('&');
  for (let i = 0; i < parts.length; i += 1) {
    const part = parts[i]!;
    const eq = part.indexOf('=');
    const name = decodeSafe(eq < 0 ? part : part.slice(0, eq)).toLowerCase();
    if (SECRET_PARAMS.has(name)) parts[i] = `${part.slice(0, eq < 0 ? part.length : eq)}=[redacted]`;
  }
  return `${rawUrl.slice(0, q)}?${parts.join('&')}`;
}

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Creates the gateway's pino logger; `destination` lets tests capture every line. */
export function createLogger(level: string, destination?: DestinationStream, base: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { service: 'ws-gateway', ...base },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
