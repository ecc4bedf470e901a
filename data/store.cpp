#include "data/store.h"

#include <fcntl.h>
#include <hdf5.h>
#include <isa-l/crc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "core/atomic_file.h"
#include "core/run_folder.h"
#include "data/release_folders.h"

namespace segrun::data {
namespace {

// libhdf5 (Debian's serial build) is not thread-safe: every call goes through this lock.
std::recursive_mutex& hdf5_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

void quiet_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

// Owns one hid_t; closes it with the matching H5?close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    reset();
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = -1;
    return *this;
  }
  ~Handle() { reset(); }
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = -1;
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// HDF5's own account of the failure just seen, for the one-line error: the innermost message of
// the error stack, where it was detected ("truncated file: eof = 2343, sblock->base_addr = 0,
// stored_eof = 4686"), as " (...)", or "" when the stack is empty. Clears the stack.
std::string hdf5_reason() {
  std::string reason;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* error, void* out) -> herr_t {
        auto& text = *static_cast<std::string*>(out);
        if (text.empty() && error->desc != nullptr) text = error->desc;
        return 0;
      },
      &reason);
  H5Eclear2(H5E_DEFAULT);
  std::replace(reason.begin(), reason.end(), '\n', ' ');
  return reason.empty() ? "" : " (" + reason + ")";
}

Handle checked(hid_t id, Handle::Closer closer, const std::string& file, const std::string& what) {
  SEGRUN_CHECK(id >= 0, DataError, file << ": HDF5 " << what << " failed" << hdf5_reason());
  return Handle(id, closer);
}

void check_status(herr_t status, const std::string& file, const std::string& what) {
  SEGRUN_CHECK(status >= 0, DataError, file << ": HDF5 " << what << " failed" << hdf5_reason());
}

Handle vlen_string_type(const std::string& file) {
  Handle t = checked(H5Tcopy(H5T_C_S1), H5Tclose, file, "string type");
  check_status(H5Tset_size(t.get(), H5T_VARIABLE), file, "string type");
  check_status(H5Tset_cset(t.get(), H5T_CSET_UTF8), file, "string type");
  return t;
}

void write_string_attr(hid_t obj, const char* name, const std::string& value, const std::string& file) {
  Handle type = vlen_string_type(file);
  Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, file, "attribute space");
  Handle attr = checked(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, file,
                        std::string("attribute ") + name);
  const char* ptr = value.c_str();
  check_status(H5Awrite(attr.get(), type.get(), &ptr), file, std::string("attribute ") + name);
}

void write_int_attr(hid_t obj, const char* name, int64_t value, const std::string& file) {
  Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, file, "attribute space");
  Handle attr = checked(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, file,
                        std::string("attribute ") + name);
  check_status(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), file, std::string("attribute ") + name);
}

void write_strings_attr(hid_t obj, const char* name, const std::vector<std::string>& values, const std::string& file) {
  Handle type = vlen_string_type(file);
  hsize_t dim = values.size();
  Handle space = checked(H5Screate_simple(1, &dim, nullptr), H5Sclose, file, "attribute space");
  Handle attr = checked(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, file,
                        std::string("attribute ") + name);
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (!ptrs.empty()) check_status(H5Awrite(attr.get(), type.get(), ptrs.data()), file, name);
}

bool has_attr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

std::string read_string_attr(hid_t obj, const char* name, const std::string& file) {
  SEGRUN_CHECK(has_attr(obj, name), DataError, file << ": missing attribute '" << name << "'");
  Handle attr = checked(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, file, std::string("attribute ") + name);
  Handle ftype = checked(H5Aget_type(attr.get()), H5Tclose, file, "attribute type");
  SEGRUN_CHECK(H5Tget_class(ftype.get()) == H5T_STRING, DataError,
               file << ": attribute '" << name << "' is not a string");
  if (H5Tis_variable_str(ftype.get()) > 0) {
    Handle type = vlen_string_type(file);
    char* ptr = nullptr;
    check_status(H5Aread(attr.get(), type.get(), &ptr), file, std::string("attribute ") + name);
    std::string out = ptr ? ptr : "";
    H5free_memory(ptr);
    return out;
  }
  size_t size = H5Tget_size(ftype.get());
  std::string out(size, '\0');
  Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, file, "string type");
  check_status(H5Tset_size(type.get(), size), file, "string type");
  check_status(H5Aread(attr.get(), type.get(), out.data()), file, std::string("attribute ") + name);
  out.resize(std::strlen(out.c_str()));
  return out;
}

int64_t read_int_attr(hid_t obj, const char* name, const std::string& file) {
  SEGRUN_CHECK(has_attr(obj, name), DataError, file << ": missing attribute '" << name << "'");
  Handle attr = checked(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, file, std::string("attribute ") + name);
  int64_t value = 0;
  check_status(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), file, std::string("attribute ") + name);
  return value;
}

std::vector<std::string> read_strings(hid_t dataset_or_attr, bool is_attr, const std::string& file,
                                      const std::string& what) {
  Handle space = is_attr ? checked(H5Aget_space(dataset_or_attr), H5Sclose, file, what)
                         : checked(H5Dget_space(dataset_or_attr), H5Sclose, file, what);
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  SEGRUN_CHECK(n >= 0, DataError, file << ": cannot read " << what);
  std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
  std::vector<std::string> out;
  if (n == 0) return out;
  Handle type = vlen_string_type(file);
  herr_t status = is_attr ? H5Aread(dataset_or_attr, type.get(), ptrs.data())
                          : H5Dread(dataset_or_attr, type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data());
  check_status(status, file, "read " + what);
  for (char* p : ptrs) out.emplace_back(p ? p : "");
  H5Dvlen_reclaim(type.get(), space.get(), H5P_DEFAULT, ptrs.data());
  return out;
}

// Creates a dataset of `type` with `dims` (rank 1 or 2) and writes `data` (may be empty).
void write_dataset(hid_t parent, const char* name, hid_t file_type, hid_t mem_type, const std::vector<hsize_t>& dims,
                   const void* data, const std::string& file) {
  Handle space = checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose, file,
                         std::string("space of ") + name);
  Handle ds = checked(H5Dcreate2(parent, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                      file, std::string("create ") + name);
  hsize_t total = 1;
  for (auto d : dims) total *= d;
  if (total > 0) {
    check_status(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), file, std::string("write ") + name);
  }
}

// Reads a whole numeric dataset, checking its shape against `expect` (-1 = any).
template <typename T>
std::vector<T> read_dataset(hid_t parent, const char* name, hid_t mem_type, std::vector<int64_t> expect,
                            const std::string& file) {
  SEGRUN_CHECK(H5Lexists(parent, name, H5P_DEFAULT) > 0, DataError, file << ": missing dataset '" << name << "'");
  Handle ds = checked(H5Dopen2(parent, name, H5P_DEFAULT), H5Dclose, file, std::string("open ") + name);
  Handle space = checked(H5Dget_space(ds.get()), H5Sclose, file, std::string("space of ") + name);
  int rank = H5Sget_simple_extent_ndims(space.get());
  SEGRUN_CHECK(rank == static_cast<int>(expect.size()), DataError,
               file << ": dataset '" << name << "' has rank " << rank << ", expected " << expect.size());
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  size_t total = 1;
  for (int d = 0; d < rank; ++d) {
    SEGRUN_CHECK(
        expect[d] < 0 || static_cast<int64_t>(dims[d]) == expect[d], DataError,
        file << ": dataset '" << name << "' dimension " << d << " is " << dims[d] << ", expected " << expect[d]);
    total *= dims[d];
  }
  std::vector<T> out(total);
  if (total > 0) {
    check_status(H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), file,
                 std::string("read ") + name);
  }
  return out;
}

// An open file descriptor, closed on destruction.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileDescriptor& operator=(FileDescriptor&& o) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
    return *this;
  }
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

// One bytes dataset of a shard (`images/bytes` or `labels/bytes`) and how a record's range of it
// is read.
//  - Contiguous layout (every shard written by this version): the dataset's bytes are one block of
//    the file, so a record is one pread(2) at block offset + record offset straight into the
//    caller's buffer: no HDF5 call, no lock, no chunk-cache copy. Each dataset reads through a file
//    descriptor of its own because the kernel keeps one readahead window per open file: a
//    sequential pass then is two sequential streams (images, labels) instead of one stream jumping
//    between two regions, which keeps readahead from growing.
//  - Chunked layout (shards packed before the contiguous writer, same format version): H5Dread of
//    a hyperslab under the HDF5 lock.
class BytesDataset {
 public:
  BytesDataset() = default;
  BytesDataset(hid_t file, const std::string& name, const std::string& path) : path_(path), name_(name) {
    dataset_ = checked(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose, path, "open " + name);
    Handle space = checked(H5Dget_space(dataset_.get()), H5Sclose, path, "space of " + name);
    SEGRUN_CHECK(H5Sget_simple_extent_ndims(space.get()) == 1, DataError,
                 path << ": dataset '" << name << "' is not one-dimensional");
    hsize_t dim = 0;
    H5Sget_simple_extent_dims(space.get(), &dim, nullptr);
    extent_ = dim;
    Handle type = checked(H5Dget_type(dataset_.get()), H5Tclose, path, "type of " + name);
    SEGRUN_CHECK(H5Tget_class(type.get()) == H5T_INTEGER && H5Tget_size(type.get()) == 1, DataError,
                 path << ": dataset '" << name << "' is not uint8");
    Handle plist = checked(H5Dget_create_plist(dataset_.get()), H5Pclose, path, "layout of " + name);
    if (H5Pget_layout(plist.get()) != H5D_CONTIGUOUS) return;  // chunked: read through HDF5
    fd_ = FileDescriptor(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    SEGRUN_CHECK(fd_.get() >= 0, DataError, path << ": cannot open for reading: " << std::strerror(errno));
    if (extent_ > 0) {
      const haddr_t offset = H5Dget_offset(dataset_.get());
      SEGRUN_CHECK(offset != HADDR_UNDEF, DataError, path << ": dataset '" << name << "' has no storage");
      struct stat file {};
      SEGRUN_CHECK(::fstat(fd_.get(), &file) == 0 && offset + extent_ <= static_cast<uint64_t>(file.st_size), DataError,
                   path << ": dataset '" << name << "' ends past the end of the file (truncated shard)");
      file_offset_ = offset;
    }
    dataset_.reset();
  }

  uint64_t extent() const { return extent_; }
  // Closes the HDF5 dataset (the caller holds the HDF5 lock).
  void close() { dataset_.reset(); }

  // Bytes [begin, end) of the dataset into *out (begin <= end <= extent(), as checked at open).
  // Thread-safe.
  void read(uint64_t begin, uint64_t end, std::vector<uint8_t>* out) const {
    out->resize(end - begin);
    if (end == begin) return;
    if (dataset_.valid()) {
      read_hyperslab(begin, end, out->data());
      return;
    }
    uint8_t* to = out->data();
    for (uint64_t at = file_offset_ + begin, left = end - begin; left > 0;) {
      const ssize_t n = ::pread(fd_.get(), to, left, static_cast<off_t>(at));
      if (n < 0 && errno == EINTR) continue;
      SEGRUN_CHECK(n > 0, DataError,
                   path_ << ": reading '" << name_ << "' at byte " << at << " failed: "
                         << (n == 0 ? std::string("unexpected end of file (shard truncated?)") : std::strerror(errno)));
      to += n;
      at += static_cast<uint64_t>(n);
      left -= static_cast<uint64_t>(n);
    }
  }

 private:
  void read_hyperslab(uint64_t begin, uint64_t end, uint8_t* out) const {
    std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
    const std::string& file = path_;
    Handle fspace = checked(H5Dget_space(dataset_.get()), H5Sclose, file, "bytes space");
    hsize_t start = begin, count = end - begin;
    check_status(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr), file, "select");
    Handle mspace = checked(H5Screate_simple(1, &count, nullptr), H5Sclose, file, "memory space");
    check_status(H5Dread(dataset_.get(), H5T_NATIVE_UINT8, mspace.get(), fspace.get(), H5P_DEFAULT, out), file,
                 "read " + name_);
  }

  std::string path_, name_;
  Handle dataset_;  // open only for a chunked dataset
  FileDescriptor fd_;
  uint64_t file_offset_ = 0, extent_ = 0;
};

}  // namespace

uint32_t record_crc(const std::vector<uint8_t>& image_bytes, const std::vector<uint8_t>& label_bytes) {
  // zlib's CRC-32, the value the format stores. ISA-L picks at run time the fastest code the CPU
  // has (carry-less multiplies, AVX-512 where present): 67 GB/s in cache here against zlib's 7
  // (docs/performance.md, "Store").
  uint32_t crc = crc32_gzip_refl(0, image_bytes.data(), image_bytes.size());
  return crc32_gzip_refl(crc, label_bytes.data(), label_bytes.size());
}

// ---- writer ----------------------------------------------------------------------------------

struct StoreWriter::Impl {
  std::string tmp_path;
  ShardHeader header;
  Handle file, images_group, labels_group;
  // Record bytes, concatenated; written by commit() as contiguous datasets (one block each).
  std::vector<uint8_t> image_bytes, label_bytes;
  std::vector<uint64_t> image_offsets{0}, label_offsets{0};
  std::vector<uint32_t> shapes, crcs;
  std::vector<std::string> names;
  std::vector<uint8_t> presence;
  bool committed = false;
};

StoreWriter::StoreWriter(const std::string& path, const ShardHeader& header)
    : path_(path), impl_(std::make_unique<Impl>()) {
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  quiet_hdf5();
  impl_->header = header;
  impl_->tmp_path = temp_path_for(path);
  const std::string& f = path_;
  {
    // The shard is built in memory (HDF5 core driver, no backing store) and written to disk in one
    // piece by commit(): a full disk then surfaces as one clean IoError from write_file_atomic,
    // never as a half-flushed HDF5 file (whose library state crashes the process at exit).
    std::ofstream probe(impl_->tmp_path, std::ios::binary);
    SEGRUN_CHECK(probe.good(), DataError, f << ": cannot create shard file (directory not writable?)");
    probe.close();
    std::remove(impl_->tmp_path.c_str());
  }
  Handle access = checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, f, "create file access list");
  check_status(H5Pset_fapl_core(access.get(), 16 << 20, /*backing_store=*/0), f, "select the in-memory driver");
  impl_->file = Handle(H5Fcreate(impl_->tmp_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get()), H5Fclose);
  SEGRUN_CHECK(impl_->file.valid(), DataError, f << ": cannot create shard file");
  impl_->images_group = checked(H5Gcreate2(impl_->file.get(), "images", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                                H5Gclose, f, "create group images");
  impl_->labels_group = checked(H5Gcreate2(impl_->file.get(), "labels", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                                H5Gclose, f, "create group labels");
}

StoreWriter::~StoreWriter() {
  if (!impl_ || impl_->committed) return;
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  impl_->images_group.reset();
  impl_->labels_group.reset();
  impl_->file.reset();  // in memory only: nothing on disk to remove
}

int64_t StoreWriter::size() const { return static_cast<int64_t>(impl_->names.size()); }

void StoreWriter::append(const RecordInput& r) {
  SEGRUN_CHECK(!impl_->committed, DataError, path_ << ": append after commit");
  const size_t k = impl_->header.class_names.size();
  SEGRUN_CHECK(r.presence.size() == k, DataError,
               path_ << ": record " << r.name << " has " << r.presence.size() << " presence entries, expected " << k);
  impl_->image_bytes.insert(impl_->image_bytes.end(), r.image_bytes.begin(), r.image_bytes.end());
  impl_->label_bytes.insert(impl_->label_bytes.end(), r.label_bytes.begin(), r.label_bytes.end());
  impl_->image_offsets.push_back(impl_->image_offsets.back() + r.image_bytes.size());
  impl_->label_offsets.push_back(impl_->label_offsets.back() + r.label_bytes.size());
  impl_->shapes.push_back(r.height);
  impl_->shapes.push_back(r.width);
  impl_->names.push_back(r.name);
  impl_->presence.insert(impl_->presence.end(), r.presence.begin(), r.presence.end());
  impl_->crcs.push_back(record_crc(r.image_bytes, r.label_bytes));
}

void StoreWriter::commit() {
  SEGRUN_CHECK(!impl_->committed, DataError, path_ << ": committed twice");
  std::string image;
  {
    std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
    const std::string& f = path_;
    Impl& m = *impl_;
    const hsize_t n = m.names.size();
    const hsize_t k = m.header.class_names.size();
    // The bytes datasets first, each freed once written, so the shard is in memory at most twice.
    for (auto [group, bytes] :
         {std::pair{m.images_group.get(), &m.image_bytes}, {m.labels_group.get(), &m.label_bytes}}) {
      write_dataset(group, "bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, {bytes->size()}, bytes->data(), f);
      std::vector<uint8_t>().swap(*bytes);
    }
    write_dataset(m.images_group.get(), "offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, {n + 1}, m.image_offsets.data(),
                  f);
    write_dataset(m.labels_group.get(), "offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, {n + 1}, m.label_offsets.data(),
                  f);
    write_dataset(m.file.get(), "shape", H5T_STD_U32LE, H5T_NATIVE_UINT32, {n, 2}, m.shapes.data(), f);
    write_dataset(m.file.get(), "presence", H5T_STD_U8LE, H5T_NATIVE_UINT8, {n, k}, m.presence.data(), f);
    write_dataset(m.file.get(), "crc32", H5T_STD_U32LE, H5T_NATIVE_UINT32, {n}, m.crcs.data(), f);
    {
      Handle type = vlen_string_type(f);
      std::vector<const char*> ptrs;
      for (const auto& s : m.names) ptrs.push_back(s.c_str());
      write_dataset(m.file.get(), "name", type.get(), type.get(), {n}, ptrs.data(), f);
    }
    hid_t root = m.file.get();
    write_string_attr(root, "format", kStoreFormatName, f);
    write_int_attr(root, "version", kStoreFormatVersion, f);
    write_string_attr(root, "dataset", m.header.dataset, f);
    write_string_attr(root, "split", m.header.split, f);
    write_int_attr(root, "num_classes", static_cast<int64_t>(k), f);
    write_int_attr(root, "ignore_index", m.header.ignore_index, f);
    write_strings_attr(root, "class_names", m.header.class_names, f);
    write_string_attr(root, "label_mapping", m.header.label_mapping, f);
    write_int_attr(root, "shard_index", m.header.shard_index, f);
    write_int_attr(root, "num_shards", m.header.num_shards, f);
    write_int_attr(root, "records", static_cast<int64_t>(n), f);
    m.images_group.reset();
    m.labels_group.reset();
    check_status(H5Fflush(m.file.get(), H5F_SCOPE_GLOBAL), f, "flush");
    const ssize_t size = H5Fget_file_image(m.file.get(), nullptr, 0);
    SEGRUN_CHECK(size > 0, DataError, f << ": cannot get the shard's file image");
    image.resize(static_cast<size_t>(size));
    SEGRUN_CHECK(H5Fget_file_image(m.file.get(), image.data(), image.size()) == size, DataError,
                 f << ": cannot get the shard's file image");
    m.file.reset();
  }
  write_file_atomic(path_, image);  // temp + fsync + rename; IoError (e.g. disk full) names path_
  impl_->committed = true;
}

// ---- reader ----------------------------------------------------------------------------------

struct StoreReader::Shard {
  std::string path;
  BytesDataset image_bytes, label_bytes;
  std::vector<uint64_t> image_offsets, label_offsets;
  std::vector<uint32_t> shapes, crcs;
  std::vector<std::string> names;
  std::vector<uint8_t> presence;
  ~Shard() {
    std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
    image_bytes.close();
    label_bytes.close();
  }
};

StoreReader::StoreReader(const std::string& store_path) {
  directory_ = store_directory(store_path);
  const std::string mpath = manifest_path(store_path);
  // A path the user gave (a config's data.store, a command's argument): exit 2, as a config error.
  // A file of a store (a shard, its manifest.json): the store is the folder that holds it.
  SEGRUN_CHECK(!std::filesystem::is_regular_file(directory_), ConfigError,
               store_path << ": a file, not a store: a store is the folder that holds " << kManifestFileName
                          << " and the shards (here: "
                          << (std::filesystem::path(directory_).parent_path().empty()
                                  ? std::string(".")
                                  : std::filesystem::path(directory_).parent_path().lexically_normal().string())
                          << "?)");
  SEGRUN_CHECK(std::filesystem::is_directory(directory_), ConfigError,
               store_path << ": store not found (expected a directory with " << kManifestFileName << ")");
  if (!std::filesystem::is_regular_file(mpath)) {
    // Folders users mistake for a store: a run folder, a dataset not packed yet.
    namespace fs = std::filesystem;
    const fs::path dir(directory_);
    SEGRUN_CHECK(!RunFolder(directory_).holds_run_files(), ConfigError,
                 store_path << ": a run folder, not a store (the run's stores are data.store and data.val_store in "
                            << (dir / "config.toml").string() << ")");
    const std::optional<DatasetLayout> released = released_layout_of(dir);
    const bool ade = released == DatasetLayout::kAde20k;
    SEGRUN_CHECK(!released, ConfigError,
                 store_path << ": " << (ade ? "an ADE20K" : "a Cityscapes")
                            << " dataset folder, not a store; pack it first: segrun data pack --layout "
                            << (ade ? "ade20k" : "cityscapes") << " --root " << store_path
                            << " --split <train|val> --out <store>");
    throw DataError(mpath + ": missing store manifest (the store is incomplete or was not packed)");
  }
  std::string text;
  try {
    text = read_file(mpath);
  } catch (const std::exception& e) {
    SEGRUN_THROW(DataError, mpath << ": cannot read manifest (" << e.what() << ")");
  }
  manifest_ = parse_manifest(text, mpath);
  int64_t first = 0;
  for (size_t s = 0; s < manifest_.shards.size(); ++s) {
    const std::string path = (std::filesystem::path(directory_) / manifest_.shards[s].file).string();
    shards_.push_back(open_shard(path, manifest_, static_cast<int>(s), manifest_.shards[s].records));
    first_.push_back(first);
    first += manifest_.shards[s].records;
  }
}

StoreReader::~StoreReader() = default;

std::unique_ptr<StoreReader::Shard> StoreReader::open_shard(const std::string& path, const Manifest& manifest,
                                                            int shard_index, int64_t expected_records) {
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  quiet_hdf5();
  SEGRUN_CHECK(std::filesystem::is_regular_file(path), DataError, path << ": shard file missing");
  // H5Fis_hdf5 says "not HDF5" for a file it cannot open, too: a good shard the user may not
  // read must not pass for a corrupt one.
  SEGRUN_CHECK(::access(path.c_str(), R_OK) == 0, DataError,
               path << ": cannot open for reading: " << std::strerror(errno));
  htri_t is_h5 = H5Fis_hdf5(path.c_str());
  SEGRUN_CHECK(is_h5 > 0, DataError, path << ": not an HDF5 file (corrupt or truncated shard)");
  auto shard = std::make_unique<StoreReader::Shard>();
  shard->path = path;
  // Closed on return: HDF5 keeps the file open while a chunked BytesDataset holds its dataset.
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  SEGRUN_CHECK(file.valid(), DataError,
               path << ": cannot open HDF5 shard (truncated or corrupt file)" << hdf5_reason());
  hid_t root = file.get();
  SEGRUN_CHECK(has_attr(root, "format"), DataError, path << ": not a segrun store shard (no 'format' attribute)");
  std::string format = read_string_attr(root, "format", path);
  SEGRUN_CHECK(format == kStoreFormatName, DataError,
               path << ": format '" << format << "' is not '" << kStoreFormatName << "'");
  int64_t version = read_int_attr(root, "version", path);
  SEGRUN_CHECK(version == kStoreFormatVersion, DataError,
               path << ": store format version " << version << " is not supported (this build reads version "
                    << kStoreFormatVersion << ")");
  std::string dataset = read_string_attr(root, "dataset", path);
  std::string split = read_string_attr(root, "split", path);
  int64_t k = read_int_attr(root, "num_classes", path);
  int64_t index = read_int_attr(root, "shard_index", path);
  SEGRUN_CHECK(
      dataset == manifest.dataset && split == manifest.split && k == manifest.num_classes && index == shard_index,
      DataError,
      path << ": shard (" << dataset << "/" << split << ", " << k << " classes, shard " << index
           << ") does not belong to this manifest (" << manifest.dataset << "/" << manifest.split << ", "
           << manifest.num_classes << " classes, shard " << shard_index << ")");
  const int64_t n = expected_records;
  shard->image_offsets = read_dataset<uint64_t>(root, "images/offsets", H5T_NATIVE_UINT64, {n + 1}, path);
  shard->label_offsets = read_dataset<uint64_t>(root, "labels/offsets", H5T_NATIVE_UINT64, {n + 1}, path);
  shard->shapes = read_dataset<uint32_t>(root, "shape", H5T_NATIVE_UINT32, {n, 2}, path);
  shard->presence = read_dataset<uint8_t>(root, "presence", H5T_NATIVE_UINT8, {n, k}, path);
  shard->crcs = read_dataset<uint32_t>(root, "crc32", H5T_NATIVE_UINT32, {n}, path);
  {
    SEGRUN_CHECK(H5Lexists(root, "name", H5P_DEFAULT) > 0, DataError, path << ": missing dataset 'name'");
    Handle ds = checked(H5Dopen2(root, "name", H5P_DEFAULT), H5Dclose, path, "open name");
    shard->names = read_strings(ds.get(), false, path, "name");
    SEGRUN_CHECK(static_cast<int64_t>(shard->names.size()) == n, DataError,
                 path << ": dataset 'name' has " << shard->names.size() << " entries, expected " << n);
  }
  shard->image_bytes = BytesDataset(root, "images/bytes", path);
  shard->label_bytes = BytesDataset(root, "labels/bytes", path);
  for (int64_t i = 0; i < n; ++i) {
    SEGRUN_CHECK(shard->image_offsets[i] <= shard->image_offsets[i + 1] &&
                     shard->label_offsets[i] <= shard->label_offsets[i + 1],
                 DataError, path << ": record " << i << ": offsets are not increasing");
  }
  SEGRUN_CHECK(
      shard->image_offsets[n] <= shard->image_bytes.extent() && shard->label_offsets[n] <= shard->label_bytes.extent(),
      DataError, path << ": offsets point past the end of the bytes datasets (truncated shard)");
  return shard;
}

const StoreReader::Shard& StoreReader::shard_of(int64_t i, int64_t* local) const {
  SEGRUN_CHECK(i >= 0 && i < size(), DataError,
               directory_ << ": record index " << i << " out of range 0.." << size() - 1);
  size_t s = static_cast<size_t>(std::upper_bound(first_.begin(), first_.end(), i) - first_.begin()) - 1;
  while (s + 1 < first_.size() && first_[s + 1] <= i) ++s;
  *local = i - first_[s];
  return *shards_[s];
}

const uint8_t* StoreReader::presence(int64_t i) const {
  int64_t local = 0;
  const Shard& s = shard_of(i, &local);
  return s.presence.data() + local * num_classes();
}

const std::string& StoreReader::name(int64_t i) const {
  int64_t local = 0;
  return shard_of(i, &local).names[local];
}

std::pair<uint32_t, uint32_t> StoreReader::shape(int64_t i) const {
  int64_t local = 0;
  const Shard& s = shard_of(i, &local);
  return {s.shapes[2 * local], s.shapes[2 * local + 1]};
}

std::pair<std::string, int64_t> StoreReader::locate(int64_t i) const {
  int64_t local = 0;
  const Shard& s = shard_of(i, &local);
  return {s.path, local};
}

RawRecord StoreReader::read(int64_t i, bool verify) const {
  RawRecord r;
  read(i, &r, verify);
  return r;
}

void StoreReader::read(int64_t i, RawRecord* out, bool verify) const {
  int64_t local = 0;
  const Shard& s = shard_of(i, &local);
  RawRecord& r = *out;
  r.index = i;
  r.name = s.names[local];
  r.height = s.shapes[2 * local];
  r.width = s.shapes[2 * local + 1];
  r.stored_crc = s.crcs[local];
  s.image_bytes.read(s.image_offsets[local], s.image_offsets[local + 1], &r.image_bytes);
  s.label_bytes.read(s.label_offsets[local], s.label_offsets[local + 1], &r.label_bytes);
  if (verify && record_crc(r.image_bytes, r.label_bytes) != r.stored_crc) {
    throw CorruptRecordError(s.path + ": record " + std::to_string(local) + " (" + r.name + "): CRC mismatch");
  }
}

}  // namespace segrun::data
