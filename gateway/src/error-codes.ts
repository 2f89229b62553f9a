// The gateway's error codes. The gateway is its own package and never imports infra/, so it keeps
// its codes here; the toolkit's catalogue test (infra/error-codes.test.ts) holds them, the
// toolkit's codes and docs/errors.md to each other.

/** Each code the gateway prints (errors before exiting, warnings at start), with the one-line meaning docs/errors.md shows for it. */
export const GATEWAY_ERROR_CODES = {
  RPX_GATEWAY_CONFIG: "the gateway's environment has a bad or missing value; the line names the variable",
  RPX_GATEWAY_START: 'the gateway could not start (port taken, unusable `JWT_PUBLIC_KEY`)',
  RPX_GATEWAY_NOFILE: "warning at start: the gateway's open-file limit is below `MAX_CONNECTIONS` plus its reserve, so it admits fewer connections: the ones past its capacity close with 4100 (without that bound their accepts would fail with EMFILE)",
  RPX_GATEWAY_ACCESS_LISTENER:
    'warning: the gateway lost (or could not open) its LISTEN connection to Postgres, so access changes are not signalled: until it is back they take effect within `ACCESS_CACHE_TTL_MS` (handshakes) and `REAUTH_INTERVAL_MS` (open sockets)',
} as const satisfies Record<`RPX_${string}`, string>;

/** A stable error code the gateway prints. */
export type GatewayErrorCode = keyof typeof GATEWAY_ERROR_CODES;

/** The one line the gateway prints before exiting: `error CODE: what — what to do`. */
export function gatewayErrorLine(code: GatewayErrorCode, message: string, fix: string): string {
  return `error ${code}: ${message} — ${fix}`;
}
