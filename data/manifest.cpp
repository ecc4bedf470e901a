#include "data/manifest.h"

#include <limits>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace segrun::data {

std::string manifest_to_json(const Manifest& m) {
  nlohmann::ordered_json j;
  j["format"] = m.format;
  j["version"] = m.version;
  j["dataset"] = m.dataset;
  j["split"] = m.split;
  j["num_classes"] = m.num_classes;
  j["ignore_index"] = m.ignore_index;
  j["label_mapping"] = m.label_mapping;
  j["records"] = m.records;
  j["class_names"] = m.class_names;
  nlohmann::ordered_json shards = nlohmann::ordered_json::array();
  for (const auto& s : m.shards) shards.push_back({{"file", s.file}, {"records", s.records}});
  j["shards"] = shards;
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  const int k = m.num_classes;
  for (int i = 0; i < k; ++i) {
    std::vector<int64_t> row(m.cooccurrence.begin() + static_cast<int64_t>(i) * k,
                             m.cooccurrence.begin() + static_cast<int64_t>(i + 1) * k);
    rows.push_back(row);
  }
  j["cooccurrence"] = rows;
  return j.dump(1) + "\n";
}

namespace {

// An integer field in [lo, hi]; a float, a string or an out-of-range integer is a DataError
// (nlohmann's get<int>() of 2.5e22 is undefined behaviour: found by the manifest fuzzer).
int64_t integer_field(const nlohmann::json& v, const std::string& origin, const char* key,
                      int64_t lo = std::numeric_limits<int64_t>::min(),
                      int64_t hi = std::numeric_limits<int64_t>::max()) {
  bool ok = false;
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    ok = u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    x = ok ? static_cast<int64_t>(u) : 0;
  } else if (v.is_number_integer()) {
    ok = true;
    x = v.get<int64_t>();
  }
  SEGRUN_CHECK(ok && x >= lo && x <= hi, DataError,
               origin << ": manifest field '" << key << "' must be an integer in [" << lo << ", " << hi << "], got "
                      << v.dump());
  return x;
}

int int_field(const nlohmann::json& v, const std::string& origin, const char* key) {
  return static_cast<int>(
      integer_field(v, origin, key, std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
}

}  // namespace

Manifest parse_manifest(const std::string& json_text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    SEGRUN_THROW(DataError, origin << ": not a valid JSON manifest (" << e.what() << ")");
  }
  SEGRUN_CHECK(j.is_object() && j.contains("format") && j["format"].is_string(), DataError,
               origin << ": not a segrun store manifest (no 'format' field)");
  Manifest m;
  try {
    m.format = j.at("format").get<std::string>();
    SEGRUN_CHECK(m.format == kStoreFormatName, DataError,
                 origin << ": format '" << m.format << "' is not '" << kStoreFormatName << "'");
    m.version = int_field(j.at("version"), origin, "version");
    SEGRUN_CHECK(m.version == kStoreFormatVersion, DataError,
                 origin << ": store format version " << m.version << " is not supported (this build reads version "
                        << kStoreFormatVersion << ")");
    m.dataset = j.at("dataset").get<std::string>();
    m.split = j.at("split").get<std::string>();
    m.num_classes = int_field(j.at("num_classes"), origin, "num_classes");
    m.ignore_index = int_field(j.at("ignore_index"), origin, "ignore_index");
    m.label_mapping = j.at("label_mapping").get<std::string>();
    m.records = integer_field(j.at("records"), origin, "records");
    m.class_names = j.at("class_names").get<std::vector<std::string>>();
    for (const auto& s : j.at("shards")) {
      m.shards.push_back({s.at("file").get<std::string>(), integer_field(s.at("records"), origin, "shards.records")});
    }
    const auto& rows = j.at("cooccurrence");
    for (const auto& row : rows) {
      for (const auto& v : row) m.cooccurrence.push_back(integer_field(v, origin, "cooccurrence"));
    }
  } catch (const nlohmann::json::exception& e) {
    SEGRUN_THROW(DataError, origin << ": malformed manifest (" << e.what() << ")");
  }
  const int k = m.num_classes;
  SEGRUN_CHECK(k > 0 && static_cast<int>(m.class_names.size()) == k, DataError,
               origin << ": num_classes " << k << " does not match " << m.class_names.size() << " class names");
  SEGRUN_CHECK(static_cast<int64_t>(m.cooccurrence.size()) == static_cast<int64_t>(k) * k, DataError,
               origin << ": cooccurrence is not " << k << " x " << k);
  int64_t total = 0;
  for (const auto& s : m.shards) total += s.records;
  SEGRUN_CHECK(!m.shards.empty(), DataError, origin << ": lists no shard (\"shards\" is empty)");
  SEGRUN_CHECK(total == m.records, DataError,
               origin << ": shards hold " << total << " records but the manifest says " << m.records);
  return m;
}

std::string shard_file_name(int shard, int num_shards) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "shard-%05d-of-%05d.h5", shard, num_shards);
  return buf;
}

std::string store_directory(const std::string& store_path) {
  std::filesystem::path p(store_path);
  if (p.filename() == kManifestFileName) return p.parent_path().empty() ? "." : p.parent_path().string();
  return store_path;
}

std::string manifest_path(const std::string& store_path) {
  return (std::filesystem::path(store_directory(store_path)) / kManifestFileName).string();
}

}  // namespace segrun::data
