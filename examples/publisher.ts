/**
 * A publisher: prices for a few symbols, as typed (Schema) JSON payloads, ten times a second.
 *
 *   npx tsx examples/publisher.ts               # 239.192.0.1:5197 on 127.0.0.1, until Ctrl-C
 *   DISTRIBUTOR_GROUP=239.192.0.2 DISTRIBUTOR_PORT=6000 npx tsx examples/publisher.ts
 *
 * Run examples/subscriber.ts in another terminal to see the prices arrive. The connection is read
 * from `DISTRIBUTOR_*` environment variables (defaults otherwise; the interface defaults to
 * 127.0.0.1 here so the example stays on this host). Ctrl-C closes the publisher cleanly: held-back
 * updates are flushed and subscribers receive a goodbye.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Schedule } from "effect"
import { Distributor, DistributorConfig, Transport } from "../src/index.js"
import { Price } from "./price.js"

const symbols = ["ABC", "DEF", "GHI"]

const program = Effect.gen(function* () {
  const fromEnv = yield* DistributorConfig.loadConnectionConfig()
  const config = process.env.DISTRIBUTOR_INTERFACE
    ? fromEnv
    : new DistributorConfig.ConnectionConfig({ ...fromEnv, interface: "127.0.0.1" })
  const connection = yield* Distributor.connection(config)
  const publisher = yield* connection.publisher
  const prices = publisher.typed(Price)
  yield* Effect.log(`publishing on ${connection.key} as session ${publisher.source.sessionIdHex}`)

  const last = new Map(symbols.map((s) => [s, 100]))
  const tick = Effect.forEach(symbols, (symbol) => {
    const price = Math.round(last.get(symbol)! * (1 + (Math.random() - 0.5) / 100) * 100) / 100
    last.set(symbol, price)
    return prices.publish(`/prices/eq/${symbol}`, { symbol, price, at: Date.now() })
  })
  yield* Effect.repeat(tick, Schedule.spaced("100 millis"))
})

program.pipe(
  Effect.scoped,
  Effect.provide(Distributor.layer({ application: "example-publisher", console: { enabled: false } })),
  Effect.provide(Transport.layerUdp),
  NodeRuntime.runMain
)
