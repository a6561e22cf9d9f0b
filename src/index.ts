/**
 * effect-distributor: reliable publish/subscribe over IP multicast, as an Effect library.
 *
 * @since 0.1.0
 */

export * as Connection from "./Connection.js"
export * as Distributor from "./Distributor.js"
export * as DistributorConfig from "./DistributorConfig.js"
export * as DistributorError from "./DistributorError.js"
export * as Gateway from "./Gateway.js"
export * as GatewayClient from "./GatewayClient.js"
export * as Topic from "./Topic.js"
export * as Transport from "./Transport.js"
export * as WebConsole from "./WebConsole.js"
