import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { processTreeCpuTicks, waitWhileProgressing } from './supervisor.js';

// The start wait of the local supervisor: a service still working gets more time than its ready
// timeout; one that makes no progress fails after the timeout alone. Real processes.

const children: ReturnType<typeof spawn>[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function run(script: string) {
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  children.push(child);
  return child;
}

const logFile = path.join(os.tmpdir(), `replyx-start-wait-${process.pid}.log`);

describe('waitWhileProgressing', () => {
  it('keeps waiting past the stall time while the process uses CPU', async () => {
    const busy = run('const end = Date.now() + 10000; while (Date.now() < end) {}');
    const t0 = Date.now();
    const ready = await waitWhileProgressing(async () => Date.now() - t0 > 1500, { pid: busy.pid!, logFile, stallMs: 600, capMs: 10_000, exited: () => busy.exitCode !== null });
    expect(ready).toBe(true);
    expect(await processTreeCpuTicks(busy.pid!)).toBeGreaterThan(0);
  });

  it('gives up after the stall time when the process does nothing', async () => {
    const idle = run('setTimeout(() => {}, 10000)');
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const ready = await waitWhileProgressing(async () => false, { pid: idle.pid!, logFile, stallMs: 600, capMs: 10_000, exited: () => idle.exitCode !== null });
    expect(ready).toBe(false);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('gives up at the cap even while the process works, and at once when it exits', async () => {
    const busy = run('const end = Date.now() + 10000; while (Date.now() < end) {}');
    const t0 = Date.now();
    expect(await waitWhileProgressing(async () => false, { pid: busy.pid!, logFile, stallMs: 5000, capMs: 800, exited: () => false })).toBe(false);
    expect(Date.now() - t0).toBeLessThan(3000);
    const gone = run('process.exit(0)');
    await new Promise((r) => gone.on('exit', r));
    expect(await waitWhileProgressing(async () => false, { pid: gone.pid!, logFile, stallMs: 5000, capMs: 5000, exited: () => true })).toBe(false);
  });
});
