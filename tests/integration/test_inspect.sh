#!/usr/bin/env bash
# test_inspect.sh: `shardq inspect` on fixture checkpoints (single file, sharded, one file) prints
# the config (RoPE theta and type with the config.json field each came from, in the top-level and
# in transformers 5's rope_parameters layout) and a complete tensor table; on corrupt input or
# disagreeing RoPE layouts it fails with a non-zero exit code and a message naming the file at
# fault. Prints TAP.
set -u
# shellcheck source=tests/integration/testlib.sh
. "$(dirname "$0")/testlib.sh"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$MAKE_MODEL" "$WORK/single" --seed 1 --layers 3
"$MAKE_MODEL" "$WORK/sharded" --seed 1 --layers 3 --shards 2 --arch qwen2 --tie --dtype fp16

"$SHARDQ" inspect "$WORK/single" >"$WORK/single.out" 2>"$WORK/single.err"
check "inspect a single-file model exits 0" test $? -eq 0
check "config is printed" grep -qE '^  architecture +LlamaForCausalLM \(llama\)' "$WORK/single.out"
check "layer count is printed" grep -qE '^  num_hidden_layers +3$' "$WORK/single.out"
check "tensor row: name, dtype, shape, file, bytes" \
    grep -qE '^model\.layers\.2\.mlp\.down_proj\.weight +BF16 +\[64, 160\] +model\.safetensors +20480$' "$WORK/single.out"
# 512*64*2 (embed + lm_head) + 3 layers * (64*64 + 2*32*64 + 64*64 + 3*64*160 + 2*64) + 64 parameters
params=$((512 * 64 * 2 + 3 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 64 * 160 + 2 * 64) + 64))
check "totals count every tensor and parameter" \
    grep -qx "total: 30 tensors, $params parameters, $((params * 2)) bytes" "$WORK/single.out"

"$SHARDQ" inspect "$WORK/sharded" >"$WORK/sharded.out" 2>&1
check "inspect a sharded model exits 0" test $? -eq 0
check "shard files are named per tensor" \
    grep -qE '^model\.embed_tokens\.weight +F16 +\[512, 64\] +model-00001-of-00002\.safetensors' "$WORK/sharded.out"
check "qwen2 biases are listed" grep -qE '^model\.layers\.0\.self_attn\.q_proj\.bias +F16 +\[64\]' "$WORK/sharded.out"
check "tied model has no lm_head" bash -c "! grep -q '^lm_head' '$WORK/sharded.out'"

"$SHARDQ" inspect "$WORK/single/model.safetensors" >"$WORK/file.out" 2>&1
check "inspect one safetensors file exits 0" test $? -eq 0
check "one file: no config, full table" grep -qx "total: 30 tensors, $params parameters, $((params * 2)) bytes" "$WORK/file.out"

# Corrupt: header length (1 MiB) claims more bytes than the file has.
cp "$WORK/single/model.safetensors" "$WORK/corrupt.safetensors"
printf '\x00\x00\x10\x00\x00\x00\x00\x00' | dd of="$WORK/corrupt.safetensors" bs=1 count=8 conv=notrunc status=none
"$SHARDQ" inspect "$WORK/corrupt.safetensors" >"$WORK/corrupt.out" 2>"$WORK/corrupt.err"
check "corrupt file exits non-zero" test $? -ne 0
check "corrupt file error names the file" grep -q "$WORK/corrupt.safetensors: header length 1048576 exceeds the file size" "$WORK/corrupt.err"

# Corrupt: a tensor's byte range in a model directory's file is cut off (truncated file).
mkdir "$WORK/truncated" && cp "$WORK/single/config.json" "$WORK/truncated/"
head -c 20000 "$WORK/single/model.safetensors" >"$WORK/truncated/model.safetensors"
"$SHARDQ" inspect "$WORK/truncated" >/dev/null 2>"$WORK/trunc.err"
check "truncated checkpoint exits non-zero" test $? -ne 0
check "truncated checkpoint error names file and tensor" \
    grep -qE "$WORK/truncated/model.safetensors: tensor \".*\": data_offsets end [0-9]+ is outside" "$WORK/trunc.err"

# Corrupt config.json.
mkdir "$WORK/badcfg" && cp "$WORK/single/model.safetensors" "$WORK/badcfg/"
echo '{"architectures": ["LlamaForCausalLM"], "hidden_size": "wide"}' >"$WORK/badcfg/config.json"
"$SHARDQ" inspect "$WORK/badcfg" >/dev/null 2>"$WORK/badcfg.err"
check "bad config exits non-zero" test $? -ne 0
check "bad config error names file and field" grep -q "$WORK/badcfg/config.json: field \"hidden_size\"" "$WORK/badcfg.err"

"$SHARDQ" inspect "$WORK/does-not-exist" >/dev/null 2>&1
check "missing path exits non-zero" test $? -ne 0

# RoPE settings: theta and type with the config.json field each came from, in either layout.
with_rope() { # dir, then a Python expression updating the config dict c
    mkdir -p "$WORK/$1" && cp "$WORK/single/model.safetensors" "$WORK/$1/"
    python3 -c "import json, sys; c = json.load(open(sys.argv[1])); $2; json.dump(c, open(sys.argv[2], 'w'))" \
        "$WORK/single/config.json" "$WORK/$1/config.json"
}
with_rope rope_legacy "c['rope_theta'] = 500000.0; c['rope_scaling'] = {'type': 'linear', 'factor': 4.0}"
"$SHARDQ" inspect "$WORK/rope_legacy" >"$WORK/rope_legacy.out" 2>&1
check "top-level layout: theta and its field" grep -qE '^  rope_theta +500000 \(rope_theta\)$' "$WORK/rope_legacy.out"
check "top-level layout: type and its field" \
    grep -qE '^  rope_type +linear \(factor 4; rope_scaling\.type\)$' "$WORK/rope_legacy.out"
with_rope rope_params "c.pop('rope_theta', None); c['rope_parameters'] = {'rope_theta': 100000.0, 'rope_type': 'llama3', \
'factor': 8.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0, 'original_max_position_embeddings': 8192}"
"$SHARDQ" inspect "$WORK/rope_params" >"$WORK/rope_params.out" 2>&1
check "rope_parameters layout: theta and its field" \
    grep -qE '^  rope_theta +100000 \(rope_parameters\.rope_theta\)$' "$WORK/rope_params.out"
llama3='^  rope_type +llama3 \(factor 8, low_freq_factor 1, high_freq_factor 4, original 8192; rope_parameters\.rope_type\)$'
check "rope_parameters layout: llama3 and its field" grep -qE "$llama3" "$WORK/rope_params.out"
with_rope rope_none "c.pop('rope_theta', None)"
"$SHARDQ" inspect "$WORK/rope_none" >"$WORK/rope_none.out" 2>&1
check "no RoPE field: the default, said so" \
    grep -qE '^  rope_theta +10000 \(not in config\.json: the default\)$' "$WORK/rope_none.out"
with_rope rope_conflict "c['rope_theta'] = 10000.0; c['rope_parameters'] = {'rope_theta': 100000.0, 'rope_type': 'default'}"
"$SHARDQ" inspect "$WORK/rope_conflict" >/dev/null 2>"$WORK/rope_conflict.err"
check "disagreeing layouts exit non-zero" test $? -ne 0
check "disagreeing layouts: both fields named" grep -q "$WORK/rope_conflict/config.json: fields \"rope_theta\" \
(10000) and \"rope_parameters.rope_theta\" (100000) disagree" "$WORK/rope_conflict.err"
