#include "data/inspect.h"

#include <algorithm>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "data/store.h"

namespace segrun::data {

StoreSummary inspect_store(const std::string& path, bool verify) {
  StoreReader reader(path);
  StoreSummary s;
  s.path = path;
  s.dataset = reader.dataset();
  s.split = reader.split();
  s.label_mapping = reader.label_mapping();
  s.records = reader.size();
  s.classes = reader.num_classes();
  s.shards = reader.num_shards();
  s.ignore_index = reader.ignore_index();
  s.class_names = reader.class_names();
  s.images_per_class.assign(static_cast<size_t>(s.classes), 0);
  for (int64_t i = 0; i < s.records; ++i) {
    const uint8_t* p = reader.presence(i);
    for (int c = 0; c < s.classes; ++c) s.images_per_class[static_cast<size_t>(c)] += p[c] ? 1 : 0;
  }
  s.verified = verify;
  if (verify) {
    RawRecord r;
    for (int64_t i = 0; i < s.records; ++i) {
      reader.read(i, &r, /*verify=*/false);
      ++s.records_verified;
      if (record_crc(r.image_bytes, r.label_bytes) != r.stored_crc) {
        auto [shard, local] = reader.locate(i);
        s.crc_failures.push_back({i, shard, local, r.name});
      }
    }
  }
  return s;
}

std::string to_json(const StoreSummary& s) {
  nlohmann::ordered_json j;
  j["path"] = s.path;
  j["dataset"] = s.dataset;
  j["split"] = s.split;
  j["label_mapping"] = s.label_mapping;
  j["records"] = s.records;
  j["classes"] = s.classes;
  j["shards"] = s.shards;
  j["ignore_index"] = s.ignore_index;
  nlohmann::ordered_json per_class = nlohmann::ordered_json::object();
  for (size_t c = 0; c < s.class_names.size(); ++c) per_class[s.class_names[c]] = s.images_per_class[c];
  j["images_per_class"] = per_class;
  nlohmann::ordered_json integrity;
  integrity["verified"] = s.verified;
  integrity["records_verified"] = s.records_verified;
  nlohmann::ordered_json failures = nlohmann::ordered_json::array();
  for (const auto& f : s.crc_failures) {
    failures.push_back({{"index", f.index}, {"shard", f.shard}, {"local", f.local}, {"name", f.name}});
  }
  integrity["crc_failures"] = failures;
  j["integrity"] = integrity;
  return j.dump(2);
}

std::string to_text(const StoreSummary& s) {
  std::ostringstream os;
  os << "store     " << s.path << "\n"
     << "dataset   " << s.dataset << " / " << s.split << " (" << s.label_mapping << ")\n"
     << "records   " << s.records << " in " << s.shards << " shard(s)\n"
     << "classes   " << s.classes << " (ignore index " << s.ignore_index << ")\n";
  if (s.verified) {
    os << "integrity " << s.records_verified << " records verified, " << s.crc_failures.size() << " CRC failure(s)\n";
    for (const auto& f : s.crc_failures) {
      os << "  CRC mismatch: record " << f.index << " (" << f.name << ") = " << f.shard << " record " << f.local
         << "\n";
    }
  } else {
    os << "integrity not verified (--no-verify; run without it to check every record)\n";
  }
  std::vector<size_t> order(s.images_per_class.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return s.images_per_class[a] > s.images_per_class[b]; });
  size_t present = 0;
  for (size_t c : order) present += s.images_per_class[c] > 0 ? 1 : 0;
  os << "present   " << present << " of " << s.classes << " classes (images per class):\n";
  for (size_t c : order) {
    if (s.images_per_class[c] == 0) break;
    os << "  " << std::setw(4) << c << "  " << std::left << std::setw(22) << s.class_names[c] << std::right
       << std::setw(8) << s.images_per_class[c] << "\n";
  }
  return os.str();
}

}  // namespace segrun::data
