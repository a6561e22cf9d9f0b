/**
 * Deterministic network simulation for protocol tests: seeded PRNG (`prng.ts`), per-direction
 * link fault model (`link.ts`, reusable by an in-memory Transport), and the discrete-event
 * multicast network on a virtual clock (`network.ts`). See each module's header for semantics.
 */
export * from "./link.js"
export * from "./network.js"
export * from "./prng.js"
