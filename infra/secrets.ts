// The stack's secrets: taken from `pulumi config set --secret replyx:<key>` when present,
// otherwise generated once by random.RandomPassword and kept in the stack state (encrypted),
// so every `pulumi up` reuses them. Either way they stay Pulumi secrets end to end.

import * as pulumi from '@pulumi/pulumi';
import * as random from '@pulumi/random';
import { CONFIG_NAMESPACE } from './topology/index.js';

/** Secrets every target needs; generated when absent from the stack config. */
export const GENERATED_SECRETS = ['jwtSecret', 'siteTokenSecret', 'widgetTokenSecret', 'postgresPassword', 'publishKey', 'gatewayDatabasePassword'] as const;
/** Passwords of the Redis users (infra/render/redis-acl.ts), for targets that run their own Redis (docker). */
export const REDIS_USER_SECRETS = ['redisGatewayPassword', 'redisPublisherPassword', 'redisAdminPassword'] as const;
/** One of {@link GENERATED_SECRETS} or {@link REDIS_USER_SECRETS}. */
export type GeneratedSecret = (typeof GENERATED_SECRETS)[number] | (typeof REDIS_USER_SECRETS)[number];

/** Arguments of {@link ReplyxSecrets}. */
export interface ReplyxSecretsArgs {
  /** Length of generated values (letters and digits only, so they fit in URLs unescaped). Default 48. */
  readonly length?: number;
  /** Also read or generate {@link REDIS_USER_SECRETS} (targets that render the Redis ACL). Default false. */
  readonly redisUsers?: boolean;
}

/** The stack's secrets as secret Outputs, from config or generated. */
export class ReplyxSecrets extends pulumi.ComponentResource {
  /** HS256 key shared by the backend (signs) and the gateway (verifies). */
  readonly jwtSecret: pulumi.Output<string>;
  /** Key of site tokens (backend issues, gateway verifies). */
  readonly siteTokenSecret: pulumi.Output<string>;
  /** Key of widget session tokens (backend issues, gateway verifies). */
  readonly widgetTokenSecret: pulumi.Output<string>;
  /** Password of the Postgres user. */
  readonly postgresPassword: pulumi.Output<string>;
  /** Password of the gateway's database role (SELECT on the access views only). */
  readonly gatewayDatabasePassword: pulumi.Output<string>;
  /** Key the backend sends in X-Publish-Key to the gateway's /internal/publish. */
  readonly publishKey: pulumi.Output<string>;
  /** Optional token for the gateway's debug endpoints; undefined unless `replyx:debugToken` is set. */
  readonly debugToken: pulumi.Output<string> | undefined;
  /** Passwords of the Redis users, when `redisUsers` was asked for. */
  readonly redisPasswords: { readonly gateway: pulumi.Output<string>; readonly publisher: pulumi.Output<string>; readonly admin: pulumi.Output<string> } | undefined;
  /** Which secrets were generated because the config did not hold them (for the preview summary). */
  readonly generated: readonly GeneratedSecret[];

  /** Reads `replyx:jwtSecret`, `replyx:siteTokenSecret`, `replyx:widgetTokenSecret`, `replyx:postgresPassword`, `replyx:publishKey` (and `replyx:debugToken`). */
  constructor(name: string, args: ReplyxSecretsArgs = {}, opts?: pulumi.ComponentResourceOptions) {
    super('replyx:index:Secrets', name, {}, opts);
    const config = new pulumi.Config(CONFIG_NAMESPACE);
    const generated: GeneratedSecret[] = [];
    const read = (key: GeneratedSecret): pulumi.Output<string> => {
      const configured = config.getSecret(key);
      if (configured !== undefined) return configured;
      generated.push(key);
      const password = new random.RandomPassword(
        `${name}-${key}`,
        { length: args.length ?? 48, special: false },
        { parent: this },
      );
      return pulumi.secret(password.result);
    };
    this.jwtSecret = read('jwtSecret');
    this.siteTokenSecret = read('siteTokenSecret');
    this.widgetTokenSecret = read('widgetTokenSecret');
    this.postgresPassword = read('postgresPassword');
    this.publishKey = read('publishKey');
    this.gatewayDatabasePassword = read('gatewayDatabasePassword');
    this.debugToken = config.getSecret('debugToken');
    this.redisPasswords = args.redisUsers
      ? { gateway: read('redisGatewayPassword'), publisher: read('redisPublisherPassword'), admin: read('redisAdminPassword') }
      : undefined;
    this.generated = generated;
    this.registerOutputs({ generated });
  }
}
