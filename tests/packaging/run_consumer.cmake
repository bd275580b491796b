# Builds and runs a small project that uses pld the way a user would.
#   MODE=install: install this build tree into WORK_DIR/prefix, then find_package(pld CONFIG).
#   MODE=subdir:  add_subdirectory(PLD_SOURCE_DIR) from the consumer.
cmake_minimum_required(VERSION 3.25)
foreach(v MODE PLD_SOURCE_DIR PLD_BINARY_DIR WORK_DIR CXX_COMPILER)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_consumer.cmake: ${v} is not set")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(consumer_src ${PLD_SOURCE_DIR}/tests/packaging/consumer)
set(args -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release)

if(MODE STREQUAL "install")
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${PLD_BINARY_DIR} --prefix ${WORK_DIR}/prefix
                  COMMAND_ERROR_IS_FATAL ANY)
  list(APPEND args -DPLD_CONSUMER_MODE=install -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix
       -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
elseif(MODE STREQUAL "subdir")
  list(APPEND args -DPLD_CONSUMER_MODE=subdir -DPLD_SOURCE_DIR=${PLD_SOURCE_DIR})
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

execute_process(COMMAND ${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/build ${args}
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${WORK_DIR}/build/pld_consumer OUTPUT_VARIABLE out COMMAND_ERROR_IS_FATAL ANY)
message(STATUS "consumer printed: ${out}")
if(NOT out MATCHES "kept [0-9]+ of 12 layers")
  message(FATAL_ERROR "consumer output unexpected: ${out}")
endif()
if(DEFINED EXPECT_CUDA AND EXPECT_CUDA AND MODE STREQUAL "install")
  if(NOT EXISTS ${WORK_DIR}/build/pld_cuda_consumer)
    message(FATAL_ERROR "this pld was built with CUDA, but find_package(pld COMPONENTS cuda) did not give pld::cuda")
  endif()
  execute_process(COMMAND ${WORK_DIR}/build/pld_cuda_consumer OUTPUT_VARIABLE out COMMAND_ERROR_IS_FATAL ANY)
  message(STATUS "cuda consumer printed: ${out}")
endif()
