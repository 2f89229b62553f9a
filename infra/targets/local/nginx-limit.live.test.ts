import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOpenFileLimits } from '../../../gateway/src/limits/open-files.js';
import type { CheckReport } from '../../operate/check.js';
import { runCheck } from '../../operate/check.js';
import { resolveContext } from '../../operate/stack.js';
import { startOperatorTestStack, type OperatorTestStack } from '../../../test/operator-stack.js';
import { REPO_DIR } from './local-stack.js';
import { readPid } from './supervisor.js';

// worker_rlimit_nofile is capped at the hard open-file limit of the nginx master that loads the
// config. A check, apply or restart run from a shell with another `ulimit -Hn` than the one that
// started nginx must render what the running master can take: no drift for the check, nothing
// to change for apply, and a restarted master gets a config for the limit it inherits. The
// scripts run as children under a lowered limit (`ulimit -n` in bash sets soft and hard).

const own = readOpenFileLimits()?.hard;
// Below this process's hard limit, and both below what worker_connections wants (2 x 16,384).
const LOWER = 4096;
const WORKER_CONNECTIONS = 16_384;

let stack: OperatorTestStack;
beforeAll(async () => {
  stack = await startOperatorTestStack((doc) => doc.setIn(['config', 'replyx:nginx', 'workerConnections'], WORKER_CONNECTIONS));
}, 180_000);
afterAll(async () => {
  await stack?.stop();
});

const nginxSpec = () => stack.handle.plan.services.find((s) => s.name === 'nginx')!;
const masterPid = async () => (await readPid(nginxSpec().pidFile))!;
const rlimitIn = (text: string) => Number(/\nworker_rlimit_nofile (\d+);\n/.exec(text)?.[1]);
const runningConfig = () => readFile(stack.handle.plan.nginxConfigFile, 'utf8');

/** Runs scripts/<script> as a child whose open-file limit (soft and hard) is `limit`. */
async function runUnderLimit(limit: number, script: string, args: readonly string[]) {
  const r = await execa('bash', ['-c', 'ulimit -n "$1" && shift && exec "$@"', 'bash', String(limit), process.execPath, '--import', 'tsx', `scripts/${script}`, ...args], {
    cwd: REPO_DIR,
    env: { FORCE_COLOR: '0' },
    reject: false,
    stdin: 'ignore',
    timeout: 180_000,
  });
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

const drift = (report: CheckReport) => report.results.find((r) => r.id === 'running-config-drift');
const failed = (report: CheckReport) => report.results.filter((r) => r.status === 'fail').map((r) => `${r.id}: ${r.detail}`);
const checkHere = async () => runCheck(await resolveContext({ stack: 'local', 'project-dir': stack.projectDir, 'state-dir': stack.stateDir }), { selector: [] });

describe('local nginx open-file limit: rendered for the master that runs', () => {
  it('this process has a finite hard limit above the lowered one and below what worker_connections wants', () => {
    expect(own).toBeDefined();
    expect(own!).toBeGreaterThan(LOWER);
    expect(own!).toBeLessThan(2 * WORKER_CONNECTIONS);
  });

  it('a check and an apply run under a lower ulimit -Hn see no drift and change nothing', async () => {
    const pid = await masterPid();
    expect(readOpenFileLimits(pid)?.hard).toBe(own);
    const before = await runningConfig();
    expect(rlimitIn(before)).toBe(own);

    const t0 = Date.now();
    const check = await runUnderLimit(LOWER, 'check-architecture.ts', ['--json', ...stack.flags]);
    const report = JSON.parse(check.stdout) as CheckReport;
    console.log(`[nginx-limit] check under ulimit -n ${LOWER}: exit ${check.code} in ${Date.now() - t0} ms; drift row: ${drift(report)?.status} (${drift(report)?.detail})`);
    expect(drift(report)?.status, drift(report)?.detail).toBe('pass');
    expect(failed(report)).toEqual([]);

    const t1 = Date.now();
    const apply = await runUnderLimit(LOWER, 'stack.ts', ['apply', ...stack.flags]);
    console.log(`[nginx-limit] apply under ulimit -n ${LOWER}: exit ${apply.code} in ${Date.now() - t1} ms`);
    expect(apply.code, `${apply.stdout}\n${apply.stderr}`).toBe(0);
    expect(apply.stdout).not.toMatch(/nginx +config re-rendered|nginx reloaded|nginx started/);
    expect(await runningConfig()).toBe(before);
    expect(await masterPid()).toBe(pid);
  }, 300_000);

  it('nginx restarted from a shell with a lower limit gets a config within it, and a check from this shell sees no drift', async () => {
    const old = await masterPid();
    const errorLog = path.join(stack.handle.plan.nginxPrefixDir, 'logs', 'error.log');
    const logBefore = (await readFile(errorLog, 'utf8').catch(() => '')).length;
    const t0 = Date.now();
    const restart = await runUnderLimit(LOWER, 'stack.ts', ['restart', 'nginx', ...stack.flags]);
    console.log(`[nginx-limit] restart nginx under ulimit -n ${LOWER}: exit ${restart.code} in ${Date.now() - t0} ms`);
    expect(restart.code, `${restart.stdout}\n${restart.stderr}`).toBe(0);
    const pid = await masterPid();
    expect(pid).not.toBe(old);
    expect(readOpenFileLimits(pid)?.hard).toBe(LOWER);
    expect(rlimitIn(await runningConfig())).toBe(LOWER);
    // Asked for no more than the master got: no setrlimit alert on start.
    expect((await readFile(errorLog, 'utf8')).slice(logBefore)).not.toMatch(/setrlimit|RLIMIT_NOFILE/);

    const t1 = Date.now();
    const report = await checkHere();
    console.log(`[nginx-limit] check under ulimit -n ${own} against the master started under ${LOWER}: ${Date.now() - t1} ms; drift row: ${drift(report)?.status} (${drift(report)?.detail})`);
    expect(drift(report)?.status, drift(report)?.detail).toBe('pass');
    expect(failed(report)).toEqual([]);
  }, 300_000);
});
