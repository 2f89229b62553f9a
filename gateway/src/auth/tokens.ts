import { randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, decodeJwt, errors, importSPKI, jwtVerify, type CryptoKey, type JWTPayload } from 'jose';
import type { ConnectionKind } from '../connection-kinds.js';
import { originHost } from '../origin/allowed-domains.js';
import { MAX_TOKEN_LENGTH, hs256Key, verifyHs256 } from './hs256.js';

// The credential contract, in one place for whoever signs and whoever verifies: the gateway
// verifies, the reference backend signs site and widget tokens and verifies all three kinds on
// its API and legacy /ws/ (it imports this module as @replyx/gateway/auth/tokens).
//
// Three kinds, three keys, three audiences, so a token of one kind is refused as another twice
// over (wrong signature and wrong `aud`):
//   admin  JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256)  type "access"  aud JWT_AUDIENCE
//   site   SITE_TOKEN_SECRET (HS256)                     type "site"    aud "replyx-site"
//   widget WIDGET_TOKEN_SECRET (HS256)                   type "widget"  aud "replyx-widget"
// Every token needs `iss`, `iat` (not in the future beyond the skew) and `exp`, and its lifetime
// `exp - iat` is bounded per kind. Algorithms are pinned per key: HS256 tokens are verified with
// node:crypto (auth/hs256.ts, which refuses `alg: none` and every other alg), RS256 with jose, so
// an HS256 token "signed" with an RS256 public key's text is refused by the RS256 verifier.

/** The `type` claim each kind must carry (an allowlist: anything else is refused). */
export const TOKEN_TYPE = { admin: 'access', site: 'site', widget: 'widget' } as const satisfies Record<ConnectionKind, string>;
/** `aud` of site tokens. */
export const SITE_AUDIENCE = 'replyx-site';
/** `aud` of widget tokens. */
export const WIDGET_AUDIENCE = 'replyx-widget';
/** Seconds of clock skew tolerated on `iat` and `nbf` (`exp` is strict: a socket lives until it). */
export const CLOCK_TOLERANCE_S = 5;

/** Issuer, admin audience and lifetime bounds (env JWT_ISSUER, JWT_AUDIENCE, *_TTL_S). */
export interface TokenPolicy {
  readonly issuer: string;
  readonly adminAudience: string;
  /** Longest admin token lifetime `exp - iat` accepted (ADMIN_TOKEN_MAX_TTL_S). */
  readonly adminMaxTtlS: number;
  /** Longest site token lifetime accepted and issued (SITE_TOKEN_MAX_TTL_S). */
  readonly siteMaxTtlS: number;
  /** Lifetime of widget tokens; longer ones are refused (WIDGET_TOKEN_TTL_S). */
  readonly widgetTtlS: number;
}

/** Key material: exactly one admin key, plus the site and widget secrets. */
export interface TokenKeys {
  readonly jwtSecret?: string;
  readonly jwtPublicKey?: string;
  readonly siteTokenSecret: string;
  readonly widgetTokenSecret: string;
}

/** Why a token was refused; logged, never sent to the client. */
export type TokenFailure = 'missing' | 'expired' | 'invalid' | 'wrong-type' | 'claims' | 'lifetime';

/** The result of verifying a token. */
export type TokenResult<T> = { ok: true; value: T } | { ok: false; reason: TokenFailure };

/** An operator admin panel identity; `exp` in epoch seconds. */
export interface AdminIdentity {
  readonly userId: number;
  readonly exp: number;
}

/** A third-party site identity, optionally narrowed to one dialog. */
export interface SiteIdentity {
  readonly userId: number;
  readonly assistantId: number;
  readonly dialogId?: number;
  readonly jti: string;
  readonly exp: number;
}

/** A widget session: one dialog of one assistant, for the origin checked when it was issued. */
export interface WidgetIdentity {
  readonly dialogId: number;
  readonly assistantId: number;
  readonly origin: string;
  readonly jti: string;
  readonly exp: number;
}

/** The identity each kind of token yields. */
export interface IdentityByKind {
  admin: AdminIdentity;
  site: SiteIdentity;
  widget: WidgetIdentity;
}

const DECIMAL_ID = /^\d{1,16}$/;
const JTI = /^[A-Za-z0-9._:-]{8,128}$/;
/** Longest `origin` claim accepted (characters). */
const MAX_ORIGIN_LENGTH = 2048;

/**
 * The kind-specific claims (the registered ones are checked by verifyHs256/jose and #claims),
 * written out by hand: a schema library's per-handshake parse was a measurable share of a
 * connect's CPU. Each returns the identity's fields, or a one-line problem; signing throws the
 * problem, verifying refuses with `claims`. Ids are positive safe integers, as numbers or 1-16
 * decimal digits (positiveId); unknown claims are ignored.
 */
const CLAIM_RULES = {
  admin(c: Record<string, unknown>): { userId: number } | string {
    if (c.type !== TOKEN_TYPE.admin) return `type must be "${TOKEN_TYPE.admin}"`;
    if (typeof c.sub !== 'string' || !DECIMAL_ID.test(c.sub)) return 'sub must be 1-16 decimal digits';
    return { userId: Number(c.sub) };
  },
  site(c: Record<string, unknown>): { jti: string; userId: number; assistantId: number; dialogId?: number } | string {
    if (c.type !== TOKEN_TYPE.site) return `type must be "${TOKEN_TYPE.site}"`;
    if (typeof c.jti !== 'string' || !JTI.test(c.jti)) return JTI_PROBLEM;
    const userId = positiveId(c.user_id);
    const assistantId = positiveId(c.assistant_id);
    if (userId === undefined || assistantId === undefined) return 'user_id and assistant_id must be positive integers';
    if (c.dialog_id === undefined) return { jti: c.jti, userId, assistantId };
    const dialogId = positiveId(c.dialog_id);
    return dialogId === undefined ? 'dialog_id must be a positive integer' : { jti: c.jti, userId, assistantId, dialogId };
  },
  widget(c: Record<string, unknown>): { jti: string; dialogId: number; assistantId: number; origin: string } | string {
    if (c.type !== TOKEN_TYPE.widget) return `type must be "${TOKEN_TYPE.widget}"`;
    if (typeof c.jti !== 'string' || !JTI.test(c.jti)) return JTI_PROBLEM;
    const dialogId = positiveId(c.dialog_id);
    const assistantId = positiveId(c.assistant_id);
    if (dialogId === undefined || assistantId === undefined) return 'dialog_id and assistant_id must be positive integers';
    if (typeof c.origin !== 'string' || c.origin.length > MAX_ORIGIN_LENGTH || originHost(c.origin) === undefined) return 'origin must be an http(s) origin';
    return { jti: c.jti, dialogId, assistantId, origin: c.origin };
  },
} as const satisfies Record<ConnectionKind, (claims: Record<string, unknown>) => object | string>;

const JTI_PROBLEM = 'jti must be 8-128 characters of A-Z a-z 0-9 . _ : -';

/** What is wrong with `claims` as the kind-specific claims of a `kind` token; undefined when nothing. */
export function claimsProblem(kind: ConnectionKind, claims: Record<string, unknown>): string | undefined {
  const r = CLAIM_RULES[kind](claims);
  return typeof r === 'string' ? r : undefined;
}

const encoder = new TextEncoder();

/** How one kind's tokens are checked: an HS256 secret (node:crypto) or an RS256 public key (jose). */
type KindKey =
  | { readonly algorithm: 'HS256'; readonly key: KeyObject; readonly audience: string; readonly maxTtlS: number }
  | { readonly algorithm: 'RS256'; readonly key: Promise<CryptoKey>; readonly audience: string; readonly maxTtlS: number };

/** A flat copy of `text` that shares no memory with the string it was sliced from (V8 keeps a slice's parent alive); a verified token is ASCII. */
function ownCopy(text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1');
}

/** Tokens whose signature and claims were verified, kept so a reconnect costs no second HMAC. */
export const VERIFIED_TOKEN_CACHE_MAX = 10_000;

/**
 * Verifies the three kinds of token against their own keys, audiences and lifetimes. Tokens that
 * passed are remembered by their exact text (a reconnect storm presents the same tokens again;
 * the signature check is most of a handshake's CPU), and `exp` is checked again on every use.
 */
export class TokenVerifier {
  readonly #keys: Record<ConnectionKind, KindKey>;
  readonly #issuer: string;
  readonly #verified = new Map<string, { readonly kind: ConnectionKind; readonly identity: IdentityByKind[ConnectionKind] }>();
  readonly #cacheMax: number;

  /** Prepares the keys (HS256 secrets, or an RS256 public key PEM for admin tokens); `cacheMax` verified tokens are remembered. */
  constructor(keys: TokenKeys, policy: TokenPolicy, cacheMax = VERIFIED_TOKEN_CACHE_MAX) {
    this.#cacheMax = cacheMax;
    let admin: KindKey;
    if (keys.jwtPublicKey) admin = { algorithm: 'RS256', key: importSPKI(keys.jwtPublicKey, 'RS256'), audience: policy.adminAudience, maxTtlS: policy.adminMaxTtlS };
    else if (keys.jwtSecret) admin = { algorithm: 'HS256', key: hs256Key(keys.jwtSecret), audience: policy.adminAudience, maxTtlS: policy.adminMaxTtlS };
    else throw new TypeError('TokenVerifier needs jwtSecret or jwtPublicKey');
    this.#keys = {
      admin,
      site: { algorithm: 'HS256', key: hs256Key(keys.siteTokenSecret), audience: SITE_AUDIENCE, maxTtlS: policy.siteMaxTtlS },
      widget: { algorithm: 'HS256', key: hs256Key(keys.widgetTokenSecret), audience: WIDGET_AUDIENCE, maxTtlS: policy.widgetTtlS },
    };
    this.#issuer = policy.issuer;
    // Surface a bad PEM at start-up (ready()) rather than as an unhandled rejection.
    if (admin.algorithm === 'RS256') admin.key.catch(() => undefined);
  }

  /** Resolves once every key is usable; rejects when the PEM is not a valid RS256 public key. */
  async ready(): Promise<void> {
    const admin = this.#keys.admin;
    if (admin.algorithm === 'RS256') await admin.key;
  }

  /** Verified tokens remembered (at most the cache size). */
  get rememberedTokens(): number {
    return this.#verified.size;
  }

  /** The algorithm admin tokens are verified with. */
  get algorithm(): string {
    return this.#keys.admin.algorithm;
  }

  /** Signature and registered claims: node:crypto for HS256 (synchronous), jose for RS256. */
  async #verifySignature(k: KindKey, token: string): Promise<TokenResult<JWTPayload>> {
    if (k.algorithm === 'HS256') {
      const r = verifyHs256(token, k.key, { issuer: this.#issuer, audience: k.audience, clockToleranceS: CLOCK_TOLERANCE_S });
      return r.ok ? { ok: true, value: r.payload as JWTPayload } : r;
    }
    if (token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: 'invalid' };
    try {
      const { payload } = await jwtVerify(token, await k.key, {
        algorithms: ['RS256'],
        issuer: this.#issuer,
        audience: k.audience,
        requiredClaims: ['exp', 'iat'],
        clockTolerance: CLOCK_TOLERANCE_S,
      });
      return { ok: true, value: payload };
    } catch (err) {
      if (err instanceof errors.JWTExpired) return { ok: false, reason: 'expired' };
      return { ok: false, reason: err instanceof errors.JWTClaimValidationFailed ? 'claims' : 'invalid' };
    }
  }

  /**
   * The identity a `kind` token carries: from the cache when this exact text passed before (its
   * `exp` checked again), else signature, registered claims, lifetime, type and the kind's own
   * claims, and the identity is remembered.
   */
  async #identity<K extends ConnectionKind>(kind: K, token: string | null | undefined): Promise<TokenResult<IdentityByKind[K]>> {
    if (!token) return MISSING;
    const hit = this.#verified.get(token);
    if (hit && hit.kind === kind) {
      if (hit.identity.exp > Date.now() / 1000) return { ok: true, value: hit.identity as IdentityByKind[K] };
      this.#verified.delete(token);
      return EXPIRED;
    }
    const k = this.#keys[kind];
    const verified = await this.#verifySignature(k, token);
    if (!verified.ok) return verified;
    const payload = verified.value;
    const now = Date.now() / 1000;
    const { exp, iat } = payload as { exp: number; iat: number };
    if (exp <= now) return EXPIRED;
    if (iat > now + CLOCK_TOLERANCE_S) return CLAIMS_FAILURE;
    if (exp - iat > k.maxTtlS) return { ok: false, reason: 'lifetime' };
    if (payload.type !== TOKEN_TYPE[kind]) return { ok: false, reason: 'wrong-type' };
    const claims = CLAIM_RULES[kind](payload);
    if (typeof claims === 'string') return CLAIMS_FAILURE;
    const identity = { ...claims, exp } as IdentityByKind[K];
    if (this.#cacheMax > 0) {
      if (this.#verified.size >= this.#cacheMax) this.#verified.delete(this.#verified.keys().next().value!);
      // The token is a slice of the handshake's Sec-WebSocket-Protocol header (or URL): keyed as
      // is, the cache would keep that whole header alive for as long as it remembers the token.
      this.#verified.set(ownCopy(token), { kind, identity });
    }
    return { ok: true, value: identity };
  }

  /** Verifies an admin panel JWT: `type: "access"`, numeric `sub`. */
  verifyAdmin(token: string | null | undefined): Promise<TokenResult<AdminIdentity>> {
    return this.#identity('admin', token);
  }

  /** Verifies a site token: `type: "site"`, `jti`, `user_id`, `assistant_id`, optional `dialog_id`. */
  verifySite(token: string | null | undefined): Promise<TokenResult<SiteIdentity>> {
    return this.#identity('site', token);
  }

  /** Verifies a widget token: `type: "widget"`, `jti`, `dialog_id`, `assistant_id`, `origin`. */
  verifyWidget(token: string | null | undefined): Promise<TokenResult<WidgetIdentity>> {
    return this.#identity('widget', token);
  }

  /** Verifies a token as the given kind. */
  verify<K extends ConnectionKind>(kind: K, token: string | null | undefined): Promise<TokenResult<IdentityByKind[K]>> {
    return this.#identity(kind, token);
  }
}

const MISSING = { ok: false, reason: 'missing' } as const;
const EXPIRED = { ok: false, reason: 'expired' } as const;
const CLAIMS_FAILURE = { ok: false, reason: 'claims' } as const;

/**
 * The kind a token claims to be, from its unverified `type` (to pick the key to verify it with,
 * e.g. for `Authorization: Bearer` on an endpoint any kind may call); undefined when unreadable.
 */
export function claimedTokenKind(token: string): ConnectionKind | undefined {
  let type: unknown;
  try {
    type = decodeJwt(token).type;
  } catch {
    return undefined;
  }
  return (Object.keys(TOKEN_TYPE) as ConnectionKind[]).find((k) => TOKEN_TYPE[k] === type);
}

/** A freshly signed token with its id and expiry (epoch seconds). */
export interface SignedToken {
  readonly token: string;
  readonly jti: string;
  readonly exp: number;
}

interface Lifetime {
  /** Seconds from now until `exp`. */
  readonly ttlS: number;
  /** Issue time in epoch seconds (default now). */
  readonly iat?: number;
}

async function sign(kind: ConnectionKind, secret: string, claims: Record<string, unknown>, audience: string, issuer: string, life: Lifetime, maxTtlS: number): Promise<{ token: string; exp: number }> {
  if (!Number.isSafeInteger(life.ttlS) || life.ttlS < 1 || life.ttlS > maxTtlS) throw new RangeError(`${kind} token lifetime must be 1-${maxTtlS} s, got ${life.ttlS}`);
  // What is signed must pass what is verified: one set of rules for both sides.
  const problem = claimsProblem(kind, claims);
  if (problem) throw new TypeError(`${kind} token claims: ${problem}`);
  const iat = life.iat ?? Math.floor(Date.now() / 1000);
  const exp = iat + life.ttlS;
  const token = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer(issuer).setAudience(audience).setIssuedAt(iat).setExpirationTime(exp).sign(encoder.encode(secret));
  return { token, exp };
}

/** Signs an admin panel token (HS256 with JWT_SECRET) for `userId`. */
export async function signAdminToken(secret: string, input: { readonly userId: number } & Lifetime, policy: TokenPolicy): Promise<SignedToken> {
  const jti = randomUUID();
  const { token, exp } = await sign('admin', secret, { type: TOKEN_TYPE.admin, sub: String(input.userId), jti }, policy.adminAudience, policy.issuer, input, policy.adminMaxTtlS);
  return { token, jti, exp };
}

/** Signs a site token (HS256 with SITE_TOKEN_SECRET); `dialogId` narrows it to one dialog. */
export async function signSiteToken(
  secret: string,
  input: { readonly userId: number; readonly assistantId: number; readonly dialogId?: number; readonly jti?: string } & Lifetime,
  policy: TokenPolicy,
): Promise<SignedToken> {
  const jti = input.jti ?? randomUUID();
  const claims = { type: TOKEN_TYPE.site, jti, user_id: input.userId, assistant_id: input.assistantId, ...(input.dialogId === undefined ? {} : { dialog_id: input.dialogId }) };
  const { token, exp } = await sign('site', secret, claims, SITE_AUDIENCE, policy.issuer, input, policy.siteMaxTtlS);
  return { token, jti, exp };
}

/** Signs a widget session token (HS256 with WIDGET_TOKEN_SECRET), bound to one dialog and origin. */
export async function signWidgetToken(
  secret: string,
  input: { readonly dialogId: number; readonly assistantId: number; readonly origin: string; readonly ttlS?: number; readonly iat?: number },
  policy: TokenPolicy,
): Promise<SignedToken> {
  const jti = randomUUID();
  const claims = { type: TOKEN_TYPE.widget, jti, dialog_id: input.dialogId, assistant_id: input.assistantId, origin: input.origin };
  const { token, exp } = await sign('widget', secret, claims, WIDGET_AUDIENCE, policy.issuer, { ttlS: input.ttlS ?? policy.widgetTtlS, iat: input.iat }, policy.widgetTtlS);
  return { token, jti, exp };
}

/** A positive safe integer from a number or a decimal string; undefined otherwise. */
export function positiveId(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}
