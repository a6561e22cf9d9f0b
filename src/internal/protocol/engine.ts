/**
 * The contract between the sans-I/O protocol engine and whatever drives it (the Effect shell in
 * `Connection.ts`, the deterministic simulator in tests). Plain TypeScript: no Effect, no I/O, no
 * clock. Every input carries `now` (milliseconds, any monotonic origin); every output goes to the
 * `EngineSink` synchronously, inside the call that caused it.
 */
import type { LossReason } from "../../DistributorError.js"
import type { EngineSecurity } from "../security/config.js"
import type { PycastEngineConfig } from "./pycastDialect.js"

export interface EngineConfig {
  /** Identity carried in every packet. */
  readonly host: string
  readonly application: string
  /** Largest datagram the engine builds, in bytes (header included). */
  readonly segmentSize: number
  /** Largest update payload accepted by `publish`. */
  readonly maxUpdateSize: number
  /** Longest a partly filled datagram may be held back under load. 0 disables holdback. */
  readonly holdbackDelayMs: number
  /** Publish rate (updates/s) above which holdback engages; below it every publish leaves at once. */
  readonly holdbackThreshold: number
  /** Heartbeat interval of an idle sender (the longest gap between heartbeats). */
  readonly heartbeatIntervalMs: number
  /** A remote sender silent this long is gone. */
  readonly senderTimeoutMs: number
  /** Upper bound of the random back-off before a receiver's first NAK for a gap. */
  readonly nakBackoffMs: number
  /** Interval between NAK retries for a gap still missing. */
  readonly nakRetryIntervalMs: number
  /** NAK retries before the gap is declared lost (RetriesExhausted). */
  readonly nakMaxRetries: number
  /** A sender retransmits a given sequence at most once within this window (NAK coalescing). */
  readonly retransmitHoldoffMs: number
  /** Retransmission cache bounds. */
  readonly cacheMaxBytes: number
  readonly cacheMaxAgeMs: number
  /** Max bytes/s a sender puts on the wire (token bucket); 0 = unlimited. */
  readonly maxBandwidth: number
  /** Out-of-order segments a receiver holds per remote session before declaring an overrun. */
  readonly reorderBufferSegments: number
  /**
   * Flow control of local senders (docs/PROTOCOL.md "Flow control"): bound what is in flight by the
   * slowest live receiver ("min"), the fastest ("max"), or not at all ("none").
   */
  readonly flowControl: FlowControlMode
  /**
   * Whether this endpoint reports its status as a receiver (the shell sets it while the connection
   * has subscriptions); `setListening` changes it at run time.
   */
  readonly listening?: boolean
  /**
   * The shell's sockets are done with every datagram once flushed (the native UDP backend), and
   * the shell calls `Endpoint.afterFlush` after flushing: senders then reuse the memory of data
   * datagrams their cache evicted instead of allocating fresh slabs.
   */
  readonly reuseSendMemory?: boolean
  /** This endpoint's name as a receiver (presence), "" for none. */
  readonly receiverName: string
  /** Data bytes this endpoint accepts in flight as a receiver, shared by the sessions it receives. */
  readonly receiverWindowBytes: number
  /** Data segments this endpoint accepts in flight as a receiver, shared likewise. */
  readonly receiverWindowSegments: number
  /** Status interval of a receiver while data flows; it doubles while idle, up to a quarter of `receiverTimeoutMs`. */
  readonly statusIntervalMs: number
  /** A receiver whose status is not heard this long leaves flow control and presence. */
  readonly receiverTimeoutMs: number
  /** Remote sessions tracked at most (a quarter of them may be unconfirmed). Default 1024. */
  readonly maxRemoteSessions?: number
  /** Retransmitted bytes/s allowed per requesting address (token bucket, burst 1/32 s), 0 = unlimited. Default 4 MiB/s. */
  readonly retransmitRateBytes?: number
  /** Reorder buffer + partial update bytes per remote session. Default: maxUpdateSize + 16 MiB. */
  readonly sessionBufferBytes?: number
  /** Reorder buffer + partial update bytes over all remote sessions of the endpoint. Default 256 MiB. */
  readonly connectionBufferBytes?: number
  /**
   * Speak pycast's wire format on this connection instead of the native one (docs/PROTOCOL.md
   * "pycast dialect"); undefined: native.
   */
  readonly pycast?: PycastEngineConfig
  /**
   * Authenticated encryption of every datagram (docs/PROTOCOL.md "Security"); absent: plaintext.
   * Sealed datagrams still fit `segmentSize`: the engine builds its packets smaller by the envelope.
   */
  readonly security?: EngineSecurity | undefined
}

const MiB = 1024 * 1024
export const DEFAULT_MAX_REMOTE_SESSIONS = 1024
export const DEFAULT_RETRANSMIT_RATE_BYTES = 4 * MiB
export const DEFAULT_CONNECTION_BUFFER_BYTES = 256 * MiB

export const maxRemoteSessions = (config: EngineConfig): number =>
  Math.max(1, config.maxRemoteSessions ?? DEFAULT_MAX_REMOTE_SESSIONS)
/** Unconfirmed (probation) sessions may take a quarter of the slots: a flood of new ids never evicts live ones. */
export const maxUnconfirmedSessions = (config: EngineConfig): number =>
  Math.max(1, Math.floor(maxRemoteSessions(config) / 4))
export const retransmitRateBytes = (config: EngineConfig): number =>
  config.retransmitRateBytes ?? DEFAULT_RETRANSMIT_RATE_BYTES
export const sessionBufferBytes = (config: EngineConfig): number =>
  config.sessionBufferBytes ?? config.maxUpdateSize + 16 * MiB
export const connectionBufferBytes = (config: EngineConfig): number =>
  config.connectionBufferBytes ?? DEFAULT_CONNECTION_BUFFER_BYTES

/**
 * How long a session may be silent while a newer session with its restart key exists, or while it
 * is unconfirmed, before it ends: two and a half heartbeat intervals (a live sender heartbeats at
 * least once per interval), at most `senderTimeoutMs`.
 */
export const quietMs = (config: EngineConfig): number =>
  Math.min(config.senderTimeoutMs, Math.max(1, Math.floor(2.5 * config.heartbeatIntervalMs)))

export type FlowControlMode = "min" | "max" | "none"

/** A remote receiving endpoint as senders see it (from its Status packets). */
export interface ReceiverInfo {
  /** Its control session id (16 hex digits). */
  readonly sessionIdHex: string
  readonly name: string
  readonly host: string
  readonly application: string
  readonly address: string
}

export interface RemoteReceiverStats {
  readonly receiver: ReceiverInfo
  readonly joinedAt: number
  readonly lastHeardAt: number
  /** Its window per session it receives (bytes, segments). */
  readonly windowBytes: number
  readonly windowSegments: number
  /** Its position for each local sender it reported, and the lag behind what was sent (segments). */
  readonly positions: ReadonlyArray<{ readonly session: SessionInfo; readonly position: number; readonly lag: number }>
}

/** A remote (or local) sending session as receivers see it. One shared object per session. */
export interface SessionInfo {
  readonly sessionId: bigint
  /** 16 lowercase hex digits. */
  readonly sessionIdHex: string
  readonly senderIndex: number
  readonly host: string
  readonly application: string
  /** Where its datagrams come from (transport-specific address string). */
  readonly address: string
}

/** One delivered update. The shell hands this object to subscribers as is. */
export interface ReceivedUpdate {
  readonly topic: string
  readonly payload: Uint8Array
  readonly source: SessionInfo
  /** Sequence number of the segment that completed this update. */
  readonly sequence: number
}

export interface LossReport {
  readonly source: SessionInfo
  readonly firstSeq: number
  readonly lastSeq: number
  readonly reason: LossReason
  /**
   * The session had delivered a complete update here before this loss. Losses of unconfirmed
   * sessions (a forged one-packet session, a head lost before anything arrived) fail no
   * subscription (docs/PROTOCOL.md "Hostile networks").
   */
  readonly confirmed: boolean
  /** The topic of the lost update, when the range is exactly (part of) one update whose First was seen. */
  readonly topic?: string
}

/** Why a packet was judged in conflict with what the receiver has seen of its session. */
export type ConflictReason =
  | "ImplausibleClaim"
  | "DataAfterGoodbye"
  | "ClosedSessionResumed"
  | "SessionKeyInUse"
  | "ContentMismatch"
  | "ReceiverAddressChanged"

export type SessionEvent =
  | { readonly _tag: "Joined"; readonly session: SessionInfo }
  | { readonly _tag: "Restarted"; readonly session: SessionInfo; readonly previous: SessionInfo }
  | { readonly _tag: "Closed"; readonly session: SessionInfo }
  | { readonly _tag: "Gone"; readonly session: SessionInfo }
  /**
   * A packet of this session contradicts what was seen (a forged or corrupted datagram, or two
   * senders with one identity): it was dropped or the session kept going; see `reason`. At most one
   * per session per second (the `conflicts` and `implausible` counters count every one).
   */
  | {
      readonly _tag: "Conflict"
      readonly session: SessionInfo
      readonly reason: ConflictReason
      readonly detail: string
    }
  | { readonly _tag: "ReceiverJoined"; readonly receiver: ReceiverInfo }
  | { readonly _tag: "ReceiverLeft"; readonly receiver: ReceiverInfo; readonly reason: "Left" | "Timeout" }

export interface EngineSink {
  /** Multicast this datagram to the group's data channel (one `socket.send`). */
  send(datagram: Uint8Array): void
  /**
   * Multicast a control datagram (NAK, Status) to the group's control channel; absent: `send`
   * (one channel, as in the simulator and the pycast dialect).
   */
  sendControl?(datagram: Uint8Array): void
  /**
   * Send what was queued so far now, not at the end of the shell's drive (absent: nothing to do,
   * the sink sends at once). Asked after a Status: a receiver working through a long read must not
   * hold back the report that reopens its senders' windows until the read is done.
   */
  flushControl?(): void
  /** Deliver an update in order (remote sessions, and local publishes for local subscribers). */
  deliver(update: ReceivedUpdate): void
  /**
   * Whether anything here subscribes (absent: yes). Local publishes are not turned into updates
   * while it says no, so a publish-only process builds no object per update it publishes.
   */
  hasLocalSubscribers?(): boolean
  loss(loss: LossReport): void
  event(event: SessionEvent): void
}

/** Plain counters the shell turns into metrics and console snapshots (defined in counters.ts). */
export type { EngineStats } from "./counters.js"

export interface RemoteSessionStats {
  readonly session: SessionInfo
  readonly state: "active" | "restarted" | "closed" | "gone"
  readonly highestSeq: number
  readonly delivered: number
  readonly lastHeardAt: number
  readonly naksSent: number
  readonly retransmissionsReceived: number
  readonly lostSegments: number
  readonly duplicates: number
}

/**
 * Closing grace (docs/PROTOCOL.md "Closing"): one full NAK retry budget. A closed sender keeps
 * answering NAKs for this long after its Goodbye, and a receiver keeps repairing gaps for this long
 * after it hears the Goodbye, so a gap found at the close gets every retry and every retry is
 * answered; what is still missing then is reported SenderGone.
 */
export const closeGraceMs = (config: EngineConfig): number =>
  config.nakBackoffMs + (config.nakMaxRetries + 1) * config.nakRetryIntervalMs

/**
 * Fresh window W (docs/PROTOCOL.md "Fresh sessions"): a sender marks its Data, Heartbeat and
 * Announce packets fresh until W after its first data segment. At least two full heartbeat
 * intervals, so a receiver that loses the session's first datagrams still hears marked heartbeats;
 * at most `senderTimeoutMs`, so a session that went silent (Gone) is never fresh when it returns.
 */
/**
 * Flow-control stall bound (docs/PROTOCOL.md "Hostile networks"): a live receiver has every segment,
 * or has given it up, within one NAK retry budget of its sending, so a receiver whose position is
 * behind a segment sent longer ago than this (plus a receiver timeout of slack) no longer holds a
 * sender back — a forged Status at an old position cannot stall a publisher.
 */
export const stallMs = (config: EngineConfig): number => config.receiverTimeoutMs + closeGraceMs(config)

export const freshWindowMs = (config: EngineConfig): number =>
  Math.min(config.senderTimeoutMs, Math.max(1000, 2 * config.heartbeatIntervalMs))

/**
 * A receiver synchronises a fresh session at sequence 1 only when its own endpoint has been open for
 * at least `freshWindowMs + FRESH_JOIN_MARGIN_MS`: the margin covers the one-way delay and the time
 * the group membership takes to become effective after the endpoint opened.
 */
export const FRESH_JOIN_MARGIN_MS = 100
