// How a routing change reaches a running nginx without replacing its container.
//
// The nginx container bind-mounts a host DIRECTORY (not a single file: Docker pins a single-file
// bind mount to the inode, so an atomic rename on the host would never be seen inside). This
// dynamic resource owns the config file in that directory: it writes the rendered text
// atomically (temp file + rename) and, when the nginx container is already running, checks the
// new file with `nginx -t` inside the container and applies it with `nginx -s reload`, both via
// the docker CLI (argv, no shell). If `nginx -t` fails, the previous file is put back, so a later
// container restart still starts with a config that worked, and the update fails with the
// nginx error. The container's own spec never mentions the text, so only this resource changes.
//
// The provider below is serialized by Pulumi and runs in Pulumi's dynamic-provider host, a plain
// CommonJS Node process without tsx. So it only captures Node built-in modules imported as
// default imports (which the serializer turns into `require("fs")`), and plain functions.
// infra/targets/docker/nginx-config-file.test.ts checks that round trip.
//
// Requirement: the program runs on the Docker host (or on a machine that shares the state
// directory's path with it) and has the docker CLI; DOCKER_HOST (or the `docker:host` config,
// passed in as `dockerHost`) selects the daemon for both the provider and this resource.

import * as pulumi from '@pulumi/pulumi';
import childProcess from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** What the provider receives: the file to own, its text, and the container to reload. */
export interface NginxConfigFileInputs {
  /** Absolute path on the Docker host of the file nginx reads through the bind mount. */
  readonly file: string;
  /** The rendered nginx config. */
  readonly content: string;
  /** Name of the nginx container to validate and reload in. */
  readonly container: string;
  /** Path of the same file inside the container (what `nginx -c` is given). */
  readonly containerFile: string;
  /** Docker daemon address for the docker CLI; empty means the CLI's default (DOCKER_HOST). */
  readonly dockerHost: string;
}

/** What the resource records after an apply. */
export interface NginxConfigFileOutputs extends NginxConfigFileInputs {
  /** sha256 of the content written. */
  readonly sha256: string;
  /** True when the last apply reloaded a running nginx; false when nginx was not running yet. */
  readonly reloaded: boolean;
}

/** Result of one docker CLI call. */
interface DockerRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function runDocker(dockerHost: string, args: readonly string[]): Promise<DockerRun> {
  const env = dockerHost ? { ...process.env, DOCKER_HOST: dockerHost } : process.env;
  return new Promise((resolve, reject) => {
    childProcess.execFile('docker', [...args], { env, timeout: 60_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(
          new Error(
            'RPX_DOCKER_CLI_MISSING: the docker CLI is not on PATH — run the Pulumi program on the Docker host with the docker CLI installed (it reloads nginx with `docker exec`)',
          ),
        );
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function writeAtomically(file: string, content: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  // Readable by nginx workers whatever user they run as inside the container.
  fs.writeFileSync(temp, content, { mode: 0o644 });
  fs.renameSync(temp, file);
}

function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Writes the config and, when the nginx container is running, validates it there and reloads.
 * Shared by create and update so that a lost state (container running, resource new) still
 * reloads.
 */
async function applyNginxConfig(inputs: NginxConfigFileInputs): Promise<NginxConfigFileOutputs> {
  const previous = readIfExists(inputs.file);
  writeAtomically(inputs.file, inputs.content);
  const sha256 = crypto.createHash('sha256').update(inputs.content).digest('hex');
  const state = await runDocker(inputs.dockerHost, ['container', 'inspect', '--format', '{{.State.Running}}', inputs.container]);
  if (state.code !== 0 || state.stdout.trim() !== 'true') {
    // No running nginx yet (first deploy, or stopped): it reads the file when it starts.
    return { ...inputs, sha256, reloaded: false };
  }
  const check = await runDocker(inputs.dockerHost, ['exec', inputs.container, 'nginx', '-t', '-q', '-c', inputs.containerFile]);
  if (check.code !== 0) {
    if (previous === undefined) fs.rmSync(inputs.file, { force: true });
    else writeAtomically(inputs.file, previous);
    throw new Error(
      `RPX_NGINX_CONFIG_REJECTED: nginx -t in ${inputs.container} rejected the new config (the previous file was restored): ${(check.stderr || check.stdout).trim()} — fix the topology or the nginx templates and run pulumi up again`,
    );
  }
  const reload = await runDocker(inputs.dockerHost, ['exec', inputs.container, 'nginx', '-c', inputs.containerFile, '-s', 'reload']);
  if (reload.code !== 0) {
    throw new Error(
      `RPX_NGINX_RELOAD_FAILED: nginx -s reload in ${inputs.container} failed: ${(reload.stderr || reload.stdout).trim()} — check the container with \`docker logs ${inputs.container}\` and run pulumi up again`,
    );
  }
  return { ...inputs, sha256, reloaded: true };
}

/** The dynamic provider: create/update write and reload, delete removes the file. */
export const nginxConfigFileProvider: pulumi.dynamic.ResourceProvider<NginxConfigFileInputs, NginxConfigFileOutputs> = {
  async create(inputs) {
    const outs = await applyNginxConfig(inputs);
    return { id: inputs.file, outs };
  },
  async diff(_id, olds, news) {
    const replaces = olds.file === news.file ? [] : ['file'];
    const changes =
      replaces.length > 0 ||
      olds.content !== news.content ||
      olds.container !== news.container ||
      olds.containerFile !== news.containerFile ||
      olds.dockerHost !== news.dockerHost;
    return { changes, replaces };
  },
  async update(_id, _olds, news) {
    return { outs: await applyNginxConfig(news) };
  },
  async delete(_id, props) {
    fs.rmSync(props.file, { force: true });
  },
};

/** Arguments of {@link NginxConfigFile}: the same fields as the provider inputs, as Pulumi inputs. */
export type NginxConfigFileArgs = { readonly [K in keyof NginxConfigFileInputs]: pulumi.Input<NginxConfigFileInputs[K]> };

/** The nginx config on the Docker host, applied to a running nginx with `nginx -s reload`. */
export class NginxConfigFile extends pulumi.dynamic.Resource {
  /** sha256 of the config last written. */
  declare readonly sha256: pulumi.Output<string>;
  /** Whether the last apply reloaded a running nginx. */
  declare readonly reloaded: pulumi.Output<boolean>;

  /** Registers the config file resource. */
  constructor(name: string, args: NginxConfigFileArgs, opts?: pulumi.CustomResourceOptions) {
    super(nginxConfigFileProvider, name, { ...args, sha256: undefined, reloaded: undefined }, opts, 'replyx', 'NginxConfigFile');
  }
}

/** sha256 of a config text, as {@link NginxConfigFile} records it. */
export function nginxConfigSha256(content: string): string {
  return crypto.createHash('sha256').update(content).digest('hex');
}
