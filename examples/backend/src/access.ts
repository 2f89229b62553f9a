import { jwtVerify, errors as joseErrors } from 'jose';
import { z } from 'zod';
import { isHostAllowed, originHost as gatewayOriginHost } from '@replyx/gateway/origin/allowed-domains';

// Who may write to or listen on a dialog: the seed's three clients (operator JWT, site token,
// widget origin). Used by the HTTP API and by legacy /ws/ mode, so both refuse the same things.

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

const deny = (code: Denial['code'], reason: string): Denial => ({ denied: true, code, reason });

/** A caller who passed the checks. */
export type Caller =
  | { readonly kind: 'admin'; readonly userId: number }
  | { readonly kind: 'site'; readonly userId: number; readonly assistantId: number }
  | { readonly kind: 'widget'; readonly assistantId: number; readonly origin: string };

const adminClaims = z.object({ sub: z.string().regex(/^\d+$/, 'sub must be a numeric user id') });
const siteClaims = z.object({ type: z.literal('site'), user_id: z.coerce.number().int().positive(), assistant_id: z.coerce.number().int().positive() });

async function verify(secret: string, token: string): Promise<{ claims: Record<string, unknown> } | Denial> {
  try {
    const { payload } = await jwtVerify(token, new TextEncoder().encode(secret), { algorithms: ['HS256'] });
    return { claims: payload as Record<string, unknown> };
  } catch (err) {
    const reason = err instanceof joseErrors.JWTExpired ? 'token expired' : 'invalid token';
    return deny('UNAUTHORIZED', reason);
  }
}

const isDenial = (v: unknown): v is Denial => typeof v === 'object' && v !== null && (v as { denied?: unknown }).denied === true;

/** Verifies an operator JWT (HS256, `sub` = user id) and returns the user id. */
export async function verifyAdminToken(secret: string, token: string | undefined): Promise<{ userId: number } | Denial> {
  if (!token) return deny('UNAUTHORIZED', 'missing token');
  const verified = await verify(secret, token);
  if (isDenial(verified)) return verified;
  const payload = verified.claims;
  if (payload.type === 'site') return deny('UNAUTHORIZED', 'a site token is not an operator token');
  const claims = adminClaims.safeParse(payload);
  return claims.success ? { userId: Number(claims.data.sub) } : deny('UNAUTHORIZED', 'token has no numeric sub');
}

/** Verifies a site token (`type: "site"`, `user_id`, `assistant_id`). */
export async function verifySiteToken(secret: string, token: string | undefined): Promise<{ userId: number; assistantId: number } | Denial> {
  if (!token) return deny('UNAUTHORIZED', 'missing site_token');
  const verified = await verify(secret, token);
  if (isDenial(verified)) return verified;
  const claims = siteClaims.safeParse(verified.claims);
  return claims.success ? { userId: claims.data.user_id, assistantId: claims.data.assistant_id } : deny('UNAUTHORIZED', 'not a site token');
}

/** The host of an http(s) origin (`https://a.example.com:8443` -> `a.example.com`), or undefined; the gateway's rule. */
export function originHost(origin: string): string | undefined {
  return gatewayOriginHost(origin);
}

/**
 * True when `host` matches an allowed domain: exactly, or `*.example.com` for any subdomain of
 * example.com (not example.com itself). The gateway's rule, so HTTP and WebSocket agree.
 */
export function hostAllowed(host: string, allowedDomains: readonly string[]): boolean {
  return isHostAllowed(host.toLowerCase(), allowedDomains);
}

/** The owner check every client kind ends with. */
export function authorise(caller: Caller, access: DialogAccess | undefined): Denial | undefined {
  if (!access) return deny('DIALOG_NOT_FOUND', 'dialog not found');
  switch (caller.kind) {
    case 'admin':
      return access.userId === caller.userId ? undefined : deny('DIALOG_NOT_FOUND', 'dialog not found or not yours');
    case 'site':
      return access.assistantId === caller.assistantId && access.userId === caller.userId ? undefined : deny('DIALOG_NOT_FOUND', "dialog does not belong to the site token's assistant");
    case 'widget':
      if (access.assistantId !== caller.assistantId) return deny('DIALOG_NOT_FOUND', 'dialog does not belong to this assistant');
      return hostAllowed(originHost(caller.origin) ?? '', access.allowedDomains) ? undefined : deny('ORIGIN_FORBIDDEN', `origin ${caller.origin} is not allowed for assistant ${caller.assistantId}`);
  }
}

/** Checks a widget's origin: `parent_origin` (iframe) wins over the Origin header; none is denied. */
export function widgetOrigin(parentOrigin: string | undefined, originHeader: string | undefined): string | Denial {
  const origin = parentOrigin || originHeader;
  if (!origin) return deny('ORIGIN_FORBIDDEN', 'missing origin (send parent_origin or an Origin header)');
  if (!originHost(origin)) return deny('ORIGIN_FORBIDDEN', `origin ${origin} is not an http(s) URL`);
  return origin;
}

/** Narrows a result to a Denial. */
export function denied(v: unknown): v is Denial {
  return isDenial(v);
}
