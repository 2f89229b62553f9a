import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { signAdminToken, signSiteToken, signWidgetToken, TokenVerifier, type TokenPolicy } from '../../gateway/src/auth/tokens.js';
import { isHostAllowed, originHost } from '../../gateway/src/origin/allowed-domains.js';
import { signRaw } from '../../gateway/test/harness.js';
import { PYTHON_BIN } from '../../infra/python/interpreter.js';

// The FastAPI example judges credentials and origins with its own Python code; the gateway judges
// the same sockets with its TypeScript modules. Both must agree, or a widget gets a session the
// gateway refuses (or worse, the reverse): this runs one table of cases through both.

const HERE = fileURLToPath(new URL('.', import.meta.url));
const POLICY: TokenPolicy = { issuer: 'replyx', adminAudience: 'replyx-admin', adminMaxTtlS: 86_400, siteMaxTtlS: 2_592_000, widgetTtlS: 900 };
const KEYS = { jwtSecret: 'admin-secret-0123456789abcdef-0123456789', siteTokenSecret: 'site-secret-0123456789abcdef-01234567890', widgetTokenSecret: 'widget-secret-0123456789abcdef-012345678' };

/** Runs `code` (which reads `cases` and prints JSON) with the example's modules importable. */
async function python<T>(code: string, cases: unknown): Promise<T> {
  const script = ['import json, sys', 'from replyx_fastapi.access import *', 'from replyx_fastapi.tokens import *', 'from replyx_fastapi.config import TokenPolicy', 'cases = json.load(sys.stdin)', code].join('\n');
  const run = await execa(PYTHON_BIN, ['-c', script], { cwd: HERE, input: JSON.stringify(cases), reject: false });
  expect(run.stderr).toBe('');
  return JSON.parse(run.stdout) as T;
}

describe('origins: the FastAPI example and the gateway agree', () => {
  const origins = ['https://example.com', 'http://Shop.Example.com:8080/path?q=1', 'https://example.com.', 'null', '', 'file:///etc', 'ftp://example.com', 'not a url', 'http://[::1]:3000', 'http://127.0.0.1', 'https://xn--80ak6aa92e.com', 'https://Bücher.example/'];
  it.each(origins)('origin host of %j', async (origin) => {
    const [py] = await python<(string | null)[]>('print(json.dumps([origin_host(c) for c in cases]))', [origin]);
    expect(py).toBe(originHost(origin) ?? null);
  });

  const domains = ['example.com', '*.shop.example.org', 'HTTPS://Site2.Example.net:8443/', '*.com', '*', 'a.*.com', 'localhost', '127.0.0.1', ' spaced.example.io '];
  const hosts = ['example.com', 'www.example.com', 'shop.example.org', 'a.shop.example.org', 'a.b.shop.example.org', 'site2.example.net', 'x.site2.example.net', 'anything.com', 'localhost', '127.0.0.1', 'spaced.example.io', 'evil-example.com', 'example.com.evil.io'];
  it('allowed-domains matching over every host and entry', async () => {
    const cases = hosts.flatMap((h) => domains.map((d) => [h, d] as const));
    const py = await python<boolean[]>('print(json.dumps([is_host_allowed(h, [d]) for h, d in cases]))', cases);
    expect(cases.map(([h, d], i) => `${h} ${d} ${py[i]}`)).toEqual(cases.map(([h, d]) => `${h} ${d} ${isHostAllowed(h, [d])}`));
  });
});

describe('tokens: the FastAPI example and the gateway agree', () => {
  const verify = `
t = Tokens(${JSON.stringify(KEYS.jwtSecret)}, ${JSON.stringify(KEYS.siteTokenSecret)}, ${JSON.stringify(KEYS.widgetTokenSecret)}, TokenPolicy())
out = []
for kind, token in cases:
    try:
        i = t.verify(kind, token)
        out.append({"ok": True, "user_id": i.user_id, "assistant_id": i.assistant_id, "dialog_id": i.dialog_id, "jti": i.jti, "origin": i.origin})
    except TokenRefused as r:
        out.append({"ok": False, "reason": r.reason})
print(json.dumps(out))`;

  it('accepts what the gateway signs and refuses what the gateway refuses, for the same reason', async () => {
    const now = Math.floor(Date.now() / 1000);
    const admin = (await signAdminToken(KEYS.jwtSecret, { userId: 7, ttlS: 600 }, POLICY)).token;
    const site = (await signSiteToken(KEYS.siteTokenSecret, { userId: 7, assistantId: 3, dialogId: 123, ttlS: 600 }, POLICY)).token;
    const widget = (await signWidgetToken(KEYS.widgetTokenSecret, { dialogId: 123, assistantId: 3, origin: 'https://shop.example.com' }, POLICY)).token;
    const claims = (type: string, aud: string, extra: Record<string, unknown>) => ({ iss: 'replyx', aud, type, iat: now, exp: now + 600, ...extra });
    const cases: [string, string][] = [
      ['admin', admin],
      ['site', site],
      ['widget', widget],
      ['admin', site],
      ['site', widget],
      ['admin', ''],
      ['admin', 'not.a.token'],
      ['admin', await signRaw(claims('access', 'replyx-admin', { sub: '7', exp: now - 10 }), KEYS.jwtSecret)],
      ['admin', await signRaw(claims('access', 'replyx-admin', { sub: '7', exp: now + 90_000 }), KEYS.jwtSecret)],
      ['admin', await signRaw(claims('access', 'other-audience', { sub: '7' }), KEYS.jwtSecret)],
      ['admin', await signRaw(claims('access', 'replyx-admin', { sub: '7', iat: now + 60 }), KEYS.jwtSecret)],
      ['admin', await signRaw(claims('site', 'replyx-admin', { sub: '7' }), KEYS.jwtSecret)],
      ['admin', await signRaw(claims('access', 'replyx-admin', { sub: 'seven' }), KEYS.jwtSecret)],
      ['admin', await signRaw({ iss: 'replyx', aud: 'replyx-admin', type: 'access', sub: '7', exp: now + 600 }, KEYS.jwtSecret)],
      ['site', await signRaw(claims('site', 'replyx-site', { jti: 'short', user_id: 7, assistant_id: 3 }), KEYS.siteTokenSecret)],
      ['site', await signRaw(claims('site', 'replyx-site', { jti: 'site-token-1', user_id: '7', assistant_id: 3 }), KEYS.siteTokenSecret)],
      ['widget', await signRaw(claims('widget', 'replyx-widget', { jti: 'widget-token-1', dialog_id: 1, assistant_id: 3, origin: 'ftp://x.example.com' }), KEYS.widgetTokenSecret)],
    ];
    const verifier = new TokenVerifier(KEYS, POLICY, 0);
    const ts = await Promise.all(
      cases.map(async ([kind, token]) => {
        const r = await verifier.verify(kind as 'admin' | 'site' | 'widget', token);
        if (!r.ok) return { ok: false, reason: r.reason };
        const v = r.value as unknown as Record<string, unknown>;
        return { ok: true, user_id: v.userId ?? null, assistant_id: v.assistantId ?? null, dialog_id: v.dialogId ?? null, jti: kind === 'admin' ? null : v.jti, origin: v.origin ?? null };
      }),
    );
    expect(await python<unknown[]>(verify, cases)).toEqual(ts);
    expect(ts.slice(0, 3).every((r) => r.ok)).toBe(true);
  });

  it('the gateway accepts the site and widget tokens the FastAPI example signs', async () => {
    const signed = await python<{ site: string; widget: string }>(
      `t = Tokens(${JSON.stringify(KEYS.jwtSecret)}, ${JSON.stringify(KEYS.siteTokenSecret)}, ${JSON.stringify(KEYS.widgetTokenSecret)}, TokenPolicy())
print(json.dumps({"site": t.sign_site(7, 3, 123, 3600)["token"], "widget": t.sign_widget(123, 3, "https://shop.example.com")["token"]}))`,
      null,
    );
    const verifier = new TokenVerifier(KEYS, POLICY, 0);
    expect(await verifier.verifySite(signed.site)).toMatchObject({ ok: true, value: { userId: 7, assistantId: 3, dialogId: 123 } });
    expect(await verifier.verifyWidget(signed.widget)).toMatchObject({ ok: true, value: { dialogId: 123, assistantId: 3, origin: 'https://shop.example.com' } });
  });
});

describe('outbox: the FastAPI relay publishes a message under the reference backend’s idempotency key', () => {
  // Both backends can relay the same database during a migration: one message must stay one event.
  it('gives the same key for the same id and creation time (microseconds truncated, as JavaScript keeps ms)', async () => {
    const cases = [[1, '2026-12-02T16:20:00.123456+00:00'], [987654321, '2026-01-01T00:00:00+03:00'], [42, '2026-06-30T23:59:59.999999-07:00']] as const;
    const run = await execa(PYTHON_BIN, ['-c', ['import datetime, json, sys', 'from replyx_fastapi.relay import message_idempotency_key', 'cases = json.load(sys.stdin)', 'print(json.dumps([message_idempotency_key(i, datetime.datetime.fromisoformat(t)) for i, t in cases]))'].join('\n')], { cwd: HERE, input: JSON.stringify(cases), reject: false, env: { PYTHONPATH: fileURLToPath(new URL('../../python/replyx_publish/src', import.meta.url)) } });
    expect(run.stderr).toBe('');
    const { messageIdempotencyKey } = await import('../backend/src/outbox.js');
    expect(JSON.parse(run.stdout)).toEqual(cases.map(([id, t]) => messageIdempotencyKey({ id, created_at: new Date(t).toISOString() })));
  });
});
