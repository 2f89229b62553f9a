import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, importPKCS8 } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { TokenVerifier, claimedTokenKind, claimsProblem, signAdminToken, signSiteToken, signWidgetToken } from '../src/auth/tokens.js';
import { originHost } from '../src/origin/allowed-domains.js';
import { JWT_SECRET, POLICY, SITE_TOKEN_SECRET, WIDGET_TOKEN_SECRET, adminToken, noneToken, signRaw, siteToken, widgetToken } from './harness.js';

// The claim matrix of the three kinds of token: what the contract requires is accepted, every
// departure from it is refused with a reason (reasons are logged, never sent to clients).

const keys = { jwtSecret: JWT_SECRET, siteTokenSecret: SITE_TOKEN_SECRET, widgetTokenSecret: WIDGET_TOKEN_SECRET };
const verifier = new TokenVerifier(keys, POLICY);
const now = () => Math.floor(Date.now() / 1000);

describe('admin tokens', () => {
  it('accepts type "access" with iss, aud, iat and exp within the lifetime bound', async () => {
    const r = await verifier.verifyAdmin(await adminToken(7));
    expect(r).toMatchObject({ ok: true, value: { userId: 7 } });
    expect(r.ok && r.value.exp).toBeGreaterThan(now());
    // iat a little ahead (clock skew within 5 s) is fine.
    expect((await verifier.verifyAdmin(await adminToken(7, { claims: { iat: now() + 3 } }))).ok).toBe(true);
  });

  it.each([
    ['no exp', { exp: undefined }, 'claims'],
    ['no iat', { iat: undefined }, 'claims'],
    ['type "refresh"', { type: 'refresh' }, 'wrong-type'],
    ['type "password_reset"', { type: 'password_reset' }, 'wrong-type'],
    ['no type', { type: undefined }, 'wrong-type'],
    ['type "site"', { type: 'site' }, 'wrong-type'],
    ['a foreign aud', { aud: 'someone-else' }, 'claims'],
    ['no aud', { aud: undefined }, 'claims'],
    ['a foreign iss', { iss: 'https://evil.example' }, 'claims'],
    ['no iss', { iss: undefined }, 'claims'],
    ['iat ten years ahead', { iat: now() + 10 * 365 * 86_400, exp: now() + 10 * 365 * 86_400 + 60 }, 'claims'],
    ['iat a minute ahead', { iat: now() + 60 }, 'claims'],
    ['nbf in the future', { nbf: now() + 120 }, 'claims'],
    ['a lifetime over ADMIN_TOKEN_MAX_TTL_S', { iat: now(), exp: now() + 86_401 }, 'lifetime'],
    ['exp passed', { iat: now() - 7200, exp: now() - 1 }, 'expired'],
    ['a non-numeric sub', { sub: 'admin' }, 'claims'],
  ])('refuses a token with %s', async (_what, claims, reason) => {
    expect(await verifier.verifyAdmin(await adminToken(7, { claims }))).toEqual({ ok: false, reason });
  });

  it('refuses a wrong key, alg none, garbage, nothing, and the other kinds of token', async () => {
    expect(await verifier.verifyAdmin(await adminToken(7, { secret: 'another-secret-0123456789abcdef-0123456789' }))).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifier.verifyAdmin(noneToken({ sub: '7', type: 'access', iss: 'replyx', aud: 'replyx-admin', iat: now(), exp: now() + 60 }))).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifier.verifyAdmin('not.a.jwt')).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifier.verifyAdmin(undefined)).toEqual({ ok: false, reason: 'missing' });
    // Signed with their own keys: refused before their audience is even looked at.
    expect(await verifier.verifyAdmin(await siteToken(7, 3))).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifier.verifyAdmin(await widgetToken(1, 3, 'https://example.com'))).toEqual({ ok: false, reason: 'invalid' });
    // Signed with the admin key but carrying a site audience and type: still refused.
    expect(await verifier.verifyAdmin(await adminToken(7, { claims: { aud: 'replyx-site', type: 'site' } }))).toEqual({ ok: false, reason: 'claims' });
  });

  it('honours JWT_ISSUER, JWT_AUDIENCE and ADMIN_TOKEN_MAX_TTL_S', async () => {
    const strict = new TokenVerifier(keys, { ...POLICY, issuer: 'auth.example', adminAudience: 'panel', adminMaxTtlS: 600 });
    expect((await strict.verifyAdmin(await adminToken(7, { ttlS: 600, claims: { iss: 'auth.example', aud: 'panel' } }))).ok).toBe(true);
    expect(await strict.verifyAdmin(await adminToken(7, { ttlS: 601, claims: { iss: 'auth.example', aud: 'panel' } }))).toEqual({ ok: false, reason: 'lifetime' });
    expect(await strict.verifyAdmin(await adminToken(7))).toEqual({ ok: false, reason: 'claims' });
  });

  it('RS256: accepts RS256, refuses HS256 signed with the public key text (alg confusion) and alg:none', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const rs = new TokenVerifier({ ...keys, jwtSecret: undefined, jwtPublicKey: publicKey }, POLICY);
    await rs.ready();
    expect(rs.algorithm).toBe('RS256');
    const claims = { type: 'access', iss: 'replyx', aud: 'replyx-admin' };
    const good = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256' }).setSubject('9').setIssuedAt().setExpirationTime('1h').sign(await importPKCS8(privateKey, 'RS256'));
    expect(await rs.verifyAdmin(good)).toMatchObject({ ok: true, value: { userId: 9 } });
    const confused = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('9').setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(publicKey));
    expect(await rs.verifyAdmin(confused)).toEqual({ ok: false, reason: 'invalid' });
    expect(await rs.verifyAdmin(noneToken({ ...claims, sub: '9' }))).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifier.verifyAdmin(good)).toEqual({ ok: false, reason: 'invalid' });
  });
});

describe('site tokens', () => {
  it('accepts the contract claims, optionally narrowed to one dialog', async () => {
    expect(await verifier.verifySite(await siteToken(7, 3, { jti: 'site-jti-0001' }))).toMatchObject({ ok: true, value: { userId: 7, assistantId: 3, jti: 'site-jti-0001' } });
    const narrowed = await verifier.verifySite(await siteToken(7, 3, { dialogId: 42 }));
    expect(narrowed).toMatchObject({ ok: true, value: { dialogId: 42 } });
  });

  it.each([
    ['no jti', { jti: undefined }, 'claims'],
    ['a short jti', { jti: 'abc' }, 'claims'],
    ['no exp', { exp: undefined }, 'claims'],
    ['the admin audience', { aud: 'replyx-admin' }, 'claims'],
    ['a foreign iss', { iss: 'elsewhere' }, 'claims'],
    ['type "access"', { type: 'access' }, 'wrong-type'],
    ['a lifetime over 30 days', { iat: now(), exp: now() + 30 * 86_400 + 1 }, 'lifetime'],
    ['exp passed', { iat: now() - 100, exp: now() - 10 }, 'expired'],
    ['no assistant_id', { assistant_id: undefined }, 'claims'],
    ['a zero dialog_id', { dialog_id: 0 }, 'claims'],
  ])('refuses a site token with %s', async (_what, claims, reason) => {
    expect(await verifier.verifySite(await siteToken(7, 3, { claims }))).toEqual({ ok: false, reason });
  });

  it('refuses one signed with JWT_SECRET (the old seed tokens): site tokens have their own key', async () => {
    expect(await verifier.verifySite(await siteToken(7, 3, { secret: JWT_SECRET }))).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifier.verifySite(await signRaw({ type: 'site', user_id: 7, assistant_id: 3 }, JWT_SECRET))).toEqual({ ok: false, reason: 'invalid' });
  });
});

describe('widget tokens', () => {
  it('accepts a session token bound to a dialog, an assistant and an origin', async () => {
    expect(await verifier.verifyWidget(await widgetToken(12, 3, 'https://shop.example.com'))).toMatchObject({ ok: true, value: { dialogId: 12, assistantId: 3, origin: 'https://shop.example.com' } });
  });

  it.each([
    ['no origin', { origin: undefined }, 'claims'],
    ['a non-http origin', { origin: 'javascript:alert(1)' }, 'claims'],
    ['no dialog_id', { dialog_id: undefined }, 'claims'],
    ['the site audience', { aud: 'replyx-site' }, 'claims'],
    ['a lifetime over WIDGET_TOKEN_TTL_S', { iat: now(), exp: now() + 901 }, 'lifetime'],
    ['type "site"', { type: 'site' }, 'wrong-type'],
  ])('refuses a widget token with %s', async (_what, claims, reason) => {
    expect(await verifier.verifyWidget(await widgetToken(12, 3, 'https://shop.example.com', { claims }))).toEqual({ ok: false, reason });
  });
});

describe('signers (the backend issues with these)', () => {
  it('sign what the verifier accepts, and refuse lifetimes over the bounds', async () => {
    const admin = await signAdminToken(JWT_SECRET, { userId: 4, ttlS: 60 }, POLICY);
    expect(await verifier.verifyAdmin(admin.token)).toEqual({ ok: true, value: { userId: 4, exp: admin.exp } });
    const site = await signSiteToken(SITE_TOKEN_SECRET, { userId: 4, assistantId: 5, dialogId: 6, ttlS: 3600, jti: 'demo-site-0001' }, POLICY);
    expect(await verifier.verifySite(site.token)).toEqual({ ok: true, value: { userId: 4, assistantId: 5, dialogId: 6, jti: 'demo-site-0001', exp: site.exp } });
    const widget = await signWidgetToken(WIDGET_TOKEN_SECRET, { dialogId: 6, assistantId: 5, origin: 'https://a.example.com' }, POLICY);
    expect(await verifier.verifyWidget(widget.token)).toEqual({ ok: true, value: { dialogId: 6, assistantId: 5, origin: 'https://a.example.com', jti: widget.jti, exp: widget.exp } });
    expect(widget.exp - now()).toBeGreaterThan(890);
    await expect(signSiteToken(SITE_TOKEN_SECRET, { userId: 4, assistantId: 5, ttlS: 30 * 86_400 + 1 }, POLICY)).rejects.toThrow(RangeError);
    await expect(signWidgetToken(WIDGET_TOKEN_SECRET, { dialogId: 6, assistantId: 5, origin: 'ftp://x' }, POLICY)).rejects.toThrow();
    expect([claimedTokenKind(admin.token), claimedTokenKind(site.token), claimedTokenKind(widget.token), claimedTokenKind('x.y.z')]).toEqual(['admin', 'site', 'widget', undefined]);
  });
});

describe('verified-token memory', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('remembers a verified token by its exact text, still refuses it once expired, and stays bounded', async () => {
    const small = new TokenVerifier(keys, POLICY, 2);
    const token = await adminToken(7, { ttlS: 60 });
    expect((await small.verifyAdmin(token)).ok).toBe(true);
    // The same text as another kind is verified in full (and refused).
    expect(await small.verifySite(token)).toEqual({ ok: false, reason: 'invalid' });
    // A token one character off is not the remembered one.
    expect((await small.verifyAdmin(`${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`)).ok).toBe(false);
    vi.useFakeTimers({ now: Date.now() + 61_000, toFake: ['Date'] });
    expect(await small.verifyAdmin(token)).toEqual({ ok: false, reason: 'expired' });
    vi.useRealTimers();
    // Bounded: the oldest is forgotten first (then verified in full again, still fine).
    const [a, b, c] = await Promise.all([adminToken(1), adminToken(2), adminToken(3)]);
    for (const t of [a, b, c, a]) expect((await small.verifyAdmin(t)).ok).toBe(true);
    expect(small.rememberedTokens).toBe(2);
  });
});

describe('claim rules', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  // The rules were a zod schema until the handshake path needed them cheaper; the hand-written
  // ones must accept exactly what that schema accepted. The schema, as it was, is the oracle.
  const idClaim = z
    .union([z.int(), z.string().regex(/^\d{1,16}$/).transform(Number)])
    .pipe(z.int().min(1).max(Number.MAX_SAFE_INTEGER));
  const jtiClaim = z.string().regex(/^[A-Za-z0-9._:-]{8,128}$/);
  const ORACLE = {
    admin: z.object({ type: z.literal('access'), sub: z.string().regex(/^\d{1,16}$/) }),
    site: z.object({ type: z.literal('site'), jti: jtiClaim, user_id: idClaim, assistant_id: idClaim, dialog_id: idClaim.optional() }),
    widget: z.object({
      type: z.literal('widget'),
      jti: jtiClaim,
      dialog_id: idClaim,
      assistant_id: idClaim,
      origin: z.string().max(2048).refine((o) => originHost(o) !== undefined),
    }),
  };
  const ids: unknown[] = [1, 7, 0, -1, 1.5, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 1, NaN, Infinity, -0, '1', '007', '0', '', ' 1', '1e3', '-1', '9007199254740991', '9007199254740992', '1234567890123456', '12345678901234567', null, true, [1], { n: 1 }, undefined];
  const jtis: unknown[] = ['abcdefgh', 'abc', 'a'.repeat(128), 'a'.repeat(129), 'with space', 'ok.jti:1_-', 'ümlautsx', 12345678, null, undefined];
  const origins: unknown[] = ['https://shop.example.com', 'http://a.b:8080', 'HTTPS://X.COM.', 'ftp://x', 'javascript:alert(1)', 'null', '', `https://${'a'.repeat(2040)}.com`, `https://${'a'.repeat(2030)}.com`, 'https://[::1]', 'example.com', 42, null, undefined];
  const types = ['access', 'site', 'widget', 'other', undefined];
  const cases: { kind: 'admin' | 'site' | 'widget'; claims: Record<string, unknown> }[] = [];
  for (const type of types) {
    for (const sub of ['7', '0', 'admin', '12345678901234567', 7, undefined]) cases.push({ kind: 'admin', claims: { type, sub } });
    for (const id of ids) {
      cases.push({ kind: 'site', claims: { type, jti: 'abcdefgh', user_id: id, assistant_id: 3 } });
      cases.push({ kind: 'site', claims: { type, jti: 'abcdefgh', user_id: 2, assistant_id: 3, dialog_id: id } });
      cases.push({ kind: 'widget', claims: { type, jti: 'abcdefgh', dialog_id: id, assistant_id: 3, origin: 'https://shop.example.com' } });
      cases.push({ kind: 'widget', claims: { type, jti: 'abcdefgh', dialog_id: 4, assistant_id: id, origin: 'https://shop.example.com' } });
    }
    for (const jti of jtis) {
      cases.push({ kind: 'site', claims: { type, jti, user_id: 2, assistant_id: 3 } });
      cases.push({ kind: 'widget', claims: { type, jti, dialog_id: 4, assistant_id: 3, origin: 'https://shop.example.com' } });
    }
    for (const origin of origins) cases.push({ kind: 'widget', claims: { type, jti: 'abcdefgh', dialog_id: 4, assistant_id: 3, origin } });
  }

  it.each(['admin', 'site', 'widget'] as const)('accept exactly what the former schema accepted (%s)', (kind) => {
    const mine = cases.filter((c) => c.kind === kind);
    expect(mine.length).toBeGreaterThan(5);
    const disagreements = mine.filter((c) => (claimsProblem(kind, c.claims) === undefined) !== ORACLE[kind].safeParse(c.claims).success);
    expect(disagreements).toEqual([]);
    // Both outcomes occur, so the comparison means something.
    expect(new Set(mine.map((c) => claimsProblem(kind, c.claims) === undefined))).toEqual(new Set([true, false]));
  });

  it('a verified identity comes from the cache on reuse and is refused once expired', async () => {
    const v = new TokenVerifier(keys, POLICY);
    const token = await widgetToken(12, 3, 'https://shop.example.com', { ttlS: 2 });
    const first = await v.verifyWidget(token);
    expect(first).toMatchObject({ ok: true, value: { dialogId: 12, assistantId: 3, origin: 'https://shop.example.com' } });
    expect(v.rememberedTokens).toBe(1);
    expect(await v.verifyWidget(token)).toEqual(first);
    // The same text as another kind is verified with that kind's key (and refused), not served from the cache.
    expect(await v.verifySite(token)).toEqual({ ok: false, reason: 'invalid' });
    vi.useFakeTimers({ now: Date.now() + 3000, toFake: ['Date'] });
    expect(await v.verifyWidget(token)).toEqual({ ok: false, reason: 'expired' });
    expect(v.rememberedTokens).toBe(0);
  });

  it('signing refuses claims the verifier would refuse, naming the problem', async () => {
    await expect(signSiteToken(SITE_TOKEN_SECRET, { userId: 4, assistantId: 5, jti: 'short', ttlS: 60 }, POLICY)).rejects.toThrow(/jti must be 8-128 characters/);
    await expect(signWidgetToken(WIDGET_TOKEN_SECRET, { dialogId: 0, assistantId: 5, origin: 'https://a.example' }, POLICY)).rejects.toThrow(/dialog_id and assistant_id must be positive integers/);
  });
});
