import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixCommands } from '../infra/operate/check.js';
import { renderNginxConfig } from '../infra/render/nginx.js';
import { applyFix, evaluateLiveRules, evaluateRunningConfigRules, evaluateStaticRules, restartFix, RULES, type RuleResult } from '../infra/rules/index.js';
import { validateTopology, type Target } from '../infra/topology/index.js';
import { runOperatorScript } from '../test/live-clients.js';
import { formatCheckReport } from './check-architecture.js';
import { parseRollbackArgs } from './rollback.js';
import { parseStackArgs } from './stack.js';

// Every command a check prints as a fix is complete for the stack it checked and parses with
// the CLI that runs it: the stack CLI, the rollback CLI, or `pulumi up --stack NAME`.

const SELECTOR = ['--project-dir', '/srv/replyx', '--state-dir', '/srv/replyx/.stack/ops'];
const ok = <T>(value: T) => ({ ok: true as const, value });
const bad = (error: string) => ({ ok: false as const, error });

/** Every fix the check can print for a stack of this target: each rule's fix and probe fix, and the fixes rows compute. */
function everyFix(target: Target): string[] {
  const topology = validateTopology({ target, ...(target === 'aws' ? {} : {}) }, 'test').topology;
  const ctx = { topology, stack: 'ops', selector: target === 'local' ? SELECTOR : [] };
  const fixes = RULES.flatMap((r) => [r.fix(ctx), r.probeFix?.(ctx)]).filter((f): f is string => f !== undefined);
  fixes.push(applyFix(ctx), ...(['nginx', 'backend', 'gateway', 'redis', 'postgres'] as const).map((s) => restartFix(ctx, s)));
  // Rows judged on a broken live state and a drifted running config carry computed fixes too.
  const rendered = renderNginxConfig(topology, target === 'aws' ? 'docker' : target);
  const staticRows = evaluateStaticRules({ topology, nginxConfig: rendered }, ctx);
  const running = evaluateRunningConfigRules(topology, { text: rendered.replace(/proxy_buffering off;/, 'proxy_buffering on;'), source: 'test' }, staticRows, ctx);
  const live = evaluateLiveRules(
    topology,
    { processes: ok([{ service: 'gateway', running: false, listening: false }]), wsFirstFrame: bad('handshake answered HTTP 502'), redis: bad('ECONNREFUSED'), logs: ok([{ file: 'x', lines: ['GET /?token=abcdefghijkl'] }]) },
    { ...ctx, runningNginx: running },
  );
  return [...fixes, ...[...staticRows, ...running, ...live].map((r: RuleResult) => r.fix)].filter((f) => f !== '');
}

describe('printed fixes', () => {
  it.each(['local', 'docker', 'aws'] as const)('%s: every command names the stack and parses with its CLI', (target) => {
    const commands = everyFix(target).flatMap(fixCommands);
    expect(commands.length).toBeGreaterThan(10);
    for (const argv of commands) {
      const text = argv.join(' ');
      expect(text).toMatch(/--stack ops/);
      if (argv[0] === 'pulumi') {
        expect(argv, text).toEqual(['pulumi', 'up', '--stack', 'ops']);
        expect(target).not.toBe('local');
        continue;
      }
      expect(argv.slice(0, 2), text).toEqual(['npm', 'run']);
      expect(argv[3], text).toBe('--');
      const args = argv.slice(4);
      if (target === 'local') expect(text).toContain(SELECTOR.join(' '));
      if (argv[2] === 'stack') {
        expect(target, `${text}: the stack CLI only runs local stacks`).toBe('local');
        expect(() => parseStackArgs(args), text).not.toThrow();
      } else if (argv[2] === 'rollback') {
        expect(parseRollbackArgs(args).change, text).toBeDefined();
      } else {
        throw new Error(`unknown command in a fix: ${text}`);
      }
    }
  });

  it('restart takes the canonical service name and the alias', () => {
    expect(parseStackArgs(['restart', 'gateway', '--stack', 'ops']).positionals).toEqual(['gateway']);
    expect(() => parseStackArgs(['restart', 'ws-gateway'])).not.toThrow();
    expect(() => parseStackArgs(['restart', 'gatewy'])).toThrow(/unknown service "gatewy"/);
    expect(() => parseStackArgs(['apply', '--bogus'])).toThrow(/--bogus/);
  });

  it('set takes KEY VALUE pairs', () => {
    expect(parseStackArgs(['set', 'wsRoute', 'backend', 'backend.workers', '1']).positionals).toEqual(['wsRoute', 'backend', 'backend.workers', '1']);
    expect(() => parseStackArgs(['set', 'wsRoute'])).toThrow(/KEY VALUE pairs/);
    expect(() => parseStackArgs(['set'])).toThrow(/KEY VALUE pairs/);
  });

  it('the text report prints every fix whole, below the table', () => {
    const long = `npm run stack -- apply --stack ops ${'--project-dir /a/very/long/path/'.repeat(4)}`;
    const results: RuleResult[] = [{ id: 'ws-read-timeout', kind: 'static', against: 'running', status: 'fail', detail: 'x'.repeat(150), fix: long }];
    const text = formatCheckReport({ target: 'local', stack: 'ops', ok: false, results });
    expect(text.split('\n')[0]).toMatch(/^rule\s+against\s+status\s+detail$/);
    expect(text).toContain(`ws-read-timeout (running): ${long}`);
    expect(text).toContain('x'.repeat(150));
    expect(text).not.toContain('…');
  });

  it('--json prints JSON on stdout for an invalid stack file too', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-check-json-'));
    try {
      await writeFile(path.join(dir, 'Pulumi.local.yaml'), 'config:\n  replyx:target: local\n  replyx:backend:\n    workers: 0\n');
      const r = await runOperatorScript('check-architecture.ts', ['--json', '--project-dir', dir, '--stack', 'local']);
      expect(r.code).toBe(1);
      const report = JSON.parse(r.stdout) as { ok: boolean; error: { code: string; details: string[] } };
      expect(report.ok).toBe(false);
      expect(report.error.code).toBe('RPX_TOPOLOGY_INVALID');
      expect(report.error.details.join('\n')).toMatch(/backend\.workers/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
