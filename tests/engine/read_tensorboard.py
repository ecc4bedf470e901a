#!/usr/bin/env python3
"""An independent reader of TensorBoard event files, for segrun's tests.

Nothing here comes from segrun: the record framing and its masked CRC-32C are those of
TensorFlow's TFRecord format (tensorflow/core/lib/io/record_writer.cc, crc32c.h), checked with
the `crc32c` module (Debian python3-crc32c); the Event / Summary messages are decoded by Google's
protobuf runtime (python3-protobuf) from a schema built here with the field numbers of
tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto.

Usage: read_tensorboard.py [--purge] EVENT_FILE_OR_DIR...
Prints one JSON document: {"files": N, "file_version": [...], "session_log": [[file index, step,
status], ...], "scalars": {tag: [[step, value], ...]}, "images": {tag: [{"step", "width", "height",
"colorspace", "decoded": [h, w, c]}]}}, the files of a folder in name order, as TensorBoard reads them.
--purge: what TensorBoard's Python event loader keeps (tensorboard/backend/event_processing/
event_accumulator.py, EventAccumulator._MaybePurgeOrphanedData / _CheckForRestartAndMaybePurge /
_Purge with by_tags=False): once a file_version >= 2 was read, an event whose session_log status is
START (1) drops every scalar and image read so far whose step is >= its step.
Exits 1 with a message naming the file and offset on a bad checksum or a torn record.
"""
import json
import os
import struct
import sys

import crc32c
import cv2
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def build_messages():
    fdp = descriptor_pb2.FileDescriptorProto(name="tb_reference.proto", package="tensorboard_ref", syntax="proto3")

    def field(msg, name, number, ftype, type_name=None, label=F.LABEL_OPTIONAL, oneof=None):
        f = msg.field.add(name=name, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof

    summary = fdp.message_type.add(name="Summary")
    image = summary.nested_type.add(name="Image")
    field(image, "height", 1, F.TYPE_INT32)
    field(image, "width", 2, F.TYPE_INT32)
    field(image, "colorspace", 3, F.TYPE_INT32)
    field(image, "encoded_image_string", 4, F.TYPE_BYTES)
    value = summary.nested_type.add(name="Value")
    value.oneof_decl.add(name="value")
    field(value, "node_name", 7, F.TYPE_STRING)
    field(value, "tag", 1, F.TYPE_STRING)
    field(value, "simple_value", 2, F.TYPE_FLOAT, oneof=0)
    field(value, "obsolete_old_style_histogram", 3, F.TYPE_BYTES, oneof=0)
    field(value, "image", 4, F.TYPE_MESSAGE, ".tensorboard_ref.Summary.Image", oneof=0)
    field(summary, "value", 1, F.TYPE_MESSAGE, ".tensorboard_ref.Summary.Value", label=F.LABEL_REPEATED)

    event = fdp.message_type.add(name="Event")
    event.oneof_decl.add(name="what")
    field(event, "wall_time", 1, F.TYPE_DOUBLE)
    field(event, "step", 2, F.TYPE_INT64)
    field(event, "file_version", 3, F.TYPE_STRING, oneof=0)
    field(event, "graph_def", 4, F.TYPE_BYTES, oneof=0)
    field(event, "summary", 5, F.TYPE_MESSAGE, ".tensorboard_ref.Summary", oneof=0)
    field(event, "session_log", 7, F.TYPE_MESSAGE, ".tensorboard_ref.SessionLog", oneof=0)
    session_log = fdp.message_type.add(name="SessionLog")  # status: 0 unspecified, 1 START, 2 STOP, 3 CHECKPOINT
    field(session_log, "status", 1, F.TYPE_INT32)
    field(session_log, "checkpoint_path", 2, F.TYPE_STRING)
    field(session_log, "msg", 3, F.TYPE_STRING)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName("tensorboard_ref.Event"))


def masked_crc(data):
    c = crc32c.crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    with open(path, "rb") as f:
        blob = f.read()
    pos = 0
    while pos < len(blob):
        if pos + 12 > len(blob):
            sys.exit(f"{path}: offset {pos}: torn record header")
        header = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        if header_crc != masked_crc(header):
            sys.exit(f"{path}: offset {pos}: length checksum mismatch")
        data = blob[pos + 12:pos + 12 + length]
        if len(data) != length or pos + 16 + length > len(blob):
            sys.exit(f"{path}: offset {pos}: torn record")
        (data_crc,) = struct.unpack("<I", blob[pos + 12 + length:pos + 16 + length])
        if data_crc != masked_crc(data):
            sys.exit(f"{path}: offset {pos}: data checksum mismatch")
        yield data
        pos += 16 + length


def main(args):
    purge = "--purge" in args
    paths = [a for a in args if a != "--purge"]
    Event = build_messages()
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, n) for n in os.listdir(p) if "tfevents" in n)
        else:
            files.append(p)
    out = {"files": len(files), "file_version": [], "session_log": [], "scalars": {}, "images": {}}
    version = 0.0
    for index, path in enumerate(files):
        for data in records(path):
            event = Event()
            event.ParseFromString(data)
            what = event.WhichOneof("what")
            if what == "file_version":
                out["file_version"].append(event.file_version)
                version = float(event.file_version[len("brain.Event:"):])
                continue
            if what == "session_log":
                out["session_log"].append([index, event.step, event.session_log.status])
                if purge and version >= 2 and event.session_log.status == 1:
                    for series in list(out["scalars"].values()) + list(out["images"].values()):
                        series[:] = [p for p in series if (p[0] if isinstance(p, list) else p["step"]) < event.step]
                continue
            for v in event.summary.value:
                kind = v.WhichOneof("value")
                if kind == "simple_value":
                    out["scalars"].setdefault(v.tag, []).append([event.step, v.simple_value])
                elif kind == "image":
                    decoded = cv2.imdecode(np.frombuffer(v.image.encoded_image_string, np.uint8), cv2.IMREAD_UNCHANGED)
                    out["images"].setdefault(v.tag, []).append({
                        "step": event.step, "width": v.image.width, "height": v.image.height,
                        "colorspace": v.image.colorspace,
                        "decoded": list(decoded.shape) if decoded is not None else None})
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
