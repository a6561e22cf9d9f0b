/**
 * A deterministic discrete-event simulation of N nodes on one lossy multicast group.
 *
 * Time is virtual (`now`, milliseconds, a plain number starting at 0); nothing here reads a real
 * clock. Events live in a binary heap ordered by (time, insertion sequence), so events at the same
 * instant run in the order they were scheduled and a seed always replays the same trace.
 *
 * Usage with the protocol engine (any object with onDatagram / onTimer / nextDeadline works):
 *
 *   const net = new SimNetwork({ seed: 42, defaultLink: { loss: 0.01, jitterMs: 2 } })
 *   const a = net.addNode("a", (node) => makeEndpoint(config, recordingSink(node.send), node.prng))
 *   const b = net.addNode("b", (node) => makeEndpoint(...))
 *   net.schedule(5, () => { for (let i = 0; i < 1000; i++) endpointA.publish("/t", payload, net.now) })
 *   net.runFor(10_000)                       // or net.run({ until: 10_000 })
 *   expect(net.linkStats("a", "b").dropped).toBeGreaterThan(0)
 *
 * Semantics:
 * - `node.send(bytes)` multicasts: every OTHER active node gets its own copy through the link
 *   model from→to (a sender does not receive its own datagrams, like IP_MULTICAST_LOOP off). The
 *   bytes are copied once at send time into a Buffer (the kernel would copy too), so the caller may
 *   reuse its buffer. Receivers get `onDatagram(bytes, senderAddress, now)`, each delivery a copy of
 *   its own (the receiver owns it, as with a real socket; `copyOnSend: false` shares one, unmutated).
 * - Sends never re-enter: a send made inside a callback only schedules deliveries (at `now + delay`,
 *   after everything already queued for that instant).
 * - Timers: after each callback into a node (onDatagram, onTimer), after each `schedule`d action
 *   (for every node), on `addNode` and at the start of `run`, the network asks `nextDeadline()`.
 *   A non-finite deadline (Infinity, NaN) means "no timer". Deadlines in the past fire at `now`.
 *   `onTimer(now)` is only called once `now >= nextDeadline()` (the network re-checks when the timer
 *   event comes due, so a deadline that moved later just re-arms). Call `node.refreshTimer()` if
 *   a test drives an endpoint directly outside `run`/`schedule`.
 * - `isolate(node)`: the node keeps running (timers fire), but its sends are discarded and datagrams
 *   to it are dropped — also those already in flight when they arrive. `heal(node)` undoes it.
 * - `removeNode(node)`: no more callbacks of any kind; in-flight datagrams to it are dropped. Its
 *   name may be added again later (e.g. a restarted process); links keep their config and stream.
 * - Links are per direction, created on first use from `defaultLink`, each with its own PRNG fork
 *   `link:<from>-><to>`, so adding nodes does not change existing links' fault patterns.
 * - Each node gets `node.prng` (fork `node:<name>`) for the endpoint's own randomness.
 * - Exceptions thrown by endpoints or actions propagate out of `run`.
 */
import type { EngineSink, LossReport, ReceivedUpdate, SessionEvent } from "../protocol/engine.js"
import {
  type DatagramClass,
  defaultLinkConfig,
  type LinkConfig,
  LinkModel,
  type LinkStats,
  mergeLinkConfig
} from "./link.js"
import { Prng, type Seed } from "./prng.js"

/** What the network drives. The engine's Endpoint satisfies it. */
export interface SimEndpoint {
  onDatagram(bytes: Uint8Array, address: string, now: number): void
  onTimer(now: number): void
  /** Absolute virtual time of the next timer; Infinity (or any non-finite value) when none. */
  nextDeadline(): number
}

export interface SimNetworkOptions {
  readonly seed: Seed
  /** Config of every link created from now on, over `defaultLinkConfig` (1 ms, no faults). */
  readonly defaultLink?: Partial<LinkConfig>
  /** Copy datagrams at send time (default true). Turn off only if senders never reuse buffers. */
  readonly copyOnSend?: boolean
  /** Observe every send / delivery / drop (for replay tests and debugging). */
  readonly onTrace?: (event: SimTraceEvent) => void
  /** Consecutive onTimer calls for one node at the same instant before `run` throws (a stuck deadline). */
  readonly timerSpinLimit?: number
}

export type SimTraceEvent =
  | { readonly type: "send"; readonly time: number; readonly from: string; readonly size: number }
  | {
      readonly type: "deliver"
      readonly time: number
      readonly from: string
      readonly to: string
      readonly class: DatagramClass
      readonly size: number
    }
  | {
      readonly type: "drop"
      readonly time: number
      readonly from: string
      readonly to: string
      readonly reason: "link" | "isolated" | "removed"
      readonly size: number
    }

export interface ClassTotals {
  /** Copies offered to links. */
  offered: number
  delivered: number
  /** Dropped by links (loss, burst, predicate). */
  dropped: number
}

export interface SimStats {
  /** `send` calls that went out (sender active and not isolated). */
  sends: number
  /** `send` calls discarded because the sender was isolated or removed. */
  sendsDiscarded: number
  /** Per-destination copies offered to link models. */
  offered: number
  delivered: number
  droppedByLink: number
  /** Copies not offered or not delivered because the destination was isolated or removed. */
  droppedUnreachable: number
  duplicated: number
  reordered: number
  data: ClassTotals
  control: ClassTotals
  /** Events processed (deliveries, timer callbacks, actions). */
  events: number
  timerCallbacks: number
}

export interface RunOptions {
  /** Process events with time ≤ until, then set `now = until`. */
  readonly until?: number
  /** Stop after this many events (returns reason "maxEvents"). */
  readonly maxEvents?: number
  /** Stop as soon as only timers are queued (no datagram in flight, no action pending). */
  readonly idle?: boolean
  /** Checked after every event; stop when it returns true. */
  readonly stopWhen?: () => boolean
}

export interface RunResult {
  readonly events: number
  readonly reason: "until" | "empty" | "idle" | "maxEvents" | "stopped"
}

/** Guard for runs without any stop condition: endpoints that re-arm timers forever would hang. */
const DEFAULT_EVENT_LIMIT = 50_000_000

const EV_DELIVER = 0
const EV_TIMER = 1
const EV_ACTION = 2

class SimEvent {
  constructor(
    readonly t: number,
    readonly s: number,
    readonly type: number,
    readonly node: SimNode | undefined,
    readonly bytes: Uint8Array | undefined,
    readonly from: SimNode | undefined,
    readonly link: LinkModel | undefined,
    readonly cls: DatagramClass,
    readonly gen: number,
    readonly fn: ((now: number) => void) | undefined
  ) {}
}

/** Min-heap on (t, s). */
class EventHeap {
  private a: Array<SimEvent> = []
  get size(): number {
    return this.a.length
  }
  peek(): SimEvent | undefined {
    return this.a[0]
  }
  push(e: SimEvent): void {
    const a = this.a
    let i = a.length
    a.push(e)
    while (i > 0) {
      const p = (i - 1) >> 1
      const q = a[p]
      if (q.t < e.t || (q.t === e.t && q.s < e.s)) break
      a[i] = q
      i = p
    }
    a[i] = e
  }
  pop(): SimEvent | undefined {
    const a = this.a
    const top = a[0]
    const last = a.pop()
    if (a.length === 0 || last === undefined) return top
    const n = a.length
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      let c = l
      let ce = a[l]
      if (r < n) {
        const re = a[r]
        if (re.t < ce.t || (re.t === ce.t && re.s < ce.s)) {
          c = r
          ce = re
        }
      }
      if (last.t < ce.t || (last.t === ce.t && last.s < ce.s)) break
      a[i] = ce
      i = c
    }
    a[i] = last
    return top
  }
}

export interface SimNodeStats {
  sent: number
  received: number
}

export class SimNode {
  /** Unique per `addNode` call (a re-added name gets a new id). */
  readonly id: number
  readonly name: string
  /** Address string receivers see as the source (default `10.0.x.y:5197`). */
  readonly address: string
  /** This node's own random stream (fork `node:<name>`), e.g. for session ids and NAK back-off. */
  readonly prng: Prng
  readonly stats: SimNodeStats = { sent: 0, received: 0 }
  /** Set by addNode (a factory receives the node before the endpoint exists). */
  endpoint!: SimEndpoint
  /** @internal */ _isolated = false
  /** @internal */ _removed = false
  /** @internal */ _timerGen = 0
  /** @internal */ _timerAt = Number.POSITIVE_INFINITY
  /** @internal */ _timerPending = false
  /** @internal */ _spinAt = Number.NaN
  /** @internal */ _spinCount = 0
  /** @internal outgoing links indexed by destination id */ readonly _links: Array<LinkModel | undefined> = []

  constructor(
    private readonly net: SimNetwork,
    id: number,
    name: string,
    address: string,
    prng: Prng
  ) {
    this.id = id
    this.name = name
    this.address = address
    this.prng = prng
  }

  get isolated(): boolean {
    return this._isolated
  }
  get removed(): boolean {
    return this._removed
  }

  /** Multicast to every other node. Bound: `sink.send = node.send` works. */
  readonly send = (bytes: Uint8Array): void => {
    this.net._send(this, bytes)
  }

  /** Re-query `endpoint.nextDeadline()` after driving the endpoint outside the network. */
  refreshTimer(): void {
    this.net._refreshTimer(this)
  }
}

/** A node or its name. */
export type NodeRef = SimNode | string

/** What a test records from an engine: an EngineSink that forwards `send` and keeps the rest. */
export interface RecordingSink extends EngineSink {
  readonly updates: Array<ReceivedUpdate>
  readonly losses: Array<LossReport>
  readonly events: Array<SessionEvent>
}

/** An EngineSink whose `send` goes to `send` (usually `node.send`) and which records everything else. */
export const recordingSink = (send: (datagram: Uint8Array) => void): RecordingSink => {
  const updates: Array<ReceivedUpdate> = []
  const losses: Array<LossReport> = []
  const events: Array<SessionEvent> = []
  return {
    updates,
    losses,
    events,
    send,
    deliver: (u) => {
      updates.push(u)
    },
    loss: (l) => {
      losses.push(l)
    },
    event: (e) => {
      events.push(e)
    }
  }
}

const makeClassTotals = (): ClassTotals => ({ offered: 0, delivered: 0, dropped: 0 })

export class SimNetwork {
  private clock = 0
  private seq = 0
  private readonly heap = new EventHeap()
  /** Deliveries and actions queued (timers excluded): 0 means the network is idle. */
  private pendingWork = 0
  private nextId = 1
  private readonly active: Array<SimNode> = []
  private readonly byName = new Map<string, SimNode>()
  private readonly links = new Map<string, LinkModel>()
  private defaultLink: LinkConfig
  private readonly root: Prng
  private readonly copyOnSend: boolean
  private readonly onTrace: ((event: SimTraceEvent) => void) | undefined
  private readonly spinLimit: number
  private running = false
  readonly stats: SimStats = {
    sends: 0,
    sendsDiscarded: 0,
    offered: 0,
    delivered: 0,
    droppedByLink: 0,
    droppedUnreachable: 0,
    duplicated: 0,
    reordered: 0,
    data: makeClassTotals(),
    control: makeClassTotals(),
    events: 0,
    timerCallbacks: 0
  }

  constructor(options: SimNetworkOptions) {
    this.root = new Prng(options.seed)
    this.defaultLink = mergeLinkConfig(defaultLinkConfig, options.defaultLink)
    this.copyOnSend = options.copyOnSend ?? true
    this.onTrace = options.onTrace
    this.spinLimit = options.timerSpinLimit ?? 10_000
  }

  /** Virtual time in ms. */
  get now(): number {
    return this.clock
  }

  /** Active (not removed) nodes in the order they were added. */
  get nodes(): ReadonlyArray<SimNode> {
    return this.active
  }

  /** An independent random stream for test code (fork `test:<label>` of the seed). */
  prng(label: string): Prng {
    return this.root.fork(`test:${label}`)
  }

  node(name: string): SimNode {
    const n = this.byName.get(name)
    if (n === undefined) throw new Error(`SimNetwork: no node named ${name}`)
    return n
  }

  /**
   * Adds a node. `endpoint` may be a factory receiving the node (so the endpoint's sink can call
   * `node.send`). Default address `10.0.<hi>.<lo>:5197` from a 1-based counter.
   */
  addNode(
    name: string,
    endpoint: SimEndpoint | ((node: SimNode) => SimEndpoint),
    options?: { readonly address?: string }
  ): SimNode {
    if (this.byName.has(name)) throw new Error(`SimNetwork: node ${name} already exists`)
    const id = this.nextId++
    const address = options?.address ?? `10.0.${(id >>> 8) & 0xff}.${id & 0xff}:5197`
    const node = new SimNode(this, id, name, address, this.root.fork(`node:${name}`))
    node.endpoint = typeof endpoint === "function" ? endpoint(node) : endpoint
    this.active.push(node)
    this.byName.set(name, node)
    this._refreshTimer(node)
    return node
  }

  /** Removes a node for good: no callbacks, no deliveries. The name can be added again. */
  removeNode(ref: NodeRef): void {
    const node = this.resolve(ref)
    if (node._removed) return
    node._removed = true
    node._timerGen++
    node._timerPending = false
    this.active.splice(this.active.indexOf(node), 1)
    this.byName.delete(node.name)
  }

  /** Cut a node off: its sends are discarded, datagrams to it (also in flight) are dropped. Timers keep firing. */
  isolate(ref: NodeRef): void {
    this.resolve(ref)._isolated = true
  }

  heal(ref: NodeRef): void {
    this.resolve(ref)._isolated = false
  }

  /** The link model from → to (created from `defaultLink` if new). Names may be of nodes not added yet. */
  link(from: NodeRef, to: NodeRef): LinkModel {
    const f = typeof from === "string" ? from : from.name
    const t = typeof to === "string" ? to : to.name
    if (f === t) throw new Error("SimNetwork: no link from a node to itself")
    const key = `${f}\u0000${t}`
    let l = this.links.get(key)
    if (l === undefined) {
      l = new LinkModel(this.defaultLink, this.root.fork(`link:${f}->${t}`), f, t)
      this.links.set(key, l)
    }
    return l
  }

  /** Changes one direction of one link. */
  setLink(from: NodeRef, to: NodeRef, patch: Partial<LinkConfig>): void {
    this.link(from, to).configure(patch)
  }

  /** Changes both directions between two nodes. */
  setLinkBoth(a: NodeRef, b: NodeRef, patch: Partial<LinkConfig>): void {
    this.setLink(a, b, patch)
    this.setLink(b, a, patch)
  }

  /** Changes every link between current nodes, and the default for links created later. */
  setLinkAll(patch: Partial<LinkConfig>): void {
    this.defaultLink = mergeLinkConfig(this.defaultLink, patch)
    for (const a of this.active) {
      for (const b of this.active) if (a !== b) this.link(a, b)
    }
    for (const l of this.links.values()) l.configure(patch)
  }

  linkStats(from: NodeRef, to: NodeRef): LinkStats {
    return this.link(from, to).stats
  }

  /** Runs `fn(now)` at virtual time `at` (clamped to now), after events already queued for that instant. */
  schedule(at: number, fn: (now: number) => void): void {
    const t = Math.max(at, this.clock)
    this.pendingWork++
    this.heap.push(new SimEvent(t, this.seq++, EV_ACTION, undefined, undefined, undefined, undefined, "data", 0, fn))
  }

  /** Runs `fn(now)` after `delayMs`. */
  after(delayMs: number, fn: (now: number) => void): void {
    this.schedule(this.clock + delayMs, fn)
  }

  /** Events queued (including timers that turned out stale). */
  get queued(): number {
    return this.heap.size
  }

  runFor(ms: number, options?: Omit<RunOptions, "until">): RunResult {
    return this.run({ ...options, until: this.clock + ms })
  }

  /**
   * Processes events in (time, sequence) order. Stops at `until` (then `now = until`), when
   * `idle` and only timers are queued, when `stopWhen()` is true, after `maxEvents`, or when the
   * queue is empty. With no stop condition at all, throws after 50 M events (endpoints re-arming
   * timers forever would otherwise hang the test).
   */
  run(options: RunOptions = {}): RunResult {
    if (this.running) throw new Error("SimNetwork.run is not re-entrant")
    const until = options.until ?? Number.POSITIVE_INFINITY
    const guarded =
      options.until === undefined &&
      options.maxEvents === undefined &&
      options.idle !== true &&
      options.stopWhen === undefined
    const maxEvents = options.maxEvents ?? (guarded ? DEFAULT_EVENT_LIMIT : Number.POSITIVE_INFINITY)
    const idle = options.idle === true
    const stopWhen = options.stopWhen
    const heap = this.heap
    let events = 0
    let reason: RunResult["reason"] = "empty"
    this.running = true
    try {
      for (const n of this.active) this._refreshTimer(n)
      for (;;) {
        if (idle && this.pendingWork === 0) {
          reason = "idle"
          break
        }
        const top = heap.peek()
        if (top === undefined) {
          reason = until < Number.POSITIVE_INFINITY ? "until" : "empty"
          break
        }
        if (top.t > until) {
          reason = "until"
          break
        }
        if (events >= maxEvents) {
          if (guarded) throw new Error(`SimNetwork.run: no stop condition and still busy after ${maxEvents} events`)
          reason = "maxEvents"
          break
        }
        heap.pop()
        if (top.t > this.clock) this.clock = top.t
        if (this.dispatch(top)) {
          events++
          this.stats.events++
          if (stopWhen?.()) {
            reason = "stopped"
            break
          }
        }
      }
      if (reason === "until" && until > this.clock) this.clock = until
    } finally {
      this.running = false
    }
    return { events, reason }
  }

  /** Returns false for stale timer events (not counted). */
  private dispatch(ev: SimEvent): boolean {
    switch (ev.type) {
      case EV_DELIVER: {
        this.pendingWork--
        const node = ev.node!
        const link = ev.link!
        const stats = this.stats
        if (node._removed || node._isolated) {
          stats.droppedUnreachable++
          if (this.onTrace !== undefined) {
            this.onTrace({
              type: "drop",
              time: this.clock,
              from: ev.from!.name,
              to: node.name,
              reason: node._removed ? "removed" : "isolated",
              size: ev.bytes!.length
            })
          }
          return true
        }
        stats.delivered++
        ;(ev.cls === "data" ? stats.data : stats.control).delivered++
        link.stats.delivered++
        node.stats.received++
        if (this.onTrace !== undefined) {
          this.onTrace({
            type: "deliver",
            time: this.clock,
            from: ev.from!.name,
            to: node.name,
            class: ev.cls,
            size: ev.bytes!.length
          })
        }
        // Each delivery its own copy, as a real network gives: the receiver owns it (the engine
        // decrypts in place), and a duplicate must arrive as sent.
        node.endpoint.onDatagram(this.copyOnSend ? Buffer.from(ev.bytes!) : ev.bytes!, ev.from!.address, this.clock)
        this._refreshTimer(node)
        return true
      }
      case EV_TIMER: {
        const node = ev.node!
        if (node._removed || ev.gen !== node._timerGen) return false
        node._timerPending = false
        node._timerAt = Number.POSITIVE_INFINITY
        const d = node.endpoint.nextDeadline()
        if (!(d <= this.clock)) {
          // The deadline moved later (or went away) since this timer was armed: just re-arm.
          this._refreshTimer(node)
          return false
        }
        if (node._spinAt === this.clock) {
          if (++node._spinCount > this.spinLimit) {
            throw new Error(
              `SimNetwork: node ${node.name} keeps asking for a timer at ${this.clock} ` +
                `(nextDeadline() ≤ now after ${this.spinLimit} onTimer calls)`
            )
          }
        } else {
          node._spinAt = this.clock
          node._spinCount = 1
        }
        this.stats.timerCallbacks++
        node.endpoint.onTimer(this.clock)
        this._refreshTimer(node)
        return true
      }
      default: {
        this.pendingWork--
        ev.fn!(this.clock)
        for (const n of this.active) this._refreshTimer(n)
        return true
      }
    }
  }

  /** @internal */
  _refreshTimer(node: SimNode): void {
    if (node._removed) return
    const d = node.endpoint.nextDeadline()
    if (!(d < Number.POSITIVE_INFINITY)) {
      // No timer wanted (Infinity / NaN): cancel a pending one so the queue can drain.
      if (node._timerPending) {
        node._timerGen++
        node._timerPending = false
        node._timerAt = Number.POSITIVE_INFINITY
      }
      return
    }
    const t = Math.max(d, this.clock)
    // A pending timer at or before t stays: when it fires it re-checks the deadline and re-arms.
    if (node._timerPending && node._timerAt <= t) return
    node._timerGen++
    node._timerPending = true
    node._timerAt = t
    this.heap.push(
      new SimEvent(t, this.seq++, EV_TIMER, node, undefined, undefined, undefined, "data", node._timerGen, undefined)
    )
  }

  /** @internal */
  _send(from: SimNode, bytes: Uint8Array): void {
    const stats = this.stats
    if (from._removed || from._isolated) {
      stats.sendsDiscarded++
      return
    }
    stats.sends++
    from.stats.sent++
    // Buffer.from copies (Buffer#slice would not) and hands receivers a Buffer, as node:dgram does.
    const data = this.copyOnSend ? Buffer.from(bytes) : bytes
    const now = this.clock
    const trace = this.onTrace
    if (trace !== undefined) trace({ type: "send", time: now, from: from.name, size: data.length })
    const nodes = this.active
    for (let i = 0; i < nodes.length; i++) {
      const to = nodes[i]
      if (to === from) continue
      if (to._isolated) {
        stats.droppedUnreachable++
        if (trace !== undefined) {
          trace({ type: "drop", time: now, from: from.name, to: to.name, reason: "isolated", size: data.length })
        }
        continue
      }
      let link = from._links[to.id]
      if (link === undefined) {
        link = this.link(from, to)
        from._links[to.id] = link
      }
      const before = link.stats
      const dupBefore = before.duplicated
      const reoBefore = before.reordered
      const delays = link.fate(data, now)
      const cls = link.lastClass
      const totals = cls === "data" ? stats.data : stats.control
      stats.offered++
      totals.offered++
      stats.duplicated += before.duplicated - dupBefore
      stats.reordered += before.reordered - reoBefore
      if (delays.length === 0) {
        stats.droppedByLink++
        totals.dropped++
        if (trace !== undefined) {
          trace({ type: "drop", time: now, from: from.name, to: to.name, reason: "link", size: data.length })
        }
        continue
      }
      for (let k = 0; k < delays.length; k++) {
        this.pendingWork++
        this.heap.push(new SimEvent(now + delays[k], this.seq++, EV_DELIVER, to, data, from, link, cls, 0, undefined))
      }
    }
  }

  private resolve(ref: NodeRef): SimNode {
    return typeof ref === "string" ? this.node(ref) : ref
  }
}
