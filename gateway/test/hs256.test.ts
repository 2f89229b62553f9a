import { createHmac } from 'node:crypto';
import { errors, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { MAX_TOKEN_LENGTH, hs256Key, verifyHs256, type Hs256Failure } from '../src/auth/hs256.js';
import { CLOCK_TOLERANCE_S, TokenVerifier } from '../src/auth/tokens.js';
import { JWT_SECRET, POLICY, SITE_TOKEN_SECRET, WIDGET_TOKEN_SECRET, adminToken } from './harness.js';

// The node:crypto HS256 verifier against hostile tokens, and against jose itself: for every
// token below, both must reach the same outcome (jose is the reference the gateway used before);
// the two places where this verifier is stricter are tested on their own.

const RULES = { issuer: POLICY.issuer, audience: POLICY.adminAudience, clockToleranceS: CLOCK_TOLERANCE_S };
const key = hs256Key(JWT_SECRET);
const now = () => Math.floor(Date.now() / 1000);
const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A JWS with any header and payload, HMAC-SHA-`bits` signed with `secret` (default JWT_SECRET). */
function hand(header: unknown, payload: unknown, opts: { secret?: string; bits?: 256 | 384 | 512 } = {}): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac(`sha${opts.bits ?? 256}`, opts.secret ?? JWT_SECRET).update(input).digest('base64url')}`;
}

const claims = () => ({ type: 'access', sub: '7', iss: 'replyx', aud: 'replyx-admin', iat: now(), exp: now() + 600 });

/** jose's outcome for the options the gateway used with it, mapped as TokenVerifier mapped it. */
async function joseOutcome(token: string): Promise<'ok' | Hs256Failure> {
  try {
    await jwtVerify(token, new TextEncoder().encode(JWT_SECRET), { algorithms: ['HS256'], issuer: RULES.issuer, audience: RULES.audience, requiredClaims: ['exp', 'iat'], clockTolerance: CLOCK_TOLERANCE_S });
    return 'ok';
  } catch (err) {
    if (err instanceof errors.JWTExpired) return 'expired';
    return err instanceof errors.JWTClaimValidationFailed ? 'claims' : 'invalid';
  }
}

const outcome = (token: string): 'ok' | Hs256Failure => {
  const r = verifyHs256(token, key, RULES);
  return r.ok ? 'ok' : r.reason;
};

describe('verifyHs256', () => {
  it('accepts what jose signs with the same secret, and returns its claims', async () => {
    const token = await adminToken(7);
    expect(verifyHs256(token, key, RULES)).toMatchObject({ ok: true, payload: { sub: '7', type: 'access' } });
    expect(outcome(hand({ alg: 'HS256' }, { ...claims(), aud: ['other', 'replyx-admin'] }))).toBe('ok');
  });

  const good = claims();
  const cases: [string, () => string | Promise<string>, Hs256Failure | 'ok'][] = [
    ['a good token', () => hand({ alg: 'HS256', typ: 'JWT' }, good), 'ok'],
    ['alg none with an empty signature', () => `${b64({ alg: 'none' })}.${b64(good)}.`, 'invalid'],
    ['alg none with the HS256 signature attached', () => { const t = hand({ alg: 'HS256' }, good).split('.'); return `${b64({ alg: 'none' })}.${t[1]}.${t[2]}`; }, 'invalid'],
    ['alg swapped to HS512 (signed with the secret)', () => hand({ alg: 'HS512' }, good, { bits: 512 }), 'invalid'],
    ['alg swapped to HS384 in the header only', () => { const t = hand({ alg: 'HS256' }, good).split('.'); return `${b64({ alg: 'HS384' })}.${t[1]}.${t[2]}`; }, 'invalid'],
    ['alg RS256 over an HMAC signature', () => hand({ alg: 'RS256' }, good), 'invalid'],
    ['no alg', () => hand({ typ: 'JWT' }, good), 'invalid'],
    ['a crit header', () => hand({ alg: 'HS256', crit: ['exp'], exp: 1 }, good), 'invalid'],
    ['b64: false', () => hand({ alg: 'HS256', b64: false, crit: ['b64'] }, good), 'invalid'],
    ['a header that is an array', () => hand(['HS256'], good), 'invalid'],
    ['a header that is not JSON', () => hand('alg=HS256', good), 'invalid'],
    ['a payload that is not JSON', () => hand({ alg: 'HS256' }, 'sub=7'), 'invalid'],
    ['a payload that is a JSON string', () => hand({ alg: 'HS256' }, JSON.stringify('claims')), 'invalid'],
    ['a payload that is not UTF-8', () => { const input = `${b64({ alg: 'HS256' })}.${Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url')}`; return `${input}.${createHmac('sha256', JWT_SECRET).update(input).digest('base64url')}`; }, 'invalid'],
    ['the wrong secret', () => hand({ alg: 'HS256' }, good, { secret: SITE_TOKEN_SECRET }), 'invalid'],
    ['a signature one byte short', () => { const t = hand({ alg: 'HS256' }, good).split('.'); return `${t[0]}.${t[1]}.${Buffer.from(t[2]!, 'base64url').subarray(0, 31).toString('base64url')}`; }, 'invalid'],
    ['a signature one byte long', () => { const t = hand({ alg: 'HS256' }, good).split('.'); return `${t[0]}.${t[1]}.${Buffer.concat([Buffer.from(t[2]!, 'base64url'), Buffer.from([0])]).toString('base64url')}`; }, 'invalid'],
    ['an empty signature', () => `${hand({ alg: 'HS256' }, good).split('.').slice(0, 2).join('.')}.`, 'invalid'],
    ['a signature with a base64 (not base64url) character', () => `${hand({ alg: 'HS256' }, good)}+`, 'invalid'],
    ['a payload with a character outside base64url', () => { const t = hand({ alg: 'HS256' }, good).split('.'); return `${t[0]}.${t[1]}*.${t[2]}`; }, 'invalid'],
    ['four segments', () => `${hand({ alg: 'HS256' }, good)}.x`, 'invalid'],
    ['two segments', () => hand({ alg: 'HS256' }, good).split('.').slice(0, 2).join('.'), 'invalid'],
    ['no iss', () => hand({ alg: 'HS256' }, { ...good, iss: undefined }), 'claims'],
    ['a foreign aud', () => hand({ alg: 'HS256' }, { ...good, aud: 'replyx-site' }), 'claims'],
    ['aud as an array without ours', () => hand({ alg: 'HS256' }, { ...good, aud: ['a', 'b'] }), 'claims'],
    ['iat as a string', () => hand({ alg: 'HS256' }, { ...good, iat: String(now()) }), 'claims'],
    ['exp as a string', () => hand({ alg: 'HS256' }, { ...good, exp: String(now() + 60) }), 'claims'],
    ['nbf as a string', () => hand({ alg: 'HS256' }, { ...good, nbf: 'soon' }), 'claims'],
    ['nbf beyond the tolerance', () => hand({ alg: 'HS256' }, { ...good, nbf: now() + CLOCK_TOLERANCE_S + 30 }), 'claims'],
    ['nbf within the tolerance', () => hand({ alg: 'HS256' }, { ...good, nbf: now() + 2 }), 'ok'],
    ['exp past the tolerance', () => hand({ alg: 'HS256' }, { ...good, iat: now() - 100, exp: now() - CLOCK_TOLERANCE_S - 10 }), 'expired'],
    ['a forged expired token (signature first)', () => hand({ alg: 'HS256' }, { ...good, exp: now() - 100 }, { secret: WIDGET_TOKEN_SECRET }), 'invalid'],
  ];

  it.each(cases)('%s: the same outcome as jose', async (_what, make, expected) => {
    const token = await make();
    expect(outcome(token)).toBe(expected);
    expect(await joseOutcome(token)).toBe(expected);
  });

  it('refuses a padded signature (RFC 7515 forbids padding; jose tolerates it, nobody signs it)', async () => {
    const padded = `${hand({ alg: 'HS256' }, claims())}=`;
    expect(await joseOutcome(padded)).toBe('ok');
    expect(outcome(padded)).toBe('invalid');
  });

  it('refuses a token over MAX_TOKEN_LENGTH before decoding it, even one validly signed', () => {
    const big = hand({ alg: 'HS256' }, { ...claims(), pad: 'x'.repeat(MAX_TOKEN_LENGTH) });
    expect(big.length).toBeGreaterThan(MAX_TOKEN_LENGTH);
    expect(outcome(big)).toBe('invalid');
    expect(verifyHs256(big, key, { ...RULES, maxLength: big.length }).ok).toBe(true);
  });

  it('refuses a non-canonical last character that decodes to the same signature bytes', () => {
    const token = hand({ alg: 'HS256' }, claims());
    const sig = token.slice(token.lastIndexOf('.') + 1);
    // 32 bytes are 43 characters: the last one carries 4 bits and 2 unused ones.
    const last = sig.at(-1)!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = alphabet[alphabet.indexOf(last) ^ 1]!;
    const forged = `${token.slice(0, -1)}${twin}`;
    expect(Buffer.from(forged.slice(forged.lastIndexOf('.') + 1), 'base64url').equals(Buffer.from(sig, 'base64url'))).toBe(true);
    expect(outcome(forged)).toBe('invalid');
  });
});

describe('TokenVerifier over verifyHs256', () => {
  it('keeps the failure reasons the gateway logs for oversized and alg-swapped tokens', async () => {
    const verifier = new TokenVerifier({ jwtSecret: JWT_SECRET, siteTokenSecret: SITE_TOKEN_SECRET, widgetTokenSecret: WIDGET_TOKEN_SECRET }, POLICY, 0);
    expect(await verifier.verifyAdmin(hand({ alg: 'HS256' }, { ...claims(), pad: 'x'.repeat(MAX_TOKEN_LENGTH) }))).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifier.verifyAdmin(hand({ alg: 'HS512' }, claims(), { bits: 512 }))).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifier.verifyAdmin(hand({ alg: 'HS256' }, claims()))).toMatchObject({ ok: true, value: { userId: 7 } });
    expect(verifier.rememberedTokens).toBe(0);
  });
});
