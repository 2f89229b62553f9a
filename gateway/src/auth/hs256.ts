import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

// HS256 JWT verification with node:crypto, synchronously. WebCrypto's HMAC verify (what jose
// uses) hands every token to the thread pool and back, which cost ~3-4x a direct HMAC per
// handshake in the connect profile (bench/micro/token-verify.ts measures both). The checks are
// jose's for `jwtVerify(token, key, { algorithms: ['HS256'], issuer, audience, requiredClaims:
// ['exp', 'iat'], clockTolerance })`, in jose's order and with its outcome per failure: anything
// wrong with the JWS (shape, encoding, header, alg, signature) is `invalid`, a missing or wrong
// registered claim is `claims`, an `exp` past the tolerance is `expired`. Stricter than jose in
// two places nobody signs: base64url must be unpadded and canonical (one text per byte string),
// and any `crit` header is refused.

/** Longest token accepted (characters); longer ones are refused before any decoding. */
export const MAX_TOKEN_LENGTH = 8192;

/** The HS256 signature length in bytes. */
const SIGNATURE_BYTES = 32;

/** What one HS256 key verifies: issuer, audience and clock tolerance of its tokens. */
export interface Hs256Rules {
  readonly issuer: string;
  readonly audience: string;
  /** Seconds of skew tolerated on `nbf` and `exp`, as jose's clockTolerance. */
  readonly clockToleranceS: number;
  /** Longest token accepted (default MAX_TOKEN_LENGTH). */
  readonly maxLength?: number;
}

/** Why an HS256 token was refused (the TokenFailure subset this layer decides). */
export type Hs256Failure = 'invalid' | 'claims' | 'expired';

/** The verified claims, or why not. */
export type Hs256Result = { readonly ok: true; readonly payload: Record<string, unknown> } | { readonly ok: false; readonly reason: Hs256Failure };

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const INVALID: Hs256Result = { ok: false, reason: 'invalid' };
const CLAIMS: Hs256Result = { ok: false, reason: 'claims' };

/** Imports an HS256 secret once (a KeyObject, so no verify re-derives it from the string). */
export function hs256Key(secret: string): KeyObject {
  return createSecretKey(Buffer.from(secret, 'utf8'));
}

/** The bytes of a base64url segment, or undefined when it is not canonical unpadded base64url. */
function segmentBytes(segment: string): Buffer | undefined {
  if (!BASE64URL.test(segment)) return undefined;
  const bytes = Buffer.from(segment, 'base64url');
  // Buffer ignores a dangling 4n+1 character and the unused low bits of the last one, so two
  // texts would carry one signature: only the canonical encoding of the bytes is accepted.
  return bytes.toString('base64url') === segment ? bytes : undefined;
}

/** A segment decoded as a top-level JSON object, or undefined. */
function segmentObject(segment: string): Record<string, unknown> | undefined {
  const bytes = segmentBytes(segment);
  if (!bytes) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(bytes));
  } catch {
    return undefined;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/** Verifies an HS256 JWT's signature with `key` and its registered claims against `rules`. */
export function verifyHs256(token: string, key: KeyObject, rules: Hs256Rules, nowS = Math.floor(Date.now() / 1000)): Hs256Result {
  if (token.length > (rules.maxLength ?? MAX_TOKEN_LENGTH)) return INVALID;
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  if (second < 0 || token.indexOf('.', second + 1) >= 0) return INVALID;
  const header = segmentObject(token.slice(0, first));
  // The alg is pinned: `none`, RS256 (or anything else) signed with this secret is refused.
  if (!header || header.alg !== 'HS256' || header.crit !== undefined || (header.b64 !== undefined && header.b64 !== true)) return INVALID;
  const signature = segmentBytes(token.slice(second + 1));
  if (!signature || signature.length !== SIGNATURE_BYTES) return INVALID;
  const expected = createHmac('sha256', key).update(token.slice(0, second)).digest();
  if (!timingSafeEqual(signature, expected)) return INVALID;
  const payload = segmentObject(token.slice(first + 1, second));
  if (!payload) return INVALID;

  // jose checks presence in this order (iss, aud, then the required iat and exp).
  for (const claim of ['iss', 'aud', 'iat', 'exp']) if (!Object.hasOwn(payload, claim)) return CLAIMS;
  if (payload.iss !== rules.issuer) return CLAIMS;
  const aud = payload.aud;
  if (!(aud === rules.audience || (Array.isArray(aud) && aud.includes(rules.audience)))) return CLAIMS;
  const { iat, nbf, exp } = payload;
  if (typeof iat !== 'number') return CLAIMS;
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > nowS + rules.clockToleranceS)) return CLAIMS;
  if (typeof exp !== 'number') return CLAIMS;
  if (exp <= nowS - rules.clockToleranceS) return { ok: false, reason: 'expired' };
  return { ok: true, payload };
}
