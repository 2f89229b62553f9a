import { createHash } from 'node:crypto';
import type { Grant } from '@replyx/gateway/access/grant';

// The public API's Idempotency-Key: a client that retries a POST (timeout, 502, connection cut)
// sends the same key and gets the first result instead of a second stored message. Keys are
// scoped to the credential's subject and the dialog, so two callers never collide and a key
// cannot be used to read someone else's result.

/** The request header. */
export const IDEMPOTENCY_HEADER = 'idempotency-key';

/** Longest key accepted (a UUID is 36). */
export const IDEMPOTENCY_KEY_MAX = 200;

const KEY = new RegExp(`^[\\x21-\\x7e]{1,${IDEMPOTENCY_KEY_MAX}}$`);

/** The key of a header value, or why it is unusable; undefined input (no header) is no key. */
export function parseIdempotencyKey(value: string | undefined): { ok: true; key: string | undefined } | { ok: false; reason: string } {
  if (value === undefined) return { ok: true, key: undefined };
  if (!KEY.test(value)) return { ok: false, reason: `Idempotency-Key must be 1-${IDEMPOTENCY_KEY_MAX} visible ASCII characters (no spaces), e.g. a UUID` };
  return { ok: true, key: value };
}

/** Who and where a key belongs to: `<kind>:<credential subject>:dialog:<id>`. */
export function idempotencyScope(grant: Grant, dialogId: number): string {
  switch (grant.kind) {
    case 'admin':
      return `admin:user:${grant.userId}:dialog:${dialogId}`;
    case 'site':
      return `site:token:${grant.jti}:dialog:${dialogId}`;
    case 'widget':
      return `widget:assistant:${grant.assistantId}:dialog:${dialogId}`;
  }
}

/** SHA-256 of what was asked (route and body): the same key with another request is refused. */
export function requestHash(route: string, body: unknown): Buffer {
  return createHash('sha256').update(route).update('\n').update(JSON.stringify(body)).digest();
}
