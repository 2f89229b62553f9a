import { createHmac } from 'node:crypto';
import { TOKEN_DEFAULTS } from '@replyx/gateway/auth/token-settings';
import { signAdminToken as signAdmin, signSiteToken, signWidgetToken, type SignedToken, type TokenPolicy } from '@replyx/gateway/auth/tokens';

// The demo data every local stack and test shares, and the credentials for it. Nothing secret
// is stored: the demo site tokens have fixed ids (revocable like any other) and are minted on
// demand with the stack's SITE_TOKEN_SECRET; dialog 123's visitor key is derived from the
// stack's WIDGET_TOKEN_SECRET, so the seed's scenarios and `npm run stack -- tokens` can open a
// widget session for it while the database holds only the key's hash.

/** The demo operator who owns every demo assistant. */
export const DEMO_USER = { id: 1, email: 'operator@demo.replyx.local', name: 'Demo operator' } as const;

/** Demo assistants: 3 is the seed's widget assistant; 4 and 5 are the second and third site. */
export const DEMO_ASSISTANTS = [
  { id: 3, name: 'Demo site 1 (widget)', allowedDomains: ['localhost', '127.0.0.1', 'example.com', '*.example.com'] },
  { id: 4, name: 'Demo site 2', allowedDomains: ['localhost', '127.0.0.1', 'site2.example.org'] },
  { id: 5, name: 'Demo site 3', allowedDomains: ['localhost', '127.0.0.1', 'site3.example.net'] },
] as const;

/** Demo dialogs: 123 is the seed's basic scenario; 100/200/300 are the three sites. */
export const DEMO_DIALOGS = [
  { id: 100, assistantId: 3 },
  { id: 123, assistantId: 3 },
  { id: 200, assistantId: 4 },
  { id: 300, assistantId: 5 },
] as const;

/** The seed's three third-party sites: which dialog, assistant and fixed token id each has. */
export const DEMO_SITES = [
  { name: 'SITE1', dialogId: 100, assistantId: 3, jti: 'demo-site1-token' },
  { name: 'SITE2', dialogId: 200, assistantId: 4, jti: 'demo-site2-token' },
  { name: 'SITE3', dialogId: 300, assistantId: 5, jti: 'demo-site3-token' },
] as const;

/** The assistant the seed's widget connects with (`assistant_id=3`). */
export const DEMO_WIDGET_ASSISTANT_ID = 3;
/** The dialog whose visitor key the demo seed sets (the seed's basic scenario). */
export const DEMO_VISITOR_DIALOG_ID = 123;

/**
 * The health probe's own dialog (of the widget assistant, marked `probe`): the probe's messages go
 * here, never into a user's dialog, and are deleted after each probe. Its visitor key is derived
 * like dialog 123's (`demoVisitorKey(secret, PROBE_DIALOG_ID)`).
 */
export const PROBE_DIALOG_ID = 900;

/** The token policy of a stack that sets no JWT_ISSUER/JWT_AUDIENCE/lifetimes (every demo stack). */
export const DEFAULT_TOKEN_POLICY: TokenPolicy = {
  issuer: TOKEN_DEFAULTS.JWT_ISSUER,
  adminAudience: TOKEN_DEFAULTS.JWT_AUDIENCE,
  adminMaxTtlS: TOKEN_DEFAULTS.ADMIN_TOKEN_MAX_TTL_S,
  siteMaxTtlS: TOKEN_DEFAULTS.SITE_TOKEN_MAX_TTL_S,
  widgetTtlS: TOKEN_DEFAULTS.WIDGET_TOKEN_TTL_S,
};

/** Dialog 123's demo visitor key: an HMAC of a fixed label under the stack's widget secret. */
export function demoVisitorKey(widgetTokenSecret: string, dialogId: number = DEMO_VISITOR_DIALOG_ID): string {
  return createHmac('sha256', widgetTokenSecret).update(`replyx-demo-visitor:${dialogId}`).digest('base64url');
}

/** Signs an operator (admin panel) JWT for `userId`, valid `ttlS` seconds (at most ADMIN_TOKEN_MAX_TTL_S). */
export async function signAdminToken(jwtSecret: string, userId: number = DEMO_USER.id, ttlS = 3600, policy = DEFAULT_TOKEN_POLICY): Promise<string> {
  return (await signAdmin(jwtSecret, { userId, ttlS }, policy)).token;
}

/** The three demo site tokens (fixed jtis, assistant-wide), freshly signed with the site secret. */
export async function demoSiteTokens(
  siteTokenSecret: string,
  ttlS = DEFAULT_TOKEN_POLICY.siteMaxTtlS,
  policy = DEFAULT_TOKEN_POLICY,
): Promise<{ name: string; dialogId: number; assistantId: number; jti: string; token: string; expiresAt: string }[]> {
  return Promise.all(
    DEMO_SITES.map(async (s) => {
      const signed = await signSiteToken(siteTokenSecret, { userId: DEMO_USER.id, assistantId: s.assistantId, jti: s.jti, ttlS }, policy);
      return { ...s, token: signed.token, expiresAt: new Date(signed.exp * 1000).toISOString() };
    }),
  );
}

/** A widget session token for dialog 123 as POST /api/widget/sessions would issue it for `origin`. */
export function demoWidgetToken(widgetTokenSecret: string, origin: string, policy = DEFAULT_TOKEN_POLICY): Promise<SignedToken> {
  return signWidgetToken(widgetTokenSecret, { dialogId: DEMO_VISITOR_DIALOG_ID, assistantId: DEMO_WIDGET_ASSISTANT_ID, origin }, policy);
}
