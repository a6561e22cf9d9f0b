/**
 * The engine timer (src/internal/timer.ts): fires once the deadline has come, never before it,
 * re-arms when the deadline moves earlier, follows a deadline that moved later, stops with its
 * scope — on a TestClock (the fiber implementation) and on the live clock (setTimeout).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as EngineTimer from "../src/internal/timer.js"

/** A fake engine: one deadline; firing records the time and clears (or advances) it. */
const fakeEngine = (clock: Clock.Clock) => {
  const fired: Array<number> = []
  let deadline = Number.POSITIVE_INFINITY
  let then: number | undefined
  return {
    fired,
    clock,
    set: (at: number, next?: number) => {
      deadline = at
      then = next
    },
    due: () => deadline,
    fire: (now: number) => {
      if (now < deadline) throw new Error(`fired at ${now}, before the deadline ${deadline}`)
      fired.push(now)
      deadline = then ?? Number.POSITIVE_INFINITY
      then = undefined
    }
  }
}

describe("EngineTimer", () => {
  it.effect("tells the live clock from a test clock", () =>
    Effect.gen(function* () {
      expect(EngineTimer.isLiveClock(Clock.make())).toBe(true)
      expect(EngineTimer.isLiveClock(yield* Effect.clock)).toBe(false)
    })
  )

  it.scoped("on a TestClock: fires at the deadline, re-arms earlier, follows a later one", () =>
    Effect.gen(function* () {
      const engine = fakeEngine(yield* Effect.clock)
      const timer = yield* EngineTimer.make(engine)
      engine.set(100)
      timer.request()
      yield* TestClock.adjust(99)
      expect(engine.fired).toEqual([])
      yield* TestClock.adjust(1)
      expect(engine.fired).toEqual([100])

      // Armed for 500, then the deadline moves earlier to 200: it fires at 200.
      engine.set(500)
      timer.request()
      yield* TestClock.adjust(10)
      engine.set(200)
      timer.request()
      yield* TestClock.adjust(90)
      expect(engine.fired).toEqual([100, 200])

      // Armed for 300, then the deadline moves later to 400 (no request needed): fires at 400 only.
      engine.set(300)
      timer.request()
      engine.set(400)
      yield* TestClock.adjust(100)
      expect(engine.fired).toEqual([100, 200])
      yield* TestClock.adjust(100)
      expect(engine.fired).toEqual([100, 200, 400])

      // A fire that leaves a next deadline is followed without another request.
      engine.set(450, 470)
      timer.request()
      yield* TestClock.adjust(100)
      expect(engine.fired).toEqual([100, 200, 400, 450, 470])
    })
  )

  it.scopedLive("on the live clock: fires once the deadline has come, and not after its scope closed", () =>
    Effect.gen(function* () {
      const clock = Clock.make()
      const engine = fakeEngine(clock)
      const scope = yield* Scope.make()
      const timer = yield* Scope.extend(EngineTimer.make(engine), scope)
      const t0 = clock.unsafeCurrentTimeMillis()
      engine.set(t0 + 30)
      timer.request()
      // Moved later before it fires: it must wait for the later deadline (fire() checks it).
      engine.set(t0 + 60)
      yield* Effect.sleep("300 millis")
      expect(engine.fired.length).toBe(1)
      expect(engine.fired[0]).toBeGreaterThanOrEqual(t0 + 60)

      engine.set(clock.unsafeCurrentTimeMillis() + 20)
      timer.request()
      yield* Scope.close(scope, Exit.void)
      yield* Effect.sleep("150 millis")
      expect(engine.fired.length).toBe(1)
    })
  )
})
