import { z } from 'zod';
import { IDEMPOTENCY_KEY_MAX_LENGTH, isIdempotencyKey } from '../broker/protocol.js';
import type { PublishInput } from '../broker/publisher.js';

// The body of POST /internal/publish. Validation errors become the 400 response's reason.

/** Event types are short identifiers such as `message:new` or `typing.start`. */
export const EVENT_TYPE = /^[A-Za-z0-9_.:-]{1,100}$/;

/** Schema of `{dialog_id, type, data, audience?, idempotency_key?}`. */
export const publishBodySchema = z.strictObject({
  dialog_id: z.int('must be an integer').positive('must be positive').max(Number.MAX_SAFE_INTEGER),
  type: z.string('must be a string').regex(EVENT_TYPE, 'must be 1-100 characters of letters, digits, _ . : -'),
  data: z.unknown().refine((v) => v !== undefined, 'is required (use null for none)'),
  audience: z
    .array(z.enum(['admin', 'widget', 'site'], 'must be admin, widget or site'), 'must be an array of admin, widget, site')
    .max(3)
    .optional(),
  idempotency_key: z.string('must be a string').refine(isIdempotencyKey, `must be 1-${IDEMPOTENCY_KEY_MAX_LENGTH} characters of letters, digits, _ . : -`).optional(),
});

/** Parses a publish body; returns the input or the first problem as one sentence. */
export function parsePublishBody(text: string): { ok: true; input: PublishInput } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'body must be JSON: {"dialog_id": 123, "type": "message:new", "data": {...}, "audience": ["admin"]}' };
  }
  const parsed = publishBodySchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    return { ok: false, reason: `${where}${issue.message}` };
  }
  const { dialog_id, type, data, audience, idempotency_key } = parsed.data;
  return { ok: true, input: { dialogId: dialog_id, type, data, audience: audience ? [...new Set(audience)] : undefined, idempotencyKey: idempotency_key } };
}
