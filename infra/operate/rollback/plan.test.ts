import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { formatTable, intFlag, parseFlags } from '../cli.js';
import { chooseStack, REPO_DIR } from '../stack.js';
import { changeFromFlags, editStackText, planRollback, pulumiConfigSetArgv } from './plan.js';

const localText = readFileSync(`${REPO_DIR}/Pulumi.local.yaml`, 'utf8');

describe('planRollback', () => {
  it('gateway -> backend drains the gateway and flags desync risk with 4 workers', () => {
    const p = planRollback({ wsRoute: 'gateway', backendWorkers: 4 }, { wsRoute: 'backend', backendWorkers: 4 });
    expect(p.steps).toEqual(['record', 'render', 'validate', 'swap', 'reload', 'drain', 'verify', 'persist']);
    expect(p.drain).toBe('gateway');
    expect(p.restartBackend).toBe(false);
    expect(p.desyncRisk).toBe(true);
  });
  it('workers only restarts the backend without a drain', () => {
    const p = planRollback({ wsRoute: 'backend', backendWorkers: 4 }, { wsRoute: 'backend', backendWorkers: 1 });
    expect(p.steps).toEqual(['record', 'render', 'validate', 'swap', 'reload', 'restart backend', 'verify', 'persist']);
    expect(p.drain).toBeUndefined();
    expect(p.desyncRisk).toBe(false);
  });
  it('backend -> gateway drains the backend route; with a worker change the restart does it', () => {
    expect(planRollback({ wsRoute: 'backend', backendWorkers: 4 }, { wsRoute: 'gateway', backendWorkers: 4 }).drain).toBe('backend');
    const both = planRollback({ wsRoute: 'backend', backendWorkers: 1 }, { wsRoute: 'gateway', backendWorkers: 4 });
    expect(both.drain).toBeUndefined();
    expect(both.steps).toEqual(['record', 'render', 'validate', 'swap', 'reload', 'restart backend', 'verify', 'persist']);
  });
  it('gateway -> backend with fewer workers restarts the backend before moving /ws/, so /ws/ never meets 4 workers', () => {
    const p = planRollback({ wsRoute: 'gateway', backendWorkers: 4 }, { wsRoute: 'backend', backendWorkers: 1 });
    expect(p.steps).toEqual(['record', 'restart backend', 'render', 'validate', 'swap', 'reload', 'drain', 'verify', 'persist']);
    expect(p.workersFirst).toBe(true);
    expect(p.drain).toBe('gateway');
    expect(p.desyncRisk).toBe(false);
  });
});

describe('editStackText', () => {
  it('changes only the knobs and keeps comments and layout', () => {
    const out = editStackText(localText, { wsRoute: 'backend', backendWorkers: 1 });
    expect(out).toMatch(/replyx:wsRoute: backend/);
    expect(out).toMatch(/replyx:backend:\n {4}workers: 1\n {4}port: 8000/);
    expect(out.split('\n').filter((l) => l.trim().startsWith('#'))).toEqual(localText.split('\n').filter((l) => l.trim().startsWith('#')));
    const diff = out.split('\n').filter((l, i) => l !== localText.split('\n')[i]);
    expect(diff).toEqual(['  replyx:wsRoute: backend', '    workers: 1']);
  });
  it('adds keys that are absent', () => {
    const out = editStackText('config:\n  replyx:target: local # the target\n', { wsRoute: 'backend', backendWorkers: 2 });
    expect(out).toContain('# the target');
    expect(out).toMatch(/replyx:wsRoute: backend/);
    expect(out).toMatch(/replyx:backend:\n {4}workers: 2/);
  });
  it('refuses a stack file whose replyx:backend is not a mapping, or invalid YAML', () => {
    expect(() => editStackText('config:\n  replyx:backend: 3\n', { backendWorkers: 1 })).toThrow(/not a mapping/);
    expect(() => editStackText('config: [\n', { wsRoute: 'backend' })).toThrow(/RPX_STACK_FILE_YAML|YAML|line/);
  });
});

describe('flags', () => {
  it('turns flags into a change or undo, refusing contradictions', () => {
    expect(changeFromFlags({ wsTo: 'backend' })).toEqual({ wsRoute: 'backend' });
    expect(changeFromFlags({ wsTo: 'gateway', backendWorkers: 1 })).toEqual({ wsRoute: 'gateway', backendWorkers: 1 });
    expect(changeFromFlags({ undo: true })).toBe('undo');
    expect(() => changeFromFlags({ undo: true, wsTo: 'backend' })).toThrow(/cannot be combined/);
    expect(() => changeFromFlags({ wsTo: 'nginx' })).toThrow(/backend or gateway/);
    expect(() => changeFromFlags({})).toThrow(/nothing to do/);
  });
  it('parses strictly: unknown flags and stray arguments are usage errors', () => {
    expect(() => parseFlags(['--frobnicate'], {}, 'check')).toThrow(/unknown option '--frobnicate'/);
    expect(() => parseFlags(['extra'], {}, 'check')).toThrow(/unexpected argument "extra"/);
    expect(parseFlags(['--json', '--target', 'docker'], {}, 'check')).toMatchObject({ json: true, target: 'docker' });
    expect(() => intFlag('0', 'backend-workers', 'rollback', 1, 64)).toThrow(/from 1 to 64/);
    expect(() => intFlag('2x', 'watch', 'health')).toThrow(/integer/);
    expect(intFlag('3', 'watch', 'health')).toBe(3);
  });
  it('chooses the stack by target', () => {
    expect(chooseStack({})).toEqual({ stack: 'local' });
    expect(chooseStack({ target: 'docker' })).toEqual({ target: 'docker', stack: 'dev' });
    expect(chooseStack({ target: 'aws', stack: 'prod' })).toEqual({ target: 'aws', stack: 'prod' });
    expect(() => chooseStack({ target: 'k8s' })).toThrow(/local, docker or aws/);
    expect(() => chooseStack({ stack: '../etc' })).toThrow(/stack name/);
  });
  it('builds pulumi config set argv arrays', () => {
    expect(pulumiConfigSetArgv('dev', { wsRoute: 'backend', backendWorkers: 1 })).toEqual([
      ['pulumi', 'config', 'set', '--stack', 'dev', 'replyx:wsRoute', '--', 'backend'],
      ['pulumi', 'config', 'set', '--stack', 'dev', '--path', 'replyx:backend.workers', '--', '1'],
    ]);
  });
  it('formats aligned tables', () => {
    expect(formatTable(['a', 'bb'], [['xyz', '1']])).toBe('a    bb\n---  --\nxyz  1');
  });
});
