import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { ReplyxError } from '../../errors.js';
import type { Topology } from '../../topology/index.js';

/** The address space of a VPC this target creates. */
export const VPC_CIDR = '10.0.0.0/16';

/** One availability zone of a created VPC: a public and a private /20. */
export interface ZonePlan {
  readonly index: number;
  readonly publicCidr: string;
  readonly privateCidr: string;
}

/** What the Network component builds: a new VPC across N zones, or the user's VPC as given. */
export type NetworkPlan =
  | { readonly mode: 'create'; readonly cidrBlock: string; readonly zones: readonly ZonePlan[]; readonly natGateways: 'perZone' | 'single' }
  | { readonly mode: 'existing'; readonly vpcId: string; readonly publicSubnetIds: readonly string[]; readonly privateSubnetIds: readonly string[] };

/**
 * Plans the network from the topology: either `aws.availabilityZones` zones, each with a public
 * /20 (load balancer, NAT) and a private /20 (tasks, Redis, Postgres), or the VPC and subnets
 * named in `aws.vpcId`/`aws.publicSubnetIds`/`aws.privateSubnetIds`.
 */
export function planAwsNetwork(topology: Topology): NetworkPlan {
  const { vpcId, publicSubnetIds, privateSubnetIds, availabilityZones, natGateways } = topology.aws;
  if (vpcId !== undefined) {
    // An ALB needs subnets in two zones, and RDS/ElastiCache subnet groups want two zones so a
    // failover has somewhere to go; a single subnet would fail late, inside `pulumi up`.
    const tooFew = (
      [
        ['aws.publicSubnetIds', publicSubnetIds ?? []],
        ['aws.privateSubnetIds', privateSubnetIds ?? []],
      ] as const
    ).filter(([, ids]) => ids.length < 2);
    if (tooFew.length > 0) {
      throw new ReplyxError(
        'RPX_AWS_SUBNETS',
        `${tooFew.map(([p]) => p).join(' and ')} must list subnets in at least two availability zones`,
        'list at least two subnets (in different availability zones) in each of aws.publicSubnetIds and aws.privateSubnetIds',
      );
    }
    return { mode: 'existing', vpcId, publicSubnetIds: [...publicSubnetIds!], privateSubnetIds: [...privateSubnetIds!] };
  }
  // /20 blocks: public ones from 10.0.0.0 up, private ones from 10.0.128.0 up, so up to six
  // zones fit without overlap and the halves are easy to tell apart in flow logs.
  const zones = Array.from({ length: availabilityZones }, (_, index): ZonePlan => ({
    index,
    publicCidr: `10.0.${index * 16}.0/20`,
    privateCidr: `10.0.${128 + index * 16}.0/20`,
  }));
  return { mode: 'create', cidrBlock: VPC_CIDR, zones, natGateways };
}

/** Arguments of the Network component. */
export interface NetworkArgs {
  readonly plan: NetworkPlan;
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * `replyx:aws:Network`: the VPC with public and private subnets in every planned zone, an
 * internet gateway, NAT gateways (one per zone, or one in the first zone with
 * `natGateways: 'single'`; private egress for image pulls, logs and Secrets Manager) and the
 * route tables; or just the ids of an existing VPC.
 */
export class Network extends pulumi.ComponentResource {
  readonly vpcId: pulumi.Output<string>;
  readonly publicSubnetIds: pulumi.Output<string[]>;
  readonly privateSubnetIds: pulumi.Output<string[]>;

  /** Creates (or adopts) the network described by `args.plan`. */
  constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super('replyx:aws:Network', name, {}, opts);
    const { plan, tags } = args;
    if (plan.mode === 'existing') {
      this.vpcId = pulumi.output(plan.vpcId);
      this.publicSubnetIds = pulumi.output([...plan.publicSubnetIds]);
      this.privateSubnetIds = pulumi.output([...plan.privateSubnetIds]);
      this.registerOutputs({ vpcId: this.vpcId });
      return;
    }
    const parent = { parent: this };
    const zoneNames = aws.getAvailabilityZonesOutput({ state: 'available' }, parent).names;
    const vpc = new aws.ec2.Vpc(`${name}-vpc`, { cidrBlock: plan.cidrBlock, enableDnsHostnames: true, enableDnsSupport: true, tags: { ...tags, Name: `${name}-vpc` } }, parent);
    const igw = new aws.ec2.InternetGateway(`${name}-igw`, { vpcId: vpc.id, tags: { ...tags, Name: `${name}-igw` } }, parent);
    const publicRoutes = new aws.ec2.RouteTable(
      `${name}-public`,
      { vpcId: vpc.id, routes: [{ cidrBlock: '0.0.0.0/0', gatewayId: igw.id }], tags: { ...tags, Name: `${name}-public` } },
      parent,
    );
    const publicSubnets: aws.ec2.Subnet[] = [];
    const privateSubnets: aws.ec2.Subnet[] = [];
    const nats: aws.ec2.NatGateway[] = [];
    for (const zone of plan.zones) {
      const az = zoneNames.apply((names) => {
        const zoneName = names[zone.index];
        if (zoneName === undefined) {
          throw new ReplyxError('RPX_AWS_ZONES', `the region has ${names.length} available zones, aws.availabilityZones asks for ${plan.zones.length}`, `set aws.availabilityZones to ${names.length} or less`);
        }
        return zoneName;
      });
      const pub = new aws.ec2.Subnet(
        `${name}-public-${zone.index}`,
        // Public IPs on launch only matter for the NAT gateways' EIPs and the ALB; tasks never run here.
        { vpcId: vpc.id, cidrBlock: zone.publicCidr, availabilityZone: az, mapPublicIpOnLaunch: false, tags: { ...tags, Name: `${name}-public-${zone.index}`, tier: 'public' } },
        parent,
      );
      new aws.ec2.RouteTableAssociation(`${name}-public-${zone.index}`, { subnetId: pub.id, routeTableId: publicRoutes.id }, parent);
      // With a single NAT it lives in zone 0 under the same name as in per-zone mode, so switching
      // modes only adds or removes the other zones' NATs and repoints their route tables.
      if (plan.natGateways === 'perZone' || nats.length === 0) {
        const eip = new aws.ec2.Eip(`${name}-nat-${zone.index}`, { domain: 'vpc', tags: { ...tags, Name: `${name}-nat-${zone.index}` } }, parent);
        nats.push(new aws.ec2.NatGateway(`${name}-nat-${zone.index}`, { allocationId: eip.id, subnetId: pub.id, tags: { ...tags, Name: `${name}-nat-${zone.index}` } }, { parent: this, dependsOn: [igw] }));
      }
      const nat = nats.at(-1)!;
      const priv = new aws.ec2.Subnet(
        `${name}-private-${zone.index}`,
        { vpcId: vpc.id, cidrBlock: zone.privateCidr, availabilityZone: az, mapPublicIpOnLaunch: false, tags: { ...tags, Name: `${name}-private-${zone.index}`, tier: 'private' } },
        parent,
      );
      // One route table per zone, through that zone's NAT (per-zone mode): losing a zone does
      // not cut the other zones' egress (image pulls, logs, secrets).
      const privateRoutes = new aws.ec2.RouteTable(
        `${name}-private-${zone.index}`,
        { vpcId: vpc.id, routes: [{ cidrBlock: '0.0.0.0/0', natGatewayId: nat.id }], tags: { ...tags, Name: `${name}-private-${zone.index}` } },
        parent,
      );
      new aws.ec2.RouteTableAssociation(`${name}-private-${zone.index}`, { subnetId: priv.id, routeTableId: privateRoutes.id }, parent);
      publicSubnets.push(pub);
      privateSubnets.push(priv);
    }
    this.vpcId = vpc.id;
    this.publicSubnetIds = pulumi.all(publicSubnets.map((s) => s.id));
    this.privateSubnetIds = pulumi.all(privateSubnets.map((s) => s.id));
    this.registerOutputs({ vpcId: this.vpcId, publicSubnetIds: this.publicSubnetIds, privateSubnetIds: this.privateSubnetIds });
  }
}
