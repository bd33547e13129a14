# The libFuzzer targets in fuzz/ (-DTIDE_FUZZ=ON, clang only), and one
# CTest test per target, fuzz/<target>, that fuzzes it for a short bounded
# time and fails when it finds anything. Included by CMakeLists.txt in
# place of the other tests: a fuzz build runs only the fuzzers (the plain
# and ASan builds run the rest).
#
# The whole core is compiled with -fsanitize=fuzzer-no-link,address,
# undefined (CMakeLists.txt adds it); the targets link libFuzzer's main.

set(TIDE_FUZZ_SECONDS 20 CACHE STRING
    "Seconds each fuzz/<target> CTest test fuzzes its target")
file(GLOB TIDE_FUZZ_SRC CONFIGURE_DEPENDS fuzz/fuzz_*.c)

enable_testing()
foreach(src ${TIDE_FUZZ_SRC})
  get_filename_component(t ${src} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" t ${t})
  add_executable(fuzz_${t} fuzz/fuzz_${t}.c)
  target_link_libraries(fuzz_${t} PRIVATE tide_core)
  target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
  target_compile_definitions(fuzz_${t} PRIVATE
    TIDE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  # fuzz/run.sh keeps what the run learns in the build folder, never in
  # the seed corpus under fuzz/corpus/.
  add_test(NAME fuzz/${t}
    COMMAND sh ${CMAKE_SOURCE_DIR}/fuzz/run.sh $<TARGET_FILE:fuzz_${t}>
            ${CMAKE_SOURCE_DIR}/fuzz/corpus/${t} ${CMAKE_BINARY_DIR}/fuzz-out/${t}
            ${TIDE_FUZZ_SECONDS})
  math(EXPR limit "${TIDE_FUZZ_SECONDS} + 120")
  set_tests_properties(fuzz/${t} PROPERTIES TIMEOUT ${limit})
endforeach()
