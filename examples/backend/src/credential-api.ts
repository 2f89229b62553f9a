import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type pg from 'pg';
import { z } from 'zod';
import { signSiteToken, signWidgetToken } from '@replyx/gateway/auth/tokens';
import { isHostAllowed, originHost } from '@replyx/gateway/origin/allowed-domains';
import type { BackendCredentials, Caller } from './access.js';
import { ApiError, header, idSchema, parseOr400 } from './http-io.js';
import { assistantById, createVisitorDialog, dialogAccess, dialogByVisitorKey, registerSiteToken, revokeSiteToken, visitorKeyHash } from './store.js';

// The endpoints that hand out and take back credentials:
//   POST   /api/widget/sessions     anyone on an allowed page: a widget token for a new or resumed dialog
//   POST   /api/site-tokens         an operator: a site token for one of their assistants (or one dialog)
//   DELETE /api/site-tokens/{jti}   an operator: revoke one of their site tokens
// Refusals never say which assistant owns a dialog or a visitor key.

/** A JSON answer: status and body. */
export interface Answer {
  readonly status: number;
  readonly body?: unknown;
  /** Extra response headers. */
  readonly headers?: Readonly<Record<string, string>>;
}

const sessionBody = z.strictObject({
  assistant_id: idSchema,
  parent_origin: z.string().max(2048).optional(),
  visitor_key: z.string().regex(/^[A-Za-z0-9_-]{20,128}$/, 'visitor_key must be the value a previous session returned').optional(),
});

/**
 * POST /api/widget/sessions: checks the page's origin (`parent_origin`, else the Origin header)
 * against the assistant's allowed domains, then resumes the dialog of `visitor_key` or creates
 * a new one with a new key (returned once, stored as a hash), and issues a widget token bound
 * to that dialog, assistant and origin. Renewal is the same call with the key. `onOriginRefused`
 * hears each origin refused for an assistant, so the operator's log names what to allow.
 */
export async function widgetSession(db: pg.Pool, creds: BackendCredentials, req: IncomingMessage, raw: unknown, onOriginRefused?: (assistantId: number, origin: string) => void): Promise<Answer> {
  const body = parseOr400(sessionBody, raw, 'body');
  const claimed = body.parent_origin ?? header(req, 'origin');
  if (!claimed || claimed === 'null') throw new ApiError(403, 'ORIGIN_FORBIDDEN', 'missing origin: send parent_origin (the embedding page) or an Origin header');
  const host = originHost(claimed);
  if (!host) throw new ApiError(403, 'ORIGIN_FORBIDDEN', 'parent_origin/Origin must be an http(s) origin');
  const origin = new URL(claimed).origin;
  const domains = await creds.assistantDomains(body.assistant_id);
  // The same answer for an unknown assistant: its existence is nobody's business either.
  if (!domains || !isHostAllowed(host, domains)) {
    onOriginRefused?.(body.assistant_id, origin);
    throw new ApiError(403, 'ORIGIN_FORBIDDEN', `origin ${origin} is not allowed for assistant ${body.assistant_id}`);
  }
  let dialogId: number;
  let visitorKey: string | undefined;
  if (body.visitor_key) {
    const found = await dialogByVisitorKey(db, body.assistant_id, visitorKeyHash(body.visitor_key));
    if (found === undefined) throw new ApiError(404, 'VISITOR_NOT_FOUND', 'no dialog of this assistant has that visitor_key; call again without visitor_key to start a new dialog');
    dialogId = found;
  } else {
    visitorKey = randomBytes(32).toString('base64url');
    dialogId = await createVisitorDialog(db, body.assistant_id, visitorKeyHash(visitorKey));
  }
  const signed = await signWidgetToken(creds.keys.widgetTokenSecret, { dialogId, assistantId: body.assistant_id, origin }, creds.policy);
  return {
    status: 201,
    body: { token: signed.token, expires_at: new Date(signed.exp * 1000).toISOString(), dialog_id: dialogId, ...(visitorKey ? { visitor_key: visitorKey } : {}) },
  };
}

/** POST /api/site-tokens: a site token for the caller's assistant, optionally narrowed to one dialog. */
export async function issueSiteToken(db: pg.Pool, creds: BackendCredentials, caller: Caller, raw: unknown): Promise<Answer> {
  if (caller.grant.kind !== 'admin') throw new ApiError(401, 'UNAUTHORIZED', 'issuing site tokens needs an operator token');
  const userId = caller.grant.userId;
  const schema = z.strictObject({ assistant_id: idSchema, dialog_id: idSchema.optional(), ttl_s: z.int().min(60).max(creds.policy.siteMaxTtlS).optional() });
  const body = parseOr400(schema, raw, 'body');
  const assistant = await assistantById(db, body.assistant_id);
  if (!assistant || assistant.userId !== userId) throw new ApiError(404, 'NOT_FOUND', 'assistant not found');
  if (body.dialog_id !== undefined && (await dialogAccess(db, body.dialog_id))?.assistantId !== body.assistant_id) throw new ApiError(404, 'NOT_FOUND', 'dialog not found');
  const signed = await signSiteToken(creds.keys.siteTokenSecret, { userId, assistantId: body.assistant_id, dialogId: body.dialog_id, ttlS: body.ttl_s ?? creds.policy.siteMaxTtlS }, creds.policy);
  await registerSiteToken(db, { jti: signed.jti, userId, assistantId: body.assistant_id, dialogId: body.dialog_id, exp: signed.exp });
  return {
    status: 201,
    body: { token: signed.token, jti: signed.jti, expires_at: new Date(signed.exp * 1000).toISOString(), assistant_id: body.assistant_id, dialog_id: body.dialog_id ?? null },
  };
}

/** DELETE /api/site-tokens/{jti}: revokes one of the caller's site tokens (gateways close its sockets within REAUTH_INTERVAL_MS). */
export async function revokeSiteTokenOf(db: pg.Pool, caller: Caller, jti: string): Promise<Answer> {
  if (caller.grant.kind !== 'admin') throw new ApiError(401, 'UNAUTHORIZED', 'revoking site tokens needs an operator token');
  if (!/^[A-Za-z0-9._:-]{8,128}$/.test(jti)) throw new ApiError(400, 'BAD_REQUEST', 'jti must be 8-128 characters of A-Z a-z 0-9 . _ : -');
  if (!(await revokeSiteToken(db, caller.grant.userId, jti))) throw new ApiError(404, 'NOT_FOUND', 'site token not found');
  return { status: 204 };
}
