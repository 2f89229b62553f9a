// Child process for the token cache memory test (run with --expose-gc): verifies N widget tokens,
// each sliced out of a large handshake header as the gateway's credential parsing does, lets the
// headers go, and prints the heap the cache kept per token after a full GC.
import { TokenVerifier, signWidgetToken, type TokenPolicy } from '../src/auth/tokens.js';
import { DEFAULTS } from '../src/config.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const count = Number(process.argv[2] ?? 1000);
const padding = Number(process.argv[3] ?? 16_384);
// harness.ts imports vitest, which a plain child process cannot: its own secrets and the default policy.
const WIDGET_TOKEN_SECRET = 'widget-secret-for-the-cache-memory-child';
const POLICY: TokenPolicy = { issuer: DEFAULTS.JWT_ISSUER, adminAudience: DEFAULTS.JWT_AUDIENCE, adminMaxTtlS: DEFAULTS.ADMIN_TOKEN_MAX_TTL_S, siteMaxTtlS: DEFAULTS.SITE_TOKEN_MAX_TTL_S, widgetTtlS: DEFAULTS.WIDGET_TOKEN_TTL_S };
const verifier = new TokenVerifier({ jwtSecret: 'admin-secret-for-the-cache-memory-child', siteTokenSecret: 'site-secret-for-the-cache-memory-child', widgetTokenSecret: WIDGET_TOKEN_SECRET }, POLICY);
const tokens: string[] = [];
for (let i = 0; i < count; i++) tokens.push((await signWidgetToken(WIDGET_TOKEN_SECRET, { dialogId: i + 1, assistantId: 1, origin: 'https://shop.example.com' }, POLICY)).token);
const heap = () => {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
};
const before = heap();
for (const token of tokens) {
  // A header as large as `padding`, with the token at its end, built at run time (not a constant).
  const header = `${'p'.repeat(padding)}${String(Math.random())}, replyx.token.${token}`;
  const r = await verifier.verifyWidget(header.slice(header.length - token.length));
  if (!r.ok) throw new Error(`token refused: ${r.reason}`);
}
process.stdout.write(`${JSON.stringify({ remembered: verifier.rememberedTokens, bytesPerToken: (heap() - before) / count })}\n`);
