import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateTopology, type Target, type WsRoute } from '../topology/index.js';
import { testNginxConfig } from '../targets/local/processes.js';
import { renderNginxConfig, type NginxRenderOptions } from './nginx.js';

// Every rendered variant must pass the real `nginx -t`. Upstream hosts are 127.0.0.1 so the
// check does not depend on Docker or AWS DNS; docker/aws renders put their pid/log/temp paths
// in the temp prefix (prefixDir) so the check writes nothing outside it. What this cannot cover
// is the `resolve` parameter on docker/aws upstream names: it needs nginx >= 1.27.3 (the image),
// while the host has 1.22. The text tests pin that line instead.

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'replyx-nginx-t-'));
  // When we are root, nginx workers run as an unprivileged user and must be able to enter it.
  await chmod(root, 0o755);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function check(label: string, config: string): Promise<string> {
  const dir = path.join(root, label);
  const configFile = path.join(dir, 'nginx.conf');
  await mkdir(dir, { recursive: true });
  await writeFile(configFile, config);
  await testNginxConfig(configFile, dir);
  return dir;
}

const loopback = { backend: '127.0.0.1', gateway: '127.0.0.1' } as const;

describe('real nginx -t', () => {
  const cases: [Target, WsRoute][] = (['docker', 'aws', 'local'] as const).flatMap((t) => (['gateway', 'backend'] as const).map((r) => [t, r] as [Target, WsRoute]));

  it.each(cases)('accepts the %s config with ws -> %s', async (target, wsRoute) => {
    const { topology } = validateTopology({ target, wsRoute });
    const options: NginxRenderOptions = { upstreamHosts: loopback, ...(target === 'local' ? {} : { prefixDir: path.join(root, `${target}-${wsRoute}`) }) };
    const dir = await check(`${target}-${wsRoute}`, renderNginxConfig(topology, target, options));
    // The temp dirs nginx created are the ones the config named, inside the prefix.
    expect((await readdir(dir)).sort()).toEqual(['client_body_temp', 'fastcgi_temp', 'logs', 'nginx.conf', 'proxy_temp', 'scgi_temp', 'uwsgi_temp']);
  });

  it('accepts the local config rendered with an absolute prefixDir', async () => {
    const { topology } = validateTopology({ target: 'local' });
    const dir = path.join(root, 'local-absolute');
    await check('local-absolute', renderNginxConfig(topology, 'local', { prefixDir: dir }));
  });

  it('accepts non-default values (custom name, ports, timeouts, sizes, proxies)', async () => {
    const { topology } = validateTopology({
      name: 'chat',
      backend: { port: 9100 },
      gateway: { port: 9101 },
      nginx: { port: 9080, proxyReadTimeoutS: 3600, workerShutdownTimeoutS: 1, workerConnections: 64, clientMaxBodySize: '512k' },
    });
    const dir = path.join(root, 'custom');
    await check('custom', renderNginxConfig(topology, 'aws', { upstreamHosts: { backend: '127.0.0.1', gateway: '::1' }, prefixDir: dir, trustedProxyCidrs: ['10.20.0.0/16', '2001:db8::/32'], backendKeepalive: 4 }));
  });

  it('rejects a broken config, so the checks above can fail', async () => {
    const { topology } = validateTopology({ target: 'local' });
    const broken = renderNginxConfig(topology, 'local').replace('proxy_buffering off;', 'proxy_buffering sometimes;');
    await expect(check('broken', broken)).rejects.toMatchObject({ code: 'RPX_NGINX_CONFIG_INVALID' });
  });
});
