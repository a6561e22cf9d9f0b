import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Real-socket suites bind the same multicast group:port; keep files sequential to avoid cross-talk.
    fileParallelism: false,
    reporters: ["default"]
  }
})
