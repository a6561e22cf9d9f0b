/**
 * The gateway against clients that misbehave, over real WebSockets on 127.0.0.1 (raw `ws`
 * sockets, so the test controls every frame): access control (token, Host header, non-loopback
 * bind, bad options), hostile frames (garbage, truncated, oversized, unknown types, bad patterns,
 * out of order) answered with typed error frames and close codes while another client is served
 * throughout, a takeover by a second socket with the same name, and a connected client that stops
 * reading (bounded memory, then a typed `SlowConsumer` gap with the exact range).
 */
import { createRequire } from "node:module"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type * as Connection from "../src/Connection.js"
import * as Distributor from "../src/Distributor.js"
import * as Gateway from "../src/Gateway.js"
import * as GatewayClient from "../src/GatewayClient.js"
import { decodeUpdate, encodePublish, utf8 } from "../src/internal/gateway/frames.js"
import * as Transport from "../src/Transport.js"

const require = createRequire(import.meta.url)

/** The parts of the `ws` package's client used here. */
interface RawWs {
  readonly readyState: number
  readonly _socket: { pause(): void; resume(): void }
  send(data: string | Uint8Array): void
  close(code?: number): void
  terminate(): void
  on(event: "message", f: (data: Buffer, isBinary: boolean) => void): RawWs
  on(event: "open", f: () => void): RawWs
  on(event: "close", f: (code: number, reason: Buffer) => void): RawWs
  on(event: "unexpected-response", f: (req: unknown, res: { statusCode: number }) => void): RawWs
  on(event: "error", f: (e: Error) => void): RawWs
}
const WebSocket: new (url: string, options?: { headers?: Record<string, string> }) => RawWs = require("ws")

interface Raw {
  readonly ws: RawWs
  /** Text frames parsed as JSON; binary frames as Buffers. */
  readonly frames: Array<any>
  readonly closed: Promise<{ readonly code: number; readonly reason: string }>
}

/** Opens a raw socket; fails with the HTTP status when the handshake is refused. */
const open = (url: string, headers: Record<string, string> = {}): Effect.Effect<Raw, number> =>
  Effect.async<Raw, number>((resume) => {
    const ws = new WebSocket(url, { headers })
    const frames: Array<any> = []
    let onClose: (c: { code: number; reason: string }) => void = () => {}
    const closed = new Promise<{ code: number; reason: string }>((r) => {
      onClose = r
    })
    ws.on("message", (data, isBinary) => frames.push(isBinary ? data : JSON.parse(data.toString())))
    ws.on("close", (code, reason) => onClose({ code, reason: reason.toString() }))
    ws.on("unexpected-response", (_req, res) => resume(Effect.fail(res.statusCode)))
    ws.on("error", () => {})
    ws.on("open", () => resume(Effect.succeed({ ws, frames, closed })))
    return Effect.sync(() => ws.terminate())
  })

const acquire = (url: string, headers: Record<string, string> = {}) =>
  Effect.acquireRelease(open(url, headers), (raw) => Effect.sync(() => raw.ws.terminate()))

const send = (raw: Raw, frame: unknown) =>
  Effect.sync(() =>
    raw.ws.send(typeof frame === "string" || frame instanceof Uint8Array ? frame : JSON.stringify(frame))
  )

/** Runs `effect` every 5 ms until `until` holds, and returns that value. */
const poll = <A, E, R>(effect: Effect.Effect<A, E, R>, until: (a: A) => boolean): Effect.Effect<A, E, R> =>
  Effect.flatMap(effect, (a) =>
    until(a) ? Effect.succeed(a) : Effect.zipRight(Effect.sleep("5 millis"), poll(effect, until))
  )

/** Waits until a frame matching `p` has arrived, and returns it. */
const frame = (raw: Raw, p: (f: any) => boolean) =>
  poll(
    Effect.sync(() => raw.frames.find((f) => !Buffer.isBuffer(f) && p(f))),
    (f) => f !== undefined
  ).pipe(Effect.timeout("5 seconds"))

const errorFrame = (raw: Raw, code: string) => frame(raw, (f) => f.type === "error" && f.code === code)

const closedWith = (raw: Raw) => Effect.promise(() => raw.closed).pipe(Effect.timeout("5 seconds"))

const group = { group: "239.255.30.2", port: 7302 }

const setup = (options: Partial<Gateway.MakeOptions> = {}) =>
  Effect.gen(function* () {
    const a = yield* Distributor.make({ application: "gw-a", host: "host-a", console: { enabled: false } })
    const b = yield* Distributor.make({ application: "gw-b", host: "host-b", console: { enabled: false } })
    const ca = yield* a.connection(group)
    const cb = yield* b.connection(group)
    const gateway = yield* Gateway.make({ connections: [ca], ...options })
    return { a, ca, cb, gateway }
  })

const layers = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.provide(Transport.layerMemory()), Effect.provide(NodeSocket.layerWebSocketConstructor))

const TOKEN = "gateway-token-0123456789"

describe("Gateway access control", () => {
  it.scopedLive("a token is required when set: none or a wrong one is refused (401); header or query works", () =>
    layers(
      Effect.gen(function* () {
        const { gateway } = yield* setup({ token: TOKEN })
        expect(yield* Effect.flip(open(gateway.url))).toBe(401)
        expect(yield* Effect.flip(open(`${gateway.url}?token=wrong-token-value`))).toBe(401)
        expect(yield* Effect.flip(open(gateway.url, { authorization: "Bearer nope-nope-nope" }))).toBe(401)
        const byHeader = yield* acquire(gateway.url, { authorization: `Bearer ${TOKEN}` })
        yield* send(byHeader, { type: "hello", version: 1, name: "h" })
        yield* frame(byHeader, (f) => f.type === "welcome")
        const byQuery = yield* acquire(`${gateway.url}?token=${TOKEN}`)
        yield* send(byQuery, { type: "hello", version: 1, name: "q" })
        yield* frame(byQuery, (f) => f.type === "welcome")
        // The library client sends it as ?token=.
        const client = yield* GatewayClient.make({ url: gateway.url, name: "lib", token: TOKEN })
        yield* client.awaitConnected.pipe(Effect.timeout("5 seconds"))
        expect((yield* gateway.stats).counters.socketsRefused).toBe(3)
      })
    )
  )

  it.scopedLive("a foreign Host header is refused (421, DNS rebinding); other paths 404; plain HTTP 426", () =>
    layers(
      Effect.gen(function* () {
        const { gateway } = yield* setup()
        expect(yield* Effect.flip(open(gateway.url, { host: `evil.example:${gateway.port}` }))).toBe(421)
        expect(yield* Effect.flip(open(`ws://127.0.0.1:${gateway.port}/elsewhere`))).toBe(404)
        const plain = yield* Effect.promise(() => fetch(`http://127.0.0.1:${gateway.port}/`))
        expect(plain.status).toBe(426)
        const ok = yield* acquire(gateway.url, { host: `localhost:${gateway.port}` })
        expect(ok.ws.readyState).toBe(1)
      })
    )
  )

  it.scopedLive("refuses a non-loopback bind without a token, and bad options, with typed errors", () =>
    layers(
      Effect.gen(function* () {
        const { ca } = yield* setup()
        const noToken = yield* Effect.flip(Gateway.make({ connections: [ca], host: "0.0.0.0" }))
        expect(noToken).toMatchObject({ _tag: "GatewayError", reason: "TokenRequired" })
        const badPort = yield* Effect.flip(Gateway.make({ connections: [ca], port: 70_000 }))
        expect(badPort).toMatchObject({ _tag: "InvalidConfig", reason: "Decode", path: "gateway.port" })
        const badBuffer = yield* Effect.flip(Gateway.make({ connections: [ca], replayMaxUpdates: 0 }))
        expect(badBuffer).toMatchObject({ _tag: "InvalidConfig", path: "gateway.replayMaxUpdates" })
        const typo = yield* Effect.flip(Gateway.make({ connections: [ca], resumeWindow: 5 } as never))
        expect(typo).toMatchObject({ _tag: "InvalidConfig", reason: "UnknownField", path: "gateway.resumeWindow" })
        const none = yield* Effect.flip(Gateway.make({ connections: [] }))
        expect(none).toMatchObject({ _tag: "GatewayError", reason: "NoConnection" })
        // Port in use.
        const first = yield* Gateway.make({ connections: [ca] })
        const taken = yield* Effect.flip(Gateway.make({ connections: [ca], port: first.port }))
        expect(taken).toMatchObject({ _tag: "GatewayError", reason: "PortInUse" })
      })
    )
  )
})

describe("Gateway under hostile frames", () => {
  it.scopedLive("every bad frame is counted and answered with a typed error; the server keeps serving", () =>
    layers(
      Effect.gen(function* () {
        const { cb, gateway } = yield* setup({ maxFrameBytes: 4096, maxErrorsPerSocket: 50 })
        // A well-behaved client, served throughout.
        const good = yield* GatewayClient.make({ url: gateway.url, name: "good" })
        const goodStream = yield* good.subscribeScoped("/ok/...")
        const goodGot = yield* goodStream.pipe(Stream.take(2), Stream.runCollect, Effect.fork)
        const publisher = yield* cb.publisher
        yield* publisher.publish("/ok/1", "before")

        // Frames before hello: refused and closed (1002).
        const early = yield* acquire(gateway.url)
        yield* send(early, encodePublish(0, utf8("/ok/x"), utf8("x")))
        yield* errorFrame(early, "HelloRequired")
        expect((yield* closedWith(early)).code).toBe(1002)

        const raw = yield* acquire(gateway.url)
        yield* send(raw, { type: "hello", version: 1, name: "hostile" })
        yield* frame(raw, (f) => f.type === "welcome")
        const cases: Array<readonly [unknown, string]> = [
          ["this is not json", "MalformedFrame"],
          ["[1,2,3]", "MalformedFrame"],
          [{ type: "bogus" }, "UnknownType"],
          [{ type: "subscribe" }, "MalformedFrame"],
          [{ type: "subscribe", id: -1, pattern: "/a" }, "MalformedFrame"],
          [{ type: "hello", version: 1, name: "again" }, "DuplicateHello"],
          [{ type: "unsubscribe", id: 77 }, "UnknownId"],
          [new Uint8Array([]), "MalformedFrame"],
          [new Uint8Array([0x09, 1, 2, 3]), "UnknownType"],
          [new Uint8Array([0x01, 0, 0]), "UnknownType"],
          [new Uint8Array([0x02, 0, 0xff]), "MalformedFrame"], // truncated header
          [new Uint8Array([0x02, 0, 0, 50, 0x2f]), "MalformedFrame"], // topic longer than the frame
          [new Uint8Array([0x02, 0, 0, 2, 0x2f, 0xff]), "MalformedFrame"], // topic not UTF-8
          [encodePublish(0, utf8("no-slash"), utf8("x")), "InvalidTopic"],
          [encodePublish(0, utf8("/a/*"), utf8("x")), "InvalidTopic"],
          [encodePublish(9, utf8("/a"), utf8("x")), "UnknownConnection"]
        ]
        for (const [f, code] of cases) {
          const before = raw.frames.length
          yield* send(raw, f)
          const answer = yield* frame(raw, (x) => raw.frames.indexOf(x) >= before && x.type === "error")
          expect([JSON.stringify(f).slice(0, 60), answer.code]).toEqual([JSON.stringify(f).slice(0, 60), code])
        }
        // A subscribe with an invalid pattern: a typed error naming its id.
        yield* send(raw, { type: "subscribe", id: 5, pattern: "/a/.../b" })
        expect(yield* errorFrame(raw, "InvalidPattern")).toMatchObject({ id: 5 })
        yield* send(raw, { type: "subscribe", id: 6, pattern: "/ok/...", connection: 3 })
        expect(yield* frame(raw, (f) => f.type === "error" && f.id === 6)).toMatchObject({ code: "UnknownConnection" })
        // Still alive: a valid subscription works, a duplicate id is refused.
        yield* send(raw, { type: "subscribe", id: 7, pattern: "/ok/..." })
        yield* frame(raw, (f) => f.type === "subscribed" && f.id === 7)
        yield* send(raw, { type: "subscribe", id: 7, pattern: "/ok/..." })
        expect(yield* errorFrame(raw, "DuplicateId")).toMatchObject({ id: 7 })
        yield* publisher.publish("/ok/2", "after")
        const binaries = yield* poll(
          Effect.sync(() => raw.frames.filter((f) => Buffer.isBuffer(f))),
          (b) => b.length >= 1
        ).pipe(Effect.timeout("5 seconds"))
        const update = decodeUpdate(binaries[0])
        expect(update?.topic).toBe("/ok/2")
        expect(raw.ws.readyState).toBe(1)
        // The hostile client's rejected publishes were consumed, not published.
        expect((yield* gateway.stats).clients.find((c) => c.name === "hostile")?.published).toBe(6)

        // Oversized: closed with 1009.
        const big = yield* acquire(gateway.url)
        yield* send(big, { type: "hello", version: 1, name: "big" })
        yield* send(big, new Uint8Array(5000).fill(2))
        yield* errorFrame(big, "FrameTooLarge")
        expect((yield* closedWith(big)).code).toBe(1009)

        // Unsupported version: 1002.
        const old = yield* acquire(gateway.url)
        yield* send(old, { type: "hello", version: 99, name: "old" })
        yield* errorFrame(old, "UnsupportedVersion")
        expect((yield* closedWith(old)).code).toBe(1002)

        const goodUpdates = Chunk.toReadonlyArray(yield* Fiber.join(goodGot).pipe(Effect.timeout("5 seconds")))
        expect(goodUpdates.map((u: Connection.Update) => u.topic)).toEqual(["/ok/1", "/ok/2"])
        const stats = yield* gateway.stats
        // early 1 + cases 16 + 2 subscribe errors + duplicate id + oversized + version
        expect(stats.counters.badFrames).toBe(1 + cases.length + 2 + 1 + 1 + 1)
      })
    )
  )

  it.scopedLive(
    "too many bad frames, a publish flood beyond the window, no hello in time, a resume position from the future: 1008",
    () =>
      layers(
        Effect.gen(function* () {
          const { gateway } = yield* setup({
            maxErrorsPerSocket: 5,
            helloTimeoutMs: 200,
            publishWindowBytes: 1024,
            maxFrameBytes: 2048
          })
          const noisy = yield* acquire(gateway.url)
          yield* send(noisy, { type: "hello", version: 1, name: "noisy" })
          for (let i = 0; i < 6; i++) yield* send(noisy, "garbage")
          yield* errorFrame(noisy, "TooManyErrors")
          expect((yield* closedWith(noisy)).code).toBe(1008)

          const flood = yield* acquire(gateway.url)
          yield* send(flood, { type: "hello", version: 1, name: "flood" })
          yield* frame(flood, (f) => f.type === "welcome")
          // Far beyond publishWindowBytes + maxFrameBytes in one burst, without waiting for pubAcks.
          const frameBytes = encodePublish(0, utf8("/f/1"), new Uint8Array(1000))
          for (let i = 0; i < 3000; i++) flood.ws.send(frameBytes)
          expect((yield* closedWith(flood)).code).toBe(1008)

          const silent = yield* acquire(gateway.url)
          expect((yield* closedWith(silent)).code).toBe(1008)

          const r1 = yield* acquire(gateway.url)
          yield* send(r1, { type: "hello", version: 1, name: "r1" })
          yield* frame(r1, (f) => f.type === "welcome")
          r1.ws.close()
          yield* poll(gateway.stats, (s) => s.clients.find((c) => c.name === "r1")?.connected === false)
          const liar = yield* acquire(gateway.url)
          yield* send(liar, { type: "hello", version: 1, name: "r1", resume: 50 })
          yield* errorFrame(liar, "ResumeAhead")
          expect((yield* closedWith(liar)).code).toBe(1008)
          // A name the gateway never saw, with a position: SessionUnknown, numbering continued.
          const stranger = yield* acquire(gateway.url)
          yield* send(stranger, { type: "hello", version: 1, name: "stranger", resume: 41 })
          expect(yield* frame(stranger, (f) => f.type === "welcome")).toMatchObject({ resumed: false, next: 42 })
          expect(yield* frame(stranger, (f) => f.type === "gap")).toMatchObject({ reason: "SessionUnknown", first: 42 })
        })
      )
  )
})

describe("Gateway sessions", () => {
  it.scopedLive("beyond maxClients a new name is refused (1013); a known name still resumes", () =>
    layers(
      Effect.gen(function* () {
        const { gateway } = yield* setup({ maxClients: 1 })
        const one = yield* acquire(gateway.url)
        yield* send(one, { type: "hello", version: 1, name: "one" })
        yield* frame(one, (f) => f.type === "welcome")
        const two = yield* acquire(gateway.url)
        yield* send(two, { type: "hello", version: 1, name: "two" })
        yield* errorFrame(two, "TooManyClients")
        expect((yield* closedWith(two)).code).toBe(1013)
        one.ws.close()
        yield* poll(gateway.stats, (s) => s.clients[0]?.connected === false)
        // The detached session still counts, but its owner may come back.
        const back = yield* acquire(gateway.url)
        yield* send(back, { type: "hello", version: 1, name: "one", resume: 0 })
        expect(yield* frame(back, (f) => f.type === "welcome")).toMatchObject({ resumed: true, next: 1 })
      })
    )
  )

  it.scopedLive("a second socket with the same name takes over: the first client stops with TakenOver", () =>
    layers(
      Effect.gen(function* () {
        const { cb, gateway } = yield* setup()
        const first = yield* GatewayClient.make({ url: gateway.url, name: "same" })
        const firstStream = yield* first.subscribeScoped("/t/...")
        const firstExit = yield* firstStream.pipe(Stream.runDrain, Effect.exit, Effect.fork)
        const second = yield* GatewayClient.make({ url: gateway.url, name: "same" })
        yield* second.awaitConnected.pipe(Effect.timeout("5 seconds"))
        const exit = yield* Fiber.join(firstExit).pipe(Effect.timeout("5 seconds"))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(JSON.stringify(exit)).toContain("TakenOver")
        expect((yield* first.status).state._tag).toBe("Stopped")
        // The session (and its subscription) now belongs to the second client.
        const s2 = yield* second.subscribeScoped("/t/...")
        const got = yield* s2.pipe(Stream.take(1), Stream.runCollect, Effect.fork)
        const publisher = yield* cb.publisher
        yield* publisher.publish("/t/1", "x")
        expect(Chunk.size(yield* Fiber.join(got).pipe(Effect.timeout("5 seconds")))).toBe(1)
        const stats = yield* gateway.stats
        expect(stats.counters.takeovers).toBe(1)
        expect(stats.clients).toHaveLength(1)
      })
    )
  )

  it.scopedLive(
    "a connected client that stops reading: bounded buffer, then a SlowConsumer gap with the exact range",
    () =>
      layers(
        Effect.gen(function* () {
          const { cb, gateway } = yield* setup({ sendQueueMaxBytes: 1024, replayMaxUpdates: 200 })
          const raw = yield* acquire(gateway.url)
          yield* send(raw, { type: "hello", version: 1, name: "slow" })
          yield* send(raw, { type: "subscribe", id: 1, pattern: "/slow/..." })
          yield* frame(raw, (f) => f.type === "subscribed")
          raw.ws._socket.pause()
          const n = 3_000
          const payload = new Uint8Array(4096)
          const publisher = yield* cb.publisher
          for (let i = 0; i < n; i++) {
            new DataView(payload.buffer).setUint32(0, i)
            yield* publisher.publish("/slow/a", payload)
          }
          const client = yield* poll(
            Effect.map(gateway.stats, (s) => s.clients.find((c) => c.name === "slow")),
            (c) => c?.nextSeq === n + 1
          )
          // Memory stayed bounded: at most replayMaxUpdates frames held.
          expect(client?.buffered).toBeLessThanOrEqual(200)
          expect(client?.framesDropped).toBeGreaterThan(0)
          raw.ws._socket.resume()
          const last = (f: any) =>
            Buffer.isBuffer(f) && new DataView(f.buffer, f.byteOffset).getUint32(f.length - 4096) === n - 1
          yield* poll(
            Effect.sync(() => raw.frames.some(last)),
            (done) => done
          ).pipe(Effect.timeout("10 seconds"))
          // Every client sequence number is accounted for exactly once: delivered, or inside a gap.
          let expected = 1
          const delivered: Array<number> = []
          const gaps: Array<any> = []
          for (const f of raw.frames) {
            if (Buffer.isBuffer(f)) {
              delivered.push(new DataView(f.buffer, f.byteOffset).getUint32(f.length - 4096))
              expected++
            } else if (f.type === "gap") {
              expect(f.first).toBe(expected)
              gaps.push(f)
              expected = f.last + 1
            }
          }
          expect(expected).toBe(n + 1)
          expect(gaps.length).toBeGreaterThan(0)
          expect(gaps.every((g) => g.reason === "SlowConsumer")).toBe(true)
          // Updates i arrive as client sequence i + 1: what is delivered is exactly what no gap covers.
          const covered = new Set(
            gaps.flatMap((g) => Array.from({ length: g.last - g.first + 1 }, (_, k) => g.first + k - 1))
          )
          expect(delivered).toEqual(Array.from({ length: n }, (_, i) => i).filter((i) => !covered.has(i)))
        })
      )
  )

  it.scoped("the resume window runs on Effect's Clock: a session expires at exactly resumeWindowMs (TestClock)", () =>
    layers(
      Effect.gen(function* () {
        // Waits in real time (the test clock only moves when told to).
        const settle = <A>(effect: Effect.Effect<A>, until: (a: A) => boolean) => {
          const loop: Effect.Effect<A> = Effect.flatMap(effect, (a) =>
            until(a)
              ? Effect.succeed(a)
              : Effect.zipRight(
                  Effect.promise(() => new Promise((r) => setTimeout(r, 5))),
                  loop
                )
          )
          return loop
        }
        const settleFrame = (raw: Raw, p: (f: any) => boolean) =>
          settle(
            Effect.sync(() => raw.frames.find((f) => !Buffer.isBuffer(f) && p(f))),
            (f) => f !== undefined
          )
        const { cb, gateway } = yield* setup()
        const raw = yield* acquire(gateway.url)
        yield* send(raw, { type: "hello", version: 1, name: "clocked" })
        yield* send(raw, { type: "subscribe", id: 1, pattern: "/c/..." })
        yield* settleFrame(raw, (f) => f.type === "subscribed")
        raw.ws.close()
        yield* settle(gateway.stats, (s) => s.clients[0]?.connected === false)
        // Two updates arrive while it is away (client sequence numbers 1 and 2).
        const publisher = yield* cb.publisher
        yield* publisher.publish("/c/1", "a")
        yield* publisher.publish("/c/1", "b")
        yield* settle(gateway.stats, (s) => s.clients[0]?.nextSeq === 3)
        yield* TestClock.adjust("59999 millis")
        expect((yield* gateway.stats).clients).toHaveLength(1)
        yield* TestClock.adjust("1 millis")
        yield* settle(gateway.stats, (s) => s.clients.length === 0)
        expect((yield* gateway.stats).counters.expirations).toBe(1)
        const back = yield* acquire(gateway.url)
        yield* send(back, { type: "hello", version: 1, name: "clocked", resume: 0 })
        expect(yield* settleFrame(back, (f) => f.type === "welcome")).toMatchObject({ resumed: false, next: 3 })
        expect(yield* settleFrame(back, (f) => f.type === "gap")).toMatchObject({
          reason: "Expired",
          first: 1,
          last: 2
        })
      })
    )
  )

  it.scopedLive("Gateway.layer and GatewayClient.layer", () =>
    Effect.gen(function* () {
      const gateway = yield* Gateway.Gateway
      expect(gateway.connections).toEqual([`${group.group}:${group.port}`])
      const client = yield* GatewayClient.GatewayClient
      yield* client.awaitConnected.pipe(Effect.timeout("5 seconds"))
      expect((yield* client.status).state).toMatchObject({ _tag: "Connected", connection: gateway.connections[0] })
    }).pipe(
      Effect.provide(
        Layer.unwrapEffect(
          Effect.map(Gateway.Gateway, (g) => GatewayClient.layer({ url: g.url, name: "layered" }))
        ).pipe(Layer.provideMerge(Gateway.layer({ connections: [group] })))
      ),
      Effect.provide(Distributor.layer({ console: { enabled: false } })),
      Effect.provide(Transport.layerMemory()),
      Effect.provide(NodeSocket.layerWebSocketConstructor)
    )
  )

  it.scopedLive("a client with a URL the WebSocket refuses stops with GatewayError Refused", () =>
    Effect.gen(function* () {
      const client = yield* GatewayClient.make({ url: "not a url", name: "lost" })
      const error = yield* Effect.flip(client.awaitConnected).pipe(Effect.timeout("5 seconds"))
      expect(error).toMatchObject({ _tag: "GatewayError", reason: "Refused" })
      const stream = yield* client.subscribeScoped("/a")
      expect(yield* Effect.flip(Stream.runDrain(stream))).toMatchObject({ _tag: "GatewayError" })
    }).pipe(Effect.provide(NodeSocket.layerWebSocketConstructor))
  )

  it.scopedLive("the client refuses what the gateway would: invalid topics, updates above its frame limit", () =>
    layers(
      Effect.gen(function* () {
        const { gateway } = yield* setup({ maxFrameBytes: 2048, maxSubscriptionsPerClient: 1 })
        const client = yield* GatewayClient.make({ url: gateway.url, name: "careful" })
        yield* client.awaitConnected.pipe(Effect.timeout("5 seconds"))
        const p = yield* client.publisher
        expect(yield* Effect.flip(p.publish("/big", new Uint8Array(3000)))).toMatchObject({
          _tag: "UpdateTooLarge",
          maxSize: 2048 - 4 - 4
        })
        expect(yield* Effect.flip(p.publish("no-slash", "x"))).toMatchObject({ _tag: "InvalidTopic" })
        expect(
          yield* Effect.flip(
            p.publishAll([
              ["/ok", "x"],
              ["/a/*", "y"]
            ])
          )
        ).toMatchObject({ _tag: "InvalidTopic" })
        expect(yield* Effect.flip(client.subscribeScoped("/a/.../b"))).toMatchObject({ _tag: "InvalidTopic" })
        expect(yield* Effect.flip(client.subscribeScoped("/a", { bufferSize: 0 }))).toMatchObject({
          _tag: "InvalidOption"
        })
        // A subscription the gateway refuses (beyond maxSubscriptionsPerClient) fails its stream.
        yield* client.subscribeScoped("/one")
        const refused = yield* client.subscribeScoped("/two")
        expect(yield* Effect.flip(Stream.runDrain(refused))).toMatchObject({ _tag: "GatewayError", reason: "Refused" })
        yield* p.publish("/fits", new Uint8Array(2000))
        yield* p.flush.pipe(Effect.timeout("5 seconds"))
        // The refused subscribe, nothing else.
        expect((yield* gateway.stats).counters.badFrames).toBe(1)
      })
    )
  )
})
