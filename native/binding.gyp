{
  "targets": [
    {
      "target_name": "distributor_gcm",
      "sources": ["distributor_gcm.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O2"] }
    }
  ]
}
