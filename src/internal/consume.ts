/**
 * Synchronous chunk consumers for subscription streams (`Connection.forEachChunk`): `f` runs
 * before the shared `Effect.void` is returned, so no Effect that references the chunk is allocated
 * per chunk. Why that matters is in Connection.ts; bench/consume.bench.ts measures it.
 */
import type * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Stream from "effect/Stream"

export const forEachChunk: {
  <A>(f: (chunk: Chunk.Chunk<A>) => void): <E, R>(stream: Stream.Stream<A, E, R>) => Effect.Effect<void, E, R>
  <A, E, R>(stream: Stream.Stream<A, E, R>, f: (chunk: Chunk.Chunk<A>) => void): Effect.Effect<void, E, R>
} = dual(
  2,
  <A, E, R>(stream: Stream.Stream<A, E, R>, f: (chunk: Chunk.Chunk<A>) => void): Effect.Effect<void, E, R> =>
    Stream.runForEachChunk(stream, (chunk) => {
      try {
        f(chunk)
      } catch (defect) {
        return Effect.die(defect)
      }
      return Effect.void
    })
)
