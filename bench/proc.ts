import { readFile, readdir } from 'node:fs/promises';
import { logExcerpt } from '../infra/processes/log-tail.js';
import { startLogged, type LoggedProcess } from '../infra/processes/run.js';

// Process plumbing for the benchmark: every server under test runs as its own OS process so its
// memory and CPU can be read from /proc; these helpers start, measure and stop them.

/** Clock ticks per second for /proc/<pid>/stat CPU fields (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

/** Resident set size of one process in bytes (VmRSS), or undefined when it is gone. */
export async function rssBytes(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a process has used so far, or undefined when it is gone. */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the name: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return (utime + stime) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** The pid and every descendant pid (Pushpin and nginx are several processes). */
export async function processTree(rootPid: number): Promise<number[]> {
  const parents = new Map<number, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = parents.get(ppid) ?? [];
      list.push(Number(entry));
      parents.set(ppid, list);
    } catch {
      // The process exited while we listed /proc.
    }
  }
  const out: number[] = [];
  const queue = [rootPid];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(parents.get(pid) ?? []));
  }
  return out;
}

/** Summed RSS and CPU seconds over a set of processes (missing ones count as 0). */
export async function measure(pids: readonly number[]): Promise<{ rssBytes: number; cpuSeconds: number }> {
  let rss = 0;
  let cpu = 0;
  for (const pid of pids) {
    rss += (await rssBytes(pid)) ?? 0;
    cpu += (await cpuSeconds(pid)) ?? 0;
  }
  return { rssBytes: rss, cpuSeconds: cpu };
}

/** CPU seconds used so far by each process of `pids` that is still running. */
export async function cpuSecondsByPid(pids: readonly number[]): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    const cpu = await cpuSeconds(pid);
    if (cpu !== undefined) out.set(pid, cpu);
  }
  return out;
}

/** The command name of a process (/proc/<pid>/comm: "node", "nginx"), or undefined when it is gone. */
export async function processName(pid: number): Promise<string | undefined> {
  try {
    return (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** RSS summed per command name over a set of processes, so a system's share splits into e.g. its gateway ("node") and nginx. */
export async function rssByName(pids: readonly number[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const pid of pids) {
    const [name, rss] = await Promise.all([processName(pid), rssBytes(pid)]);
    if (name !== undefined && rss !== undefined) out[name] = (out[name] ?? 0) + rss;
  }
  return out;
}

/**
 * CPU seconds used between two readings: by the processes running at the second reading, less
 * what each had at the first (0 for one started in between). A process that exited in between
 * is left out: its CPU at exit is unknown, and counting its earlier total as gone made Postgres'
 * share negative when the pool closed an idle backend during a burst.
 */
export function cpuSecondsBetween(before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>): number {
  let used = 0;
  for (const [pid, cpu] of after) used += cpu - (before.get(pid) ?? 0);
  return used;
}

/** A long-running child the benchmark started. */
export interface BenchProcess {
  readonly name: string;
  readonly pid: number;
  /** True while the process runs. */
  running(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Wraps a started process so it can be stopped and awaited exactly once. */
export function benchProcess(name: string, child: LoggedProcess): BenchProcess {
  return {
    name,
    pid: child.pid,
    running: () => child.exited() === undefined,
    async stop(graceMs = 3000) {
      if (child.exited() === undefined) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await child.ended;
      clearTimeout(timer);
    },
  };
}

/** Options for `spawnLogged`. */
export interface SpawnLoggedOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** File that receives the child's stdout and stderr. */
  readonly logFile: string;
}

/** Spawns a command (argv array, no shell) with output to a log file. */
export async function spawnLogged(name: string, command: string, args: readonly string[], opts: SpawnLoggedOptions): Promise<BenchProcess> {
  const child = await startLogged([command, ...args], { env: opts.env ?? process.env, logFile: opts.logFile, ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}) });
  return benchProcess(name, child);
}

/** Last lines of a log file, for error messages when a server fails to start. */
export async function logTail(file: string, lines = 10): Promise<string> {
  return logExcerpt(file, lines, '\n');
}

/** The text of /proc/<pid>/limits (parse it with parseOpenFileLimit), or undefined when the process is gone. */
export async function processLimits(pid: number): Promise<string | undefined> {
  try {
    return await readFile(`/proc/${pid}/limits`, 'utf8');
  } catch {
    return undefined;
  }
}
