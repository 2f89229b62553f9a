import { execaSync } from 'execa';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

// Names the process holding a TCP port, so "port taken" errors say what to stop. `ss` is the
// first choice; /proc/net/tcp{,6} is the fallback where iproute2 is missing.

/** A process listening on a port. */
export interface PortOwner {
  readonly pid?: number;
  readonly command?: string;
}

/** Parses `ss -ltnpH` output for the listener on `port` (pure). */
export function parseSsListeners(text: string, port: number): PortOwner | undefined {
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    const local = cols[3];
    if (!local || !local.endsWith(`:${port}`)) continue;
    const m = /users:\(\("([^"]+)",pid=(\d+)/.exec(line);
    return m ? { command: m[1], pid: Number(m[2]) } : {};
  }
  return undefined;
}

/** Socket inodes listening on `port` in the text of /proc/net/tcp or tcp6 (pure). */
export function parseProcNetTcp(text: string, port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes: string[] = [];
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    // cols[1] local address "0100007F:1F90", cols[3] state (0A = LISTEN), cols[9] inode.
    if (cols[1]?.endsWith(`:${hexPort}`) && cols[3] === '0A' && cols[9]) inodes.push(cols[9]);
  }
  return inodes;
}

function ownerFromProc(port: number): PortOwner | undefined {
  const inodes = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      for (const i of parseProcNetTcp(readFileSync(f, 'utf8'), port)) inodes.add(i);
    } catch {
      // tcp6 may be absent.
    }
  }
  if (inodes.size === 0) return undefined;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) return { pid: Number(pid), command: readFileSync(`/proc/${pid}/comm`, 'utf8').trim() };
      } catch {
        // The process or fd went away while we looked.
      }
    }
  }
  return {};
}

/** The process listening on 127.0.0.1/any:port, if one can be named. */
export function portOwner(port: number): PortOwner | undefined {
  try {
    const out = execaSync('ss', ['-ltnpH', `sport = :${port}`], { stdin: 'ignore', stderr: 'ignore' }).stdout;
    const owner = parseSsListeners(out, port);
    if (owner?.pid !== undefined) return owner;
  } catch {
    // No ss: fall through to /proc.
  }
  return ownerFromProc(port);
}

/** "nginx (pid 123)" or "an unknown process" for messages. */
export function describeOwner(owner: PortOwner | undefined): string {
  if (!owner || (owner.pid === undefined && owner.command === undefined)) return 'an unknown process';
  return `${owner.command ?? 'process'}${owner.pid !== undefined ? ` (pid ${owner.pid})` : ''}`;
}
