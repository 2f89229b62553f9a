import type { IncomingMessage } from 'node:http';
import { presentedToken, type CredentialSource } from '../auth/credentials.js';
import type { TokenVerifier } from '../auth/tokens.js';
import { positiveId } from '../auth/tokens.js';
import { eventIdProblem } from '../broker/protocol.js';
import { CloseCodes, type CloseCodeInfo } from '../close-codes.js';
import type { ConnectionKind } from '../connection-kinds.js';
import type { EndpointMatch } from './endpoints.js';
import { isHostAllowed, originHost, widgetOrigin } from '../origin/allowed-domains.js';
import type { DialogAccess } from './dialog-access.js';
import { checkGrant, type Grant } from './grant.js';

// Decides whether a WebSocket request may attach to its dialog. Order matters for what the
// client learns: malformed parameters (4009) before credentials (4001), ownership (4004) before
// origin (4003), so a stranger cannot probe which domains an assistant allows; "no such dialog"
// and "someone else's dialog" are the same 4004. The legacy widget handshake (no credential)
// checks the origin against the claimed assistant first, so 4003 vs 4004 reveals no owner there
// either. Tokens come from the subprotocol, `Authorization: Bearer` or (deprecated) the query.

/** Looks a dialog's access row up (DialogAccessStore in production). */
export type AccessLookup = (dialogId: number) => Promise<DialogAccess | null>;

/** What authorization reads besides the request. */
export interface AuthorizeDeps {
  readonly tokens: TokenVerifier;
  readonly lookup: AccessLookup;
  /** The allowed domains of an assistant (null: unknown); for the legacy widget handshake. */
  readonly assistantDomains: (assistantId: number) => Promise<readonly string[] | null>;
  readonly revoked: { isRevoked(jti: string): Promise<boolean> };
  /** Accept the seed's credential-less widget handshake (LEGACY_WIDGET_AUTH). */
  readonly legacyWidgetAuth: boolean;
}

/** How the credential arrived; `legacy` is the credential-less widget handshake. */
export type CredentialVia = CredentialSource | 'legacy';

/** An accepted request. */
export interface Authorized {
  readonly ok: true;
  readonly kind: ConnectionKind;
  readonly dialogId: number;
  readonly since: string | undefined;
  /** What was granted, re-checked while the connection is open. */
  readonly grant: Grant;
  /** When the credential expires (epoch seconds); 0 when there is none (legacy widget). */
  readonly expiresAt: number;
  readonly via: CredentialVia;
  /** Who it is, for the connect log line (ids and origin only, never tokens). */
  readonly who: Readonly<Record<string, string | number>>;
}

/** A refused request: the close code and a detail for the log. */
export interface Refused {
  readonly ok: false;
  readonly close: CloseCodeInfo;
  readonly detail: string;
  readonly kind: ConnectionKind;
  readonly dialogId?: number;
  /** Set for 4003 so the WEBSOCKET_4003_ERROR line names the assistant and origin. */
  readonly assistantId?: number;
  readonly origin?: string;
}

/** The deprecated query parameter each kind's token may still arrive in (widgets have none). */
const QUERY_TOKEN: Readonly<Record<ConnectionKind, string | undefined>> = { admin: 'token', site: 'site_token', widget: undefined };

/** Authorizes one WebSocket request; rejects only on infrastructure errors (database down). */
export async function authorize(match: EndpointMatch, req: IncomingMessage, deps: AuthorizeDeps): Promise<Authorized | Refused> {
  const { kind, params } = match;
  const dialogId = /^\d{1,16}$/.test(match.dialogSegment) ? positiveId(match.dialogSegment) : undefined;
  if (dialogId === undefined) return refused(kind, CloseCodes.BAD_REQUEST, 'dialog id must be a positive integer');
  const since = params.get('since') ?? undefined;
  const sinceProblem = since === undefined ? undefined : eventIdProblem(since);
  // The close frame carries the reason (a client's own input, so it may learn what was wrong).
  if (sinceProblem) return refused(kind, { ...CloseCodes.BAD_REQUEST, reason: sinceProblem }, sinceProblem, { dialogId });
  const originHeader = typeof req.headers.origin === 'string' ? req.headers.origin : undefined;
  const presented = presentedToken(req.headers, params, QUERY_TOKEN[kind]);
  // No closures per handshake here: under tsx (the local stack, the benchmark) each one also
  // costs a defineProperty for its name.

  if (kind === 'admin') {
    const token = await deps.tokens.verifyAdmin(presented?.token);
    if (!token.ok) return refused(kind, CloseCodes.UNAUTHORIZED, `admin token ${token.reason}`, { dialogId });
    const grant: Grant = { kind, userId: token.value.userId };
    return (await checkAccess(deps, kind, dialogId, grant)) ?? accepted(kind, dialogId, since, grant, token.value.exp, presented!.source, { user_id: token.value.userId });
  }

  if (kind === 'site') {
    const token = await deps.tokens.verifySite(presented?.token);
    if (!token.ok) return refused(kind, CloseCodes.UNAUTHORIZED, `site token ${token.reason}`, { dialogId });
    const { userId, assistantId, dialogId: onlyDialog, jti, exp } = token.value;
    if (await deps.revoked.isRevoked(jti)) return refused(kind, CloseCodes.UNAUTHORIZED, `site token ${jti} revoked`, { dialogId });
    // Server-to-server clients send no Origin; browsers always do, and then it must be allowed
    // (a malformed one as well: the empty host matches no entry).
    const originCheck = originHeader === undefined ? {} : { originHost: originHost(originHeader) ?? '' };
    const grant: Grant = { kind, userId, assistantId, ...(onlyDialog === undefined ? {} : { dialogId: onlyDialog }), jti, ...originCheck };
    const who = { assistant_id: assistantId, jti, ...(originHeader ? { origin: originHeader } : {}) };
    return (await checkAccess(deps, kind, dialogId, grant, assistantId, originHeader)) ?? accepted(kind, dialogId, since, grant, exp, presented!.source, who);
  }

  if (!presented && deps.legacyWidgetAuth && params.has('assistant_id')) return legacyWidget(match, dialogId, since, originHeader, deps);
  if (!presented) return refused(kind, CloseCodes.UNAUTHORIZED, 'widget token missing (obtain one with POST /api/widget/sessions)', { dialogId });
  const token = await deps.tokens.verifyWidget(presented.token);
  if (!token.ok) return refused(kind, CloseCodes.UNAUTHORIZED, `widget token ${token.reason}`, { dialogId });
  const { assistantId, origin, exp } = token.value;
  const grant: Grant = { kind: 'widget', assistantId, originHost: originHost(origin)!, dialogId: token.value.dialogId };
  return (await checkAccess(deps, kind, dialogId, grant, assistantId, origin)) ?? accepted(kind, dialogId, since, grant, exp, presented.source, { assistant_id: assistantId, origin });
}

/**
 * The seed's credential-less widget handshake (LEGACY_WIDGET_AUTH only): the origin is checked
 * against the claimed assistant's allowed domains first, then the dialog must be that
 * assistant's; a missing dialog and another assistant's dialog get the same 4004.
 */
async function legacyWidget(match: EndpointMatch, dialogId: number, since: string | undefined, originHeader: string | undefined, deps: AuthorizeDeps): Promise<Authorized | Refused> {
  const kind = match.kind;
  const assistantId = positiveId(match.params.get('assistant_id') ?? undefined);
  if (assistantId === undefined) return refused(kind, CloseCodes.BAD_REQUEST, 'assistant_id must be a positive integer', { dialogId });
  const choice = widgetOrigin(match.params.get('parent_origin'), originHeader);
  if (!choice.ok) return refused(kind, CloseCodes.DOMAIN_FORBIDDEN, `origin ${choice.reason}`, { dialogId, assistantId, origin: match.params.get('parent_origin') ?? originHeader ?? '' });
  const domains = await deps.assistantDomains(assistantId);
  if (!domains || !isHostAllowed(choice.host, domains)) return refused(kind, CloseCodes.DOMAIN_FORBIDDEN, 'origin not in allowed domains', { dialogId, assistantId, origin: choice.origin });
  const grant: Grant = { kind: 'widget', assistantId, originHost: choice.host };
  return (await checkAccess(deps, kind, dialogId, grant, assistantId, choice.origin)) ?? accepted(kind, dialogId, since, grant, 0, 'legacy', { assistant_id: assistantId, origin: choice.origin });
}

/** Ownership then origin, through the same check re-authorization runs later. */
async function checkAccess(deps: AuthorizeDeps, kind: ConnectionKind, dialogId: number, grant: Grant, assistantId?: number, origin?: string): Promise<Refused | undefined> {
  const access = await deps.lookup(dialogId);
  const result = checkGrant(grant, dialogId, access);
  if (result === 'not-found') return refused(kind, CloseCodes.DIALOG_NOT_FOUND, access ? `dialog belongs to another ${grant.kind === 'admin' ? 'user' : 'assistant'}` : 'no such dialog', { dialogId });
  if (result === 'origin') return refused(kind, CloseCodes.DOMAIN_FORBIDDEN, 'origin not in allowed domains', { dialogId, assistantId, origin: origin ?? '' });
  return undefined;
}

/** A refusal: the close code, a detail for the log, and what the log line names. */
function refused(kind: ConnectionKind, close: CloseCodeInfo, detail: string, extra: Partial<Refused> = {}): Refused {
  return { ok: false, close, detail, kind, ...extra };
}

/** An acceptance with what the connection keeps. */
function accepted(kind: ConnectionKind, dialogId: number, since: string | undefined, grant: Grant, expiresAt: number, via: CredentialVia, who: Authorized['who']): Authorized {
  return { ok: true, kind, dialogId, since, grant, expiresAt, via, who };
}
