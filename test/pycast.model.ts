/**
 * A model of a pycast node for the simulator, written from pycast's wire facts
 * (/work/shared/pycast/WIRE.md, docs/PROTOCOL.md "pycast dialect"): enough of its publisher and
 * subscriber behaviour to test a mixed group with loss deterministically. It is a model, not
 * pycast: the manual interop check against real pycast is described in docs/PROTOCOL.md.
 *
 * Publisher: CONFIGURATION twice at start and every 15 s, one UPDATE segment per update (or
 * START / MORE / END for a large one), HEARTBEAT every 3 s without updates, and every RQST answered
 * from its cache by RETRANSMISSION segments — whatever the request's target (pycast's bug).
 * Subscriber: ignores a sender until its CONFIGURATION, then delivers its segments in order,
 * reassembles large updates, and requests a gap by RQST at once, then every 800 ms, at most 10
 * retries.
 */
import {
  decodePycast,
  encodePycast,
  isPycastFailure,
  PYCAST_SEGMENT_SIZE,
  type PycastHeader,
  type PycastPacket,
  PycastType,
  type PycastUpdate,
  pycastAppId
} from "../src/internal/protocol/pycast.js"
import type { SimEndpoint } from "../src/internal/sim/index.js"

export interface PycastIdentity {
  readonly host: string
  readonly senderId: number
  readonly startTime: number
}

const GROUP = "224.10.11.12"
const PORT = 5656
const RQST_INTERVAL_MS = 800
const RQST_RETRIES = 10

interface Remote {
  configured: boolean
  next: number
  highest: number
  readonly pending: Map<number, PycastUpdate>
  asm: { topic: string; total: number; chunks: Array<Uint8Array> } | undefined
  /** Outstanding requests by gap: requested at once, then every 800 ms, at most 10 retries. */
  readonly gaps: Array<{ low: number; high: number; due: number; retries: number }>
  readonly header: PycastHeader
}

export interface ModelUpdate {
  readonly topic: string
  readonly payload: Uint8Array
  readonly from: string
}

export class PycastModel implements SimEndpoint {
  readonly delivered: Array<ModelUpdate> = []
  readonly requestsSent: Array<{ low: number; high: number }> = []
  readonly requestsHeard: Array<{ low: number; high: number }> = []
  readonly retransmissionsSent: Array<number> = []
  gaveUp = 0
  private seq = 0
  private readonly cache = new Map<number, Uint8Array>()
  private lastUpdateAt = Number.NEGATIVE_INFINITY
  private hbDue: number
  private cfgDue: number
  private readonly remotes = new Map<string, Remote>()
  private readonly appId: number

  constructor(
    private readonly id: PycastIdentity,
    private readonly send: (datagram: Uint8Array) => void,
    now: number,
    readonly application = "test",
    private readonly publisher = true
  ) {
    this.appId = pycastAppId(application)
    this.hbDue = now + 3000
    this.cfgDue = publisher ? now : Number.POSITIVE_INFINITY
    if (publisher) this.sendConfiguration(now)
  }

  private header(type: PycastHeader["type"], flags: number): PycastHeader {
    return {
      type,
      flags,
      host: this.id.host,
      senderId: this.id.senderId,
      startTime: this.id.startTime,
      appId: this.appId
    }
  }

  private sendConfiguration(now: number): void {
    const c = encodePycast({
      type: PycastType.Configuration,
      header: this.header(PycastType.Configuration, 5),
      group: GROUP,
      port: PORT,
      senderId: this.id.senderId,
      startTime: this.id.startTime,
      heartbeatIntervalMs: 3000,
      configurationIntervalMs: 15000,
      host: this.id.host,
      appId: this.appId,
      application: this.application
    })
    this.send(c)
    this.send(c)
    this.cfgDue = now + 15000
  }

  private sendSegment(p: Omit<PycastUpdate, "seq" | "type" | "header">, flags: number): void {
    const seq = ++this.seq
    const bytes = encodePycast({ type: PycastType.Update, header: this.header(PycastType.Update, flags), seq, ...p })
    this.cache.set(seq, bytes)
    this.send(bytes)
  }

  /** One update: one segment, or START / MORE … / END when it does not fit (pycast's rule). */
  publish(topic: string, payload: Uint8Array, now: number): void {
    this.lastUpdateAt = now
    const room = PYCAST_SEGMENT_SIZE - 28
    if (topic.length + 10 + payload.length <= room) {
      this.sendSegment({ body: { kind: "updates", updates: [{ topic, payload }] } }, 5)
      return
    }
    let offset = Math.min(room - 3 - topic.length - 5, payload.length)
    this.sendSegment(
      { body: { kind: "start", topic, totalLength: payload.length, chunk: payload.subarray(0, offset) } },
      1
    )
    while (offset < payload.length) {
      const end = Math.min(payload.length, offset + room)
      const kind = end === payload.length ? "end" : "more"
      this.sendSegment({ body: { kind, chunk: payload.subarray(offset, end) } }, kind === "end" ? 4 : 2)
      offset = end
    }
  }

  onDatagram(bytes: Uint8Array, _address: string, now: number): void {
    const p = decodePycast(bytes)
    if (isPycastFailure(p)) throw new Error(`pycast model: undecodable datagram: ${p.reason} ${p.detail}`)
    if (p.header.senderId === this.id.senderId && p.header.startTime === this.id.startTime) return
    switch (p.type) {
      case PycastType.RetransmissionRqst:
        this.requestsHeard.push({ low: p.low, high: p.high })
        // pycast answers every request from its cache, without checking the target.
        for (let s = p.low; s <= p.high; s++) {
          const cached = this.cache.get(s)
          if (cached === undefined) continue
          const r = Uint8Array.from(cached)
          r[2] = PycastType.Retransmission
          this.retransmissionsSent.push(s)
          this.send(r)
        }
        return
      case PycastType.Configuration:
        this.remote(p.header).configured = true
        return
      case PycastType.Heartbeat: {
        const r = this.remotes.get(key(p.header))
        if (r === undefined || !r.configured || r.next === 0) return
        if (p.lastSeq > r.highest) {
          this.gap(r, r.highest + 1, p.lastSeq, now)
          r.highest = p.lastSeq
        }
        return
      }
      case PycastType.Update:
      case PycastType.Retransmission:
        this.onUpdate(p, now)
        return
      default:
        return
    }
  }

  private remote(h: PycastHeader): Remote {
    let r = this.remotes.get(key(h))
    if (r === undefined) {
      r = {
        configured: false,
        next: 0,
        highest: 0,
        pending: new Map(),
        asm: undefined,
        gaps: [],
        header: h
      }
      this.remotes.set(key(h), r)
    }
    return r
  }

  private onUpdate(p: PycastUpdate, now: number): void {
    const r = this.remotes.get(key(p.header))
    if (r === undefined || !r.configured) return
    if (r.next === 0) {
      if (p.type === PycastType.Retransmission) return
      r.next = p.seq
    }
    if (p.seq < r.next || r.pending.has(p.seq)) return
    r.pending.set(p.seq, p)
    if (p.seq > r.highest) {
      if (p.seq > r.highest + 1 && r.highest > 0) this.gap(r, r.highest + 1, p.seq - 1, now)
      r.highest = p.seq
    }
    while (r.pending.has(r.next)) {
      const s = r.pending.get(r.next)!
      r.pending.delete(r.next)
      r.next++
      this.process(r, s)
    }
  }

  private process(r: Remote, p: PycastUpdate): void {
    const from = `${p.header.host}/${p.header.senderId}`
    const b = p.body
    switch (b.kind) {
      case "updates":
        for (const u of b.updates) this.delivered.push({ topic: u.topic, payload: u.payload, from })
        return
      case "start":
        r.asm = { topic: b.topic, total: b.totalLength, chunks: [b.chunk] }
        return
      default: {
        if (r.asm === undefined) return
        r.asm.chunks.push(b.chunk)
        if (b.kind === "end") {
          const payload = Buffer.concat(r.asm.chunks)
          if (payload.length === r.asm.total) this.delivered.push({ topic: r.asm.topic, payload, from })
          r.asm = undefined
        }
      }
    }
  }

  /** A new gap: requested at once. */
  private gap(r: Remote, low: number, high: number, now: number): void {
    const g = { low, high, due: now + RQST_INTERVAL_MS, retries: 0 }
    r.gaps.push(g)
    this.request(r, g)
  }

  private request(r: Remote, g: { low: number; high: number }): void {
    const packet: PycastPacket = {
      type: PycastType.RetransmissionRqst,
      header: this.header(PycastType.RetransmissionRqst, 5),
      requester: this.id.host,
      targetSenderId: r.header.senderId,
      targetStartTime: r.header.startTime,
      low: g.low,
      high: g.high,
      requesterHost: this.id.host,
      application: this.application
    }
    this.requestsSent.push({ low: g.low, high: g.high })
    this.send(encodePycast(packet))
  }

  onTimer(now: number): void {
    if (now >= this.cfgDue) this.sendConfiguration(now)
    if (this.publisher && now >= this.hbDue) {
      if (now - this.lastUpdateAt >= 3000) {
        this.send(
          encodePycast({
            type: PycastType.Heartbeat,
            header: this.header(PycastType.Heartbeat, 5),
            group: GROUP,
            port: PORT,
            senderId: this.id.senderId,
            lastSeq: this.seq
          })
        )
      }
      this.hbDue = now + 3000
    }
    for (const r of this.remotes.values()) {
      for (let i = 0; i < r.gaps.length; i++) {
        const g = r.gaps[i]
        if (now < g.due) continue
        let missing = false
        for (let s = Math.max(g.low, r.next); s <= g.high && !missing; s++) missing = !r.pending.has(s)
        if (!missing || ++g.retries > RQST_RETRIES) {
          if (missing) this.gaveUp++
          r.gaps.splice(i--, 1)
          continue
        }
        g.due = now + RQST_INTERVAL_MS
        this.request(r, g)
      }
    }
  }

  nextDeadline(): number {
    let d = Math.min(this.cfgDue, this.publisher ? this.hbDue : Number.POSITIVE_INFINITY)
    for (const r of this.remotes.values()) for (const g of r.gaps) d = Math.min(d, g.due)
    return d
  }
}

const key = (h: PycastHeader): string => `${h.host}/${h.senderId}/${h.startTime}`
