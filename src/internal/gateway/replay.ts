/**
 * The gateway's per-client state as pure logic (no Effect, no clock, no socket), so resume,
 * overflow and expiry are tested with plain numbers:
 *
 * - `Replay`: every sequenced frame sent to one client, numbered from 1, in one ring bounded by
 *   frames and bytes. It is the outgoing queue (frames after `cursor` are not sent yet) and the
 *   resume buffer (frames before it were sent but may not have arrived). The ring always holds one
 *   contiguous range `[oldest, nextSeq)`: frames leave only from the front (bounds exceeded, or
 *   acknowledged by the client), so whatever a client misses is one exact range.
 * - `planResume`: what a `hello` gets — the session resumed, an `Expired` or `SessionUnknown`
 *   loss with its range — from the live session, the tombstone of an expired one, and the
 *   client's resume position.
 * - `Tombstones`: expired sessions' numbering, so a late client still learns the exact range it
 *   lost, and a new session of that name continues the numbering without reuse.
 */
import type { GapReason } from "./frames.js"

export interface Gap {
  readonly reason: GapReason
  readonly first: number
  /** Absent: unknown (the gateway has no record); the numbering continues at `first`. */
  readonly last?: number
}

export class Replay {
  private entries: Array<Uint8Array | string> = []
  private sizes: Array<number> = []
  private head = 0
  /** Sequence number of the oldest frame held (= `nextSeq` when empty). */
  oldest: number
  /** Sequence number the next appended frame gets. */
  nextSeq: number
  /** Next sequence number to send on the live socket. */
  cursor: number
  bytes = 0
  /** Frames dropped before they were sent (bounds exceeded). */
  droppedUnsent = 0

  constructor(
    readonly maxFrames: number,
    readonly maxBytes: number,
    start = 1
  ) {
    this.oldest = start
    this.nextSeq = start
    this.cursor = start
  }

  get size(): number {
    return this.entries.length - this.head
  }

  /** Frames not sent yet. */
  get unsent(): number {
    return this.nextSeq - Math.max(this.cursor, this.oldest)
  }

  /** Appends a frame (its sequence number is the `nextSeq` before the call), then enforces the bounds. */
  append(frame: Uint8Array | string, bytes: number): number {
    const seq = this.nextSeq++
    this.entries.push(frame)
    this.sizes.push(bytes)
    this.bytes += bytes
    while (this.size > this.maxFrames || (this.bytes > this.maxBytes && this.size > 0)) this.evict()
    return seq
  }

  /** The client acknowledged everything up to `seq`: free what it has (never what is unsent). */
  trimThrough(seq: number): void {
    const limit = Math.min(seq, this.cursor - 1)
    while (this.oldest <= limit && this.size > 0) this.evict()
  }

  /**
   * A (re)attached client last received `lastReceived`: free what it has, send from the next one.
   * What it needs but the ring no longer holds is returned as one `ReplayOverflow` gap.
   */
  resumeFrom(lastReceived: number): Gap | undefined {
    this.cursor = lastReceived + 1
    this.trimThrough(lastReceived)
    return this.takeGap("ReplayOverflow")
  }

  /** Start sending at the newest frame, skipping the backlog (a client with no resume position). */
  skipBacklog(): void {
    this.cursor = this.nextSeq
    this.trimThrough(this.nextSeq - 1)
  }

  /** The range between the cursor and the oldest frame held, if the bounds dropped unsent frames. */
  takeGap(reason: GapReason): Gap | undefined {
    if (this.cursor >= this.oldest) return undefined
    const gap = { reason, first: this.cursor, last: this.oldest - 1 }
    this.cursor = this.oldest
    return gap
  }

  /** The next frame to send, advancing the cursor; undefined when everything was sent. */
  takeNext(): Uint8Array | string | undefined {
    if (this.cursor < this.oldest || this.cursor >= this.nextSeq) return undefined
    return this.entries[this.head + (this.cursor++ - this.oldest)]
  }

  private evict(): void {
    if (this.oldest >= this.cursor) this.droppedUnsent++
    this.bytes -= this.sizes[this.head]
    this.entries[this.head] = undefined as never
    this.head++
    this.oldest++
    if (this.head >= 1024 && this.head * 2 >= this.entries.length) {
      this.entries = this.entries.slice(this.head)
      this.sizes = this.sizes.slice(this.head)
      this.head = 0
    }
  }
}

/** What the gateway remembers of an expired session. */
export interface Tombstone {
  readonly nextSeq: number
  readonly published: number
}

/** Expired sessions by name, oldest forgotten first beyond `capacity`. */
export class Tombstones {
  private readonly map = new Map<string, Tombstone>()
  constructor(readonly capacity: number) {}
  get size(): number {
    return this.map.size
  }
  set(name: string, tombstone: Tombstone): void {
    this.map.delete(name)
    this.map.set(name, tombstone)
    if (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value as string)
  }
  take(name: string): Tombstone | undefined {
    const t = this.map.get(name)
    this.map.delete(name)
    return t
  }
}

export type ResumePlan =
  /** A live session: resume it (from `resume`, or skipping its backlog when absent). */
  | { readonly _tag: "Resume"; readonly resume: number | undefined }
  /** A new session numbered from `start`, after `gap` when the client lost something. */
  | { readonly _tag: "Fresh"; readonly start: number; readonly published: number; readonly gap: Gap | undefined }
  /** The client claims to have received more than the session ever sent. */
  | { readonly _tag: "ResumeAhead"; readonly nextSeq: number }

/**
 * What a `hello` from a client named like `live` (or `tombstone`) gets, given the last sequence
 * number it received (`resume`, absent for a client with no past).
 */
export const planResume = (
  live: { readonly nextSeq: number } | undefined,
  tombstone: Tombstone | undefined,
  resume: number | undefined
): ResumePlan => {
  if (live !== undefined) {
    return resume !== undefined && resume >= live.nextSeq
      ? { _tag: "ResumeAhead", nextSeq: live.nextSeq }
      : { _tag: "Resume", resume }
  }
  if (tombstone !== undefined) {
    if (resume !== undefined && resume >= tombstone.nextSeq) {
      return { _tag: "ResumeAhead", nextSeq: tombstone.nextSeq }
    }
    const gap =
      resume !== undefined && resume + 1 < tombstone.nextSeq
        ? { reason: "Expired" as const, first: resume + 1, last: tombstone.nextSeq - 1 }
        : undefined
    return { _tag: "Fresh", start: tombstone.nextSeq, published: tombstone.published, gap }
  }
  if (resume !== undefined && resume > 0) {
    // No record: numbering continues after what the client has, so its sequence stays monotonic.
    return { _tag: "Fresh", start: resume + 1, published: 0, gap: { reason: "SessionUnknown", first: resume + 1 } }
  }
  return { _tag: "Fresh", start: 1, published: 0, gap: undefined }
}
