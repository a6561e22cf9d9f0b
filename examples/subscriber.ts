/**
 * A subscriber: every price under `/prices/...`, decoded with the publisher's schema. An
 * irrecoverable loss (which the library reports, never hides) is logged and the stream goes on.
 *
 *   npx tsx examples/subscriber.ts              # 239.192.0.1:5197 on 127.0.0.1, until Ctrl-C
 *   npx tsx examples/subscriber.ts /prices/eq/ABC
 *
 * Start examples/publisher.ts in another terminal. The connection comes from `DISTRIBUTOR_*`
 * environment variables like the publisher's.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Stream } from "effect"
import { Distributor, DistributorConfig, Transport } from "../src/index.js"
import { Price } from "./price.js"

const pattern = process.argv[2] ?? "/prices/..."

const program = Effect.gen(function* () {
  const fromEnv = yield* DistributorConfig.loadConnectionConfig()
  const config = process.env.DISTRIBUTOR_INTERFACE
    ? fromEnv
    : new DistributorConfig.ConnectionConfig({ ...fromEnv, interface: "127.0.0.1" })
  const connection = yield* Distributor.connection(config)
  yield* Effect.log(`subscribed to ${pattern} on ${connection.key}`)
  yield* connection
    .subscribe(pattern, { schema: Price, onLoss: "notify" })
    .pipe(
      Stream.runForEach((item) =>
        "_tag" in item
          ? Effect.logWarning(item.message)
          : Effect.log(
              `${item.topic}: ${item.value.price.toFixed(2)} (${Date.now() - item.value.at} ms, ` +
                `from ${item.source.application}@${item.source.host})`
            )
      )
    )
})

program.pipe(
  Effect.scoped,
  Effect.provide(Distributor.layer({ application: "example-subscriber", console: { enabled: false } })),
  Effect.provide(Transport.layerUdp),
  NodeRuntime.runMain
)
