import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as aws from '@pulumi/aws';
import * as docker from '@pulumi/docker';
import * as pulumi from '@pulumi/pulumi';
import type { Topology } from '../../topology/index.js';
import type { AwsServiceName } from './tasks.js';

const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Where an ECS service's image comes from: a reference from config, or a build pushed to ECR. */
export type ImageSource =
  | { readonly kind: 'remote'; readonly image: string }
  | { readonly kind: 'build'; readonly repository: string; readonly context: string; readonly dockerfile: string };

/**
 * Plans the images (pure): `backend.image` / `gateway.image` from config when set, otherwise
 * builds of examples/backend and gateway/ (context: the repository root, as the Dockerfiles
 * expect) pushed to one ECR repository per stack and service; nginx always from `nginx.image`.
 */
export function planImages(topology: Topology, stack: string, projectRoot = PROJECT_ROOT): Readonly<Record<AwsServiceName, ImageSource>> {
  const build = (dir: string, repository: string): ImageSource => ({ kind: 'build', repository, context: projectRoot, dockerfile: path.join(projectRoot, dir, 'Dockerfile') });
  return {
    backend: topology.backend.image !== undefined ? { kind: 'remote', image: topology.backend.image } : build('examples/backend', `${topology.name}-${stack}-backend`),
    gateway: topology.gateway.image !== undefined ? { kind: 'remote', image: topology.gateway.image } : build('gateway', `${topology.name}-${stack}-ws-gateway`),
    nginx: { kind: 'remote', image: topology.nginx.image },
  };
}

/** ECR lifecycle rule: keep the newest images only, so pushes on every `pulumi up` do not pile up storage. */
export const ECR_KEEP_IMAGES = 10;

/** Arguments of the Images component. */
export interface ImagesArgs {
  readonly sources: Readonly<Record<AwsServiceName, ImageSource>>;
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * `replyx:aws:Images`: for every built image an ECR repository (scan on push, lifecycle) and a
 * docker build pushed with an ECR token; tasks reference the pushed digest, so a code change
 * is a new task definition revision and a rolling deploy.
 */
export class Images extends pulumi.ComponentResource {
  readonly refs: Record<AwsServiceName, pulumi.Output<string>>;
  readonly repositoryArns: Record<AwsServiceName, pulumi.Output<string>[]>;

  /** Creates repositories and builds for the `build` sources. */
  constructor(name: string, args: ImagesArgs, opts?: pulumi.ComponentResourceOptions) {
    super('replyx:aws:Images', name, {}, opts);
    const refs = {} as Record<AwsServiceName, pulumi.Output<string>>;
    const repositoryArns = {} as Record<AwsServiceName, pulumi.Output<string>[]>;
    for (const [service, source] of Object.entries(args.sources) as [AwsServiceName, ImageSource][]) {
      if (source.kind === 'remote') {
        refs[service] = pulumi.output(source.image);
        repositoryArns[service] = [];
        continue;
      }
      const repo = new aws.ecr.Repository(
        `${name}-${service}`,
        {
          name: source.repository,
          imageScanningConfiguration: { scanOnPush: true },
          imageTagMutability: 'MUTABLE',
          // The images are rebuilt from this repository's source; nothing is lost with them.
          forceDelete: true,
          tags: args.tags,
        },
        { parent: this },
      );
      new aws.ecr.LifecyclePolicy(
        `${name}-${service}`,
        {
          repository: repo.name,
          policy: JSON.stringify({
            rules: [{ rulePriority: 1, description: `keep the newest ${ECR_KEEP_IMAGES} images`, selection: { tagStatus: 'any', countType: 'imageCountMoreThan', countNumber: ECR_KEEP_IMAGES }, action: { type: 'expire' } }],
          }),
        },
        { parent: this },
      );
      const token = aws.ecr.getAuthorizationTokenOutput({ registryId: repo.registryId }, { parent: this });
      const image = new docker.Image(
        `${name}-${service}`,
        {
          imageName: pulumi.interpolate`${repo.repositoryUrl}:latest`,
          build: { context: source.context, dockerfile: source.dockerfile, platform: 'linux/amd64' },
          registry: { server: repo.repositoryUrl, username: token.userName, password: pulumi.secret(token.password) },
        },
        { parent: this },
      );
      // The digest, not the tag: ECS then runs exactly what was built and pushed.
      refs[service] = image.repoDigest;
      repositoryArns[service] = [repo.arn];
    }
    this.refs = refs;
    this.repositoryArns = repositoryArns;
    this.registerOutputs({ refs });
  }
}
