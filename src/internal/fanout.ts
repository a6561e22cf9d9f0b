/**
 * Subscriber fan-out of one connection: routes the updates and losses of an engine drive to the
 * subscribers whose pattern matches, each subscriber getting ONE chunk per drive.
 *
 * Hot path (per update): one trie lookup (`Topic.make`'s cached `match`), one `push` per matching
 * subscriber. Per drive: one `Mailbox.unsafeOfferAll(chunk)` per touched subscriber, which appends
 * the chunk without copying it. Nothing here builds an Effect per update.
 *
 * Bounded buffers (`bufferSize` = capacity): a subscriber never holds more than `capacity` updates,
 * plus one overflow notice in `onLoss: "notify"` mode (loss notices come on top: they are never
 * merged or dropped).
 * - fail mode (default): when a drive's updates do not fit, the subscriber's buffered backlog is
 *   DISCARDED and its stream fails with `SubscriberOverflow` at its next pull, without first
 *   draining the backlog (a consumer that fell behind learns it at once, not after working through
 *   a stale buffer). `dropped` counts the updates of the drive that did not fit plus the discarded
 *   backlog.
 * - notify mode: what fits is delivered, then one `SubscriberOverflow` notice counting the dropped
 *   updates. While the buffer is still full after that (the consumer has not taken anything),
 *   further drops are only counted, and reported by the next notice as soon as there is room for
 *   it — before any later update, so the notice always sits at the gap it reports.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { GatewayError, GatewayLoss, InvalidTopic, IrrecoverableLoss } from "../DistributorError.js"
import { SubscriberOverflow } from "../DistributorError.js"
import * as Topic from "../Topic.js"
import { forEachChunk, withDirect } from "./consume.js"
import type { ShellStats } from "./counters.js"
import type { ReceivedUpdate, SessionInfo } from "./protocol/engine.js"

/** `GatewayLoss` and `GatewayError` only reach the subscribers of a `GatewayClient` (`broadcast`). */
export type Item = ReceivedUpdate | IrrecoverableLoss | SubscriberOverflow | GatewayLoss
export type SubscriberError = IrrecoverableLoss | SubscriberOverflow | GatewayLoss | GatewayError

export interface Subscriber {
  readonly pattern: string
  readonly mailbox: Mailbox.Mailbox<Item, SubscriberError>
  readonly capacity: number
  readonly notify: boolean
  key: Topic.SubscriptionKey | undefined
  /** Updates routed to it during the current drive. */
  batch: Array<Item>
  delivered: number
  dropped: number
  /** notify mode: drops not yet reported in a notice. */
  unreported: number
  /** Set once the subscriber failed (overflow / loss) or ended: nothing more is offered. */
  done: boolean
  /** Sessions it has received an update from (the loss scoping rule), and the last one (cheap check). */
  readonly sources: WeakSet<SessionInfo>
  lastSource: SessionInfo | undefined
  /** A synchronous consumer (`consume`): while set, chunks go to it instead of the mailbox. */
  direct: Direct | undefined
}

/**
 * A synchronous consumer attached to a subscriber (`Connection.forEachChunk` on a subscription):
 * each drive hands it the subscriber's chunk, in order and never re-entrantly (a chunk that arrives
 * while `f` runs, e.g. a local publish from inside `f`, waits in `pending` until `f` returns).
 */
interface Direct {
  readonly f: (chunk: Chunk.Chunk<Item>) => void
  /** Completes the consumer's effect. */
  readonly resume: (effect: Effect.Effect<void, SubscriberError>) => void
  running: boolean
  pending: Array<Chunk.Chunk<Item>>
  /** The subscriber ended while `f` ran: the effect completes with this once `pending` is delivered. */
  exit: Exit.Exit<void, SubscriberError> | undefined
}

export interface SubscriberSnapshot {
  readonly pattern: string
  readonly buffered: number
  readonly delivered: number
  readonly dropped: number
}

const bufferedOf = (sub: Subscriber): number => Option.getOrElse(sub.mailbox.unsafeSize(), () => 0)

/**
 * Hands `items` to the subscriber's direct consumer, or else its mailbox. Everything goes into a
 * mailbox as a Chunk, never with `unsafeOffer`: in effect 3.22.4 an unbounded Mailbox that holds
 * items offered one by one duplicates them when a Chunk is offered next (`unsafeOfferAllArray`
 * appends `messages` to `messagesChunk` without clearing it).
 */
const offer = (sub: Subscriber, items: Chunk.Chunk<Item>): void => {
  const d = sub.direct
  if (d === undefined) sub.mailbox.unsafeOfferAll(items)
  else runDirect(sub, d, items)
}

const runDirect = (sub: Subscriber, d: Direct, items: Chunk.Chunk<Item>): void => {
  if (d.running) {
    d.pending.push(items)
    return
  }
  d.running = true
  let chunk: Chunk.Chunk<Item> | undefined = items
  try {
    while (chunk !== undefined) {
      d.f(chunk)
      chunk = d.pending.shift()
    }
  } catch (defect) {
    d.running = false
    detach(sub, d)
    d.resume(Effect.die(defect))
    return
  }
  d.running = false
  if (d.exit !== undefined) d.resume(d.exit)
}

/** The consumer stops (interrupted, or `f` threw): what it had not taken goes back to the mailbox. */
const detach = (sub: Subscriber, d: Direct): void => {
  if (sub.direct === d) sub.direct = undefined
  const pending = d.pending
  d.pending = []
  if (!sub.done) for (const chunk of pending) sub.mailbox.unsafeOfferAll(chunk)
}

export class FanOut {
  private readonly matcher = Topic.make<Subscriber>()
  private readonly subscribers = new Set<Subscriber>()
  private touched: Array<Subscriber> = []
  /** Topics that passed validation (`admitTopic`): each distinct received or published topic is checked once. */
  readonly validTopics = new Set<string>()

  constructor(
    private readonly counters: ShellStats,
    /** Told about every overflow (the connection's event stream). */
    private readonly onOverflow: (overflow: SubscriberOverflow) => void
  ) {}

  /** Registers a subscriber; its stream is `Mailbox.toStream(sub.mailbox)`. */
  add(
    pattern: string,
    parsed: Topic.Pattern,
    options: { readonly capacity: number; readonly notify: boolean }
  ): Effect.Effect<Subscriber> {
    return Effect.map(Mailbox.make<Item, SubscriberError>(), (mailbox) => {
      const sub: Subscriber = {
        pattern,
        mailbox,
        capacity: Math.max(1, options.capacity),
        notify: options.notify,
        key: undefined,
        batch: [],
        delivered: 0,
        dropped: 0,
        unreported: 0,
        done: false,
        sources: new WeakSet(),
        lastSource: undefined,
        direct: undefined
      }
      sub.key = this.matcher.add(parsed, sub)
      this.subscribers.add(sub)
      return sub
    })
  }

  /** Subscribers registered and not ended. */
  get size(): number {
    return this.subscribers.size
  }

  /** The subscriber's stream; `Connection.forEachChunk` on it runs `consume` instead of the stream. */
  stream(sub: Subscriber): Stream.Stream<Item, SubscriberError> {
    return withDirect(Mailbox.toStream(sub.mailbox), (f) => this.consume(sub, f))
  }

  /**
   * Runs `f` on each chunk of the subscriber until it ends, from the drive itself: what the
   * mailbox holds first, then every drive's chunk as the drive ends, with no buffer, Stream or
   * fiber wake-up in between (the hand-off through the mailbox was ~20-40 µs of a cold path here).
   * The subscriber's `bufferSize` no longer applies: a slow `f` holds up the receive loop, and the
   * kernel's buffer and flow control take the load. Interrupted, the subscriber goes back to its
   * mailbox; a second consumer of the same subscriber reads the mailbox's stream.
   */
  consume(sub: Subscriber, f: (chunk: Chunk.Chunk<Item>) => void): Effect.Effect<void, SubscriberError> {
    return Effect.async<void, SubscriberError>((resume) => {
      if (sub.direct !== undefined) {
        resume(forEachChunk(Mailbox.toStream(sub.mailbox), f))
        return
      }
      // Everything below is synchronous, so nothing is offered between the draining and the attaching.
      for (;;) {
        const size = sub.mailbox.unsafeSize()
        if (Option.isNone(size)) {
          resume(sub.mailbox.await)
          return
        }
        if (size.value === 0) break
        try {
          f(Effect.runSync(sub.mailbox.clear))
        } catch (defect) {
          resume(Effect.die(defect))
          return
        }
      }
      const d: Direct = { f, resume, running: false, pending: [], exit: undefined }
      sub.direct = d
      if (sub.unreported > 0) {
        const n = sub.unreported
        sub.unreported = 0
        runDirect(sub, d, Chunk.of(this.overflowError(sub, n)))
      }
      return Effect.sync(() => detach(sub, d))
    })
  }

  /** Ends a subscriber normally (its scope closed, or the connection did). */
  end(sub: Subscriber): void {
    if (sub.done) return
    this.flushOne(sub)
    // A notify-mode subscriber still owed a notice gets it before its stream ends.
    if (sub.unreported > 0) offer(sub, Chunk.of(this.overflowError(sub, sub.unreported)))
    this.finish(sub, Exit.void)
  }

  endAll(): void {
    for (const sub of Array.from(this.subscribers)) this.end(sub)
  }

  /** One delivered update: routed now, handed over at `flush`. */
  route(update: ReceivedUpdate): void {
    const subs = this.matcher.match(update.topic)
    const n = subs.length
    if (n === 0) return
    if (!this.validTopics.has(update.topic) && this.admitTopic(update.topic) !== undefined) {
      this.counters.invalidTopicsDropped++
      return
    }
    const touched = this.touched
    const source = update.source
    for (let j = 0; j < n; j++) {
      const sub = subs[j]
      if (sub.batch.length === 0) touched.push(sub)
      sub.batch.push(update)
      if (sub.lastSource !== source) {
        sub.lastSource = source
        sub.sources.add(source)
      }
    }
  }

  /**
   * End of a drive: every touched subscriber gets its updates as one chunk. Re-entrant (a direct
   * consumer may publish locally, which drives again): a nested flush sees only what the nested
   * drive touched.
   */
  flush(): void {
    const touched = this.touched
    if (touched.length === 0) return
    this.touched = []
    for (let i = 0; i < touched.length; i++) this.flushOne(touched[i])
  }

  /**
   * An irrecoverable loss: after the updates routed before it (flushed first, so a subscriber sees
   * updates and losses in the session's order), every affected subscriber gets it — as a value in
   * notify mode, else as the failure its stream ends with once it has taken what was buffered
   * before. Affected (docs/PROTOCOL.md "Hostile networks", the loss scoping rule):
   * - none, when the session is unconfirmed (it never delivered a complete update here);
   * - when the lost update's topic is known: the subscribers whose pattern matches it;
   * - otherwise: the subscribers that have received an update from that session.
   */
  loss(error: IrrecoverableLoss, source: SessionInfo, confirmed: boolean, topic: string | undefined): void {
    if (!confirmed) return
    this.flush()
    const candidates = topic !== undefined ? this.matcher.match(topic) : Array.from(this.subscribers)
    for (const sub of Array.from(candidates)) {
      if (sub.done) continue
      if (topic === undefined && !sub.sources.has(source)) continue
      if (sub.notify) offer(sub, Chunk.of(error))
      else this.finish(sub, Exit.fail(error))
    }
  }

  /**
   * A loss that concerns every subscriber (a gateway client's lost range, the gateway's own
   * overflow), after the updates routed before it: a value in notify mode, else the failure its
   * stream ends with. A `GatewayError` ends every stream in both modes.
   */
  broadcast(error: SubscriberError): void {
    this.flush()
    for (const sub of Array.from(this.subscribers)) {
      if (sub.done) continue
      if (sub.notify && error._tag !== "GatewayError") offer(sub, Chunk.of(error))
      else this.finish(sub, Exit.fail(error))
    }
  }

  snapshot(): Array<SubscriberSnapshot> {
    return Array.from(this.subscribers, (sub) => ({
      pattern: sub.pattern,
      buffered: bufferedOf(sub),
      delivered: sub.delivered,
      dropped: sub.dropped
    }))
  }

  /**
   * Validates a topic not in `validTopics` and remembers it when valid (at most 65 536, then the set
   * starts over), so each distinct topic — received or published — is checked once.
   */
  admitTopic(topic: string): InvalidTopic | undefined {
    const invalid = Topic.validateTopic(topic)
    if (invalid !== undefined) return invalid
    if (this.validTopics.size >= 65_536) this.validTopics.clear()
    this.validTopics.add(topic)
    return undefined
  }

  // ---- internals --------------------------------------------------------------------------------

  private finish(sub: Subscriber, exit: Exit.Exit<void, SubscriberError>): void {
    sub.done = true
    sub.batch = []
    if (sub.key) this.matcher.remove(sub.key)
    sub.key = undefined
    this.subscribers.delete(sub)
    sub.mailbox.unsafeDone(exit)
    const d = sub.direct
    if (d !== undefined) {
      sub.direct = undefined
      if (d.running) d.exit = exit
      else d.resume(exit)
    }
  }

  private overflowError(sub: Subscriber, dropped: number): SubscriberOverflow {
    this.counters.subscriberOverflows++
    const error = new SubscriberOverflow({
      reason: "BufferFull",
      pattern: sub.pattern,
      capacity: sub.capacity,
      dropped
    })
    this.onOverflow(error)
    return error
  }

  private drop(sub: Subscriber, n: number): void {
    sub.dropped += n
    this.counters.subscriberDrops += n
  }

  private flushOne(sub: Subscriber): void {
    const batch = sub.batch
    if (sub.done || batch.length === 0) return
    sub.batch = []
    const d = sub.direct
    if (d !== undefined) {
      // No buffer to bound: the consumer takes the chunk now.
      sub.delivered += batch.length
      runDirect(sub, d, Chunk.unsafeFromArray(batch))
      return
    }
    const capacity = sub.capacity
    let size = bufferedOf(sub)
    if (sub.unreported > 0) {
      // notify mode, drops still to report: the notice goes first, when there is room for it.
      if (size > capacity) {
        this.drop(sub, batch.length)
        sub.unreported += batch.length
        return
      }
      offer(sub, Chunk.of(this.overflowError(sub, sub.unreported)))
      sub.unreported = 0
      size++
    }
    const room = capacity - size
    if (batch.length <= room) {
      offer(sub, Chunk.unsafeFromArray(batch))
      sub.delivered += batch.length
      return
    }
    // The subscriber did not keep up: never drop silently.
    if (!sub.notify) {
      const discarded = Chunk.size(Effect.runSync(sub.mailbox.clear))
      this.drop(sub, batch.length + discarded)
      this.finish(sub, Exit.fail(this.overflowError(sub, batch.length + discarded)))
      return
    }
    const fits = Math.max(room, 0)
    if (fits > 0) offer(sub, Chunk.unsafeFromArray(batch.slice(0, fits)))
    sub.delivered += fits
    const dropped = batch.length - fits
    this.drop(sub, dropped)
    // After the updates that fitted the buffer holds `capacity` items (or more, when a notice was
    // just offered above): the notice may be the one item beyond — else it waits for room.
    if (size + fits <= capacity) offer(sub, Chunk.of(this.overflowError(sub, dropped)))
    else sub.unreported += dropped
  }
}
