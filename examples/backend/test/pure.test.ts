import { describe, expect, it } from 'vitest';
import { authorise, legacyWidgetCaller, type Caller } from '../src/access.js';
import { BackendConfigError, configFromEnv } from '../src/config.js';
import { demoVisitorKey } from '../src/demo.js';
import { IDEMPOTENCY_KEY_MAX, idempotencyScope, parseIdempotencyKey, requestHash } from '../src/idempotency.js';
import { matchLegacyPath } from '../src/legacy-ws.js';
import { redactUrl } from '../src/log.js';
import { parseMigrationNames } from '../src/migrate.js';
import { messageIdempotencyKey, retryDelayMs } from '../src/outbox.js';
import { isDatabaseUnavailable } from '../src/store.js';

const SECRETS = { JWT_SECRET: 'j'.repeat(32), SITE_TOKEN_SECRET: 's'.repeat(32), WIDGET_TOKEN_SECRET: 'w'.repeat(32) };

describe('access', () => {
  const access = { dialogId: 123, assistantId: 3, userId: 1, allowedDomains: ['localhost', '*.example.com'] };
  const caller = (grant: Caller['grant']): Caller => ({ kind: grant.kind, grant, expiresAt: 0 });

  it('authorises each kind against the dialog owner, with one answer for missing and foreign dialogs', () => {
    expect(authorise(caller({ kind: 'admin', userId: 1 }), 123, access)).toBeUndefined();
    expect(authorise(caller({ kind: 'admin', userId: 2 }), 123, access)).toEqual(authorise(caller({ kind: 'admin', userId: 1 }), 123, undefined));
    expect(authorise(caller({ kind: 'site', userId: 1, assistantId: 3, jti: 'j-0000001' }), 123, access)).toBeUndefined();
    expect(authorise(caller({ kind: 'site', userId: 1, assistantId: 4, jti: 'j-0000001' }), 123, access)).toMatchObject({ code: 'DIALOG_NOT_FOUND', reason: 'dialog not found' });
    expect(authorise(caller({ kind: 'widget', assistantId: 3, originHost: 'localhost', dialogId: 123 }), 123, access)).toBeUndefined();
    expect(authorise(caller({ kind: 'widget', assistantId: 3, originHost: 'localhost', dialogId: 100 }), 123, access)).toMatchObject({ code: 'DIALOG_NOT_FOUND' });
    expect(authorise(caller({ kind: 'widget', assistantId: 3, originHost: 'evil.test' }), 123, access)).toMatchObject({ code: 'ORIGIN_FORBIDDEN' });
  });

  it('legacy widget: the origin is judged against the claimed assistant before any dialog is looked at', async () => {
    const domains = async (id: number) => (id === 3 ? access.allowedDomains : undefined);
    expect(await legacyWidgetCaller(3, 'https://shop.example.com', 'https://widget.cdn', domains)).toMatchObject({ grant: { kind: 'widget', assistantId: 3, originHost: 'shop.example.com' }, expiresAt: 0 });
    expect(await legacyWidgetCaller(3, undefined, 'http://localhost:8080', domains)).toMatchObject({ grant: { originHost: 'localhost' } });
    expect(await legacyWidgetCaller(3, 'https://evil.test', 'http://localhost', domains)).toMatchObject({ code: 'ORIGIN_FORBIDDEN' });
    expect(await legacyWidgetCaller(3, undefined, undefined, domains)).toMatchObject({ code: 'ORIGIN_FORBIDDEN' });
    expect(await legacyWidgetCaller(3, 'ftp://x', undefined, domains)).toMatchObject({ code: 'ORIGIN_FORBIDDEN' });
    expect(await legacyWidgetCaller(9, 'http://localhost', undefined, domains)).toMatchObject({ code: 'ORIGIN_FORBIDDEN' });
  });

  it('derives the demo visitor key from the widget secret', () => {
    expect(demoVisitorKey(SECRETS.WIDGET_TOKEN_SECRET)).toBe(demoVisitorKey(SECRETS.WIDGET_TOKEN_SECRET));
    expect(demoVisitorKey(SECRETS.WIDGET_TOKEN_SECRET)).not.toBe(demoVisitorKey('x'.repeat(32)));
    expect(demoVisitorKey(SECRETS.WIDGET_TOKEN_SECRET)).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('small pure pieces', () => {
  it('orders migrations and rejects bad or duplicate names', () => {
    expect(parseMigrationNames(['002_b.sql', '001_a.sql', 'README.md']).map((m) => m.version)).toEqual([1, 2]);
    expect(() => parseMigrationNames(['1_a.sql'])).toThrow(/NNN_name/);
    expect(() => parseMigrationNames(['001_a.sql', '001_b.sql'])).toThrow(/share version 1/);
  });

  it('redacts tokens in logged URLs', () => {
    expect(redactUrl('/ws/dialogs/1?token=abc&since=1-0')).toBe('/ws/dialogs/1?token=%5Bredacted%5D&since=1-0');
    expect(redactUrl('/api/site/dialogs/1/messages?site_token=abc')).not.toContain('abc');
    expect(redactUrl('/health')).toBe('/health');
  });

  it('reads workers from BACKEND_WORKERS, then UVICORN_WORKERS, default 4, and names bad variables', () => {
    const base = { DATABASE_URL: 'postgres://x', REDIS_URL: 'redis://x', ...SECRETS };
    expect(configFromEnv(base).workers).toBe(4);
    expect(configFromEnv({ ...base, UVICORN_WORKERS: '1' }).workers).toBe(1);
    expect(configFromEnv({ ...base, UVICORN_WORKERS: '1', BACKEND_WORKERS: '3' }).workers).toBe(3);
    expect(() => configFromEnv({ ...base, BACKEND_WORKERS: '0', JWT_SECRET: 'short' })).toThrow(/BACKEND_WORKERS.*JWT_SECRET|JWT_SECRET.*BACKEND_WORKERS/);
  });

  it('needs three different signing secrets of 32+ characters and says what to do in one line', () => {
    const base = { DATABASE_URL: 'postgres://x', REDIS_URL: 'redis://x', ...SECRETS };
    const line = (env: Record<string, string | undefined>) => {
      try {
        configFromEnv({ ...base, ...env });
      } catch (err) {
        expect(err).toBeInstanceOf(BackendConfigError);
        return (err as BackendConfigError).toLine();
      }
      return 'accepted';
    };
    expect(line({ SITE_TOKEN_SECRET: 'short-site-secret' })).toMatch(/^error RPX_BACKEND_CONFIG: SITE_TOKEN_SECRET: must be at least 32 characters — set SITE_TOKEN_SECRET to a random string/);
    expect(line({ SITE_TOKEN_SECRET: 'short-site-secret' })).not.toContain('short-site-secret');
    expect(line({ WIDGET_TOKEN_SECRET: undefined })).toMatch(/WIDGET_TOKEN_SECRET: is required — /);
    expect(line({ JWT_SECRET: undefined })).toMatch(/JWT_SECRET: is required — /);
    expect(line({ WIDGET_TOKEN_SECRET: SECRETS.JWT_SECRET })).toMatch(/WIDGET_TOKEN_SECRET: must differ/);
    expect(line({ WIDGET_TOKEN_TTL_S: '10' })).toMatch(/WIDGET_TOKEN_TTL_S: must be at least 60/);
    expect(line({ LEGACY_WIDGET_AUTH: 'sometimes' })).toMatch(/LEGACY_WIDGET_AUTH: must be one of .* — set LEGACY_WIDGET_AUTH=1 only while migrating/);
    const c = configFromEnv({ ...base, LEGACY_WIDGET_AUTH: '1', JWT_ISSUER: 'auth.example', SITE_TOKEN_MAX_TTL_S: '3600' });
    expect(c).toMatchObject({ legacyWidgetAuth: true, tokenPolicy: { issuer: 'auth.example', adminAudience: 'replyx-admin', siteMaxTtlS: 3600, widgetTtlS: 900 } });
    expect(configFromEnv(base).legacyWidgetAuth).toBe(false);
  });

  it('recognises exactly the seed’s /ws/ paths', () => {
    expect(matchLegacyPath('/ws/dialogs/123')).toEqual({ kind: 'admin', dialogId: 123 });
    expect(matchLegacyPath('/ws/widget/dialogs/123')).toEqual({ kind: 'widget', dialogId: 123 });
    expect(matchLegacyPath('/ws/site/dialogs/100/')).toEqual({ kind: 'site', dialogId: 100 });
    expect(matchLegacyPath('/ws/other/1')).toBeUndefined();
    expect(matchLegacyPath('/ws/dialogs/abc')).toBeUndefined();
  });
});

describe('idempotency and the outbox (issue 13)', () => {
  it('Idempotency-Key: 1-200 visible ASCII characters; no header is no key', () => {
    expect(parseIdempotencyKey(undefined)).toEqual({ ok: true, key: undefined });
    expect(parseIdempotencyKey('0b7f3c2e-5d1a-4c4e-9a55-1f2e3d4c5b6a')).toEqual({ ok: true, key: '0b7f3c2e-5d1a-4c4e-9a55-1f2e3d4c5b6a' });
    expect(parseIdempotencyKey('x'.repeat(IDEMPOTENCY_KEY_MAX))).toMatchObject({ ok: true });
    for (const bad of ['', 'a b', 'x'.repeat(IDEMPOTENCY_KEY_MAX + 1), 'tab\there', 'é']) expect(parseIdempotencyKey(bad), bad).toMatchObject({ ok: false, reason: /^Idempotency-Key must be 1-200 visible ASCII/ });
  });

  it('scopes keys to the credential subject and the dialog', () => {
    expect(idempotencyScope({ kind: 'admin', userId: 1 }, 5)).toBe('admin:user:1:dialog:5');
    expect(idempotencyScope({ kind: 'site', userId: 1, assistantId: 3, jti: 'j-1' }, 5)).toBe('site:token:j-1:dialog:5');
    expect(idempotencyScope({ kind: 'widget', assistantId: 3, originHost: 'a.test' }, 5)).toBe('widget:assistant:3:dialog:5');
    expect(idempotencyScope({ kind: 'admin', userId: 1 }, 6)).not.toBe(idempotencyScope({ kind: 'admin', userId: 1 }, 5));
    expect(requestHash('POST /a', { text: 'x' }).equals(requestHash('POST /a', { text: 'x' }))).toBe(true);
    expect(requestHash('POST /a', { text: 'x' }).equals(requestHash('POST /b', { text: 'x' }))).toBe(false);
  });

  it('retries back off by doubling up to the cap; publish keys are the id and creation time', () => {
    expect([0, 1, 2, 3, 10, 100].map((a) => retryDelayMs(a, 100, 5000))).toEqual([100, 200, 400, 800, 5000, 5000]);
    expect(retryDelayMs(-1, 100, 5000)).toBe(100);
    expect(messageIdempotencyKey({ id: 42, created_at: '2026-11-28T08:20:15.832Z' })).toBe('message:42:2026-11-28T08:20:15.832Z');
  });

  it('tells a database that did not answer (503, retry) from a request the database refused', () => {
    for (const err of [{ code: 'ECONNREFUSED' }, { code: '57P01' }, { code: '08006' }, new Error('Connection terminated unexpectedly'), new Error('timeout exceeded when trying to connect')]) {
      expect(isDatabaseUnavailable(err), String((err as Error).message ?? JSON.stringify(err))).toBe(true);
    }
    for (const err of [{ code: '22021' }, { code: '23505' }, new Error('syntax error'), null, undefined]) expect(isDatabaseUnavailable(err)).toBe(false);
  });
});
