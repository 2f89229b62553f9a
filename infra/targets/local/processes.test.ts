import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { stopPid } from './processes.js';

describe('stopPid', () => {
  it('stops a hung (SIGSTOPped) process with its own signal handling, not by waiting for SIGKILL', async () => {
    // Exits 0 on SIGTERM, as the gateway does after its drain; SIGKILL would show as a signal.
    const child = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => process.exit(0)); process.stdout.write('up\\n'); setInterval(() => {}, 1000);"], { stdio: ['ignore', 'pipe', 'inherit'] });
    await once(child.stdout, 'data');
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    process.kill(child.pid!, 'SIGSTOP');
    const t0 = Date.now();
    await stopPid(child.pid!, 20_000, () => child.exitCode !== null || child.signalCode !== null);
    const [code, signal] = await exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(10_000);
  }, 30_000);
});
