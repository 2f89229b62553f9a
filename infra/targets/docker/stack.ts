// The Docker target as Pulumi resources: turns the pure plan (plan.ts) into a network, volumes,
// images, containers and the nginx config file. Only wiring lives here; every value comes from
// the plan, which is where the tests check names, env, ports and healthchecks.

import * as docker from '@pulumi/docker';
import * as pulumi from '@pulumi/pulumi';
import { renderNginxConfig } from '../../render/nginx.js';
import { topologyChecksum, type Topology } from '../../topology/index.js';
import { NginxConfigFile } from './nginx-config-file.js';
import { renderRedisAclFile } from '../../render/redis-acl.js';
import { planDockerStack, type ContainerPlan, type DockerStackPlan, type EnvValue, type SecretName, type ServiceKey, type UploadContent } from './plan.js';

/** The secrets the containers need, as Pulumi secret Outputs (see infra/secrets.ts). */
export interface DockerStackSecrets {
  readonly jwtSecret: pulumi.Input<string>;
  readonly siteTokenSecret: pulumi.Input<string>;
  readonly widgetTokenSecret: pulumi.Input<string>;
  readonly postgresPassword: pulumi.Input<string>;
  readonly publishKey: pulumi.Input<string>;
  /** Passwords of the Redis users (the ACL file and each service's REDIS_URL). */
  readonly redisGatewayPassword: pulumi.Input<string>;
  readonly redisPublisherPassword: pulumi.Input<string>;
  readonly redisAdminPassword: pulumi.Input<string>;
  /** Password of the gateway's database role. */
  readonly gatewayDatabasePassword: pulumi.Input<string>;
  /** Optional: only passed to the gateway when set. */
  readonly debugToken?: pulumi.Input<string>;
}

/** Arguments of {@link ReplyxDockerStack}. */
export interface ReplyxDockerStackArgs {
  /** The validated topology (target docker). */
  readonly topology: Topology;
  readonly secrets: DockerStackSecrets;
  /** Host directory for the rendered nginx config (`replyx:docker` is not a topology key: config `replyx-docker:stateDir`). Default `.stack/docker/nginx`. */
  readonly stateDir?: string;
  /** Repository root used as build context; default: this checkout. */
  readonly projectRoot?: string;
  /** Docker daemon address for the docker CLI (nginx reload); default: DOCKER_HOST / the CLI's default. */
  readonly dockerHost?: string;
}

/** Service -> container names, as exported in the stack outputs. */
export type ContainerNames = Readonly<Record<ServiceKey, readonly string[]>>;

function seconds(s: number): string {
  return `${s}s`;
}

/**
 * Resolves a container's env into `KEY=value` strings. When any value embeds a secret, the
 * whole list is a secret Output (Docker's env is one property; Pulumi cannot mark half of it).
 */
export function resolveEnv(env: Readonly<Record<string, EnvValue>>, secrets: DockerStackSecrets): pulumi.Output<string[]> {
  const needed = new Set<SecretName>(Object.values(env).flatMap((v) => (typeof v === 'string' ? [] : [v.secret])));
  const inputs: Partial<Record<SecretName, pulumi.Input<string>>> = {};
  for (const name of needed) {
    const value = secrets[name];
    if (value === undefined) throw new Error(`secret ${name} is referenced by the plan but was not provided`);
    inputs[name] = value;
  }
  const lines = pulumi.all(inputs).apply((values) =>
    Object.entries(env).map(([key, v]) => {
      if (typeof v === 'string') return `${key}=${v}`;
      const raw = (values as Partial<Record<SecretName, string>>)[v.secret] ?? '';
      return `${key}=${v.prefix ?? ''}${v.uriEncode ? encodeURIComponent(raw) : raw}${v.suffix ?? ''}`;
    }),
  );
  return needed.size > 0 ? pulumi.secret(lines) : lines;
}

/** An upload's text: as planned, or the Redis ACL file rendered from the secrets (a secret itself). */
export function uploadContent(content: UploadContent, secrets: DockerStackSecrets): pulumi.Input<string> {
  if (typeof content === 'string') return content;
  return pulumi.secret(
    pulumi
      .all([secrets.redisGatewayPassword, secrets.redisPublisherPassword, secrets.redisAdminPassword])
      .apply(([gateway, publisher, admin]) => renderRedisAclFile({ gateway, publisher, admin })),
  );
}

/** The whole replyx stack on one Docker host. */
export class ReplyxDockerStack extends pulumi.ComponentResource {
  /** The plan the resources were made from. */
  readonly plan: DockerStackPlan;
  /** `http://localhost:<nginx.port>`. */
  readonly publicUrl: pulumi.Output<string>;
  /** Container names by service. */
  readonly containerNames: pulumi.Output<ContainerNames>;
  /** Name of the private network. */
  readonly networkName: pulumi.Output<string>;
  /** Host path of the rendered nginx config. */
  readonly nginxConfigFile: pulumi.Output<string>;
  /** sha256 of the rendered nginx config in place. */
  readonly nginxConfigSha256: pulumi.Output<string>;
  /** Who serves /ws/. */
  readonly wsRoute: pulumi.Output<string>;
  /** Checksum of the topology deployed (also in the nginx config header). */
  readonly topologyChecksum: pulumi.Output<string>;
  /** The containers, by container name. */
  readonly containers: ReadonlyMap<string, docker.Container>;

  /** Creates every resource of the Docker target as children of this component. */
  constructor(name: string, args: ReplyxDockerStackArgs, opts?: pulumi.ComponentResourceOptions) {
    super('replyx:docker:Stack', name, {}, opts);
    const { topology } = args;
    const plan = planDockerStack(topology, {
      ...(args.projectRoot !== undefined ? { projectRoot: args.projectRoot } : {}),
      ...(args.stateDir !== undefined ? { stateDir: args.stateDir } : {}),
      debugToken: args.secrets.debugToken !== undefined,
    });
    this.plan = plan;

    // Fixed Docker names cannot exist twice, so replacements delete the old one first.
    const named: pulumi.CustomResourceOptions = { parent: this, deleteBeforeReplace: true };

    const network = new docker.Network(`${name}-network`, { name: plan.network.name, driver: plan.network.driver }, named);

    // Data outlives `pulumi destroy`: removing a database is a deliberate `docker volume rm`.
    const volumes = new Map(
      plan.volumes.map((v) => [v.name, new docker.Volume(`${name}-${v.key}-data`, { name: v.name }, { ...named, retainOnDelete: true })]),
    );

    const images = new Map<ServiceKey, pulumi.Output<string>>();
    for (const image of plan.images) {
      if (image.kind === 'remote') {
        // keepLocally: other stacks on the host may use the same public image.
        const remote = new docker.RemoteImage(`${name}-${image.key}-image`, { name: image.name, keepLocally: true }, { parent: this });
        images.set(image.key, remote.imageId);
      } else {
        const built = new docker.Image(
          `${name}-${image.key}-image`,
          { imageName: image.name, skipPush: true, build: { context: image.context, dockerfile: image.dockerfile } },
          { parent: this },
        );
        // repoDigest is the local image id: a rebuild with new content changes it and so the container.
        images.set(image.key, built.repoDigest);
      }
    }

    const containers = new Map<string, docker.Container>();
    const byService = (service: ServiceKey) =>
      plan.containers.filter((c) => c.service === service).map((c) => containers.get(c.name)!);

    const makeContainer = (c: ContainerPlan, extraDependsOn: pulumi.Resource[] = []): docker.Container => {
      const hc = c.healthcheck;
      const container = new docker.Container(
        c.name,
        {
          name: c.name,
          image: images.get(c.image)!,
          ...(c.command ? { command: [...c.command] } : {}),
          envs: resolveEnv(c.env, args.secrets),
          networksAdvanced: [{ name: network.name, aliases: [...c.aliases] }],
          ports: c.ports.map((p) => ({ internal: p.internal, external: p.external, ...(p.ip !== undefined ? { ip: p.ip } : {}) })),
          ...(c.uploads ? { uploads: c.uploads.map((u) => ({ file: u.file, content: uploadContent(u.content, args.secrets) })) } : {}),
          mounts: c.mounts.map((m) =>
            m.type === 'volume'
              ? { type: 'volume', source: volumes.get(m.volume)!.name, target: m.target }
              : { type: 'bind', source: m.source, target: m.target, readOnly: m.readOnly },
          ),
          healthcheck: {
            tests: [...hc.test],
            interval: seconds(hc.intervalS),
            timeout: seconds(hc.timeoutS),
            retries: hc.retries,
            startPeriod: seconds(hc.startPeriodS),
          },
          ...(c.kernelLimits
            ? {
                ulimits: [{ name: 'nofile', soft: c.kernelLimits.nofile, hard: c.kernelLimits.nofile }],
                sysctls: { 'net.core.somaxconn': String(c.kernelLimits.somaxconn) },
              }
            : {}),
          restart: c.restart,
          stopSignal: c.stopSignal,
          stopTimeout: c.stopTimeoutS,
          // Without it the provider force-removes a replaced container (SIGKILL at once): the
          // gateway would never drain, Postgres and Redis would stop without a checkpoint.
          destroyGraceSeconds: c.stopTimeoutS,
          // Wait for "healthy" so that dependents start against a serving service.
          wait: true,
          waitTimeout: hc.startPeriodS + hc.intervalS * (hc.retries + 1) + 30,
          labels: Object.entries(c.labels).map(([label, value]) => ({ label, value })),
          logDriver: 'json-file',
          logOpts: { 'max-size': '10m', 'max-file': '3' },
        },
        {
          ...named,
          // A replica waits for the previous one: Pulumi registers it only once that one is
          // replaced and healthy, so replicas are drained and replaced one at a time.
          dependsOn: [...c.dependsOn.flatMap(byService), ...(c.replaceAfter !== undefined ? [containers.get(c.replaceAfter)!] : []), ...extraDependsOn],
        },
      );
      containers.set(c.name, container);
      return container;
    };

    for (const c of plan.containers) {
      if (c.service === 'nginx') continue;
      makeContainer(c);
    }

    const nginxPlan = plan.containers.find((c) => c.service === 'nginx')!;
    const configFile = new NginxConfigFile(
      `${name}-nginx-config`,
      {
        file: plan.nginxConfig.hostFile,
        content: renderNginxConfig(topology, 'docker'),
        container: nginxPlan.name,
        containerFile: plan.nginxConfig.containerFile,
        // No upstream ids here: the rendered config re-resolves container names (`resolve`),
        // and a reload on every backend replacement would cut the gateway's WebSockets after
        // worker_shutdown_timeout for nothing.
        dockerHost: args.dockerHost ?? '',
      },
      { parent: this },
    );
    // The config file is a dependency, not an input: a new routing never changes this container.
    makeContainer(nginxPlan, [configFile]);

    const names = Object.fromEntries(
      [...new Set(plan.containers.map((c) => c.service))].map((s) => [s, plan.containers.filter((c) => c.service === s).map((c) => c.name)]),
    ) as Record<ServiceKey, string[]>;

    this.containers = containers;
    this.publicUrl = pulumi.output(plan.publicUrl);
    this.containerNames = pulumi.output(names);
    this.networkName = network.name;
    this.nginxConfigFile = pulumi.output(plan.nginxConfig.hostFile);
    this.nginxConfigSha256 = configFile.sha256;
    this.wsRoute = pulumi.output(topology.wsRoute);
    this.topologyChecksum = pulumi.output(topologyChecksum(topology));
    this.registerOutputs({
      publicUrl: this.publicUrl,
      containerNames: this.containerNames,
      networkName: this.networkName,
      nginxConfigFile: this.nginxConfigFile,
      nginxConfigSha256: this.nginxConfigSha256,
      wsRoute: this.wsRoute,
      topologyChecksum: this.topologyChecksum,
    });
  }
}
