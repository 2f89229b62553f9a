// Pushpin's configuration for one benchmark run, rendered from data: its own run/log dirs and
// loopback ports, so it never touches /etc/pushpin, /var/run or a system-wide instance.

/** Ports and paths of one Pushpin instance. */
export interface PushpinConfigInput {
  /** Directory holding pushpin.conf, routes, run/ and log/. */
  readonly dir: string;
  /** Client WebSocket port. */
  readonly httpPort: number;
  /** HTTP publish API port (`POST /publish/`). */
  readonly publishPort: number;
  /** ZeroMQ publish PULL, SUB and command ports (Pushpin binds all of them). */
  readonly zmqPushPort: number;
  readonly zmqSubPort: number;
  readonly zmqCommandPort: number;
  /** The WebSocket-over-HTTP origin. */
  readonly originPort: number;
  /** Key Pushpin signs proxied requests with (our origin does not check it). */
  readonly sigKey: string;
  /** Most client connections. Default 50,000 (Debian's). */
  readonly maxConnections?: number;
  /**
   * Published messages per second the handler accepts. Debian ships 2,500, which would cap the
   * many-dialogs scenario below its 2,000/s target plus bursts; raised so Pushpin is measured,
   * not its default throttle.
   */
  readonly messageRate?: number;
  /** Rate-limited messages queued before dropping. Default 1,000,000 (Debian: 25,000). */
  readonly messageHwm?: number;
  /**
   * Pushpin's log level. Default 1 (warnings): at Debian's 2 (info) the handler writes a line
   * per publish and the proxy one per request, which our gateway (run at warn) does not pay.
   */
  readonly logLevel?: number;
}

type Ini = Record<string, Record<string, string | number | boolean>>;

/** Serialises sections to INI text (values are ours: no quoting rules needed). */
export function renderIni(ini: Ini): string {
  return Object.entries(ini)
    .map(([section, entries]) => [`[${section}]`, ...Object.entries(entries).map(([k, v]) => `${k}=${String(v)}`)].join('\n'))
    .join('\n\n')
    .concat('\n');
}

/** pushpin.conf for a private loopback instance (condure front end, zurl to the origin). */
export function renderPushpinConfig(input: PushpinConfigInput): string {
  return renderIni({
    global: {
      include: '{libdir}/internal.conf',
      rundir: `${input.dir}/run`,
      ipc_prefix: 'bench-',
      port_offset: 0,
      stats_connection_ttl: 120,
    },
    runner: {
      // Pushpin 1.36 makes its origin requests through zurl; condure only serves clients.
      services: 'condure,zurl,pushpin-proxy,pushpin-handler',
      http_port: `127.0.0.1:${input.httpPort}`,
      logdir: `${input.dir}/log`,
      log_level: input.logLevel ?? 1,
      client_buffer_size: 8192,
      client_maxconn: input.maxConnections ?? 50_000,
      condure_bin: 'condure',
      zurl_bin: 'zurl',
    },
    proxy: {
      routesfile: 'routes',
      // internal.conf points at a system-wide zurl in /var/run/zurl; use the one we start.
      zurl_out_specs: 'ipc://{rundir}/{ipc_prefix}zurl-in',
      zurl_out_stream_specs: 'ipc://{rundir}/{ipc_prefix}zurl-in-stream',
      zurl_in_specs: 'ipc://{rundir}/{ipc_prefix}zurl-out',
      debug: false,
      auto_cross_origin: false,
      accept_x_forwarded_protocol: false,
      set_x_forwarded_protocol: 'proto-only',
      sig_iss: 'pushpin',
      sig_key: input.sigKey,
      updates_check: 'off',
    },
    handler: {
      push_in_spec: `tcp://127.0.0.1:${input.zmqPushPort}`,
      push_in_sub_specs: `tcp://127.0.0.1:${input.zmqSubPort}`,
      push_in_sub_connect: false,
      push_in_http_addr: '127.0.0.1',
      push_in_http_port: input.publishPort,
      push_in_http_max_headers_size: 10_000,
      push_in_http_max_body_size: 10_000_000,
      stats_spec: 'ipc://{rundir}/{ipc_prefix}stats',
      command_spec: `tcp://127.0.0.1:${input.zmqCommandPort}`,
      message_rate: input.messageRate ?? 1_000_000,
      message_hwm: input.messageHwm ?? 1_000_000,
      message_wait: 5000,
      id_cache_ttl: 60,
      connection_subscription_max: 20,
      subscription_linger: 60,
      stats_subscription_ttl: 60,
      stats_report_interval: 10,
      stats_format: 'tnetstring',
    },
  });
}

/** The routes file: every path to the origin over WebSocket-over-HTTP. */
export function renderPushpinRoutes(originPort: number): string {
  return `* 127.0.0.1:${originPort},over_http\n`;
}
