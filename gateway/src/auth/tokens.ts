import { errors, importSPKI, jwtVerify, type CryptoKey, type JWTPayload } from 'jose';

// Token verification with the algorithm pinned: a gateway configured with JWT_SECRET accepts
// only HS256, one configured with JWT_PUBLIC_KEY only RS256. jose never accepts `alg: none`
// through jwtVerify, and the pinned list stops alg confusion (an HS256 token "signed" with the
// public key text is refused by the RS256 verifier).

/** Key material for verification: exactly one of the two. */
export interface TokenKeyConfig {
  readonly jwtSecret?: string;
  readonly jwtPublicKey?: string;
}

/** Why a token was refused; logged, never sent to the client. */
export type TokenFailure = 'missing' | 'expired' | 'invalid' | 'wrong-type';

/** The result of verifying a token. */
export type TokenResult<T> = { ok: true; value: T } | { ok: false; reason: TokenFailure };

/** An operator admin panel identity. */
export interface AdminIdentity {
  readonly userId: number;
}

/** A third-party site identity. */
export interface SiteIdentity {
  readonly userId: number;
  readonly assistantId: number;
}

/** Seconds of clock skew tolerated on `exp`/`nbf`. */
export const CLOCK_TOLERANCE_S = 5;

/** Verifies admin JWTs (`sub` = user id) and site tokens (`type: "site"`). */
export class TokenVerifier {
  readonly #key: Promise<CryptoKey>;
  readonly #algorithms: string[];

  /** Prepares the verifier for HS256 (secret) or RS256 (public key PEM). */
  constructor(config: TokenKeyConfig) {
    if (config.jwtPublicKey) {
      this.#algorithms = ['RS256'];
      this.#key = importSPKI(config.jwtPublicKey, 'RS256');
    } else if (config.jwtSecret) {
      this.#algorithms = ['HS256'];
      // Import the HMAC key once: handing jose the raw bytes makes it re-import the key on
      // every verify, which cost ~100 µs per handshake in the connect benchmark.
      this.#key = globalThis.crypto.subtle.importKey('raw', new TextEncoder().encode(config.jwtSecret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
    } else {
      throw new TypeError('TokenVerifier needs jwtSecret or jwtPublicKey');
    }
    // Surface a bad PEM at start-up rather than on the first connection.
    this.#key.catch(() => undefined);
  }

  /** Resolves once the key is usable; rejects when the PEM is not a valid RS256 public key. */
  async ready(): Promise<void> {
    await this.#key;
  }

  /** The algorithm this verifier accepts. */
  get algorithm(): string {
    return this.#algorithms[0]!;
  }

  async #verify(token: string | null | undefined): Promise<TokenResult<JWTPayload>> {
    if (!token) return { ok: false, reason: 'missing' };
    try {
      const { payload } = await jwtVerify(token, await this.#key, { algorithms: this.#algorithms, clockTolerance: CLOCK_TOLERANCE_S });
      return { ok: true, value: payload };
    } catch (err) {
      return { ok: false, reason: err instanceof errors.JWTExpired ? 'expired' : 'invalid' };
    }
  }

  /** Verifies an admin panel JWT; `sub` must be a positive integer user id. */
  async verifyAdmin(token: string | null | undefined): Promise<TokenResult<AdminIdentity>> {
    const r = await this.#verify(token);
    if (!r.ok) return r;
    if (r.value.type === 'site') return { ok: false, reason: 'wrong-type' };
    const userId = positiveId(r.value.sub);
    return userId === undefined ? { ok: false, reason: 'invalid' } : { ok: true, value: { userId } };
  }

  /** Verifies a site token `{type:"site", user_id, assistant_id}`. */
  async verifySite(token: string | null | undefined): Promise<TokenResult<SiteIdentity>> {
    const r = await this.#verify(token);
    if (!r.ok) return r;
    if (r.value.type !== 'site') return { ok: false, reason: 'wrong-type' };
    const userId = positiveId(r.value.user_id);
    const assistantId = positiveId(r.value.assistant_id);
    if (userId === undefined || assistantId === undefined) return { ok: false, reason: 'invalid' };
    return { ok: true, value: { userId, assistantId } };
  }
}

/** A positive safe integer from a number or a decimal string; undefined otherwise. */
export function positiveId(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}
