/**
 * The layers every command runs on: real UDP multicast, wrapped in `Transport.layerLossy` when a
 * simulated loss is asked for, and a Distributor whose web console is on only when asked for.
 */
import * as Layer from "effect/Layer"
import * as Distributor from "../../Distributor.js"
import * as Transport from "../../Transport.js"

export const transportLayer = (options: {
  readonly sendLoss: number
  readonly receiveLoss: number
  readonly seed: number
}): Layer.Layer<Transport.Transport> =>
  options.sendLoss > 0 || options.receiveLoss > 0
    ? Transport.layerLossy(options).pipe(Layer.provide(Transport.layerUdp))
    : Transport.layerUdp

export const distributorLayer = (options: {
  readonly application: string
  /** Console port; undefined leaves the console off. */
  readonly consolePort: number | undefined
  readonly transport: Layer.Layer<Transport.Transport>
}) =>
  Distributor.layer({
    application: options.application,
    console:
      options.consolePort === undefined
        ? { enabled: false }
        : { enabled: true, host: "127.0.0.1", port: options.consolePort }
  }).pipe(Layer.provide(options.transport))
