/**
 * Synchronous chunk consumers for subscription streams (`Connection.forEachChunk`).
 *
 * On a subscription's own stream (`subscribe` / `subscribeScoped` without a schema, a
 * `GatewayClient`'s) the stream carries a way to run `f` straight from the connection's drive
 * (`FanOut.consume`): no Mailbox, Stream or fiber wake-up per chunk. On any other stream, `f` runs
 * before the shared `Effect.void` is returned, so no Effect that references the chunk is allocated
 * per chunk. Why both matter is in Connection.ts; bench/consume.bench.ts measures them.
 */
import type * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Stream from "effect/Stream"

const DirectTypeId: unique symbol = Symbol.for("effect-distributor/DirectConsumer")

/** A stream that can run a synchronous chunk consumer without the Stream machinery. */
interface Direct<A, E, R> {
  readonly [DirectTypeId]: (f: (chunk: Chunk.Chunk<A>) => void) => Effect.Effect<void, E, R>
}

/** Marks `stream` (a fresh stream object) as runnable by `run` in `forEachChunk`. */
export const withDirect = <A, E, R>(
  stream: Stream.Stream<A, E, R>,
  run: (f: (chunk: Chunk.Chunk<A>) => void) => Effect.Effect<void, E, R>
): Stream.Stream<A, E, R> => Object.assign(stream, { [DirectTypeId]: run })

export const forEachChunk: {
  <A>(f: (chunk: Chunk.Chunk<A>) => void): <E, R>(stream: Stream.Stream<A, E, R>) => Effect.Effect<void, E, R>
  <A, E, R>(stream: Stream.Stream<A, E, R>, f: (chunk: Chunk.Chunk<A>) => void): Effect.Effect<void, E, R>
} = dual(
  2,
  <A, E, R>(stream: Stream.Stream<A, E, R>, f: (chunk: Chunk.Chunk<A>) => void): Effect.Effect<void, E, R> => {
    const direct = (stream as Partial<Direct<A, E, R>>)[DirectTypeId]
    if (direct !== undefined) return direct(f)
    return Stream.runForEachChunk(stream, (chunk) => {
      try {
        f(chunk)
      } catch (defect) {
        return Effect.die(defect)
      }
      return Effect.void
    })
  }
)
