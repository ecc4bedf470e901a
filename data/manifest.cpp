#include "data/manifest.h"

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
    m.version = j.at("version").get<int>();
    SEGRUN_CHECK(m.version == kStoreFormatVersion, DataError,
                 origin << ": store format version " << m.version << " is not supported (this build reads version "
                        << kStoreFormatVersion << ")");
    m.dataset = j.at("dataset").get<std::string>();
    m.split = j.at("split").get<std::string>();
    m.num_classes = j.at("num_classes").get<int>();
    m.ignore_index = j.at("ignore_index").get<int>();
    m.label_mapping = j.at("label_mapping").get<std::string>();
    m.records = j.at("records").get<int64_t>();
    m.class_names = j.at("class_names").get<std::vector<std::string>>();
    for (const auto& s : j.at("shards")) {
      m.shards.push_back({s.at("file").get<std::string>(), s.at("records").get<int64_t>()});
    }
    const auto& rows = j.at("cooccurrence");
    for (const auto& row : rows) {
      for (const auto& v : row) m.cooccurrence.push_back(v.get<int64_t>());
    }
  } catch (const nlohmann::json::exception& e) {
    SEGRUN_THROW(DataError, origin << ": malformed manifest (" << e.what() << ")");
  }
  const int k = m.num_classes;
  SEGRUN_CHECK(k > 0 && static_cast<int>(m.class_names.size()) == k, DataError,
               origin << ": num_classes " << k << " does not match " << m.class_names.size()
                      << " class names");
  SEGRUN_CHECK(static_cast<int64_t>(m.cooccurrence.size()) == static_cast<int64_t>(k) * k, DataError,
               origin << ": cooccurrence is not " << k << " x " << k);
  int64_t total = 0;
  for (const auto& s : m.shards) total += s.records;
  SEGRUN_CHECK(total == m.records && !m.shards.empty(), DataError,
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
