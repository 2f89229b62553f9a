import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  accessLogsInEffect,
  effectiveDirectives,
  httpBlock,
  logFormats,
  matchLocation,
  nginxTimeMs,
  parseNginxConfig,
  resolveProxyPass,
  serverForPort,
  TOKEN_CARRYING_VARIABLES,
  tokenCarryingVariablesIn,
} from './nginx-reader.js';

const fixture = readFileSync(new URL('../rules/fixtures/good-nginx.conf', import.meta.url), 'utf8');

describe('parseNginxConfig', () => {
  it('builds a directive tree with lines, quotes removed and comments dropped', () => {
    const tree = parseNginxConfig(fixture);
    expect(tree.map((d) => d.name)).toEqual(['worker_processes', 'worker_shutdown_timeout', 'pid', 'events', 'http']);
    const map = httpBlock(tree).find((d) => d.name === 'map')!;
    expect(map.args).toEqual(['$http_upgrade', '$connection_upgrade']);
    expect(map.block!.map((d) => [d.name, ...d.args])).toEqual([['default', 'upgrade'], ['', 'close']]);
    expect(tree[1]!.line).toBe(4);
  });

  it('keeps each directive as written, quotes included, for messages and diffs', () => {
    const tree = parseNginxConfig("location = /health {\n  return 200 \"ok\";\n  proxy_set_header   Connection '';\n}");
    expect(tree[0]!.text).toBe('location = /health');
    expect(tree[0]!.block!.map((d) => d.text)).toEqual(['return 200 "ok"', "proxy_set_header Connection ''"]);
    expect(tree[0]!.block![1]!.args).toEqual(['Connection', '']);
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

describe('logs', () => {
  it('reads log formats by name, joining quoted parts as nginx does', () => {
    const tree = parseNginxConfig("http { log_format a escape=json '$uri ' '$status'; log_format b '$remote_addr'; }");
    expect(logFormats(tree)).toEqual(new Map([['a', '$uri $status'], ['b', '$remote_addr']]));
  });

  it('lists the access logs in effect at every server and location, with the combined default', () => {
    const tree = parseNginxConfig(`http {
      access_log /l/a.log main;
      server { listen 8080;
        location /ws/ { access_log /l/a.log ws; access_log /l/b.log; }
        location /api/ { location /api/x/ { access_log off; } }
      }
      server { listen 81; access_log off; location / { } }
    }
    `);
    expect(accessLogsInEffect(tree).map((l) => `${l.scope}: ${l.format}`)).toEqual([
      'server 8080: main',
      'server 8080 location /ws/: ws',
      'server 8080 location /ws/: combined',
      'server 8080 location /api/: main',
      'server 8080 location /api/ location /api/x/: off',
      'server 81: off',
      'server 81 location /: off',
    ]);
    expect(accessLogsInEffect(parseNginxConfig('http { server { location / { } } }')).map((l) => [l.format, l.directive])).toEqual([
      ['combined', undefined],
      ['combined', undefined],
    ]);
  });

  it('finds every token-carrying variable, in either spelling and any case, and nothing else', () => {
    expect(TOKEN_CARRYING_VARIABLES).toEqual(['$request', '$request_uri', '$args', '$query_string', '$arg_*', '$http_referer']);
    expect(tokenCarryingVariablesIn('"$request" $request_uri ${args}?$query_string $arg_site_token $HTTP_REFERER')).toEqual([
      '$request',
      '$request_uri',
      '${args}',
      '$query_string',
      '$arg_site_token',
      '$HTTP_REFERER',
    ]);
    expect(tokenCarryingVariablesIn('$request_method $uri $request_time $server_protocol $http_user_agent $status $args_x')).toEqual([]);
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
