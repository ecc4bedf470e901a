# Helpers for the corpus cases' `prepare:` lines (sourced by run_corpus.sh; functions only).
# They run in the case's scratch directory, where the shared fixtures are symlinked: ok.toml,
# train, val (ADE20K-layout stores), city_train (a Cityscapes store), raw (the ADE20K-layout
# source folder), city (the Cityscapes source folder), ckpt.pt (a 2-iteration checkpoint of ok.toml).
#   copy_store SRC DST            a private, writable copy of a fixture store (or any folder)
#   shard_of STORE                path of the store's first shard file
#   truncate_to FILE BYTES        keep the first BYTES bytes of FILE
#   foreign_hdf5 FILE             replace FILE with a valid HDF5 file that is not a segrun shard
#   manifest_edit STORE PYTHON    run a Python statement on the manifest's JSON document d
#   shard_attr STORE NAME VALUE   set a root attribute of the first shard (VALUE: Python literal)
#   flip_record STORE             flip 8 bytes inside record 0's image bytes in the first shard
py=/usr/bin/python3

copy_store() { cp -rL "$1" "$2" && chmod -R u+w "$2"; }
shard_of() { ls "$1"/*.h5 | head -n 1; }
truncate_to() { head -c "$2" "$1" > "$1.cut" && mv "$1.cut" "$1"; }
foreign_hdf5() { "$py" -c "import h5py,sys; f=h5py.File(sys.argv[1],'w'); f['x']=[1,2,3]; f.close()" "$1"; }
manifest_edit() {
  "$py" -c "
import json, sys
p = sys.argv[1] + '/manifest.json'
d = json.load(open(p))
exec(sys.argv[2])
json.dump(d, open(p, 'w'))" "$1" "$2"
}
shard_attr() {
  "$py" -c "
import ast, h5py, sys
with h5py.File(sys.argv[1], 'r+') as f:
    f.attrs[sys.argv[2]] = ast.literal_eval(sys.argv[3])" "$(shard_of "$1")" "$2" "$3"
}
flip_record() {
  "$py" - "$(shard_of "$1")" <<'PY'
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    offset = f["images/bytes"].id.get_offset()  # contiguous; None for a chunked shard of an earlier pack
    if offset is None:
        offset = f["images/bytes"].id.get_chunk_info(0).byte_offset
with open(sys.argv[1], "r+b") as fh:
    fh.seek(offset + 50); b = fh.read(8); fh.seek(offset + 50); fh.write(bytes(x ^ 0xFF for x in b))
PY
}
