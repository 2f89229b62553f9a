import { describe, expect, it } from 'vitest';
import { isCutApiRequest, isRefusedHandshake } from './suite.js';

// What nginx's JSON access log says about a 502: refused (never sent, the upstream was not
// listening) or cut (sent, then the backend dropped it). Field values as nginx writes them.
const line = (fields: Record<string, unknown>): string =>
  JSON.stringify({ service: 'nginx', kind: 'http', method: 'POST', uri: '/api/site/dialogs/100/messages', status: 502, upstream_status: '502', ...fields });

describe('isCutApiRequest', () => {
  it('counts an API request the backend took and dropped', () => {
    expect(isCutApiRequest(line({ upstream_connect_time: '0.000', upstream_header_time: '-' }))).toBe(true);
  });
  it('does not count a refused connection, an answer, a WebSocket or a non-API path', () => {
    expect(isCutApiRequest(line({ upstream_connect_time: '-', upstream_header_time: '-' }))).toBe(false);
    expect(isCutApiRequest(line({ status: 503, upstream_status: '503', upstream_connect_time: '0.001', upstream_header_time: '0.004' }))).toBe(false);
    expect(isCutApiRequest(line({ kind: 'ws', upstream_connect_time: '0.000', upstream_header_time: '-' }))).toBe(false);
    expect(isCutApiRequest(line({ uri: '/health', upstream_connect_time: '0.000', upstream_header_time: '-' }))).toBe(false);
    expect(isCutApiRequest('not json "kind":"http"')).toBe(false);
  });
  it('judges the last upstream tried when nginx tried several', () => {
    expect(isCutApiRequest(line({ upstream_connect_time: '-, 0.001', upstream_header_time: '-, -' }))).toBe(true);
    expect(isCutApiRequest(line({ upstream_connect_time: '0.001, -', upstream_header_time: '-, -' }))).toBe(false);
  });
});

describe('isRefusedHandshake', () => {
  const ws = (fields: Record<string, unknown>): string => JSON.stringify({ service: 'nginx', kind: 'ws', method: 'GET', uri: '/ws/dialogs/123', status: 101, upstream: '127.0.0.1:8001', ...fields });
  it('counts a WebSocket handshake nginx answered 502 (no gateway listening)', () => {
    expect(isRefusedHandshake(ws({ status: 502, upstream: '127.0.0.1:8001', upstream_status: '502' }))).toBe(true);
  });
  it('does not count an upgraded handshake (a refused replica retried on the next one included), an API request or a line that is not JSON', () => {
    expect(isRefusedHandshake(ws({}))).toBe(false);
    expect(isRefusedHandshake(ws({ upstream: '127.0.0.1:8001, 127.0.0.1:8002', upstream_status: '502, 101' }))).toBe(false);
    expect(isRefusedHandshake(ws({ kind: 'http', status: 502 }))).toBe(false);
    expect(isRefusedHandshake('"kind":"ws" status 502')).toBe(false);
  });
});
