# p3d_add_test(NAME name SOURCES a.cc ... LIBS lib ... [GPU] [GPUS n])
#
# Adds a GoogleTest binary as one ctest test. GPU tests carry the label "gpu"
# and must exit with code 77 when no usable GPU is present (tests/gpu_test_main.cc
# does this), so ctest reports them as skipped on CPU-only machines (CI) and runs
# them on the GPU machine. GPUS n marks tests needing n GPUs (label "gpuN").
function(p3d_add_test)
  cmake_parse_arguments(T "GPU" "NAME;GPUS" "SOURCES;LIBS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest)
  if(NOT T_GPU)
    target_link_libraries(${T_NAME} PRIVATE GTest::gtest_main)
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  if(T_GPU)
    set(labels gpu)
    if(T_GPUS)
      list(APPEND labels gpu${T_GPUS})
    endif()
    set_tests_properties(${T_NAME} PROPERTIES LABELS "${labels}" SKIP_RETURN_CODE 77)
  else()
    set_tests_properties(${T_NAME} PROPERTIES LABELS cpu)
  endif()
endfunction()
