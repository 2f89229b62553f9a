import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_DIR } from '../infra/operate/stack.js';
import { startOperatorTestStack, type OperatorTestStack } from '../test/operator-stack.js';

// Runbooks are executable documentation: every command in a ```bash local fence runs, in
// order, against a real local stack (free ports, temp dirs), so a stale command, path or flag
// fails CI. Static tests check each runbook's structure and the seed's log greps.

const DIR = path.dirname(fileURLToPath(import.meta.url));
const RUNBOOKS = ['deploy', 'rollback', 'ws-desync', 'ws-gateway-down', 'domain-4003', 'redis-outage', 'load-test'] as const;
const SECTIONS = ['Symptoms', 'Diagnosis', 'Decision', 'Action', 'Verification', 'Escalation'];

/** The commands of every fence whose info string is `bash <kind>`, continuation lines joined. */
function fencedCommands(markdown: string, kind: string): string[] {
  const out: string[] = [];
  const re = /^```bash[ \t]+(\S+)[ \t]*\n([\s\S]*?)^```/gm;
  for (const m of markdown.matchAll(re)) {
    if (m[1] !== kind) continue;
    let pending = '';
    for (const raw of m[2]!.split('\n')) {
      const line = raw.trimEnd();
      if (pending === '' && (line.trim() === '' || line.trim().startsWith('#'))) continue;
      if (line.endsWith('\\')) {
        pending += `${line.slice(0, -1)} `;
        continue;
      }
      out.push(`${pending}${line}`.trim());
      pending = '';
    }
  }
  return out;
}

const text = (name: string) => readFileSync(path.join(DIR, `${name}.md`), 'utf8');

describe('runbooks (static)', () => {
  it('covers every required runbook and nothing unexpected', () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.md') && f !== 'README.md').map((f) => f.replace(/\.md$/, ''));
    expect(files.sort()).toEqual([...RUNBOOKS].sort());
  });

  it.each(RUNBOOKS)('%s has every section, local and docker commands', (name) => {
    const md = text(name);
    const headings = [...md.matchAll(/^## (.+)$/gm)].map((m) => m[1]!);
    for (const s of SECTIONS) expect(headings, `${name}: ## ${s}`).toContain(s);
    expect(fencedCommands(md, 'local').length, `${name}: bash local commands`).toBeGreaterThan(0);
    expect(fencedCommands(md, 'docker').length, `${name}: bash docker commands`).toBeGreaterThan(0);
    for (const cmd of fencedCommands(md, 'docker')) expect(cmd).not.toMatch(/REPLYX_STATE_DIR/);
  });

  it("carries the seed's greps for Docker and for the local stack", () => {
    const all = RUNBOOKS.map(text).join('\n');
    const local = RUNBOOKS.flatMap((n) => fencedCommands(text(n), 'local')).join('\n');
    const docker = RUNBOOKS.flatMap((n) => fencedCommands(text(n), 'docker')).join('\n');
    for (const grep of ['grep -E "\\[Site\\]|\\[Widget\\]|\\[Admin\\]"', 'grep "Broadcasting message"', 'grep "WEBSOCKET_4003_ERROR"']) {
      expect(local, grep).toContain(grep);
      expect(docker, grep).toContain(grep);
    }
    expect(docker).toContain('docker logs replyx-ws-gateway');
    expect(all).toContain('npm run rollback -- --undo');
  });

  it('extracts commands from marked fences only, joining continuations', () => {
    const md = '```bash local\n# comment\nnpm run check \\\n  --static-only\n\n```\n```bash docker\ndocker ps\n```\n```bash\nnpm start\n```\n';
    expect(fencedCommands(md, 'local')).toEqual(['npm run check    --static-only']);
    expect(fencedCommands(md, 'docker')).toEqual(['docker ps']);
  });
});

describe('runbooks (live: every `bash local` command against a running local stack)', () => {
  let stack: OperatorTestStack;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    stack = await startOperatorTestStack();
    const p = stack.handle.ports;
    env = {
      ...process.env,
      FORCE_COLOR: '0',
      REPLYX_PROJECT_DIR: stack.projectDir,
      REPLYX_STATE_DIR: stack.stateDir,
      REPLYX_NGINX_PORT: String(p.nginx),
      REPLYX_BACKEND_PORT: String(p.backend),
      REPLYX_GATEWAY_PORT: String(p.gateway),
      REPLYX_REDIS_PORT: String(p.redis),
      REPLYX_POSTGRES_PORT: String(p.postgres),
    };
  }, 240_000);

  afterAll(async () => {
    await stack?.stop();
  }, 120_000);

  // The runbook line is what an operator types into bash; run it the same way.
  const run = async (command: string) => {
    const r = await execa('bash', ['-c', command], { cwd: REPO_DIR, env, extendEnv: false, timeout: 120_000, maxBuffer: 8 * 1024 * 1024, reject: false, stdin: 'ignore' });
    return { code: r.exitCode ?? 1, out: r.stdout, err: r.stderr };
  };

  it.each(RUNBOOKS)('%s: every local command runs', async (name) => {
    for (const command of fencedCommands(text(name), 'local')) {
      const r = await run(command);
      const where = `${name}.md: ${command}\n${r.out.slice(-600)}\n${r.err.slice(-600)}`;
      expect(r.code, where).toBe(0);
      // A stale path or binary name shows up on stderr even when `|| true`/`| tail` hide the exit code.
      expect(r.err, where).not.toMatch(/No such file or directory|command not found|Unknown option|unknown option|RPX_USAGE/);
    }
  }, 900_000);
});
