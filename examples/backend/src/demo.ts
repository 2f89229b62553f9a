import { SignJWT } from 'jose';

// The demo data every local stack and test shares. Site tokens are derived from JWT_SECRET
// (HS256 over a fixed payload, no iat), so the same secret always gives the same tokens and
// nothing secret is stored in the database.

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

/** The seed's three third-party sites: which dialog and assistant each token is for. */
export const DEMO_SITES = [
  { name: 'SITE1', dialogId: 100, assistantId: 3 },
  { name: 'SITE2', dialogId: 200, assistantId: 4 },
  { name: 'SITE3', dialogId: 300, assistantId: 5 },
] as const;

/** The assistant the seed's widget connects with (`assistant_id=3`). */
export const DEMO_WIDGET_ASSISTANT_ID = 3;

const key = (secret: string) => new TextEncoder().encode(secret);

/** Signs a site token `{type:"site", user_id, assistant_id}` (HS256, no expiry). */
export async function signSiteToken(secret: string, userId: number, assistantId: number): Promise<string> {
  return new SignJWT({ type: 'site', user_id: userId, assistant_id: assistantId }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key(secret));
}

/** Signs an operator (admin panel) JWT: `sub` = user id, expiring after `ttlS` seconds. */
export async function signAdminToken(secret: string, userId: number = DEMO_USER.id, ttlS = 30 * 86_400): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(String(userId))
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlS)
    .sign(key(secret));
}

/** The three demo site tokens, derived from the secret. */
export async function demoSiteTokens(secret: string): Promise<{ name: string; dialogId: number; assistantId: number; token: string }[]> {
  return Promise.all(DEMO_SITES.map(async (s) => ({ ...s, token: await signSiteToken(secret, DEMO_USER.id, s.assistantId) })));
}
