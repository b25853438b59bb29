# Compiler flags shared by every target: Release -O3, x86-64-v3 (AVX2/FMA) unless
# CARE_NATIVE asks for -march=native, warnings on, ccache when present.

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_C_COMPILER_LAUNCHER "${CCACHE_PROGRAM}")
  set(CMAKE_CXX_COMPILER_LAUNCHER "${CCACHE_PROGRAM}")
endif()

set(CMAKE_CXX_FLAGS_RELEASE "-O3 -DNDEBUG")
set(CMAKE_CXX_FLAGS_RELWITHDEBINFO "-O2 -g -DNDEBUG")

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  if(CARE_NATIVE)
    add_compile_options(-march=native)
  else()
    add_compile_options(-march=x86-64-v3)
  endif()
endif()

# Applied per target (care_set_warnings) so generated protobuf code stays quiet.
function(care_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(CARE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
