import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  effectiveDirectives,
  httpBlock,
  matchLocation,
  nginxTimeMs,
  parseNginxConfig,
  resolveProxyPass,
  serverForPort,
} from './nginx-config.js';

const fixture = readFileSync(new URL('./fixtures/good-nginx.conf', import.meta.url), 'utf8');

describe('parseNginxConfig', () => {
  it('builds a directive tree with lines, quotes removed and comments dropped', () => {
    const tree = parseNginxConfig(fixture);
    expect(tree.map((d) => d.name)).toEqual(['worker_processes', 'worker_shutdown_timeout', 'pid', 'events', 'http']);
    const map = httpBlock(tree).find((d) => d.name === 'map')!;
    expect(map.args).toEqual(['$http_upgrade', '$connection_upgrade']);
    expect(map.block!.map((d) => [d.name, ...d.args])).toEqual([['default', 'upgrade'], ['', 'close']]);
    expect(tree[1]!.line).toBe(4);
  });

  it('keeps ${var} braces inside a word and escaped quotes inside strings', () => {
    const tree = parseNginxConfig('set $a "x\\"y"; return 200 ${a}b;');
    expect(tree[0]!.args).toEqual(['$a', 'x"y']);
    expect(tree[1]!.args).toEqual(['200', '${a}b']);
  });

  it.each([
    ['http {', 'missing "}"'],
    ['}', 'unexpected "}"'],
    ['listen 80', 'has no ";"'],
    ['return "abc;', 'unterminated quoted string'],
    [';', 'unexpected ";"'],
  ])('rejects %j with a line number', (text, message) => {
    expect(() => parseNginxConfig(text)).toThrow(message);
    expect(() => parseNginxConfig(text)).toThrow(/line \d+/);
  });
});

describe('matchLocation', () => {
  const conf = parseNginxConfig(`http { server { listen 80;
    location / { proxy_pass http://a; }
    location /api/ { proxy_pass http://b; }
    location ^~ /static/ { root /x; }
    location ~ \\.png$ { return 403; }
    location ~* ^/WS/ { proxy_pass http://c; }
    location = /exact { return 204; }
  } }`);
  const server = serverForPort(conf, 80)!;
  const hit = (uri: string) => matchLocation(server, uri)?.args.join(' ');
  it('follows nginx precedence: exact, ^~ prefix, regex in order, longest prefix', () => {
    expect(hit('/exact')).toBe('= /exact');
    expect(hit('/static/a.png')).toBe('^~ /static/');
    expect(hit('/api/a.png')).toBe('~ \\.png$');
    expect(hit('/ws/x')).toBe('~* ^/WS/');
    expect(hit('/api/x')).toBe('/api/');
    expect(hit('/other')).toBe('/');
  });
  it('returns undefined when nothing matches', () => {
    const s = serverForPort(parseNginxConfig('http { server { location /a/ { } } }'))!;
    expect(matchLocation(s, '/b')).toBeUndefined();
  });
});

describe('helpers', () => {
  it('resolves proxy_pass through upstream blocks and direct host:port', () => {
    const tree = parseNginxConfig(fixture);
    expect(resolveProxyPass(tree, 'http://replyx_gateway')).toEqual({ upstream: 'replyx_gateway', servers: [{ host: '127.0.0.1', port: 8001 }] });
    expect(resolveProxyPass(tree, 'http://10.0.0.1:9000/x')).toEqual({ servers: [{ host: '10.0.0.1', port: 9000 }] });
    expect(resolveProxyPass(tree, 'http://plain')).toEqual({ servers: [{ host: 'plain', port: 80 }] });
    expect(resolveProxyPass(tree, '$var')).toBeUndefined();
  });
  it('inherits directives only from the innermost level that sets them', () => {
    const tree = parseNginxConfig('http { proxy_set_header A 1; proxy_set_header B 2; server { location /x/ { proxy_set_header C 3; } location /y/ { } } }');
    const server = serverForPort(tree)!;
    const chain = (uri: string) => [matchLocation(server, uri)?.block, server.block, httpBlock(tree)];
    expect(effectiveDirectives(chain('/x/1'), 'proxy_set_header').map((d) => d.args[0])).toEqual(['C']);
    expect(effectiveDirectives(chain('/y/1'), 'proxy_set_header').map((d) => d.args[0])).toEqual(['A', 'B']);
  });
  it('converts nginx times', () => {
    expect(nginxTimeMs('30')).toBe(30_000);
    expect(nginxTimeMs('2m')).toBe(120_000);
    expect(nginxTimeMs('1m30s')).toBe(90_000);
    expect(nginxTimeMs('500ms')).toBe(500);
    expect(nginxTimeMs('soon')).toBeUndefined();
  });
  it('picks the server block by listen port', () => {
    const tree = parseNginxConfig('http { server { listen 81; } server { listen 127.0.0.1:82; } }');
    expect(serverForPort(tree, 82)!.block![0]!.args).toEqual(['127.0.0.1:82']);
    expect(serverForPort(tree, 99)!.block![0]!.args).toEqual(['81']);
  });
});
