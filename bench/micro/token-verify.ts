#!/usr/bin/env tsx
// Micro-benchmark of the handshake's token check: the gateway's TokenVerifier (node:crypto
// HMAC, cache off) against jose's jwtVerify with a WebCrypto key imported once (what the gateway
// ran before), on the same distinct tokens, in alternating rounds so both meet the same machine
// load. Prints µs per token for each and the ratio. Relative figures only: run it back-to-back.
// Usage: npx tsx bench/micro/token-verify.ts [tokens=2000] [rounds=5]
import { jwtVerify } from 'jose';
import { performance } from 'node:perf_hooks';
import { CLOCK_TOLERANCE_S, TokenVerifier, signAdminToken, type TokenPolicy } from '../../gateway/src/auth/tokens.js';

const SECRET = 'micro-bench-secret-0123456789abcdef-0123';
const POLICY: TokenPolicy = { issuer: 'replyx', adminAudience: 'replyx-admin', adminMaxTtlS: 86_400, siteMaxTtlS: 86_400, widgetTtlS: 900 };

/** Median of a list of numbers. */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Runs both verifiers over `count` tokens for `rounds` alternating rounds; µs per token (medians). */
export async function compareTokenVerify(count: number, rounds: number): Promise<{ joseUs: number; nodeUs: number }> {
  const tokens = await Promise.all(Array.from({ length: count }, (_, i) => signAdminToken(SECRET, { userId: i + 1, ttlS: 3600 }, POLICY).then((t) => t.token)));
  const verifier = new TokenVerifier({ jwtSecret: SECRET, siteTokenSecret: `${SECRET}-site`, widgetTokenSecret: `${SECRET}-widget` }, POLICY, 0);
  const key = await globalThis.crypto.subtle.importKey('raw', new TextEncoder().encode(SECRET), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  const options = { algorithms: ['HS256'], issuer: POLICY.issuer, audience: POLICY.adminAudience, requiredClaims: ['exp', 'iat'], clockTolerance: CLOCK_TOLERANCE_S };
  // Concurrently, as a connect burst presents them.
  const viaJose = async () => Promise.all(tokens.map((t) => jwtVerify(t, key, options)));
  const viaNode = async () => {
    const results = await Promise.all(tokens.map((t) => verifier.verifyAdmin(t)));
    if (results.some((r) => !r.ok)) throw new Error('a token was refused');
  };
  const jose: number[] = [];
  const node: number[] = [];
  await viaJose();
  await viaNode();
  for (let r = 0; r < rounds; r++) {
    for (const [run, into] of r % 2 === 0 ? ([[viaJose, jose], [viaNode, node]] as const) : ([[viaNode, node], [viaJose, jose]] as const)) {
      const t0 = performance.now();
      await run();
      into.push(((performance.now() - t0) * 1000) / count);
    }
  }
  return { joseUs: median(jose), nodeUs: median(node) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const count = Number(process.argv[2] ?? 2000);
  const rounds = Number(process.argv[3] ?? 5);
  const { joseUs, nodeUs } = await compareTokenVerify(count, rounds);
  console.log(`token verify, ${count} distinct HS256 admin tokens, median of ${rounds} rounds:`);
  console.log(`  jose jwtVerify (WebCrypto HMAC)  ${joseUs.toFixed(1)} µs/token`);
  console.log(`  TokenVerifier (node:crypto)      ${nodeUs.toFixed(1)} µs/token`);
  console.log(`  ratio jose / node:crypto         ${(joseUs / nodeUs).toFixed(2)}x`);
}
