// libFuzzer target: the store manifest parser (data/manifest: manifest.json -> Manifest), the
// first thing a StoreReader reads. Property: an accepted manifest round-trips through
// manifest_to_json unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "data/manifest.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  segrun::data::Manifest m;
  try {
    m = segrun::data::parse_manifest(text, "manifest.json");
  } catch (const segrun::Error&) {
    return 0;
  }
  const std::string json = segrun::data::manifest_to_json(m);
  std::string again;
  try {
    again = segrun::data::manifest_to_json(segrun::data::parse_manifest(json, "written.json"));
  } catch (const segrun::Error& e) {
    segrun::fuzz::fuzz_check(false, std::string("manifest_to_json output does not parse: ") + e.what());
  }
  segrun::fuzz::fuzz_check(again == json, "manifest JSON round trip changed it");
  return 0;
}
