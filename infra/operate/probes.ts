import net from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { lastLines } from '../processes/log-tail.js';
import WebSocket from 'ws';
import type { Probe } from '../rules/index.js';

// Small live probes with timeouts. Each resolves with a Probe (value or error text) and never
// throws, so one dead service shows up as one failed row instead of aborting the whole check.

/** Default timeout of one probe. */
export const PROBE_TIMEOUT_MS = 3000;

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

/** GET a URL; resolves with status and body text. */
export async function httpGet(url: string, headers: Record<string, string> = {}, timeoutMs = PROBE_TIMEOUT_MS): Promise<Probe<{ status: number; body: string }>> {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    return { ok: true, value: { status: res.status, body: await res.text() } };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return { ok: false, error: `GET ${url.replace(/\?.*$/, '')}: ${cause ?? errorText(err)}` };
  }
}

/** GET a URL that must answer 2xx JSON; resolves with the parsed body. */
export async function httpJson(url: string, headers: Record<string, string> = {}, timeoutMs = PROBE_TIMEOUT_MS): Promise<Probe<unknown>> {
  const r = await httpGet(url, headers, timeoutMs);
  if (!r.ok) return r;
  let body: unknown;
  try {
    body = JSON.parse(r.value.body);
  } catch {
    return { ok: false, error: `HTTP ${r.value.status}, not JSON: ${r.value.body.slice(0, 80)}` };
  }
  if (r.value.status < 200 || r.value.status > 299) return { ok: false, error: `HTTP ${r.value.status}: ${r.value.body.slice(0, 120)}` };
  return { ok: true, value: body };
}

/** Opens a WebSocket, resolves with the first frame (parsed JSON), then closes it. */
export async function wsFirstFrame(url: string, headers: Record<string, string> = {}, timeoutMs = PROBE_TIMEOUT_MS, protocols: readonly string[] = []): Promise<Probe<unknown>> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, [...protocols], { headers, handshakeTimeout: timeoutMs });
    const done = (p: Probe<unknown>) => {
      clearTimeout(timer);
      ws.removeAllListeners();
      ws.on('error', () => undefined);
      ws.terminate();
      resolve(p);
    };
    const timer = setTimeout(() => done({ ok: false, error: `no frame within ${timeoutMs} ms` }), timeoutMs);
    ws.on('message', (data) => {
      try {
        done({ ok: true, value: JSON.parse(String(data)) as unknown });
      } catch {
        done({ ok: false, error: `first frame is not JSON: ${String(data).slice(0, 80)}` });
      }
    });
    ws.on('unexpected-response', (_req, res) => done({ ok: false, error: `handshake answered HTTP ${res.statusCode}` }));
    ws.on('close', (code, reason) => done({ ok: false, error: `closed with ${code} ${String(reason)}` }));
    ws.on('error', (err) => done({ ok: false, error: errorText(err) }));
  });
}

/**
 * Runs one Redis command logged in from `url` (the stack's admin user: its Redis refuses
 * unauthenticated commands) and resolves with the reply.
 */
export async function redisAdminCommand(url: string, command: string, ...args: string[]): Promise<unknown> {
  const redis = new Redis(url, { lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, connectTimeout: 1000, commandTimeout: 2000, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await redis.call(command, ...args);
  } finally {
    redis.disconnect();
  }
}

/** Sends one inline Redis command and resolves with the raw reply line. */
export async function redisCommand(port: number, command: string, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    socket.setTimeout(1000, () => {
      socket.destroy();
      reject(new Error('redis: timeout'));
    });
    socket.once('error', reject);
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.once('data', (buf) => {
      socket.end();
      resolve(buf.toString('utf8').trim());
    });
  });
}

/**
 * Whether a reply to an unauthenticated PING shows a Redis that serves: PONG, or NOAUTH from one
 * whose default user is off (the stack's own Redis: every client must log in).
 */
export function redisAnswers(reply: string): boolean {
  return reply === '+PONG' || reply.startsWith('-NOAUTH');
}

/** Redis PING on 127.0.0.1:port (without credentials: NOAUTH counts as up). */
export async function redisPing(port: number): Promise<Probe<true>> {
  try {
    const reply = await redisCommand(port, 'PING');
    return redisAnswers(reply) ? { ok: true, value: true } : { ok: false, error: `PING answered ${reply}` };
  } catch (err) {
    return { ok: false, error: `127.0.0.1:${port}: ${errorText(err)}` };
  }
}

/** Postgres SELECT 1. */
export async function postgresPing(url: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<Probe<true>> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return { ok: true, value: true };
  } catch (err) {
    return { ok: false, error: errorText(err) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The last `lines` lines of a text file. */
export async function tailFile(file: string, lines = 2000): Promise<Probe<string[]>> {
  try {
    return { ok: true, value: await lastLines(file, lines) };
  } catch (err) {
    return { ok: false, error: errorText(err) };
  }
}
