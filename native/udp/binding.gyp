{
  "targets": [
    {
      "target_name": "udp",
      "sources": ["src/udp.c", "src/pool.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [["OS!='linux'", {"type": "none", "sources!": ["src/udp.c", "src/pool.c"]}]]
    }
  ]
}
