#!/usr/bin/env bash
# Fuzzes the safetensors header parser, then carectl's YAML spec parser
# (build-fuzz/yaml_spec_fuzzer, below), with libFuzzer + ASan/UBSan.
#   scripts/fuzz.sh [SECONDS]      (default 60 per target; CI runs
#                                   `scripts/fuzz.sh 20`)
# Builds build-fuzz/safetensors_header_fuzzer with clang (Debian clang-14,
# libclang-rt-14-dev) from the few sources it needs, seeds a corpus from the
# fixtures (../shared/fixtures or $CARE_FIXTURES) plus small synthetic files,
# and exits non-zero when the fuzzer finds a crash (the reproducer is left in
# build-fuzz/).
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/build-fuzz"
fixtures="${CARE_FIXTURES:-$root/../shared/fixtures}"
cxx="$(command -v clang++-14 || command -v clang++)"
mkdir -p "$out"

bin="$out/safetensors_header_fuzzer"
srcs=(
  "$root/tests/fuzz/safetensors_header_fuzzer.cc"
  "$root/worker/care/io/safetensors.cc"
  "$root/worker/care/io/dtype.cc"
  "$root/worker/care/io/tensor_source.cc"
)
# Rebuild only when a source is newer than the binary.
needs_build=1
if [[ -x "$bin" ]]; then
  needs_build=0
  for s in "${srcs[@]}" "$root"/worker/care/io/*.h "$root"/base/*.h; do
    [[ "$s" -nt "$bin" ]] && needs_build=1
  done
fi
if [[ $needs_build == 1 ]]; then
  echo "fuzz.sh: compiling with $cxx"
  # shellcheck disable=SC2046
  "$cxx" -std=c++20 -O1 -g -march=x86-64-v3 \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root" -I"$root/worker" -I/usr/include/eigen3 \
    "${srcs[@]}" -o "$bin" \
    $(pkg-config --libs absl_status absl_statusor absl_strings absl_str_format)
fi

# Seed corpus, regenerated each run: fixture files and small synthetic ones.
seeds="$out/seeds"
rm -rf "$seeds"
mkdir -p "$seeds" "$out/corpus"
for f in "$fixtures"/stories260K-hf-bf16/model.safetensors \
         "$fixtures"/stories260K-hf-sharded/*.safetensors; do
  [[ -f "$f" ]] && cp "$f" "$seeds/$(basename "$(dirname "$f")")-$(basename "$f")"
done
# <8-byte little-endian length><header><data>
mkseed() {
  local name="$1" header="$2" data_bytes="$3" len="${#2}"
  {
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x00\\x00\\x00' \
      $((len & 255)) $(((len >> 8) & 255)) $(((len >> 16) & 255)) \
      $(((len >> 24) & 255)))"
    printf '%s' "$header"
    head -c "$data_bytes" /dev/zero
  } > "$seeds/$name"
}
mkseed f32 '{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}' 16
mkseed mixed '{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"h":{"dtype":"F16","shape":[1],"data_offsets":[6,8]},"d":{"dtype":"F64","shape":[],"data_offsets":[8,16]}}' 16
mkseed empty '{}' 0
mkseed ints '{"i":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}' 8

echo "fuzz.sh: fuzzing for ${seconds}s"
cd "$out"
# -max_len covers the fixture seeds; the corpus directory persists across runs.
"$bin" -max_total_time="$seconds" -max_len=1200000 -rss_limit_mb=2048 \
  -timeout=10 -print_final_stats=1 \
  -dict="$root/tests/fuzz/safetensors.dict" "$out/corpus" "$seeds"

# ---- carectl's YAML spec parser (client/spec_file.cc) ----
# job.pb.cc is generated here with protoc; yaml-cpp and libprotobuf are the
# system's (not instrumented; their calls are still checked by ASan).
ybin="$out/yaml_spec_fuzzer"
ysrcs=(
  "$root/tests/fuzz/yaml_spec_fuzzer.cc"
  "$root/client/spec_file.cc"
  "$root/base/file.cc"
)
gen="$out/gen"
needs_build=1
if [[ -x "$ybin" ]]; then
  needs_build=0
  for s in "${ysrcs[@]}" "$root/client/spec_file.h" \
           "$root/proto/care/v1/job.proto"; do
    [[ "$s" -nt "$ybin" ]] && needs_build=1
  done
fi
if [[ $needs_build == 1 ]]; then
  echo "fuzz.sh: compiling yaml_spec_fuzzer with $cxx"
  mkdir -p "$gen"
  protoc -I"$root/proto" --cpp_out="$gen" "$root/proto/care/v1/job.proto"
  # shellcheck disable=SC2046
  "$cxx" -std=c++20 -O1 -g -march=x86-64-v3 \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root" -I"$gen" \
    "${ysrcs[@]}" "$gen/care/v1/job.pb.cc" -o "$ybin" \
    $(pkg-config --libs yaml-cpp protobuf absl_status absl_statusor \
      absl_strings absl_str_format)
fi
yseeds="$out/yaml_seeds"
rm -rf "$yseeds"
mkdir -p "$yseeds" "$out/yaml_corpus"
cp "$root"/tests/client/specs/*.yaml "$root"/tests/client/specs/*.json "$yseeds/"
printf 'calibration: &c\n  dataset_uri: /d\nevaluation: *c\n' > "$yseeds/alias.yaml"
printf 'labels: {a: b, "c": "d"}\nkv_budget: {rank_per_matrix: 8}\n' > "$yseeds/flow.yaml"
echo "fuzz.sh: fuzzing the YAML spec parser for ${seconds}s"
"$ybin" -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048 \
  -timeout=10 -print_final_stats=1 \
  -dict="$root/tests/fuzz/yaml_spec.dict" "$out/yaml_corpus" "$yseeds"
