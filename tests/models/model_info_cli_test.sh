#!/usr/bin/env bash
# `segrun model info` through the CLI on configs/demo_tiny.toml: parameter count and FLOPs equal
# the independent PyTorch reference (the same model in reference_clip_fpn.py: sum of numel of its
# parameters; its JIT trace counted with fvcore's rules), the JSON parts add up, the text table
# prints, and bad input is a one-line error with exit code 2.
# Usage: model_info_cli_test.sh SEGRUN_BINARY SOURCE_DIR
set -uo pipefail
segrun="$(realpath "$1")"
src="$(realpath "$2")"
. "$src/tests/lib.sh"
enter_work_dir model-info

cfg="$src/configs/demo_tiny.toml"  # clip_rn50 width 16, FPN 64 channels, ADE20K (150), crop 128
"$segrun" model info "$cfg" --format json > "$work/info.json" 2> "$work/info.err"
check "json exit code" test $? -eq 0
"$py" "$src/tests/models/reference_fvcore_flops.py" fpn clip_rn50 16 64 150 128 128 > "$work/ref.json"
check "reference ran" test $? -eq 0

check "params = reference sum of numel" test "$(json "$work/info.json" 'd["params"]["total"]')" = "$(json "$work/ref.json" 'd["params"]')"
# (minus the identity resizes of mmseg's FPNHead that segrun's head skips: see the reference)
check "flops = reference (fvcore rules on the JIT trace)" test "$(json "$work/info.json" 'd["flops"]')" = "$(json "$work/ref.json" 'd["flops"] - d["identity_resize"]')"
check "trainable + frozen = total" test "$(json "$work/info.json" 'd["params"]["trainable"] + d["params"]["frozen"] == d["params"]["total"]')" = True
check "submodule params add up" test "$(json "$work/info.json" 'sum(s["trainable"] + s["frozen"] for s in d["submodules"]) == d["params"]["total"]')" = True
check "submodule flops add up" test "$(json "$work/info.json" 'sum(s["flops"] for s in d["submodules"]) == d["flops"]')" = True
check "op flops add up" test "$(json "$work/info.json" 'sum(o["flops"] for o in d["by_op"]) == d["flops"]')" = True
check "submodules" test "$(json "$work/info.json" '",".join(s["name"] for s in d["submodules"])')" = "backbone,neck,decode_head"
check "input from data.crop" test "$(json "$work/info.json" 'd["input"]')" = "[1, 3, 128, 128]"

# --input and an override: FLOPs grow with the pixels, parameters do not change.
"$segrun" model info "$cfg" model.fpn_channels=32 --input 96x64 --format json > "$work/small.json"
check "override exit code" test $? -eq 0
check "--input used" test "$(json "$work/small.json" 'd["input"]')" = "[1, 3, 96, 64]"
"$py" "$src/tests/models/reference_fvcore_flops.py" fpn clip_rn50 16 32 150 96 64 > "$work/ref_small.json"
check "override + --input = reference" test "$(json "$work/small.json" '(d["params"]["total"], d["flops"])')" = "$(json "$work/ref_small.json" '(d["params"], d["flops"] - d["identity_resize"])')"

"$segrun" model info "$cfg" > "$work/info.txt"
check "text exit code" test $? -eq 0
check "text has the total row" grep -q '^total ' "$work/info.txt"
check "text has the op table" grep -q '^aten::conv2d ' "$work/info.txt"

"$segrun" model info "$cfg" --input 12x > "$work/bad.out" 2> "$work/bad.err"
check "bad --input exits 2" test $? -eq 2
check "bad --input is named" grep -q -- "--input" "$work/bad.err"
"$segrun" model info "$cfg" model.head=nope > "$work/bad.out" 2> "$work/bad.err"
check "unknown head exits 2" test $? -eq 2
check "unknown head is named" grep -q "model.head" "$work/bad.err"

finish model_info_cli_test
