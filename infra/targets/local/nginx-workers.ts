import { readdir, readFile } from 'node:fs/promises';
import { waitUntil } from './ports.js';

// After a reload, nginx's old workers keep serving the connections they already had (WebSockets
// included) until those end or worker_shutdown_timeout passes. A rollback that moves /ws/ ends
// them early. Workers are the master's children; an old one's title says "is shutting down".

/** One worker process of an nginx master. */
export interface NginxWorker {
  readonly pid: number;
  readonly shuttingDown: boolean;
}

/** The master's worker processes (Linux /proc). */
export async function nginxWorkers(masterPid: number): Promise<NginxWorker[]> {
  const out: NginxWorker[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // Field 4 is the parent pid; the command name in field 2 may contain spaces, so split after ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== masterPid) continue;
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      if (!/worker process/.test(cmdline)) continue;
      out.push({ pid: Number(entry), shuttingDown: /shutting down/.test(cmdline) });
    } catch {
      // The process went away while we looked.
    }
  }
  return out;
}

/**
 * Sends SIGHUP and waits until the reload took effect: every worker from before is gone or
 * shutting down and a new one serves. Resolves with the pids of the workers from before.
 */
export async function reloadAndWait(masterPid: number, timeoutMs = 5000): Promise<{ oldWorkers: number[]; reloaded: boolean }> {
  const before = (await nginxWorkers(masterPid)).filter((w) => !w.shuttingDown).map((w) => w.pid);
  process.kill(masterPid, 'SIGHUP');
  const reloaded = await waitUntil(
    async () => {
      const now = await nginxWorkers(masterPid);
      const fresh = now.some((w) => !w.shuttingDown && !before.includes(w.pid));
      const oldServing = now.some((w) => !w.shuttingDown && before.includes(w.pid));
      return fresh && !oldServing;
    },
    timeoutMs,
    20,
  );
  return { oldWorkers: before, reloaded };
}

/**
 * Gives old workers `graceMs` to finish in-flight HTTP requests, then ends them (SIGTERM = fast
 * shutdown), closing the long-lived WebSockets they still proxy so clients reconnect through
 * the new workers. Resolves with how many had to be ended.
 */
export async function endOldWorkers(masterPid: number, oldWorkers: readonly number[], graceMs: number): Promise<number> {
  const alive = async () => (await nginxWorkers(masterPid)).filter((w) => oldWorkers.includes(w.pid)).map((w) => w.pid);
  let remaining = await alive();
  if (remaining.length === 0) return 0;
  await waitUntil(async () => (remaining = await alive()).length === 0, graceMs, 50);
  for (const pid of remaining) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Exited in between.
    }
  }
  return remaining.length;
}
