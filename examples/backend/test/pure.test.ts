import { describe, expect, it } from 'vitest';
import { authorise, hostAllowed, originHost, widgetOrigin } from '../src/access.js';
import { configFromEnv } from '../src/config.js';
import { matchLegacyPath } from '../src/legacy-ws.js';
import { redactUrl } from '../src/log.js';
import { parseMigrationNames } from '../src/migrate.js';

describe('origin rules', () => {
  it('matches exact hosts and one-or-more-level wildcards, never the bare parent', () => {
    const allowed = ['localhost', '*.example.com'];
    expect(hostAllowed('localhost', allowed)).toBe(true);
    expect(hostAllowed('shop.example.com', allowed)).toBe(true);
    expect(hostAllowed('a.b.example.com', allowed)).toBe(true);
    expect(hostAllowed('example.com', allowed)).toBe(false);
    expect(hostAllowed('evilexample.com', allowed)).toBe(false);
    expect(hostAllowed('example.com.evil.test', allowed)).toBe(false);
    expect(hostAllowed('LOCALHOST', allowed)).toBe(true);
  });

  it('takes the host of http(s) origins only, and prefers parent_origin', () => {
    expect(originHost('https://A.Example.com:8443/path')).toBe('a.example.com');
    expect(originHost('http://[::1]:8080')).toBe('[::1]');
    expect(hostAllowed('shop.example.com', ['https://*.example.com:443/'])).toBe(true);
    expect(originHost('javascript:alert(1)')).toBeUndefined();
    expect(originHost('not a url')).toBeUndefined();
    expect(widgetOrigin('https://iframe-parent.example.com', 'http://localhost')).toBe('https://iframe-parent.example.com');
    expect(widgetOrigin(undefined, 'http://localhost')).toBe('http://localhost');
    expect(widgetOrigin(undefined, undefined)).toMatchObject({ code: 'ORIGIN_FORBIDDEN' });
    expect(widgetOrigin('ftp://x', undefined)).toMatchObject({ code: 'ORIGIN_FORBIDDEN' });
  });

  it('authorises each kind against the dialog owner', () => {
    const access = { dialogId: 123, assistantId: 3, userId: 1, allowedDomains: ['localhost'] };
    expect(authorise({ kind: 'admin', userId: 1 }, access)).toBeUndefined();
    expect(authorise({ kind: 'admin', userId: 2 }, access)).toMatchObject({ code: 'DIALOG_NOT_FOUND' });
    expect(authorise({ kind: 'site', userId: 1, assistantId: 3 }, access)).toBeUndefined();
    expect(authorise({ kind: 'site', userId: 1, assistantId: 4 }, access)).toMatchObject({ code: 'DIALOG_NOT_FOUND' });
    expect(authorise({ kind: 'widget', assistantId: 3, origin: 'http://localhost:8080' }, access)).toBeUndefined();
    expect(authorise({ kind: 'widget', assistantId: 3, origin: 'https://evil.test' }, access)).toMatchObject({ code: 'ORIGIN_FORBIDDEN' });
    expect(authorise({ kind: 'admin', userId: 1 }, undefined)).toMatchObject({ code: 'DIALOG_NOT_FOUND' });
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
    const base = { DATABASE_URL: 'postgres://x', REDIS_URL: 'redis://x', JWT_SECRET: '0123456789abcdef' };
    expect(configFromEnv(base).workers).toBe(4);
    expect(configFromEnv({ ...base, UVICORN_WORKERS: '1' }).workers).toBe(1);
    expect(configFromEnv({ ...base, UVICORN_WORKERS: '1', BACKEND_WORKERS: '3' }).workers).toBe(3);
    expect(() => configFromEnv({ ...base, BACKEND_WORKERS: '0', JWT_SECRET: 'short' })).toThrow(/BACKEND_WORKERS.*JWT_SECRET|JWT_SECRET.*BACKEND_WORKERS/);
  });

  it('recognises exactly the seed’s /ws/ paths', () => {
    expect(matchLegacyPath('/ws/dialogs/123')).toEqual({ kind: 'admin', dialogId: 123 });
    expect(matchLegacyPath('/ws/widget/dialogs/123')).toEqual({ kind: 'widget', dialogId: 123 });
    expect(matchLegacyPath('/ws/site/dialogs/100/')).toEqual({ kind: 'site', dialogId: 100 });
    expect(matchLegacyPath('/ws/other/1')).toBeUndefined();
    expect(matchLegacyPath('/ws/dialogs/abc')).toBeUndefined();
  });
});
