import { readFileSync } from 'node:fs';
import type { GatewayErrorCode } from '../error-codes.js';

// Every WebSocket holds one file descriptor, so RLIMIT_NOFILE, not MAX_CONNECTIONS, is what a
// process can really hold: past its soft limit accept() fails with EMFILE and the client sees a
// reset instead of a 4100 it could back off from, so the gateway admits no more than its limit
// minus the reserve. Linux shows the limits in /proc/<pid>/limits; the local target reads nginx's
// from there too. This module is a leaf (node:fs only): infra imports the reserve and the formula
// to size every target's nofile from them.

/**
 * Descriptors a process needs besides its connection sockets: for the gateway Redis, the Postgres
 * pool, the listening socket, log files and the handshakes in flight; for nginx its listeners,
 * logs and the master's own. Every target's nofile is derived from it ({@link openFileLimitFor}).
 */
export const OPEN_FILE_RESERVE = 1000;

/** The open-file limit a process whose connections hold `descriptors` file descriptors needs: those plus {@link OPEN_FILE_RESERVE} (pure). */
export function openFileLimitFor(descriptors: number): number {
  return descriptors + OPEN_FILE_RESERVE;
}

/** The soft and hard "Max open files" of a process (a field is absent when unlimited). */
export interface OpenFileLimits {
  readonly soft?: number;
  readonly hard?: number;
}

/** The soft and hard "Max open files" of a /proc/<pid>/limits text (absent: unlimited or no such line). */
export function parseOpenFileLimits(limits: string): OpenFileLimits {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
  const soft = num(m?.[1]);
  const hard = num(m?.[2]);
  return { ...(soft !== undefined ? { soft } : {}), ...(hard !== undefined ? { hard } : {}) };
}

/** The open-file limits of a process from /proc (this one by default); undefined where there is no /proc (not Linux). */
export function readOpenFileLimits(pid: number | 'self' = 'self'): OpenFileLimits | undefined {
  try {
    return parseOpenFileLimits(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** How many connections the gateway can hold with its open-file limit. */
export interface ConnectionCapacity {
  readonly maxConnections: number;
  /** The soft RLIMIT_NOFILE (undefined: unlimited or unknown). */
  readonly openFileLimit: number | undefined;
  /** MAX_CONNECTIONS, or the soft limit minus OPEN_FILE_RESERVE when that is lower: the gateway admits no more. */
  readonly connections: number;
  /** True when the open-file limit, not MAX_CONNECTIONS, is the bound. */
  readonly limitedByOpenFiles: boolean;
}

/** The effective connection bound of a gateway with `maxConnections` under `limits` (pure). */
export function connectionCapacity(maxConnections: number, limits: OpenFileLimits | undefined): ConnectionCapacity {
  const openFileLimit = limits?.soft;
  const byFiles = openFileLimit === undefined ? Number.POSITIVE_INFINITY : Math.max(0, openFileLimit - OPEN_FILE_RESERVE);
  return { maxConnections, openFileLimit, connections: Math.min(maxConnections, byFiles), limitedByOpenFiles: byFiles < maxConnections };
}

/** The code of the start-up warning below. */
export const OPEN_FILE_WARNING_CODE: GatewayErrorCode = 'RPX_GATEWAY_NOFILE';

/** The one warning line for a gateway its open-file limit holds below MAX_CONNECTIONS, with the fix; undefined when the limit is enough. */
export function openFileWarning(c: ConnectionCapacity): string | undefined {
  if (!c.limitedByOpenFiles || c.openFileLimit === undefined) return undefined;
  const n = (x: number) => x.toLocaleString('en-US');
  return (
    `${OPEN_FILE_WARNING_CODE}: open-file limit ${n(c.openFileLimit)} is below MAX_CONNECTIONS ${n(c.maxConnections)} + ${n(OPEN_FILE_RESERVE)} reserved descriptors, ` +
    `so this gateway admits at most ${n(c.connections)} connections (more close with 4100) — ` +
    `raise the limit to at least ${n(openFileLimitFor(c.maxConnections))} (ulimit -n, systemd LimitNOFILE=, the container's nofile ulimit) or lower MAX_CONNECTIONS to ${n(c.connections)}`
  );
}
