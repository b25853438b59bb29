# CUDA backend plugin (docs/gpu.md). CARE_ENABLE_CUDA = AUTO | ON | OFF:
#   AUTO  enable when nvcc is found ($CUDACXX, PATH, /usr/local/cuda/bin/nvcc)
#         together with cuBLAS and cuSOLVER; otherwise a CPU-only build.
#   ON    same, but a missing toolkit is a configure error.
#   OFF   never look.
# When enabled, the MODULE library care_cuda_backend is built into
# ${CMAKE_BINARY_DIR}/lib/ (the only target that links CUDA libraries; the
# binaries dlopen() it, see worker/care/compute/registry.h), with its tests
# (tests/compute/cuda/). Sets CARE_CUDA_ENABLED for bench/ and tests/.
# Architectures: sm_90 SASS plus compute_90 PTX, which the driver JIT-compiles
# for newer cards; one arch keeps CI's nvcc time small.

set(CARE_ENABLE_CUDA "AUTO" CACHE STRING "Build the CUDA backend plugin: AUTO, ON or OFF")
set_property(CACHE CARE_ENABLE_CUDA PROPERTY STRINGS AUTO ON OFF)
set(CARE_CUDA_ARCHITECTURES "90-real;90-virtual" CACHE STRING
    "CMAKE_CUDA_ARCHITECTURES of the CUDA backend")

set(CARE_CUDA_ENABLED OFF)
string(TOUPPER "${CARE_ENABLE_CUDA}" _care_cuda_mode)
if(NOT _care_cuda_mode MATCHES "^(AUTO|ON|OFF|TRUE|FALSE|YES|NO|1|0)$")
  message(FATAL_ERROR "CARE_ENABLE_CUDA=${CARE_ENABLE_CUDA}: expected AUTO, ON or OFF")
endif()
if(_care_cuda_mode MATCHES "^(TRUE|YES|1)$")
  set(_care_cuda_mode ON)
elseif(_care_cuda_mode MATCHES "^(FALSE|NO|0)$")
  set(_care_cuda_mode OFF)
endif()

function(_care_cuda_unavailable why)
  if(_care_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "CARE_ENABLE_CUDA=ON but ${why}")
  endif()
  message(STATUS "CUDA backend: off (${why})")
endfunction()

if(NOT _care_cuda_mode STREQUAL "OFF")
  # nvcc: an explicit CMAKE_CUDA_COMPILER, then $CUDACXX, PATH, /usr/local/cuda.
  set(_care_nvcc "")
  if(CMAKE_CUDA_COMPILER)
    set(_care_nvcc "${CMAKE_CUDA_COMPILER}")
  elseif(DEFINED ENV{CUDACXX} AND EXISTS "$ENV{CUDACXX}")
    set(_care_nvcc "$ENV{CUDACXX}")
  else()
    find_program(CARE_NVCC_EXECUTABLE nvcc PATHS /usr/local/cuda/bin NO_CACHE)
    if(CARE_NVCC_EXECUTABLE)
      set(_care_nvcc "${CARE_NVCC_EXECUTABLE}")
    endif()
  endif()
  if(NOT _care_nvcc)
    _care_cuda_unavailable("nvcc was not found ($CUDACXX, PATH, /usr/local/cuda/bin)")
  else()
    get_filename_component(_care_nvcc_bin "${_care_nvcc}" DIRECTORY)
    get_filename_component(_care_cuda_root "${_care_nvcc_bin}" DIRECTORY)
    set(CUDAToolkit_ROOT "${_care_cuda_root}")
    find_package(CUDAToolkit QUIET)
    if(NOT CUDAToolkit_FOUND OR NOT TARGET CUDA::cublas OR NOT TARGET CUDA::cusolver)
      _care_cuda_unavailable("the CUDA toolkit at ${_care_cuda_root} lacks cudart, cuBLAS or cuSOLVER")
    else()
      set(CMAKE_CUDA_COMPILER "${_care_nvcc}")
      if(NOT CMAKE_CUDA_HOST_COMPILER AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        set(CMAKE_CUDA_HOST_COMPILER "${CMAKE_CXX_COMPILER}")
      endif()
      set(CMAKE_CUDA_ARCHITECTURES "${CARE_CUDA_ARCHITECTURES}")
      set(CMAKE_CUDA_STANDARD 17)
      set(CMAKE_CUDA_STANDARD_REQUIRED ON)
      set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
      if(CCACHE_PROGRAM)
        set(CMAKE_CUDA_COMPILER_LAUNCHER "${CCACHE_PROGRAM}")
      endif()
      enable_language(CUDA)
      set(CARE_CUDA_ENABLED ON)
      message(STATUS "CUDA backend: on (nvcc ${CMAKE_CUDA_COMPILER_VERSION} at "
                     "${CMAKE_CUDA_COMPILER}, archs ${CMAKE_CUDA_ARCHITECTURES})")
    endif()
  endif()
endif()

# The plugin. Its sources are only ours; care_compute_core (the Backend
# interface's helpers, worker/care/compute/) is linked by name, which CMake
# resolves once the whole tree is configured.
function(care_cuda_add_plugin)
  set(dir "${PROJECT_SOURCE_DIR}/worker/care/compute/cuda")
  file(GLOB cu_sources CONFIGURE_DEPENDS "${dir}/*.cu")
  file(GLOB cc_sources CONFIGURE_DEPENDS "${dir}/*.cc")
  add_library(care_cuda_backend MODULE ${cu_sources} ${cc_sources})
  # The directory's host flags (-march=..., added for every language) are
  # not nvcc flags: keep them for C++ sources only.
  get_target_property(opts care_cuda_backend COMPILE_OPTIONS)
  set(filtered "")
  foreach(o IN LISTS opts)
    list(APPEND filtered "$<$<COMPILE_LANGUAGE:CXX>:${o}>")
  endforeach()
  set_target_properties(care_cuda_backend PROPERTIES
    COMPILE_OPTIONS "${filtered}"
    LIBRARY_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/lib"
    CUDA_SEPARABLE_COMPILATION OFF
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_include_directories(care_cuda_backend PRIVATE
    "${PROJECT_SOURCE_DIR}/worker")
  target_compile_options(care_cuda_backend PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall --expt-relaxed-constexpr>)
  if(CARE_WERROR)
    target_compile_options(care_cuda_backend PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
  endif()
  # Only the plugin links the CUDA libraries (scripts/check-runtime-libs.sh
  # keeps them out of the binaries).
  target_link_libraries(care_cuda_backend PRIVATE
    care_compute_core CUDA::cudart CUDA::cublas CUDA::cusolver
    OpenMP::OpenMP_CXX Threads::Threads)
  # No undefined symbols left for the loading binary to provide, and only
  # the entry points exported (not the static libraries' symbols).
  target_link_options(care_cuda_backend PRIVATE "LINKER:--no-undefined"
                      "LINKER:--exclude-libs,ALL")
endfunction()

# The plugin's tests need care_add_test (tests/CMakeLists.txt) and the
# registry: included once the tree is configured. (A deferred call may not
# add_subdirectory(), so the file is included; it uses absolute paths.)
function(care_cuda_add_tests)
  set(file "${PROJECT_SOURCE_DIR}/tests/compute/cuda/CMakeLists.txt")
  get_property(done GLOBAL PROPERTY CARE_CUDA_TESTS_ADDED)
  if(CARE_BUILD_TESTS AND NOT done AND EXISTS "${file}"
     AND COMMAND care_add_test)
    include("${file}")
  endif()
endfunction()

if(CARE_CUDA_ENABLED)
  if(EXISTS "${PROJECT_SOURCE_DIR}/worker/care/compute/backend.h")
    care_cuda_add_plugin()
    cmake_language(DEFER CALL care_cuda_add_tests)
  else()
    message(WARNING "CUDA backend: worker/care/compute/backend.h is missing; "
                    "the plugin is not built")
    set(CARE_CUDA_ENABLED OFF)
  endif()
endif()
