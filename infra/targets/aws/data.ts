import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { ReplyxError } from '../../errors.js';
import type { Topology } from '../../topology/index.js';
import { fittedName, NAME_LIMITS } from './names.js';
import { GATEWAY_DATABASE_ROLE } from '../../../examples/backend/src/migrate.js';
import { AWS_POSTGRES_PORT, AWS_REDIS_PORT } from './security.js';

/** Postgres major version on RDS, the same major as the docker target's default image. */
export const POSTGRES_ENGINE_VERSION = '16';
/** Redis engine version on ElastiCache. */
export const REDIS_ENGINE_VERSION = '7.1';

/**
 * The REDIS_URL tasks get: TLS (`rediss:`) with the ElastiCache auth token as the password.
 * The token is URL-encoded so that any allowed character survives the URL.
 */
export function redisUrl(host: string, authToken: string, port = AWS_REDIS_PORT): string {
  return `rediss://:${encodeURIComponent(authToken)}@${host}:${port}`;
}

/**
 * The DATABASE_URL tasks get. RDS for Postgres 15+ forces TLS (`rds.force_ssl=1`);
 * `sslmode=verify-full` makes node-postgres check the server certificate and its name against
 * the RDS CA bundle the images carry (NODE_EXTRA_CA_CERTS, set on the tasks).
 */
export function databaseUrl(args: { host: string; port?: number; user: string; password: string; database: string }): string {
  const port = args.port ?? AWS_POSTGRES_PORT;
  return `postgres://${encodeURIComponent(args.user)}:${encodeURIComponent(args.password)}@${args.host}:${port}/${encodeURIComponent(args.database)}?sslmode=verify-full`;
}

/** Checks an ElastiCache auth token: 16–128 printable ASCII characters, none of `/`, `"`, `@` or space. */
export function checkRedisAuthToken(token: string): void {
  if (token.length < 16 || token.length > 128 || !/^[\x21-\x7e]+$/.test(token) || /[/"@]/.test(token)) {
    throw new ReplyxError(
      'RPX_AWS_REDIS_PASSWORD',
      'replyx:redisPassword is not a valid ElastiCache auth token (16-128 printable characters without / " @ or spaces)',
      'set another one with `pulumi config set --secret replyx:redisPassword <value>`, or remove it to have one generated',
    );
  }
}

/** Checks an RDS master password: 8–128 printable ASCII characters, none of `/`, `"`, `@`, `'` or space. */
export function checkPostgresPassword(password: string): void {
  if (password.length < 8 || password.length > 128 || !/^[\x21-\x7e]+$/.test(password) || /[/"@']/.test(password)) {
    throw new ReplyxError(
      'RPX_AWS_POSTGRES_PASSWORD',
      'replyx:postgresPassword is not a valid RDS password (8-128 printable characters without / " @ \' or spaces)',
      'set another one with `pulumi config set --secret replyx:postgresPassword <value>`, or remove it to have one generated',
    );
  }
}

/** The settings of the managed data stores that the security tests pin down (pure). */
export function planData(topology: Topology, stack: string) {
  const { aws: a, postgres } = topology;
  return {
    redis: {
      engine: 'redis',
      engineVersion: REDIS_ENGINE_VERSION,
      nodeType: a.redisNodeType,
      numCacheClusters: 1,
      port: AWS_REDIS_PORT,
      transitEncryptionEnabled: true,
      transitEncryptionMode: 'required',
      atRestEncryptionEnabled: true,
      // A failover replica would double the cost; the gateway reconnects and clients resume
      // with since= once a replaced node is back. See docs/aws.md.
      automaticFailoverEnabled: false,
      applyImmediately: true,
    },
    postgres: {
      engine: 'postgres',
      engineVersion: POSTGRES_ENGINE_VERSION,
      instanceClass: a.postgresInstanceClass,
      allocatedStorage: a.postgresStorageGb,
      storageType: 'gp3',
      storageEncrypted: true,
      publiclyAccessible: false,
      port: AWS_POSTGRES_PORT,
      dbName: postgres.database,
      username: postgres.user,
      backupRetentionPeriod: a.backupRetentionDays,
      copyTagsToSnapshot: true,
      // `pulumi destroy` keeps the data: RDS takes this final snapshot before deleting the
      // instance (delete the snapshot by hand when it is no longer wanted).
      skipFinalSnapshot: false,
      finalSnapshotIdentifier: `${topology.name}-${stack}-postgres-final`.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/-+/g, '-'),
      deletionProtection: false,
      autoMinorVersionUpgrade: true,
      // Major upgrades are a deliberate act (snapshot, test), never a side effect of `pulumi up`.
      allowMajorVersionUpgrade: false,
      applyImmediately: false,
    },
  } as const;
}

/** Arguments of the Data component. */
export interface DataArgs {
  readonly topology: Topology;
  readonly stack: string;
  readonly privateSubnetIds: pulumi.Input<string[]>;
  readonly redisSecurityGroupId: pulumi.Input<string>;
  readonly postgresSecurityGroupId: pulumi.Input<string>;
  readonly redisAuthToken: pulumi.Input<string>;
  readonly postgresPassword: pulumi.Input<string>;
  /** Password of the gateway's role (migration 005 creates it; the backend lets it log in). */
  readonly gatewayDatabasePassword: pulumi.Input<string>;
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * `replyx:aws:Data`: ElastiCache Redis (TLS in transit, encrypted at rest, auth token) and RDS
 * Postgres (private, encrypted, backed up), both in the private subnets behind their own
 * security groups. Exposes the connection URLs as secrets.
 */
export class Data extends pulumi.ComponentResource {
  readonly redisUrl: pulumi.Output<string>;
  readonly databaseUrl: pulumi.Output<string>;
  /** The gateway's URL: same server and database, as its SELECT-only role. */
  readonly gatewayDatabaseUrl: pulumi.Output<string>;
  readonly redisHost: pulumi.Output<string>;
  readonly postgresHost: pulumi.Output<string>;

  /** Creates Redis and Postgres for `args.topology`. */
  constructor(name: string, args: DataArgs, opts?: pulumi.ComponentResourceOptions) {
    super('replyx:aws:Data', name, {}, opts);
    const plan = planData(args.topology, args.stack);
    const parent = { parent: this };
    const redisSubnets = new aws.elasticache.SubnetGroup(`${name}-redis`, { description: 'replyx Redis (private subnets)', subnetIds: args.privateSubnetIds, tags: args.tags }, parent);
    const token = pulumi.secret(
      pulumi.output(args.redisAuthToken).apply((t) => {
        checkRedisAuthToken(t);
        return t;
      }),
    );
    const redis = new aws.elasticache.ReplicationGroup(
      fittedName(name, 'redis', NAME_LIMITS.replicationGroup),
      {
        description: `replyx ${args.topology.name} events and history`,
        ...plan.redis,
        subnetGroupName: redisSubnets.name,
        securityGroupIds: [args.redisSecurityGroupId],
        authToken: token,
        tags: args.tags,
      },
      parent,
    );
    const pgSubnets = new aws.rds.SubnetGroup(`${name}-postgres`, { description: 'replyx Postgres (private subnets)', subnetIds: args.privateSubnetIds, tags: args.tags }, parent);
    const password = pulumi.secret(
      pulumi.output(args.postgresPassword).apply((p) => {
        checkPostgresPassword(p);
        return p;
      }),
    );
    const postgres = new aws.rds.Instance(
      `${name}-postgres`,
      {
        ...plan.postgres,
        dbSubnetGroupName: pgSubnets.name,
        vpcSecurityGroupIds: [args.postgresSecurityGroupId],
        password,
        tags: args.tags,
      },
      parent,
    );
    this.redisHost = redis.primaryEndpointAddress;
    this.postgresHost = postgres.address;
    this.redisUrl = pulumi.secret(pulumi.all([redis.primaryEndpointAddress, token]).apply(([host, t]) => redisUrl(host, t)));
    this.databaseUrl = pulumi.secret(
      pulumi.all([postgres.address, password]).apply(([host, p]) => databaseUrl({ host, user: plan.postgres.username, password: p, database: plan.postgres.dbName })),
    );
    this.gatewayDatabaseUrl = pulumi.secret(
      pulumi
        .all([postgres.address, args.gatewayDatabasePassword])
        .apply(([host, p]) => databaseUrl({ host, user: GATEWAY_DATABASE_ROLE, password: p, database: plan.postgres.dbName })),
    );
    this.registerOutputs({ redisHost: this.redisHost, postgresHost: this.postgresHost });
  }
}
