/**
 * The engine's one timer: fires `fire(now)` when `due()` (the engine's `nextDeadline`) has come.
 * After every engine drive the shell calls `request()`; the timer re-arms only when the deadline
 * moved earlier, and a timer that fires early for a deadline that moved later simply re-arms.
 *
 * Two implementations with one behaviour. On Effect's live clock the timer is a plain `setTimeout`
 * driven synchronously, like the receive path: a fiber woken per burst (a race of a sleep and a
 * latch, its child fibers and their interruption) cost a publisher ~15 % of its CPU at full
 * speed. Any other clock (`TestClock`) gets a fiber that sleeps on that clock, so tests control
 * every timeout. Both are stopped with the scope.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export interface EngineTimer {
  /** Call after every engine drive: arms the timer earlier when the next deadline moved earlier. */
  readonly request: () => void
}

export interface EngineTimerOptions {
  readonly clock: Clock.Clock
  /** The next deadline (ms on `clock`), `Infinity` for none. */
  readonly due: () => number
  /** Runs the engine's timer work at `now`; the caller then dispatches and calls `request`. */
  readonly fire: (now: number) => void
}

/** Longest single `setTimeout` (a longer one fires at once); a later deadline re-arms on wake-up. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1

const liveClockClass = Clock.make().constructor

/** Whether `clock` is Effect's live clock (its `sleep` is a `setTimeout`), so we may use one too. */
export const isLiveClock = (clock: Clock.Clock): boolean => clock.constructor === liveClockClass

export const make = (options: EngineTimerOptions): Effect.Effect<EngineTimer, never, Scope.Scope> =>
  isLiveClock(options.clock) ? makeLive(options) : makeFiber(options)

const makeLive = ({ clock, due, fire }: EngineTimerOptions): Effect.Effect<EngineTimer, never, Scope.Scope> => {
  let handle: ReturnType<typeof setTimeout> | undefined
  let target = Number.POSITIVE_INFINITY
  let stopped = false
  const arm = (deadline: number, now: number) => {
    if (handle !== undefined) clearTimeout(handle)
    handle = undefined
    target = deadline
    if (stopped || deadline === Number.POSITIVE_INFINITY) return
    // Whole milliseconds, rounded up: never wake a hair before the deadline and spin.
    handle = setTimeout(onTimeout, Math.min(MAX_TIMEOUT_MS, Math.max(0, Math.ceil(deadline - now))))
  }
  const onTimeout = () => {
    handle = undefined
    target = Number.POSITIVE_INFINITY
    if (stopped) return
    const now = clock.unsafeCurrentTimeMillis()
    const deadline = due()
    if (deadline <= now) fire(now)
    // `fire`'s dispatch has usually re-armed already; this covers an engine with nothing new.
    if (target === Number.POSITIVE_INFINITY) arm(due(), clock.unsafeCurrentTimeMillis())
  }
  const request = () => {
    const deadline = due()
    if (deadline < target) arm(deadline, clock.unsafeCurrentTimeMillis())
  }
  return Effect.as(
    Effect.addFinalizer(() =>
      Effect.sync(() => {
        stopped = true
        if (handle !== undefined) clearTimeout(handle)
        handle = undefined
      })
    ),
    { request }
  )
}

const makeFiber = ({ clock, due, fire }: EngineTimerOptions): Effect.Effect<EngineTimer, never, Scope.Scope> =>
  Effect.gen(function* () {
    const wake = yield* Effect.makeLatch(false)
    let target = Number.POSITIVE_INFINITY
    const tick = Effect.suspend(() => {
      const now = clock.unsafeCurrentTimeMillis()
      const deadline = due()
      if (deadline <= now) {
        target = Number.POSITIVE_INFINITY
        fire(now)
        return Effect.void
      }
      target = deadline
      wake.unsafeClose()
      return deadline === Number.POSITIVE_INFINITY
        ? wake.await
        : // Whole milliseconds, rounded up: a fractional sleep can wake a hair before the deadline
          // (TestClock keeps nanoseconds), and the loop would spin on sleeps of zero.
          Effect.raceFirst(Clock.sleep(Math.ceil(deadline - now)), wake.await)
    })
    yield* Effect.forkScoped(Effect.forever(tick))
    return {
      request: () => {
        if (due() < target) wake.unsafeOpen()
      }
    }
  })
