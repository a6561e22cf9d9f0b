/**
 * The gateway's per-client logic without sockets or clocks: the replay ring (outgoing queue and
 * resume buffer in one), its bounds, acknowledgements, the exact gaps it reports, and what a
 * `hello` gets (`planResume`) from a live session, a tombstone, or nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { planResume, Replay, Tombstones } from "../src/internal/gateway/replay.js"

/** Sends everything sendable, like the server's pump with an unbounded socket. */
const drain = (r: Replay): Array<string> => {
  const out: Array<string> = []
  for (let f = r.takeNext(); f !== undefined; f = r.takeNext()) out.push(f as string)
  return out
}
const fill = (r: Replay, from: number, to: number) => {
  for (let i = from; i <= to; i++) r.append(`f${i}`, 10)
}

describe("Replay", () => {
  it("numbers frames from the start, sends each once, in order", () => {
    const r = new Replay(100, 10_000)
    fill(r, 1, 5)
    expect(r.nextSeq).toBe(6)
    expect(r.unsent).toBe(5)
    expect(drain(r)).toEqual(["f1", "f2", "f3", "f4", "f5"])
    expect(r.unsent).toBe(0)
    expect(drain(r)).toEqual([])
  })

  it("resumes a dropped client exactly after what it received (no loss, no duplicate)", () => {
    const r = new Replay(100, 10_000)
    fill(r, 1, 10)
    drain(r) // all 10 handed to a socket that dropped; the client only got 1..6
    fill(r, 11, 15) // arrived while it was away
    expect(r.resumeFrom(6)).toBeUndefined()
    expect(drain(r)).toEqual(["f7", "f8", "f9", "f10", "f11", "f12", "f13", "f14", "f15"])
    // What the client had is freed.
    expect(r.oldest).toBe(7)
  })

  it("bounds by frames: a resume beyond what is held is one ReplayOverflow gap with the exact range", () => {
    const r = new Replay(5, 10_000)
    fill(r, 1, 3)
    drain(r)
    fill(r, 4, 20) // away: only 16..20 kept
    expect(r.size).toBe(5)
    expect(r.resumeFrom(3)).toEqual({ reason: "ReplayOverflow", first: 4, last: 15 })
    expect(drain(r)).toEqual(["f16", "f17", "f18", "f19", "f20"])
  })

  it("bounds by bytes", () => {
    const r = new Replay(1_000, 35)
    fill(r, 1, 10) // 10 bytes each: 3 fit
    expect(r.size).toBe(3)
    expect(r.bytes).toBe(30)
    expect(r.takeGap("SlowConsumer")).toEqual({ reason: "SlowConsumer", first: 1, last: 7 })
    expect(drain(r)).toEqual(["f8", "f9", "f10"])
    expect(r.droppedUnsent).toBe(7)
  })

  it("a connected slow client: unsent frames pushed out become one SlowConsumer gap, then it continues", () => {
    const r = new Replay(4, 10_000)
    fill(r, 1, 2)
    expect(drain(r)).toEqual(["f1", "f2"])
    fill(r, 3, 12) // the socket is full: nothing sent
    expect(r.takeNext()).toBeUndefined() // cursor (3) is behind the oldest held (9): the gap must go first
    expect(r.takeGap("SlowConsumer")).toEqual({ reason: "SlowConsumer", first: 3, last: 8 })
    expect(drain(r)).toEqual(["f9", "f10", "f11", "f12"])
    fill(r, 13, 13)
    expect(r.takeGap("SlowConsumer")).toBeUndefined()
    expect(drain(r)).toEqual(["f13"])
  })

  it("acknowledgements free sent frames, never unsent ones", () => {
    const r = new Replay(100, 10_000)
    fill(r, 1, 10)
    for (let i = 0; i < 4; i++) r.takeNext()
    r.trimThrough(1_000) // a bogus ack beyond what was sent
    expect(r.oldest).toBe(5)
    expect(drain(r)).toEqual(["f5", "f6", "f7", "f8", "f9", "f10"])
  })

  it("skipBacklog starts a client with no resume position at the newest frame", () => {
    const r = new Replay(100, 10_000)
    fill(r, 1, 5)
    r.skipBacklog()
    expect(r.size).toBe(0)
    fill(r, 6, 6)
    expect(drain(r)).toEqual(["f6"])
  })

  it("stays exact across compaction of a long-lived ring", () => {
    const r = new Replay(10, 1e9)
    let next = 1
    for (let round = 0; round < 500; round++) {
      for (let i = 0; i < 7; i++) r.append(`f${next++}`, 1)
      const sent = drain(r)
      expect(sent[sent.length - 1]).toBe(`f${next - 1}`)
    }
    expect(r.nextSeq).toBe(3501)
    expect(r.size).toBe(10)
    expect(r.resumeFrom(3490)).toBeUndefined()
    expect(drain(r)).toEqual(Array.from({ length: 10 }, (_, i) => `f${3491 + i}`))
  })
})

describe("planResume", () => {
  it("resumes a live session, or refuses a position beyond it", () => {
    expect(planResume({ nextSeq: 11 }, undefined, 7)).toEqual({ _tag: "Resume", resume: 7 })
    expect(planResume({ nextSeq: 11 }, undefined, undefined)).toEqual({ _tag: "Resume", resume: undefined })
    expect(planResume({ nextSeq: 11 }, undefined, 11)).toEqual({ _tag: "ResumeAhead", nextSeq: 11 })
  })

  it("after expiry: an Expired gap with the exact range, numbering continued", () => {
    expect(planResume(undefined, { nextSeq: 101, published: 7 }, 60)).toEqual({
      _tag: "Fresh",
      start: 101,
      published: 7,
      gap: { reason: "Expired", first: 61, last: 100 }
    })
    // Nothing was missed: no gap.
    expect(planResume(undefined, { nextSeq: 101, published: 0 }, 100)).toMatchObject({ gap: undefined, start: 101 })
  })

  it("no record: SessionUnknown from the client's position, numbering continued after it", () => {
    expect(planResume(undefined, undefined, 42)).toEqual({
      _tag: "Fresh",
      start: 43,
      published: 0,
      gap: { reason: "SessionUnknown", first: 43 }
    })
    expect(planResume(undefined, undefined, undefined)).toEqual({
      _tag: "Fresh",
      start: 1,
      published: 0,
      gap: undefined
    })
  })

  it("tombstones forget the oldest beyond their capacity", () => {
    const t = new Tombstones(2)
    t.set("a", { nextSeq: 1, published: 0 })
    t.set("b", { nextSeq: 2, published: 0 })
    t.set("c", { nextSeq: 3, published: 0 })
    expect(t.take("a")).toBeUndefined()
    expect(t.take("c")).toEqual({ nextSeq: 3, published: 0 })
    expect(t.take("c")).toBeUndefined()
    expect(t.size).toBe(1)
  })
})
