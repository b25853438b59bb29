#!/usr/bin/env bash
# The AVX-512 GEMM object must define no shared (weak, unique or global)
# symbol outside its renamed Eigen namespace and its own kernels: the
# linker keeps one copy of such a symbol for the whole binary, and an
# AVX-512 copy reached from baseline code would fault on AVX2-only hosts
# (cpu_gemm_avx512.cc). Arguments: care_compute's object files.
set -euo pipefail
obj=""
for o in "$@"; do
  [[ $o == *cpu_gemm_avx512.cc.o ]] && obj=$o
done
if [ -z "$obj" ]; then
  echo "check_gemm_isolation: no cpu_gemm_avx512.cc.o among the objects" >&2
  exit 1
fi
# The personality routine's data reference is the same in every object.
leaks=$(nm -C --defined-only "$obj" | awk '$2 ~ /^[A-Zuvw]$/' |
  grep -v -e 'care_eigen_avx512::' -e 'care::compute::cpu_gemm::avx512::' \
    -e 'DW.ref.__gxx_personality_v0' || true)
if [ -n "$leaks" ]; then
  echo "check_gemm_isolation: $obj shares symbols with the baseline code:" >&2
  echo "$leaks" >&2
  exit 1
fi
kernels=$(nm -C --defined-only "$obj" | grep -c 'care::compute::cpu_gemm::avx512::Gemm' || true)
if [ "$kernels" -lt 2 ]; then
  echo "check_gemm_isolation: $obj lacks the avx512 kernels" >&2
  exit 1
fi
echo "check_gemm_isolation: $obj: only renamed Eigen and the kernels ($kernels)"
