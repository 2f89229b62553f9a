import { readFileSync } from 'node:fs';
import net from 'node:net';

/** Asks the kernel for a free TCP port on 127.0.0.1 (bind to port 0, read it, release it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export async function isPortOpen(port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Polls `probe` until it returns true or `timeoutMs` passes; returns whether it succeeded. */
export async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Asks the kernel for `count` distinct free ports (all held at once, so none repeats). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<net.Server>((resolve, reject) => {
      const server = net.createServer();
      server.unref();
      server.on('error', reject);
      server.listen(0, '127.0.0.1', () => resolve(server));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Whether 127.0.0.1:port can be bound right now. */
export async function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The kernel's ephemeral port range (outgoing connections take their local ports from it). */
export function ephemeralPortRange(text = readLocalPortRange()): { readonly low: number; readonly high: number } {
  const [low, high] = text.trim().split(/\s+/).map(Number);
  return Number.isInteger(low) && Number.isInteger(high) ? { low: low!, high: high! } : { low: 32_768, high: 60_999 };
}

function readLocalPortRange(): string {
  try {
    return readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
  } catch {
    return '';
  }
}

/** Lowest port a range is picked from: below it live well-known and registered services. */
const RANGE_FLOOR = 10_000;

/**
 * A free port whose next `count - 1` ports are free too (gateway replicas listen on consecutive
 * ports), avoiding `exclude`. Picked below the ephemeral range: a machine with many outgoing
 * connections (a load generator, a reconnect storm) holds most ephemeral ports, so a range there
 * is rarely free, and a listener there can collide with the next outgoing connection.
 */
export async function freePortRange(count: number, exclude: readonly number[] = [], random: () => number = Math.random): Promise<number> {
  const { low } = ephemeralPortRange();
  const span = low - count - RANGE_FLOOR;
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = span > 0 ? RANGE_FLOOR + Math.floor(random() * span) : await freePort();
    const range = Array.from({ length: count }, (_, i) => base + i);
    if (range.at(-1)! > 65_535 || range.some((p) => exclude.includes(p))) continue;
    if ((await Promise.all(range.map(canBind))).every(Boolean)) return base;
  }
  throw new Error(`no ${count} consecutive free ports on 127.0.0.1`);
}
