import { checkGrant, type Grant } from '@replyx/gateway/access/grant';
import type { TokenKeys, TokenPolicy, TokenVerifier } from '@replyx/gateway/auth/tokens';
import type { ConnectionKind } from '@replyx/gateway/connection-kinds';
import { isHostAllowed, originHost, widgetOrigin as chooseWidgetOrigin } from '@replyx/gateway/origin/allowed-domains';

// Who may write to or listen on a dialog: the three kinds of client, each with its own token
// (operator JWT, site token, widget session token), or, behind LEGACY_WIDGET_AUTH, the seed's
// credential-less widget. Used by the HTTP API and by legacy /ws/ mode, so both refuse the same
// things; the claim rules, the ownership check and the origin matching are the gateway's own
// modules, so the backend and the gateway cannot disagree.

/** One row of the `replyx_dialog_access` view. */
export interface DialogAccess {
  readonly dialogId: number;
  readonly assistantId: number;
  readonly userId: number;
  readonly allowedDomains: readonly string[];
}

/** Why a caller was refused: maps to HTTP 401/403/404 and WebSocket 4001/4003/4004. */
export interface Denial {
  readonly denied: true;
  readonly code: 'UNAUTHORIZED' | 'ORIGIN_FORBIDDEN' | 'DIALOG_NOT_FOUND';
  readonly reason: string;
}

/** A caller who passed the credential check; `expiresAt` in epoch seconds (0: no credential). */
export interface Caller {
  readonly kind: ConnectionKind;
  readonly grant: Grant;
  readonly expiresAt: number;
}

const deny = (code: Denial['code'], reason: string): Denial => ({ denied: true, code, reason });

/** Narrows a result to a Denial. */
export function denied(v: unknown): v is Denial {
  return typeof v === 'object' && v !== null && (v as { denied?: unknown }).denied === true;
}

/** What checking a token needs: the verifier and the revocation lookup for site tokens. */
export interface CredentialChecks {
  readonly tokens: TokenVerifier;
  readonly isRevoked: (jti: string) => Promise<boolean>;
}

/** Everything the API and legacy /ws/ need to check and issue credentials. */
export interface BackendCredentials extends CredentialChecks {
  /** The signing secrets (site and widget tokens are issued here). */
  readonly keys: TokenKeys;
  readonly policy: TokenPolicy;
  /** Accept the credential-less widget (LEGACY_WIDGET_AUTH). */
  readonly legacyWidgetAuth: boolean;
  /** An assistant's allowed domains (undefined: no such assistant), for origin checks. */
  readonly assistantDomains: (assistantId: number) => Promise<readonly string[] | undefined>;
  /** A dialog's access row (undefined: no such dialog). */
  readonly dialogAccess: (dialogId: number) => Promise<DialogAccess | undefined>;
}

const tokenDenial = (kind: ConnectionKind, reason: string): Denial => deny('UNAUTHORIZED', reason === 'missing' ? `missing ${kind} token` : `${kind} token ${reason}`);

/**
 * Verifies a token as `kind` and returns what it grants. A browser `Origin` sent with a site
 * token must be allowed as well (like on the gateway); server-to-server callers send none.
 */
export async function callerFromToken(checks: CredentialChecks, kind: ConnectionKind, token: string | undefined, originHeader?: string): Promise<Caller | Denial> {
  if (kind === 'admin') {
    const r = await checks.tokens.verifyAdmin(token);
    return r.ok ? { kind, grant: { kind, userId: r.value.userId }, expiresAt: r.value.exp } : tokenDenial(kind, r.reason);
  }
  if (kind === 'site') {
    const r = await checks.tokens.verifySite(token);
    if (!r.ok) return tokenDenial(kind, r.reason);
    const { userId, assistantId, dialogId, jti, exp } = r.value;
    if (await checks.isRevoked(jti)) return deny('UNAUTHORIZED', 'site token revoked');
    const origin = originHeader === undefined ? {} : { originHost: originHost(originHeader) ?? '' };
    return { kind, grant: { kind, userId, assistantId, jti, ...(dialogId === undefined ? {} : { dialogId }), ...origin }, expiresAt: exp };
  }
  const r = await checks.tokens.verifyWidget(token);
  if (!r.ok) return tokenDenial(kind, r.reason);
  return { kind, grant: { kind, assistantId: r.value.assistantId, originHost: originHost(r.value.origin)!, dialogId: r.value.dialogId }, expiresAt: r.value.exp };
}

/**
 * The seed's credential-less widget (LEGACY_WIDGET_AUTH only): the origin (`parent_origin`,
 * else the Origin header) is checked against the claimed assistant's allowed domains first, so
 * a refusal says nothing about which assistant owns a dialog.
 */
export async function legacyWidgetCaller(
  assistantId: number,
  parentOrigin: string | undefined,
  originHeader: string | undefined,
  assistantDomains: (assistantId: number) => Promise<readonly string[] | undefined>,
): Promise<Caller | Denial> {
  const choice = chooseWidgetOrigin(parentOrigin ?? null, originHeader);
  if (!choice.ok) return deny('ORIGIN_FORBIDDEN', choice.reason === 'missing' ? 'missing origin (send parent_origin or an Origin header)' : 'origin is not an http(s) origin');
  const domains = await assistantDomains(assistantId);
  if (!domains || !isHostAllowed(choice.host, domains)) return deny('ORIGIN_FORBIDDEN', `origin ${choice.origin} is not allowed for assistant ${assistantId}`);
  return { kind: 'widget', grant: { kind: 'widget', assistantId, originHost: choice.host }, expiresAt: 0 };
}

/** The ownership (then origin) check every caller ends with; the same "not found" for missing and foreign dialogs. */
export function authorise(caller: Caller, dialogId: number, access: DialogAccess | undefined): Denial | undefined {
  const result = checkGrant(caller.grant, dialogId, access ?? null);
  if (result === 'not-found') return deny('DIALOG_NOT_FOUND', 'dialog not found');
  if (result === 'origin') return deny('ORIGIN_FORBIDDEN', 'origin not allowed for this dialog');
  return undefined;
}
