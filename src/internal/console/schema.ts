/**
 * The documented shape of the web console's JSON (`/api/stats`, `/api/events`). The console builds
 * values of these schemas' `Type` and encodes them, so the wire shape is exactly the schemas'
 * `Encoded` side: 64-bit session ids become 16 hex digits, missing values become `null`.
 */
import * as Schema from "effect/Schema"
import { LossReason } from "../../DistributorError.js"
import { CONNECTION_COUNTERS, type ConnectionCounter } from "../counters.js"

const hex16 = (n: bigint): string => n.toString(16).padStart(16, "0")

/** A 64-bit session id: a `bigint` in TypeScript, 16 lowercase hex digits in JSON. */
export const SessionId = Schema.transform(
  Schema.String.pipe(Schema.pattern(/^[0-9a-f]{16}$/)),
  Schema.BigIntFromSelf.pipe(Schema.greaterThanOrEqualToBigInt(0n), Schema.lessThanBigInt(1n << 64n)),
  { strict: true, decode: (s) => BigInt(`0x${s}`), encode: hex16 }
).annotations({ identifier: "SessionId", description: "64-bit session id as 16 lowercase hex digits" })

const Count = Schema.Number.annotations({ description: "a counter since the connection opened" })
const EpochMillis = Schema.Number.annotations({ description: "milliseconds since the Unix epoch" })

/** The counters whose per-second rates the console computes. */
export const rateFields = [
  "datagramsIn",
  "datagramsOut",
  "bytesIn",
  "bytesOut",
  "updatesIn",
  "updatesOut",
  "naksSent",
  "naksReceived",
  "retransmissionsSent",
  "retransmissionsReceived"
] as const
export type RateField = (typeof rateFields)[number]

/** Per-second rates of the traffic and recovery counters. */
export const Rates = Schema.Struct({
  datagramsIn: Schema.Number,
  datagramsOut: Schema.Number,
  bytesIn: Schema.Number,
  bytesOut: Schema.Number,
  updatesIn: Schema.Number,
  updatesOut: Schema.Number,
  naksSent: Schema.Number,
  naksReceived: Schema.Number,
  retransmissionsSent: Schema.Number,
  retransmissionsReceived: Schema.Number
}).annotations({ identifier: "Rates", description: "per-second rates" })
export type Rates = typeof Rates.Type

/** One point of the rate history: the rates over the second that ended at `at`. */
export const RateSample = Schema.Struct({ at: EpochMillis, rates: Rates }).annotations({ identifier: "RateSample" })
export type RateSample = typeof RateSample.Type

/** Every counter of a connection (see `Connection.ConnectionStats`), from the single definition. */
export const Counters = Schema.Struct(
  Object.fromEntries(CONNECTION_COUNTERS.map(([name, description]) => [name, Count.annotations({ description })])) as {
    readonly [K in ConnectionCounter]: typeof Count
  }
).annotations({ identifier: "Counters" })
export type Counters = typeof Counters.Type

export const SocketView = Schema.Struct({
  sendErrors: Count,
  lastSendError: Schema.NullOr(Schema.String),
  queueDrops: Count,
  recvBufferSize: Schema.Number,
  sendBufferSize: Schema.Number,
  /** The UDP backend (`Transport.udpBackend`), null for other transports. */
  backend: Schema.NullOr(Schema.Literal("native", "dgram")),
  /** Native backend: GSO runs sent and GRO runs read whole, with their datagrams; null otherwise. */
  segmentation: Schema.NullOr(
    Schema.Struct({ gsoSends: Count, gsoDatagrams: Count, groReads: Count, groDatagrams: Count, reusedReads: Count })
  )
}).annotations({ identifier: "SocketStats" })

export const PublisherView = Schema.Struct({
  sessionId: SessionId,
  senderIndex: Schema.Number,
  highestSeq: Schema.Number,
  cachedSegments: Schema.Number,
  cachedBytes: Schema.Number
}).annotations({ identifier: "Publisher" })

export const SubscriptionView = Schema.Struct({
  pattern: Schema.String,
  buffered: Schema.Number,
  delivered: Count,
  dropped: Count
}).annotations({ identifier: "Subscription" })

export const RemoteSessionView = Schema.Struct({
  sessionId: SessionId,
  senderIndex: Schema.Number,
  host: Schema.String,
  application: Schema.String,
  /** Transport address datagrams came from. */
  address: Schema.String,
  state: Schema.Literal("active", "restarted", "closed", "gone"),
  highestSeq: Schema.Number,
  delivered: Count,
  lastHeardAt: EpochMillis,
  naksSent: Count,
  retransmissionsReceived: Count,
  lostSegments: Count,
  duplicates: Count
}).annotations({ identifier: "RemoteSession" })

export const RemoteReceiverView = Schema.Struct({
  /** Its control session id (16 hex digits). */
  sessionId: Schema.String,
  name: Schema.String,
  host: Schema.String,
  application: Schema.String,
  address: Schema.String,
  joinedAt: EpochMillis,
  lastHeardAt: EpochMillis,
  /** The window it advertises per sending session. */
  windowBytes: Schema.Number,
  windowSegments: Schema.Number,
  /** Its position for each local publisher it reported, and how many sent segments it has not consumed yet. */
  positions: Schema.Array(Schema.Struct({ sessionId: SessionId, position: Schema.Number, lag: Schema.Number }))
}).annotations({ identifier: "RemoteReceiver", description: "A receiver that reports status (flow control, presence)" })

export const NakRequester = Schema.Struct({
  host: Schema.String,
  naks: Count
}).annotations({ identifier: "NakRequester", description: "NAKs received from one host" })

export const LossView = Schema.Struct({
  at: EpochMillis,
  reason: LossReason,
  sessionId: SessionId,
  host: Schema.String,
  application: Schema.String,
  firstSeq: Schema.Number,
  lastSeq: Schema.Number
}).annotations({ identifier: "Loss" })

export const ConnectionView = Schema.Struct({
  /** `group:port`. */
  connection: Schema.String,
  openedAt: EpochMillis,
  counters: Counters,
  /** Host-wide UDP receive-buffer drops since the connection opened; `null` where unreadable. */
  kernelReceiveBufferErrors: Schema.NullOr(Schema.Number),
  socket: SocketView,
  /** `current`: over the last second; `peak`: the highest one-second rate since the console started. */
  rates: Schema.Struct({ current: Rates, peak: Rates }),
  /** One sample a second, oldest first (at most the last 5 minutes). */
  history: Schema.Array(RateSample),
  publishers: Schema.Array(PublisherView),
  subscriptions: Schema.Array(SubscriptionView),
  /** Active sessions first, then the most recently ended ones. */
  remoteSessions: Schema.Array(RemoteSessionView),
  /** Receivers heard on the group (their status packets), by name. */
  remoteReceivers: Schema.Array(RemoteReceiverView),
  /** Hosts whose NAKs this connection's publishers received, most NAKs first. */
  nakRequesters: Schema.Array(NakRequester),
  /** The last (up to 100) irrecoverable losses, oldest first. */
  recentLosses: Schema.Array(LossView)
}).annotations({ identifier: "ConnectionView" })
export type ConnectionView = typeof ConnectionView.Type

/** One client session of a gateway: connected, or within its resume window. */
export const GatewayClientView = Schema.Struct({
  name: Schema.String,
  connected: Schema.Boolean,
  /** Remote address of its socket; `null` while it is away. */
  address: Schema.NullOr(Schema.String),
  connectedAt: Schema.NullOr(EpochMillis),
  /** When its socket dropped (it may resume until the gateway's resume window ends); `null` while connected. */
  detachedAt: Schema.NullOr(EpochMillis),
  /** Its subscriptions' patterns and the connection (`group:port`) each is on. */
  subscriptions: Schema.Array(Schema.Struct({ pattern: Schema.String, connection: Schema.String })),
  /** Updates and gap notices the gateway numbered for it (its last sequence number). */
  delivered: Count,
  /** Frames held for it: sent and not yet acknowledged, or not yet sent (its replay buffer). */
  buffered: Count,
  bufferedBytes: Count,
  /** Of `buffered`, frames not yet handed to its socket. */
  unsent: Count,
  /** Publishes it sent through the gateway. */
  published: Count,
  /** Frames dropped from its buffer before they were sent (a slow or absent client): reported to it as gaps. */
  dropped: Count
}).annotations({ identifier: "GatewayClientView" })

/** A gateway running in this process, with its counters and client sessions. */
export const GatewayView = Schema.Struct({
  /** `ws://host:port/path`. */
  url: Schema.String,
  counters: Schema.Struct({
    socketsAccepted: Count,
    socketsRefused: Count,
    hellos: Count,
    resumes: Count,
    takeovers: Count,
    expirations: Count,
    updatesOut: Count,
    publishesIn: Count,
    badFrames: Count,
    errorsSent: Count,
    /** Gap notices sent to clients (losses they were told about). */
    gapsSent: Count,
    framesDropped: Count
  }),
  clients: Schema.Array(GatewayClientView)
}).annotations({ identifier: "GatewayView" })
export type GatewayView = typeof GatewayView.Type

/** The body of `GET /api/stats` and of every `stats` event of `GET /api/events`. */
export const StatsResponse = Schema.Struct({
  application: Schema.String,
  host: Schema.String,
  /** Node process id. */
  pid: Schema.Number,
  startedAt: EpochMillis,
  /** When this snapshot was taken. */
  now: EpochMillis,
  uptimeMs: Schema.Number,
  /** Interval of the rate history, in milliseconds. */
  sampleIntervalMs: Schema.Number,
  connections: Schema.Array(ConnectionView),
  /** Gateways serving this Distributor's connections (`Gateway.make` registers itself); often empty. */
  gateways: Schema.Array(GatewayView)
}).annotations({ identifier: "StatsResponse" })
export type StatsResponse = typeof StatsResponse.Type
export type StatsResponseEncoded = typeof StatsResponse.Encoded
