import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { requireBinary } from '../local/processes.js';
import { renderNginxConfig } from '../../render/nginx.js';
import { validateTopology } from '../../topology/index.js';
import { planDockerStack } from './plan.js';
import { nginxConfigFileProvider, nginxConfigSha256, type NginxConfigFileInputs, type NginxConfigFileOutputs } from './nginx-config-file.js';

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '../../..');

// The Docker daemon is an external boundary: a fake `docker` CLI on PATH records every call
// (argv and DOCKER_HOST) and answers `container inspect` / `nginx -t` as the test sets it up.
const FAKE_DOCKER = `#!/bin/sh
printf '%s\\n' "DOCKER_HOST=\${DOCKER_HOST:-} $*" >> "$FAKE_DOCKER_LOG"
if [ "$1" = container ] && [ "$2" = inspect ]; then
  if [ "$FAKE_DOCKER_STATE" = missing ]; then echo "Error: No such container: $5" >&2; exit 1; fi
  echo "$FAKE_DOCKER_STATE"; exit 0
fi
if [ "$1" = exec ] && [ "$3" = nginx ] && [ "$4" = -t ]; then
  cat "$FAKE_CONFIG_FILE" > "$FAKE_DOCKER_LOG.checked"
  if [ "$FAKE_NGINX_T" = fail ]; then echo 'nginx: [emerg] unknown directive "bogus" in /etc/nginx/replyx/nginx.conf:3' >&2; exit 1; fi
  exit 0
fi
if [ "$1" = exec ] && [ "$5" = reload ] || [ "$7" = reload ]; then exit "\${FAKE_RELOAD_EXIT:-0}"; fi
exit 0
`;

let dir: string;
let log: string;
let file: string;
const saved = { ...process.env };

const inputs = (content: string, extra: Partial<NginxConfigFileInputs> = {}): NginxConfigFileInputs => ({
  file,
  content,
  container: 'replyx-nginx',
  containerFile: '/etc/nginx/replyx/nginx.conf',
  dockerHost: '',
  ...extra,
});
const calls = async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-nginx-file-'));
  await writeFile(path.join(dir, 'docker'), FAKE_DOCKER);
  await chmod(path.join(dir, 'docker'), 0o755);
});

afterAll(async () => {
  process.env = saved;
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
beforeEach(async () => {
  n += 1;
  log = path.join(dir, `calls-${n}.log`);
  file = path.join(dir, `state-${n}`, 'nginx', 'nginx.conf');
  process.env = {
    ...saved,
    PATH: `${dir}${path.delimiter}${saved.PATH ?? ''}`,
    FAKE_DOCKER_LOG: log,
    FAKE_DOCKER_STATE: 'true',
    FAKE_CONFIG_FILE: file,
    FAKE_NGINX_T: 'ok',
  };
  delete process.env.DOCKER_HOST;
});

describe('nginx config file provider', () => {
  it('on first deploy writes the file (creating the state dir) and does not reload a container that does not exist yet', async () => {
    process.env.FAKE_DOCKER_STATE = 'missing';
    const result = await nginxConfigFileProvider.create!(inputs('events {}\n'));
    expect(result.id).toBe(file);
    expect(await readFile(file, 'utf8')).toBe('events {}\n');
    expect(((await stat(file)).mode & 0o777).toString(8)).toBe('644');
    expect(result.outs).toMatchObject({ reloaded: false, sha256: nginxConfigSha256('events {}\n'), content: 'events {}\n' });
    expect(await calls()).toEqual(['DOCKER_HOST= container inspect --format {{.State.Running}} replyx-nginx']);
  });

  it('does not reload a stopped container either (it reads the file when it starts)', async () => {
    process.env.FAKE_DOCKER_STATE = 'false';
    const result = await nginxConfigFileProvider.create!(inputs('a'));
    expect((result.outs as NginxConfigFileOutputs).reloaded).toBe(false);
    expect(await calls()).toHaveLength(1);
  });

  it('on a routing change validates the NEW file with nginx -t inside the container, then runs nginx -s reload', async () => {
    await nginxConfigFileProvider.create!(inputs('old'));
    const result = await nginxConfigFileProvider.update!(file, { ...inputs('old'), sha256: nginxConfigSha256('old'), reloaded: true }, inputs('new'));
    expect(await readFile(file, 'utf8')).toBe('new');
    expect(await readFile(`${log}.checked`, 'utf8')).toBe('new');
    expect(result.outs).toMatchObject({ reloaded: true, sha256: nginxConfigSha256('new') });
    expect((await calls()).slice(-3)).toEqual([
      'DOCKER_HOST= container inspect --format {{.State.Running}} replyx-nginx',
      'DOCKER_HOST= exec replyx-nginx nginx -t -q -c /etc/nginx/replyx/nginx.conf',
      'DOCKER_HOST= exec replyx-nginx nginx -c /etc/nginx/replyx/nginx.conf -s reload',
    ]);
  });

  it('restores the previous file and fails with nginx error when nginx -t rejects the new config, never reloading', async () => {
    process.env.FAKE_DOCKER_STATE = 'missing';
    await nginxConfigFileProvider.create!(inputs('good'));
    process.env.FAKE_DOCKER_STATE = 'true';
    process.env.FAKE_NGINX_T = 'fail';
    const before = (await calls()).length;
    await expect(nginxConfigFileProvider.update!(file, { ...inputs('good'), sha256: '', reloaded: false }, inputs('bogus;'))).rejects.toThrow(
      /RPX_NGINX_CONFIG_REJECTED: .*replyx-nginx.*previous file was restored.*unknown directive "bogus"/,
    );
    expect(await readFile(file, 'utf8')).toBe('good');
    const after = (await calls()).slice(before);
    expect(after.some((c) => c.includes('reload'))).toBe(false);
  });

  it('removes a rejected file that had no predecessor', async () => {
    process.env.FAKE_NGINX_T = 'fail';
    await expect(nginxConfigFileProvider.create!(inputs('bogus;'))).rejects.toThrow(/RPX_NGINX_CONFIG_REJECTED/);
    await expect(stat(file)).rejects.toThrow(/ENOENT/);
  });

  it('fails with a coded error when the reload itself fails', async () => {
    process.env.FAKE_RELOAD_EXIT = '1';
    await expect(nginxConfigFileProvider.create!(inputs('x'))).rejects.toThrow(/RPX_NGINX_RELOAD_FAILED: nginx -s reload in replyx-nginx failed/);
  });

  it('talks to the configured daemon (docker:host) through DOCKER_HOST', async () => {
    await nginxConfigFileProvider.create!(inputs('x', { dockerHost: 'tcp://10.0.0.5:2375' }));
    const all = await calls();
    expect(all.length).toBe(3);
    expect(all.every((c) => c.startsWith('DOCKER_HOST=tcp://10.0.0.5:2375 '))).toBe(true);
  });

  it('says what to do when the docker CLI is missing', async () => {
    process.env.PATH = path.join(dir, 'no-such-dir');
    await expect(nginxConfigFileProvider.create!(inputs('x'))).rejects.toThrow(/RPX_DOCKER_CLI_MISSING: .*run the Pulumi program on the Docker host/);
  });

  it('reports a change for new content or container and a replacement for a new path', async () => {
    const olds = { ...inputs('a'), sha256: nginxConfigSha256('a'), reloaded: false };
    expect(await nginxConfigFileProvider.diff!(file, olds, inputs('a'))).toEqual({ changes: false, replaces: [] });
    expect(await nginxConfigFileProvider.diff!(file, olds, inputs('b'))).toEqual({ changes: true, replaces: [] });
    expect(await nginxConfigFileProvider.diff!(file, olds, inputs('a', { container: 'other' }))).toEqual({ changes: true, replaces: [] });
    expect(await nginxConfigFileProvider.diff!(file, olds, inputs('a', { file: '/elsewhere/nginx.conf' }))).toEqual({ changes: true, replaces: ['file'] });
  });

  it('deletes only its file', async () => {
    process.env.FAKE_DOCKER_STATE = 'missing';
    await nginxConfigFileProvider.create!(inputs('x'));
    await writeFile(path.join(path.dirname(file), 'other'), 'keep');
    await nginxConfigFileProvider.delete!(file, { ...inputs('x'), sha256: '', reloaded: false });
    await expect(stat(file)).rejects.toThrow(/ENOENT/);
    expect(await readFile(path.join(path.dirname(file), 'other'), 'utf8')).toBe('keep');
  });
});

describe('nginx config file provider under Pulumi serialization', () => {
  it('serializes under tsx and runs in a plain Node process like the dynamic-provider host', async () => {
    const serialized = path.join(dir, 'provider.js');
    const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(REPO, 'test/pulumi/serialize-nginx-provider.ts'), serialized], {
      cwd: REPO,
      env: saved,
    });
    expect(JSON.parse(stdout)).toMatchObject({ exportName: 'handler' });
    // What the host does: require-from-string(text).handler(), here in a process without tsx.
    const host = path.join(dir, 'host.cjs');
    await writeFile(
      host,
      [
        "const { createRequire } = require('node:module');",
        `const requireFromRepo = createRequire(${JSON.stringify(path.join(REPO, 'node_modules/@pulumi/pulumi/package.json'))});`,
        "const requireFromString = requireFromRepo('require-from-string');",
        "const text = require('node:fs').readFileSync(process.argv[2], 'utf8');",
        'const provider = requireFromString(text).handler();',
        'provider.create(JSON.parse(process.argv[3])).then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.message); process.exit(1); });',
      ].join('\n'),
    );
    process.env.FAKE_DOCKER_STATE = 'true';
    const result = await run(process.execPath, [host, serialized, JSON.stringify(inputs('from the host\n'))], { env: process.env });
    expect(JSON.parse(result.stdout)).toMatchObject({ id: file, outs: { reloaded: true, sha256: nginxConfigSha256('from the host\n') } });
    expect(await readFile(file, 'utf8')).toBe('from the host\n');
    expect((await calls()).slice(-1)[0]).toBe('DOCKER_HOST= exec replyx-nginx nginx -c /etc/nginx/replyx/nginx.conf -s reload');
  }, 120_000);
});

describe('nginx container command with the rendered docker config (real nginx)', () => {
  it('is accepted by nginx -t: the config has no daemon directive of its own and needs nothing beside it', async () => {
    const nginx = requireBinary('nginx');
    const topology = validateTopology({ target: 'docker', wsRoute: 'gateway' }).topology;
    const prefix = path.join(dir, 'nginx-prefix');
    const plan = planDockerStack(topology, { stateDir: path.join(dir, 'nginx-state') });
    // The docker render with loopback upstreams (so this host resolves them) and temp paths, in
    // the config directory alone, exactly as the container sees its mounted directory.
    const text = renderNginxConfig(topology, 'docker', { upstreamHosts: { backend: '127.0.0.1', gateway: '127.0.0.1' }, prefixDir: prefix });
    process.env.FAKE_DOCKER_STATE = 'missing';
    await nginxConfigFileProvider.create!(inputs(text, { file: plan.nginxConfig.hostFile }));
    const command = plan.containers.find((c) => c.service === 'nginx')!.command!;
    const args = command.slice(1).map((a) => (a === plan.nginxConfig.containerFile ? plan.nginxConfig.hostFile : a));
    await run('mkdir', ['-p', path.join(prefix, 'logs')]);
    const result = await run(nginx, ['-t', '-p', prefix, ...args]);
    expect(result.stderr).toMatch(/syntax is ok/);
  });
});
