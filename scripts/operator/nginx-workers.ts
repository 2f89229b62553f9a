import { readdir, readFile } from 'node:fs/promises';
import { waitUntil } from '../../infra/targets/local/ports.js';

// After a reload, nginx's old workers keep serving the connections they already had (WebSockets
// included) until those end or worker_shutdown_timeout passes. A rollback that moves /ws/ ends
// them early: old workers are recognisable by their process title ("is shutting down").

/** Pids of the master's workers that are shutting down after a reload (Linux /proc). */
export async function shuttingDownWorkers(masterPid: number): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // Field 4 is the parent pid; the command name in field 2 may contain spaces, so split after ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== masterPid) continue;
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      if (/shutting down/.test(cmdline)) out.push(Number(entry));
    } catch {
      // The process went away while we looked.
    }
  }
  return out;
}

/**
 * Gives old workers `graceMs` to finish in-flight HTTP requests, then ends them (SIGTERM = fast
 * shutdown), closing the long-lived WebSockets they still proxy so clients reconnect through
 * the new workers. Resolves with how many had to be ended.
 */
export async function endOldWorkers(masterPid: number, graceMs: number): Promise<number> {
  let remaining = await shuttingDownWorkers(masterPid);
  if (remaining.length === 0) return 0;
  await waitUntil(async () => (remaining = await shuttingDownWorkers(masterPid)).length === 0, graceMs, 50);
  for (const pid of remaining) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Exited in between.
    }
  }
  return remaining.length;
}
