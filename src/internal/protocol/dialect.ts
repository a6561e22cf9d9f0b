/**
 * A wire dialect: how one connection's engine turns its packet model into datagrams and back.
 *
 * The engine (sender, receiver, endpoint) reasons only about the native packet model
 * (`packets.ts`): data segments with sequence numbers, fragments, heartbeats, NAK ranges, Lost. A
 * dialect supplies the codec for that model — the native one (`wire.ts`) or pycast's
 * (`pycastDialect.ts`) — so sequencing, gap detection, NAK back-off and retries, the cache,
 * reordering and reassembly are the same code in both. What a dialect cannot express it simply
 * does not send (`undefined` from an encoder), and the engine's behaviour degrades as documented
 * in docs/PROTOCOL.md.
 */
import { type LastSlab, SlabPool } from "../slab.js"
import type { DecodeFailure, Packet, SeqRange, Source } from "./packets.js"
import {
  asRetransmission,
  decodeTransient,
  encodeAnnounce,
  encodeFragment,
  encodeGoodbye,
  encodeHeartbeat,
  encodeLost,
  encodeNak,
  fragmentCapacity,
  makeSourcePrefix,
  markFresh,
  maxRangesPerPacket,
  PACKED_UPDATE_OVERHEAD,
  PackedSegmentWriter
} from "./wire.js"

/** Builds packed data segments (one or more whole updates) for one session. */
export interface SegmentWriter {
  readonly isOpen: boolean
  /** Bytes written so far in the open segment. */
  readonly size: number
  begin(seq: number): void
  /** Appends one update if it fits; false otherwise. */
  tryAppend(topicBytes: Uint8Array, payload: Uint8Array): boolean
  /** The finished datagram (exactly sized, owned by the caller). */
  finish(): Uint8Array
}

/** The encoders of one local sending session. */
export interface SessionCodec {
  readonly writer: SegmentWriter
  /**
   * Bytes one update adds to a packed segment besides its topic and payload, as the dialect's fit
   * rule counts them: an update fits an empty segment when `writer.size` (after `begin`) +
   * `updateOverhead` + topic + payload ≤ segmentSize.
   */
  readonly updateOverhead: number
  /** Payload bytes in a first fragment (with this topic) and in a middle/last one. */
  fragmentCapacity(topicBytes: Uint8Array): { readonly first: number; readonly rest: number }
  fragment(seq: number, fragment: 1 | 2 | 3, chunk: Uint8Array, topicBytes?: Uint8Array, total?: number): Uint8Array
  heartbeat(highestSeq: number, oldestCached: number): Uint8Array
  /** What a session sends when it starts, and again every `reannounceMs`. */
  announce(highestSeq: number, startedAt: number): ReadonlyArray<Uint8Array>
  readonly reannounceMs: number
  goodbye(highestSeq: number): Uint8Array | undefined
  lost(ranges: ReadonlyArray<SeqRange>): Uint8Array | undefined
  /** A copy (or the same bytes) of a cached datagram marked as a retransmission. */
  retransmission(datagram: Uint8Array): Uint8Array
  /**
   * With `reuseMemory` (dialects that can): the sender's cache no longer holds a datagram (data it
   * encoded) whose memory is `slab` (`lastSlab` when it was encoded); that memory may be reused
   * after the next `recycle`.
   */
  release?(slab: ArrayBufferLike): void
  /**
   * With `reuseMemory`: the memory of the datagram that `fragment` or `writer.finish` returned
   * last, to give to `release` once the cache drops it (undefined: nothing to give back).
   */
  lastSlab?(): ArrayBufferLike | undefined
  /** The sockets are done with every datagram sent so far (the shell flushed them). */
  recycle?(): void
  /** Marks a datagram fresh, in place (no-op where the dialect has no such mark). */
  markFresh(datagram: Uint8Array): Uint8Array
}

export interface Dialect {
  readonly name: "native" | "pycast"
  /** Status packets (flow control, presence) exist in this dialect. */
  readonly status: boolean
  /**
   * A datagram → a packet of the engine's model, a failure (counted, dropped), or undefined for a
   * well-formed datagram that carries nothing for the engine (pycast's CONFIGURATION, empty NAK).
   * `now` is the engine's clock (the native codec ignores it). A data packet is the caller's only
   * until the next call (the native codec reuses one object for Middle and Last fragments): what is
   * kept longer is a `retainPacket` copy.
   */
  decode(bytes: Uint8Array, now: number): Packet | DecodeFailure | undefined
  /** A new session id; undefined: the endpoint draws a random 64-bit id. */
  sessionId?(random: () => number, wallClockMs: number): bigint
  /**
   * `reuseMemory`: the shell's sockets are done with a datagram once they are flushed, so data
   * memory may come back (`release`, `recycle`).
   */
  session(source: Source, segmentSize: number, reuseMemory?: boolean): SessionCodec
  /** The encoders of this endpoint's control session (the source of its NAKs). */
  control(source: Source, segmentSize: number): ControlCodec
}

export interface ControlCodec {
  /** Ranges one `nak` call may carry (the endpoint splits longer lists). */
  readonly maxNakRanges: number
  /** NAK datagrams asking `target` for `ranges`. */
  nak(target: bigint, ranges: ReadonlyArray<SeqRange>): ReadonlyArray<Uint8Array>
}

/** Slabs of a session's fragments (a 64 KiB update is ~47 of them). */
const FRAGMENT_SLAB_BYTES = 256 * 1024

/** The native protocol (docs/PROTOCOL.md): the codec in wire.ts. */
export const nativeDialect: Dialect = {
  name: "native",
  status: true,
  decode: decodeTransient,
  session(source, segmentSize, reuseMemory = false) {
    const prefix = makeSourcePrefix(source)
    // Both pools note where they carved last in one place: the sender asks once per datagram.
    const last: LastSlab = { slab: undefined }
    const writer = new PackedSegmentWriter(prefix, segmentSize, last)
    // Reusing memory, fragments come from the session's own pool (a packed segment may stay open,
    // holdback, while they are cut); else from wire.ts's module-wide slabs.
    const fragments = reuseMemory ? new SlabPool(FRAGMENT_SLAB_BYTES, undefined, last) : undefined
    const allocFragment = fragments && ((size: number) => fragments.alloc(size))
    if (fragments !== undefined) {
      writer.pool.enable()
      fragments.enable()
    }
    return {
      writer,
      updateOverhead: PACKED_UPDATE_OVERHEAD,
      fragmentCapacity: (tb) => fragmentCapacity(prefix, segmentSize, tb),
      fragment: (seq, fragment, chunk, tb, total) =>
        encodeFragment(prefix, seq, fragment, chunk, tb, total, allocFragment),
      heartbeat: (highestSeq, oldestCached) => encodeHeartbeat(prefix, highestSeq, oldestCached),
      announce: (highestSeq, startedAt) => [
        markFresh(encodeAnnounce(prefix, highestSeq, Math.max(0, Math.floor(startedAt))))
      ],
      reannounceMs: Number.POSITIVE_INFINITY,
      goodbye: (highestSeq) => encodeGoodbye(prefix, highestSeq),
      lost: (ranges) => encodeLost(prefix, ranges),
      retransmission: asRetransmission,
      markFresh,
      ...(fragments !== undefined
        ? {
            release: (slab: ArrayBufferLike) => {
              writer.pool.release(slab)
              fragments.release(slab)
            },
            recycle: () => {
              writer.pool.recycle()
              fragments.recycle()
            },
            lastSlab: () => last.slab
          }
        : {})
    }
  },
  control(source, segmentSize) {
    const prefix = makeSourcePrefix(source)
    return {
      maxNakRanges: maxRangesPerPacket(prefix, segmentSize),
      nak: (target, ranges) => [encodeNak(prefix, target, ranges)]
    }
  }
}
