// The single registry of close codes the gateway sends (and the backend's legacy /ws/ mode, which
// serves the same contract after a rollback). The range tells a client what to do, so clients can
// act on a code they have never seen before.

/** What a client should do after a close, by range. */
export type CloseAction = 'stop' | 'backoff' | 'reconnect-now' | 'standard';

/** One close code: number, reason string sent in the close frame, and its meaning. */
export interface CloseCodeInfo {
  readonly code: number;
  readonly reason: string;
  readonly meaning: string;
}

/** Every close code the gateway (or the backend's legacy /ws/) sends, by name. */
export const CloseCodes = {
  /** Missing, malformed, expired or wrongly signed token. */
  UNAUTHORIZED: { code: 4001, reason: 'unauthorized', meaning: 'token missing, invalid, expired or revoked' },
  /** An open connection's token reached its `exp`: fetch a fresh token, reconnect with `since`. */
  TOKEN_EXPIRED: { code: 4001, reason: 'token expired', meaning: 'the token of an open connection expired' },
  /** An open connection lost its access (dialog moved, site token revoked, origin no longer allowed). */
  ACCESS_REVOKED: { code: 4001, reason: 'access revoked', meaning: 'access of an open connection was revoked' },
  /** The widget/site origin is not one of the assistant's allowed domains (or is missing). */
  DOMAIN_FORBIDDEN: { code: 4003, reason: 'domain forbidden', meaning: 'origin not in the assistant allowed domains' },
  /** The dialog does not exist or does not belong to the caller. */
  DIALOG_NOT_FOUND: { code: 4004, reason: 'dialog not found', meaning: 'dialog missing or not yours' },
  /** Malformed path parameters (dialog id, assistant_id, since, parent_origin). */
  BAD_REQUEST: { code: 4009, reason: 'bad request', meaning: 'malformed parameters' },
  /** Connection or handshake limits exceeded, or the client sent frames too fast. */
  OVER_LIMIT: { code: 4100, reason: 'over limits', meaning: 'too many connections, handshakes or frames' },
  /** The client did not read fast enough; its send buffer passed the cap. */
  SLOW_CONSUMER: { code: 4101, reason: 'slow consumer', meaning: 'send buffer cap exceeded' },
  /**
   * Sent by the backend's legacy /ws/ only: the handshake reached the backend over a route the
   * stack plan does not send there (nginx.conf edited by hand). An operator must repair the
   * route; until then clients back off, and resume with `since` once it is repaired.
   */
  NOT_ROUTED: { code: 4102, reason: '/ws/ is routed to the backend but the stack plan routes it to the gateway: run npm run check', meaning: '/ws/ reached the backend by a route the stack plan does not render' },
  /** The gateway is shutting down (restart, rollback); reconnect with jitter and `since`. */
  DRAINING: { code: 4200, reason: 'gateway draining', meaning: 'gateway restarting' },
  /** A client message exceeded the maximum payload (sent by the transport's frame parser). */
  MESSAGE_TOO_BIG: { code: 1009, reason: 'message too big', meaning: 'client frame larger than MAX_PAYLOAD_BYTES' },
  /** The gateway failed while serving the connection (e.g. the database is unreachable). */
  INTERNAL_ERROR: { code: 1011, reason: 'internal error', meaning: 'gateway-side failure; retry with backoff' },
} as const satisfies Record<string, CloseCodeInfo>;

/** A close code name from the registry. */
export type CloseCodeName = keyof typeof CloseCodes;

/** The client action a close code implies, from its range. */
export function closeAction(code: number): CloseAction {
  if (code >= 4000 && code <= 4099) return 'stop';
  if (code >= 4100 && code <= 4199) return 'backoff';
  if (code >= 4200 && code <= 4299) return 'reconnect-now';
  return 'standard';
}
