import { describe, expect, it } from 'vitest';
import { validateTopology } from '../topology/index.js';
import { directiveDiff, formatDirectiveDiff, wsRoutingChanged } from './nginx-diff.js';
import { renderNginxConfig } from './nginx.js';

const rendered = renderNginxConfig(validateTopology({ target: 'local' }, 'test').topology, 'local', { prefixDir: '/tmp/replyx-diff' });

describe('directiveDiff', () => {
  it('is empty for the same config, whatever its comments and layout', () => {
    expect(directiveDiff(rendered, rendered)).toEqual([]);
    const relaid = rendered.replace(/^# replyx-topology-checksum: .*$/m, '# replyx-topology-checksum: 0000000000000000').replaceAll('    ', '\t');
    expect(directiveDiff(rendered, relaid)).toEqual([]);
  });

  it('names a changed directive with its blocks, removed then added', () => {
    const edited = rendered.replace(/(location \/ws\/ \{[\s\S]*?proxy_read_timeout )\S+;/, '$110s;');
    const lines = formatDirectiveDiff(directiveDiff(rendered, edited));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^- http > server > location \/ws\/ > proxy_read_timeout \d+s$/);
    expect(lines[1]).toMatch(/location \/ws\/ > proxy_read_timeout 10s$/);
  });

  it('reports a removed top-level directive and an added upstream member', () => {
    const edited = rendered.replace(/^worker_shutdown_timeout .*;$/m, '').replace(/(upstream replyx_backend \{)/, '$1\n  server 127.0.0.1:9;');
    const lines = formatDirectiveDiff(directiveDiff(rendered, edited));
    expect(lines.some((l) => /^- worker_shutdown_timeout \d+s$/.test(l))).toBe(true);
    expect(lines.some((l) => l === '+ http > upstream replyx_backend > server 127.0.0.1:9')).toBe(true);
  });

  it('reports a running config whose per-request memory settings differ (what an open WebSocket holds)', () => {
    const edited = rendered.replace(/^(\s*)request_pool_size \d+;$/m, '$1request_pool_size 4096;').replace(/^\s*client_header_buffer_size .*;$/m, '');
    expect(formatDirectiveDiff(directiveDiff(rendered, edited))).toEqual(['- http > server > client_header_buffer_size 2k', '- http > server > request_pool_size 768', '+ http > server > request_pool_size 4096']);
  });
});

describe('wsRoutingChanged', () => {
  it('is true when /ws/ is proxied elsewhere or an upstream changed, false for other drift', () => {
    expect(wsRoutingChanged(rendered, rendered)).toBe(false);
    expect(wsRoutingChanged(rendered, rendered.replace(/(location \/ws\/ \{[^}]*?proxy_pass http:\/\/)replyx_ws_gateway;/, '$1replyx_backend;'))).toBe(true);
    expect(wsRoutingChanged(rendered, rendered.replace(/(upstream replyx_ws_gateway \{[^}]*?server )127\.0\.0\.1:\d+/, '$1127.0.0.1:9'))).toBe(true);
    expect(wsRoutingChanged(rendered, rendered.replace(/(location \/ws\/ \{[\s\S]*?proxy_read_timeout )\S+;/, '$1900s;'))).toBe(false);
    expect(wsRoutingChanged(rendered, 'http {')).toBe(true);
  });
});
