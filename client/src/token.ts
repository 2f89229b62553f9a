// Tokens are opaque to the client except for two things: it checks that a token has the shape
// of a JWT (it must fit in a subprotocol), and it reads `exp`, unverified, to renew in time.

/** What the client tells its token source. */
export interface TokenRequest {
  /**
   * True when a cached token will not do: the last one was refused (4001) or is about to
   * expire. A source that caches tokens must fetch a new one then.
   */
  readonly fresh: boolean;
}

/**
 * Returns the token for the next connection; called before every connect. Throw an error
 * with `closeCode` 4000-4099 to stop the client (e.g. the user signed out); any other error
 * is retried with backoff.
 */
export type TokenSource = (request: TokenRequest) => string | Promise<string>;

const JWT = /^[\w-]+\.[\w-]+\.[\w-]*$/;

/** True when `token` has the shape of a JWT (three base64url parts). */
export function isJwt(token: unknown): token is string {
  return typeof token === 'string' && JWT.test(token);
}

/** The `exp` of a JWT in epoch milliseconds, read without verifying; undefined if absent or unreadable. */
export function jwtExpiresAt(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const { exp } = JSON.parse(atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4))) as { exp?: unknown };
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
