/**
 * Decoded packet shapes of the native wire protocol (see docs/PROTOCOL.md).
 *
 * Plain data, no classes: the codec (`wire.ts`) produces and consumes these, the engine
 * (`sender.ts`, `receiver.ts`, `endpoint.ts`) reasons about them. Payload and topic bytes are
 * views into the datagram buffer where possible (no copies on decode).
 */

export const MAGIC = 0x4544 // "ED"
export const VERSION = 2

export const PacketKind = {
  Data: 1,
  Heartbeat: 2,
  Nak: 3,
  Lost: 4,
  Announce: 5,
  Goodbye: 6,
  Status: 7
} as const
export type PacketKind = (typeof PacketKind)[keyof typeof PacketKind]

/** Header flag: this data packet is a retransmission answering a NAK. */
export const FLAG_RETRANSMISSION = 0x01
/**
 * Header flag: the session is fresh (it has sent no data yet, or its first data segment left less
 * than its fresh window ago). Valid on Data, Heartbeat and Announce. A receiver that was already
 * listening when it first hears such a packet synchronises at sequence 1 (docs/PROTOCOL.md).
 */
export const FLAG_FRESH = 0x02

/** Who sent a packet: present in every packet so a late joiner knows its source at once. */
export interface Source {
  /** Random 64-bit session id, chosen when the sending session starts. */
  readonly sessionId: bigint
  /**
   * Index of the publishing session within its process and connection (0, 1, 2 … in creation
   * order). With host and application it forms the key that recognises a restarted sender.
   */
  readonly senderIndex: number
  readonly host: string
  readonly application: string
}

/** An inclusive range of sequence numbers. */
export interface SeqRange {
  readonly first: number
  readonly last: number
}

/** One complete update inside a packed data segment. */
export interface PackedUpdate {
  readonly topic: string
  readonly payload: Uint8Array
}

/**
 * A decoded update, built in the shape the receiver delivers (the engine's `ReceivedUpdate`): the
 * receiver sets `source` and `sequence` when it delivers the segment in order, so an update is one
 * object from the wire to the subscriber (a second object per update was ~1/4 of a 64 B
 * subscriber's allocation).
 */
export const decodedUpdate = (topic: string, payload: Uint8Array): PackedUpdate =>
  ({ topic, payload, source: undefined, sequence: 0 }) as PackedUpdate

export const Fragment = {
  /** The segment holds one or more complete updates. */
  None: 0,
  First: 1,
  Middle: 2,
  Last: 3
} as const
export type Fragment = (typeof Fragment)[keyof typeof Fragment]

export type DataBody =
  | { readonly fragment: typeof Fragment.None; readonly updates: ReadonlyArray<PackedUpdate> }
  | {
      readonly fragment: typeof Fragment.First
      readonly topic: string
      /** Payload length of the whole update (all fragments). */
      readonly totalLength: number
      readonly chunk: Uint8Array
    }
  | { readonly fragment: typeof Fragment.Middle | typeof Fragment.Last; readonly chunk: Uint8Array }

export interface DataPacket {
  readonly kind: typeof PacketKind.Data
  readonly source: Source
  readonly retransmission: boolean
  /** Sent while the session was fresh (FLAG_FRESH); a retransmission keeps the original's flag. */
  readonly fresh: boolean
  /** Sequence number of this segment (1, 2, 3 …; a JS safe integer). */
  readonly seq: number
  readonly body: DataBody
}

/**
 * A copy of `p` that outlives the next decode: `Dialect.decode` may answer a Middle or Last fragment
 * in an object it reuses (`decodeTransient`). The chunk stays a view of the datagram.
 */
export const retainPacket = (p: DataPacket): DataPacket => {
  const body = p.body
  return {
    kind: p.kind,
    source: p.source,
    retransmission: p.retransmission,
    fresh: p.fresh,
    seq: p.seq,
    body:
      body.fragment === Fragment.Middle || body.fragment === Fragment.Last
        ? { fragment: body.fragment, chunk: body.chunk }
        : body
  }
}

export interface HeartbeatPacket {
  readonly kind: typeof PacketKind.Heartbeat
  readonly source: Source
  /** Highest sequence number sent so far (0 when none). */
  readonly highestSeq: number
  /** Oldest sequence number still in the retransmission cache (0 when the cache is empty). */
  readonly oldestCached: number
  /** Sent while the session was fresh (FLAG_FRESH). */
  readonly fresh: boolean
}

export interface NakPacket {
  readonly kind: typeof PacketKind.Nak
  /** The receiver that sends the NAK (its own session id; senderIndex/host/app identify it). */
  readonly source: Source
  /** Session whose segments are requested. */
  readonly target: bigint
  readonly ranges: ReadonlyArray<SeqRange>
}

export interface LostPacket {
  readonly kind: typeof PacketKind.Lost
  readonly source: Source
  /** Ranges this sender can no longer supply. */
  readonly ranges: ReadonlyArray<SeqRange>
}

export interface AnnouncePacket {
  readonly kind: typeof PacketKind.Announce
  readonly source: Source
  readonly highestSeq: number
  /** Wall-clock start of the session, ms since the epoch (informational). */
  readonly startedAt: number
  /** Sent while the session was fresh (FLAG_FRESH). */
  readonly fresh: boolean
}

export interface GoodbyePacket {
  readonly kind: typeof PacketKind.Goodbye
  readonly source: Source
  readonly highestSeq: number
}

/** One remote session a receiver reports on: how far it has consumed it. */
export interface StatusEntry {
  /** Session id of the sender reported on. */
  readonly target: bigint
  /** Highest sequence number consumed in order (0: nothing yet). */
  readonly position: number
}

/**
 * Receiver status (flow control and presence), sent by a receiving endpoint from its control
 * session: periodically, when its window opens, and once with `leaving` when it stops receiving.
 */
export interface StatusPacket {
  readonly kind: typeof PacketKind.Status
  /** The receiver (its control session: host and application identify it). */
  readonly source: Source
  /** The receiver's name (may be empty). */
  readonly name: string
  /** The receiver stops receiving: senders drop it from flow control at once. */
  readonly leaving: boolean
  /** Bytes of data the receiver accepts beyond its position, shared by all the sessions it reports. */
  readonly windowBytes: number
  /** Data segments the receiver accepts beyond its position, shared likewise. */
  readonly windowSegments: number
  readonly entries: ReadonlyArray<StatusEntry>
}

export type Packet =
  | DataPacket
  | HeartbeatPacket
  | NakPacket
  | LostPacket
  | AnnouncePacket
  | GoodbyePacket
  | StatusPacket

/** Why a datagram could not be decoded. The socket loop counts these and drops the datagram. */
export type DecodeFailureReason =
  | "TooShort"
  | "BadMagic"
  | "UnsupportedVersion"
  | "UnknownKind"
  | "Truncated"
  | "TrailingBytes"
  | "InvalidField"

export interface DecodeFailure {
  readonly _tag: "DecodeFailure"
  readonly reason: DecodeFailureReason
  readonly detail: string
}
