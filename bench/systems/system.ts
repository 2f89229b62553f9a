import type { ClientKind, ConnectTarget, PublishTarget, ReadyOn } from '../load/messages.js';

// What the harness needs from each system under test, whatever it is underneath.

/** The systems the benchmark compares, in table order. */
export const SYSTEM_NAMES = ['ours', 'ours-nginx', 'ours-2', 'pushpin', 'socketio', 'ws-floor'] as const;

/** One system under test. */
export type SystemName = (typeof SYSTEM_NAMES)[number];

/** Human labels for tables and charts. */
export const SYSTEM_LABELS: Record<SystemName, string> = {
  ours: 'replyx ws-gateway',
  'ours-nginx': 'replyx via nginx',
  'ours-2': 'replyx 2 replicas via nginx',
  pushpin: 'Pushpin',
  socketio: 'Socket.IO + Redis adapter',
  'ws-floor': 'bare ws (floor)',
};

/** The role of a connection on a dialog (the gateway authenticates them differently). */
export type Role = 'admin' | 'widget';

/** A started system: how to connect, how to publish, which processes to measure. */
export interface RunningSystem {
  readonly name: SystemName;
  readonly client: ClientKind;
  readonly readyOn: ReadyOn;
  /** Whether a connect includes authentication (JWT verify or domain check + lookup). */
  readonly authenticates: boolean;
  readonly publish: PublishTarget;
  /** The connection a client in `role` opens to follow `dialog`. */
  target(dialog: number, role: Role): ConnectTarget;
  /** Pids whose RSS and CPU are "the server" (several for Pushpin and nginx). */
  serverPids(): Promise<number[]>;
  /** The part of serverPids that is a proxy in front (nginx master and workers), when there is one. */
  proxyPids?(): Promise<number[]>;
  /** Versions of the software under test, for the report. */
  readonly versions: Readonly<Record<string, string>>;
  /** Stops every process this system started. */
  stop(): Promise<void>;
}
